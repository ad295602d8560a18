package model

import "github.com/sovereign-fl/sovereign/model/internal/gemm"

// GemmPath names the matrix-multiply path training and evaluation use
// ("avx512", "avx2" or "go"), chosen at start-up from the CPU's features or
// forced with the environment variable SOVEREIGN_GEMM.
func GemmPath() string { return gemm.Path() }
