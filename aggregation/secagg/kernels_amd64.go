package secagg

import "golang.org/x/sys/cpu"

// The assembly kernels of ctr_amd64.s and quant_amd64.s.

// haveVAES selects the AVX-512 vector-AES keystream kernel of ctr_amd64.s.
var haveVAES = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VAES

//go:noescape
func ctrVAES(rk *roundKeys, dst *uint32, groups int, block uint64, mode int)

// haveQuantAVX512 selects quantAVX512 (quant_amd64.s).
var haveQuantAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL

//go:noescape
func quantAVX512(dst *uint32, x *float32, r *uint32, n int, ws float64, lim float32, mask uint32) int
