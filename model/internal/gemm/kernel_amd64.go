package gemm

import "golang.org/x/sys/cpu"

// Micro-kernels in kernel_amd64.s: C[0:6, 0:nr] += A·B over k steps, with A
// packed 6 floats per step and B nr floats per step.
//
//go:noescape
func kernelAVX512(k int, a, b, c *float32, ldc int)

//go:noescape
func kernelAVX2(k int, a, b, c *float32, ldc int)

// kernels lists the micro-kernels this CPU runs, fastest first.
func kernels() []kernel {
	var ks []kernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, kernel{name: "avx512", mr: 6, nr: 32, fn: kernelAVX512})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, kernel{name: "avx2", mr: 6, nr: 16, fn: kernelAVX2})
	}
	return ks
}

// FMA-only loops of kernel_amd64.s: n iterations of 12 independent FMAs.
func peakAVX512(n int)
func peakAVX2(n int)
