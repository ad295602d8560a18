#include "textflag.h"

// func accumulate4AVX512(acc *float64, r0, r1, r2, r3 *float32, n int, w0, w1, w2, w3 float64)
// acc[j] += ((w0·r0[j] + w1·r1[j]) + w2·r2[j]) + w3·r3[j], 8 lanes of float64
// per step: each float32 row is widened (exactly), multiplied and added in
// separately rounded steps, in the order of the Go loop.
TEXT ·accumulate4AVX512(SB), NOSPLIT, $0-80
	MOVQ acc+0(FP), DI
	MOVQ r0+8(FP), R8
	MOVQ r1+16(FP), R9
	MOVQ r2+24(FP), R10
	MOVQ r3+32(FP), R11
	MOVQ n+40(FP), CX
	VBROADCASTSD w0+48(FP), Z8
	VBROADCASTSD w1+56(FP), Z9
	VBROADCASTSD w2+64(FP), Z10
	VBROADCASTSD w3+72(FP), Z11
	XORQ AX, AX
	// Two steps of 8 per iteration when n allows, so that each row advances
	// by one 64-byte line. No software prefetch: the hardware prefetcher
	// follows the four row streams, and PREFETCHT0 1 KiB ahead of each made
	// the weighted sum 0.59–0.62× of a vectorised read on one goroutine and
	// 0.79–0.82× on two, against 0.75–0.83× and 0.84–0.93× without it
	// (AMD EPYC, same-session A/B runs of BenchmarkFedAvg1M/paired).
	MOVQ CX, DX
	ANDQ $-16, DX
	JZ acc4_tail
acc4_loop16:
	VCVTPS2PD (R8)(AX*4), Z0
	VCVTPS2PD (R9)(AX*4), Z1
	VCVTPS2PD (R10)(AX*4), Z2
	VCVTPS2PD (R11)(AX*4), Z3
	VCVTPS2PD 32(R8)(AX*4), Z4
	VCVTPS2PD 32(R9)(AX*4), Z5
	VCVTPS2PD 32(R10)(AX*4), Z6
	VCVTPS2PD 32(R11)(AX*4), Z7
	VMULPD Z8, Z0, Z0
	VMULPD Z9, Z1, Z1
	VMULPD Z10, Z2, Z2
	VMULPD Z11, Z3, Z3
	VMULPD Z8, Z4, Z4
	VMULPD Z9, Z5, Z5
	VMULPD Z10, Z6, Z6
	VMULPD Z11, Z7, Z7
	VADDPD Z1, Z0, Z0
	VADDPD Z5, Z4, Z4
	VADDPD Z2, Z0, Z0
	VADDPD Z6, Z4, Z4
	VADDPD Z3, Z0, Z0
	VADDPD Z7, Z4, Z4
	VADDPD (DI)(AX*8), Z0, Z0
	VADDPD 64(DI)(AX*8), Z4, Z4
	VMOVUPD Z0, (DI)(AX*8)
	VMOVUPD Z4, 64(DI)(AX*8)
	ADDQ $16, AX
	CMPQ AX, DX
	JLT acc4_loop16
acc4_tail:
	CMPQ AX, CX
	JGE acc4_done
acc4_loop:
	VCVTPS2PD (R8)(AX*4), Z0
	VCVTPS2PD (R9)(AX*4), Z1
	VCVTPS2PD (R10)(AX*4), Z2
	VCVTPS2PD (R11)(AX*4), Z3
	VMULPD Z8, Z0, Z0
	VMULPD Z9, Z1, Z1
	VMULPD Z10, Z2, Z2
	VMULPD Z11, Z3, Z3
	VADDPD Z1, Z0, Z0
	VADDPD Z2, Z0, Z0
	VADDPD Z3, Z0, Z0
	VADDPD (DI)(AX*8), Z0, Z0
	VMOVUPD Z0, (DI)(AX*8)
	ADDQ $8, AX
	CMPQ AX, CX
	JLT acc4_loop
acc4_done:
	VZEROUPPER
	RET

// func accumulate1AVX512(acc *float64, r *float32, n int, w float64)
TEXT ·accumulate1AVX512(SB), NOSPLIT, $0-32
	MOVQ acc+0(FP), DI
	MOVQ r+8(FP), R8
	MOVQ n+16(FP), CX
	VBROADCASTSD w+24(FP), Z8
	XORQ AX, AX
acc1_loop:
	VCVTPS2PD (R8)(AX*4), Z0
	VMULPD Z8, Z0, Z0
	VADDPD (DI)(AX*8), Z0, Z0
	VMOVUPD Z0, (DI)(AX*8)
	ADDQ $8, AX
	CMPQ AX, CX
	JLT acc1_loop
	VZEROUPPER
	RET

// func addU32AVX512(dst, src *uint32, n int)
// dst[j] += src[j] mod 2^32, 64 words (four zmm) per step.
TEXT ·addU32AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $6, CX
add_loop:
	PREFETCHT0 2048(SI)
	PREFETCHT0 2112(SI)
	PREFETCHT0 2176(SI)
	PREFETCHT0 2240(SI)
	VMOVDQU32 (SI), Z0
	VMOVDQU32 64(SI), Z1
	VMOVDQU32 128(SI), Z2
	VMOVDQU32 192(SI), Z3
	VPADDD (DI), Z0, Z0
	VPADDD 64(DI), Z1, Z1
	VPADDD 128(DI), Z2, Z2
	VPADDD 192(DI), Z3, Z3
	VMOVDQU32 Z0, (DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	ADDQ $256, SI
	ADDQ $256, DI
	DECQ CX
	JNZ add_loop
	VZEROUPPER
	RET

// func subU32AVX512(dst, src *uint32, n int)
// dst[j] -= src[j] mod 2^32, 64 words (four zmm) per step.
TEXT ·subU32AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $6, CX
sub_loop:
	VMOVDQU32 (DI), Z0
	VMOVDQU32 64(DI), Z1
	VMOVDQU32 128(DI), Z2
	VMOVDQU32 192(DI), Z3
	VPSUBD (SI), Z0, Z0
	VPSUBD 64(SI), Z1, Z1
	VPSUBD 128(SI), Z2, Z2
	VPSUBD 192(SI), Z3, Z3
	VMOVDQU32 Z0, (DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	ADDQ $256, SI
	ADDQ $256, DI
	DECQ CX
	JNZ sub_loop
	VZEROUPPER
	RET

// func addU32ManyAVX512(dst *uint32, srcs *[]uint32, nsrc int, off int, n int)
// dst[j] += Σ_k srcs[k][off+j] mod 2^32 for j < n (n a multiple of 128):
// 128 words of dst (eight zmm) are held in registers while every source
// adds its 512 bytes, so dst is read and written once for nsrc sources.
// No software prefetch: on the Intel machine of the first measurements
// PREFETCHT0 1 KiB ahead of each source lifted the sum from about 0.65 of
// a plain read to 0.8, on this AMD EPYC it measured 0.60–0.70 of the
// two-goroutine read against 0.66–0.81 without (BenchmarkMaskedSum1M,
// same-session A/B), and a 1 KiB step per source (sixteen zmm) no better.
TEXT ·addU32ManyAVX512(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ srcs+8(FP), BX
	MOVQ nsrc+16(FP), R8
	MOVQ off+24(FP), DX
	MOVQ n+32(FP), CX
	SHLQ $2, DX         // byte offset into each source
	SHRQ $7, CX         // steps of 128 words
many_loop:
	VMOVDQU32 (DI), Z0
	VMOVDQU32 64(DI), Z1
	VMOVDQU32 128(DI), Z2
	VMOVDQU32 192(DI), Z3
	VMOVDQU32 256(DI), Z4
	VMOVDQU32 320(DI), Z5
	VMOVDQU32 384(DI), Z6
	VMOVDQU32 448(DI), Z7
	MOVQ BX, R9
	MOVQ R8, R11
many_src:
	MOVQ (R9), R10
	ADDQ DX, R10
	VPADDD (R10), Z0, Z0
	VPADDD 64(R10), Z1, Z1
	VPADDD 128(R10), Z2, Z2
	VPADDD 192(R10), Z3, Z3
	VPADDD 256(R10), Z4, Z4
	VPADDD 320(R10), Z5, Z5
	VPADDD 384(R10), Z6, Z6
	VPADDD 448(R10), Z7, Z7
	ADDQ $24, R9
	DECQ R11
	JNZ many_src
	VMOVDQU32 Z0, (DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	VMOVDQU32 Z4, 256(DI)
	VMOVDQU32 Z5, 320(DI)
	VMOVDQU32 Z6, 384(DI)
	VMOVDQU32 Z7, 448(DI)
	ADDQ $512, DI
	ADDQ $512, DX
	DECQ CX
	JNZ many_loop
	VZEROUPPER
	RET
