package vsum

import "golang.org/x/sys/cpu"

// haveAVX512 selects the assembly kernels of vsum_amd64.s.
var haveAVX512 = cpu.X86.HasAVX512F

// The kernels process n elements; n is a multiple of 8 (the float64 ones)
// or of 64 (the uint32 ones) and at least that.

//go:noescape
func accumulate4AVX512(acc *float64, r0, r1, r2, r3 *float32, n int, w0, w1, w2, w3 float64)

//go:noescape
func accumulate1AVX512(acc *float64, r *float32, n int, w float64)

//go:noescape
func addU32AVX512(dst, src *uint32, n int)

//go:noescape
func subU32AVX512(dst, src *uint32, n int)

//go:noescape
func addU32ManyAVX512(dst *uint32, srcs *[]uint32, nsrc, off, n int)
