package secagg

import "golang.org/x/sys/cpu"

// haveVAES selects the AVX-512 vector-AES keystream kernel of ctr_amd64.s.
var haveVAES = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VAES

//go:noescape
func ctrVAES(rk *[15][16]byte, dst *uint32, groups int, block uint64, mode int)
