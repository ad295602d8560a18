#include "textflag.h"

// func anyNonFiniteAVX512(x *float32, n int) bool
// Reports whether any of x[0:n] (n a positive multiple of 64) is NaN or
// ±Inf, i.e. has all exponent bits set: the largest |x| bit pattern (sign
// cleared) over four accumulators, compared once at the end with that of
// +Inf, 0x7f800000 (NaNs are above it). Vector ALU operations only, one
// AND and one unsigned max per 16 values.
TEXT ·anyNonFiniteAVX512(SB), NOSPLIT, $0-17
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $6, CX
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z8
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
loop:
	VPANDD (SI), Z8, Z4
	VPANDD 64(SI), Z8, Z5
	VPANDD 128(SI), Z8, Z6
	VPANDD 192(SI), Z8, Z7
	VPMAXUD Z4, Z0, Z0
	VPMAXUD Z5, Z1, Z1
	VPMAXUD Z6, Z2, Z2
	VPMAXUD Z7, Z3, Z3
	ADDQ $256, SI
	DECQ CX
	JNZ loop
	VPMAXUD Z1, Z0, Z0
	VPMAXUD Z3, Z2, Z2
	VPMAXUD Z2, Z0, Z0
	MOVL $0x7f800000, AX
	VPBROADCASTD AX, Z9
	VPCMPUD $5, Z9, Z0, K1
	KORTESTW K1, K1
	SETNE ret+16(FP)
	VZEROUPPER
	RET
