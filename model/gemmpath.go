package model

import "github.com/sovereign-fl/sovereign/model/internal/gemm"

// GemmPath names the matrix-multiply path training and evaluation use
// ("avx512", "avx2" or "go"), chosen at start-up from the CPU's features or
// forced with the environment variable SOVEREIGN_GEMM.
func GemmPath() string { return gemm.Path() }

// Delta sets dst = local − global element by element: a client's update
// Δ = w_local − w_global (McMahan et al. 2017, Algorithm 1), 16 lanes at a
// time where the CPU has AVX-512, with the same bits as the Go loop. local
// and global must have at least len(dst) values.
func Delta(dst, local, global []float32) { gemm.Sub(dst, local, global) }
