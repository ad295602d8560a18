#include "textflag.h"

// Byte shuffle of each 128-bit lane: the low qword kept, the high qword
// byte-reversed, turning a little-endian block index in the high qword
// into the big-endian AES-CTR counter block 0^64 ‖ BE64(index).
DATA ctrShuf<>+0(SB)/8, $0x0706050403020100
DATA ctrShuf<>+8(SB)/8, $0x08090a0b0c0d0e0f
GLOBL ctrShuf<>(SB), RODATA|NOPTR, $16

// Lane offsets 0..3 of the four blocks of a zmm (in the high qwords), and
// the step of 16 blocks.
DATA ctrLanes<>+0(SB)/8, $0
DATA ctrLanes<>+8(SB)/8, $0
DATA ctrLanes<>+16(SB)/8, $0
DATA ctrLanes<>+24(SB)/8, $1
DATA ctrLanes<>+32(SB)/8, $0
DATA ctrLanes<>+40(SB)/8, $2
DATA ctrLanes<>+48(SB)/8, $0
DATA ctrLanes<>+56(SB)/8, $3
GLOBL ctrLanes<>(SB), RODATA|NOPTR, $64

DATA ctrStep<>+0(SB)/8, $0
DATA ctrStep<>+8(SB)/8, $4
GLOBL ctrStep<>(SB), RODATA|NOPTR, $16

// func ctrVAES(rk *roundKeys, dst *uint32, groups int, block uint64, mode int)
// AES-128-CTR keystream from counter block number block on (zero IV),
// 16 blocks (64 words) per group, four zmm of four blocks each in flight:
// mode 0 stores it into dst, 1 adds it to dst and 2 subtracts it from dst,
// word by word mod 2^32 (words little-endian, as the Go path reads them).
TEXT ·ctrVAES(SB), NOSPLIT, $0-40
	MOVQ rk+0(FP), AX
	MOVQ dst+8(FP), DI
	MOVQ groups+16(FP), CX
	MOVQ block+24(FP), DX
	MOVQ mode+32(FP), BX
	VBROADCASTI32X4 0(AX), Z16
	VBROADCASTI32X4 16(AX), Z17
	VBROADCASTI32X4 32(AX), Z18
	VBROADCASTI32X4 48(AX), Z19
	VBROADCASTI32X4 64(AX), Z20
	VBROADCASTI32X4 80(AX), Z21
	VBROADCASTI32X4 96(AX), Z22
	VBROADCASTI32X4 112(AX), Z23
	VBROADCASTI32X4 128(AX), Z24
	VBROADCASTI32X4 144(AX), Z25
	VBROADCASTI32X4 160(AX), Z26
	VBROADCASTI32X4 ctrShuf<>(SB), Z31
	// Z4..Z7: counters of blocks block+0..3, +4..7, +8..11, +12..15.
	MOVQ DX, X8
	VPSLLDQ $8, X8, X8           // block index into the high qword
	VSHUFI32X4 $0, Z8, Z8, Z8     // lane 0 into all four lanes
	VPADDQ ctrLanes<>(SB), Z8, Z4
	VBROADCASTI32X4 ctrStep<>(SB), Z9 // +4 blocks
	VPADDQ Z9, Z4, Z5
	VPADDQ Z9, Z5, Z6
	VPADDQ Z9, Z6, Z7
	VPSLLQ $2, Z9, Z9            // +16 blocks
ctr_loop:
	VPSHUFB Z31, Z4, Z0
	VPSHUFB Z31, Z5, Z1
	VPSHUFB Z31, Z6, Z2
	VPSHUFB Z31, Z7, Z3
	VPXORD Z16, Z0, Z0
	VPXORD Z16, Z1, Z1
	VPXORD Z16, Z2, Z2
	VPXORD Z16, Z3, Z3
#define ROUND(k) \
	VAESENC k, Z0, Z0 \
	VAESENC k, Z1, Z1 \
	VAESENC k, Z2, Z2 \
	VAESENC k, Z3, Z3
	ROUND(Z17)
	ROUND(Z18)
	ROUND(Z19)
	ROUND(Z20)
	ROUND(Z21)
	ROUND(Z22)
	ROUND(Z23)
	ROUND(Z24)
	ROUND(Z25)
	VAESENCLAST Z26, Z0, Z0
	VAESENCLAST Z26, Z1, Z1
	VAESENCLAST Z26, Z2, Z2
	VAESENCLAST Z26, Z3, Z3
	VPADDQ Z9, Z4, Z4
	VPADDQ Z9, Z5, Z5
	VPADDQ Z9, Z6, Z6
	VPADDQ Z9, Z7, Z7
	CMPQ BX, $1
	JEQ ctr_add
	JGT ctr_sub
	VMOVDQU32 Z0, (DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	JMP ctr_next
ctr_add:
	VPADDD (DI), Z0, Z0
	VPADDD 64(DI), Z1, Z1
	VPADDD 128(DI), Z2, Z2
	VPADDD 192(DI), Z3, Z3
	VMOVDQU32 Z0, (DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	JMP ctr_next
ctr_sub:
	VMOVDQU32 (DI), Z10
	VMOVDQU32 64(DI), Z11
	VMOVDQU32 128(DI), Z12
	VMOVDQU32 192(DI), Z13
	VPSUBD Z0, Z10, Z10
	VPSUBD Z1, Z11, Z11
	VPSUBD Z2, Z12, Z12
	VPSUBD Z3, Z13, Z13
	VMOVDQU32 Z10, (DI)
	VMOVDQU32 Z11, 64(DI)
	VMOVDQU32 Z12, 128(DI)
	VMOVDQU32 Z13, 192(DI)
ctr_next:
	ADDQ $256, DI
	DECQ CX
	JNZ ctr_loop
	VZEROUPPER
	RET
