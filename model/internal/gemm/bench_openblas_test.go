//go:build openblas && cgo

package gemm

import "github.com/sovereign-fl/sovereign/model/internal/gemm/openblas"

func init() { openblasGemm = openblas.Sgemm }
