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

// func subAVX512(dst, a, b *float32, n int)
// dst[i] = a[i] - b[i], 64 values per step, then 16, the last n%16 under
// an opmask.
TEXT ·subAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
sub64:
	CMPQ CX, $64
	JLT sub16
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVUPS 128(SI), Z2
	VMOVUPS 192(SI), Z3
	VSUBPS (DX), Z0, Z0
	VSUBPS 64(DX), Z1, Z1
	VSUBPS 128(DX), Z2, Z2
	VSUBPS 192(DX), Z3, Z3
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	ADDQ $256, SI
	ADDQ $256, DX
	ADDQ $256, DI
	SUBQ $64, CX
	JMP sub64
sub16:
	CMPQ CX, $16
	JLT subtail
	VMOVUPS (SI), Z0
	VSUBPS (DX), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JMP sub16
subtail:
	TESTQ CX, CX
	JE subdone
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	VMOVUPS (SI), K1, Z0
	VMOVUPS (DX), K1, Z1
	VSUBPS Z1, Z0, Z0
	VMOVUPS Z0, K1, (DI)
subdone:
	VZEROUPPER
	RET
