#include "textflag.h"

// func addAVX512(dst, src *float32, n int)
// dst[i] += src[i], 16 lanes per step, the last n%16 under an opmask.
TEXT ·addAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
add16:
	CMPQ CX, $16
	JLT addtail
	VMOVUPS (SI), Z0
	VADDPS (DI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP add16
addtail:
	TESTQ CX, CX
	JE adddone
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	VMOVUPS (SI), K1, Z0
	VMOVUPS (DI), K1, Z1
	VADDPS Z1, Z0, Z0
	VMOVUPS Z0, K1, (DI)
adddone:
	VZEROUPPER
	RET
