package finite

import "golang.org/x/sys/cpu"

// useAVX512 selects the vector scan (AVX-512F). A
// variable so that the tests can compare with the Go loop.
var useAVX512 = cpu.X86.HasAVX512F

//go:noescape
func anyNonFiniteAVX512(x *float32, n int) bool
