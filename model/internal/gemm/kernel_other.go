//go:build !amd64

package gemm

// kernels is empty off amd64: gonum's pure-Go blas32.Gemm runs.
func kernels() []kernel { return nil }

// peakLoop has no FMA loop to offer off amd64.
func peakLoop(string) (func(int), int) { return nil, 0 }

func addAVX512(dst, src *float32, n int)  { panic("unreachable") }
func subAVX512(dst, a, b *float32, n int) { panic("unreachable") }
