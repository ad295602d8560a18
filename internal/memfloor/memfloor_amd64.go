package memfloor

import "golang.org/x/sys/cpu"

// haveAVX512 selects readSumAVX512. A variable so that the test can compare
// with the Go loop.
var haveAVX512 = cpu.X86.HasAVX512F

// readSumAVX512 sums n words (n a positive multiple of 64).
//
//go:noescape
func readSumAVX512(p *uint32, n int) uint32
