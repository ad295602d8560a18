#include "textflag.h"

DATA quantAbs<>+0(SB)/4, $0x7fffffff
GLOBL quantAbs<>(SB), RODATA|NOPTR, $4
DATA quantMaxF32<>+0(SB)/4, $0x7f7fffff
GLOBL quantMaxF32<>(SB), RODATA|NOPTR, $4
DATA quantTwo32<>+0(SB)/8, $0x41f0000000000000
GLOBL quantTwo32<>(SB), RODATA|NOPTR, $8
DATA quantOne<>+0(SB)/8, $1
GLOBL quantOne<>(SB), RODATA|NOPTR, $8

// func quantAVX512(dst *uint32, x *float32, r *uint32, n int, ws float64, lim float32, mask uint32) int
// The loop of Quantizer.quantize, 8 coordinates per step in float64 lanes,
// each operation the same correctly rounded one as the Go code: clip x to
// [-lim, lim], y = float64(x)·ws, f = floor(y), up = r < int64((y-f)·2^32),
// dst = (uint32(int64(f)) + up) & mask. n is a multiple of 8. It stops
// before the first step holding a NaN or infinite coordinate (the Go loop
// then reports it) and returns the number of coordinates done.
TEXT ·quantAVX512(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ r+16(FP), R8
	MOVQ n+24(FP), CX
	VBROADCASTSD ws+32(FP), Z10
	VBROADCASTSS lim+40(FP), Y11
	VXORPS Y12, Y12, Y12
	VSUBPS Y11, Y12, Y12          // -lim
	MOVL mask+44(FP), BX
	VPBROADCASTD BX, Y13
	VBROADCASTSS quantAbs<>(SB), Y14
	VBROADCASTSS quantMaxF32<>(SB), Y15
	VBROADCASTSD quantTwo32<>(SB), Z16
	VPBROADCASTQ quantOne<>(SB), Z17
	XORQ AX, AX
	CMPQ CX, $0
	JEQ q_done
q_loop:
	VMOVUPS (SI)(AX*4), Y0
	VANDPS Y14, Y0, Y1
	VCMPPS $0x12, Y15, Y1, K1     // |x| <= MaxFloat32, false for NaN (LE_OQ)
	KMOVB K1, BX
	CMPB BL, $0xff
	JNE q_done
	VMINPS Y11, Y0, Y0
	VMAXPS Y12, Y0, Y0
	VCVTPS2PD Y0, Z1
	VMULPD Z10, Z1, Z1            // y
	VRNDSCALEPD $9, Z1, Z2        // f = floor(y), no precision exception
	VSUBPD Z2, Z1, Z3
	VMULPD Z16, Z3, Z3
	VCVTTPD2QQ Z3, Z3             // int64((y-f)·2^32)
	VPMOVZXDQ (R8)(AX*4), Z4      // r, zero-extended
	VPCMPUQ $1, Z3, Z4, K2        // r < that
	VCVTTPD2QQ Z2, Z5             // int64(f)
	VPADDQ Z17, Z5, K2, Z5
	VPMOVQD Z5, Y6
	VPANDD Y13, Y6, Y6
	VMOVDQU32 Y6, (DI)(AX*4)
	ADDQ $8, AX
	CMPQ AX, CX
	JLT q_loop
q_done:
	MOVQ AX, ret+48(FP)
	VZEROUPPER
	RET
