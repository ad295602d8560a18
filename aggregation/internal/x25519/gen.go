//go:build ignore

// gen writes x25519_amd64.s, the AVX-512 IFMA kernels of this package, for
// two vector widths: Z (eight lanes, 512-bit registers) and Y (four lanes,
// 256-bit registers with AVX-512VL). Run with `go generate`.
//
// A field element of GF(2^255-19) is five limbs of radix 2^51; a vector of
// them keeps limb i of every lane in one register (limb i at byte offset
// 64·i in memory, whichever the width). Products use VPMADD52LUQ/HUQ, which
// multiply the low 52 bits of two lanes and add the low or high 52 bits of
// the 104-bit product: with radix 2^51 the low half goes to column i+j and
// twice the high half to column i+j+1. Every limb a multiplication reads
// must therefore be below 2^52; the kernels keep every stored element
// "loose" (each limb below 2^51 + 2^15) by a parallel carry after every
// addition, subtraction and multiplication. Bounds, for inputs below 2^52:
// a column sums at most 5 low and 5 doubled high halves, < 15·2^52 < 2^56;
// folding columns 5..9 with 2^255 = 19 gives < 290·2^52 < 2^61; one parallel
// carry then leaves limbs below 2^51 + 2^10.3 and limb 0 below
// 2^51 + 19·2^10.3 < 2^51 + 2^15.
package main

import (
	"bytes"
	"fmt"
	"os"
)

const feBytes = 5 * 64 // one vector field element, whichever the width

// Fields of the ladder state (ladderState in x25519_amd64.go).
const (
	fX1 = iota
	fX2
	fZ2
	fX3
	fZ3
	fA
	fB
	fC
	fD
	fDA
	fCB
	fAA
	fBB
	fE
	fT
	nFields
)

// Registers: A 0-4, B 5-9, L (low columns 0..8) 10-18, H (high columns
// 1..9) 19-27, constants 28-31.
const (
	rA    = 0
	rB    = 5
	rL    = 10
	rH    = 18 // H_k is register 18+k, k = 1..9
	rMask = 28 // 2^51 - 1
	rC19  = 29 // 19
	rP0   = 30 // 2p, limb 0: 2^52 - 38
	rP1   = 31 // 2p, limbs 1..4: 2^52 - 2
)

type gen struct {
	out *bytes.Buffer
	w   string // "Z" or "Y"
}

func (g *gen) op(format string, args ...any) {
	fmt.Fprintf(g.out, "\t"+format+"\n", args...)
}

func (g *gen) r(n int) string { return fmt.Sprintf("%s%d", g.w, n) }

// field is the address of limb i of state field f (state pointer in DI).
func field(f int) func(int) string {
	return func(i int) string { return fmt.Sprintf("%d(DI)", f*feBytes+64*i) }
}

// at is the address of limb i of the element that reg points to.
func at(reg string) func(int) string {
	return func(i int) string { return fmt.Sprintf("%d(%s)", 64*i, reg) }
}

func (g *gen) load(addr func(int) string, base int) {
	for i := 0; i < 5; i++ {
		g.op("VMOVDQU64 %s, %s", addr(i), g.r(base+i))
	}
}

func (g *gen) store(base int, addr func(int) string) {
	for i := 0; i < 5; i++ {
		g.op("VMOVDQU64 %s, %s", g.r(base+i), addr(i))
	}
}

// constants loads the four constant registers.
func (g *gen) constants() {
	for _, c := range []struct {
		v   uint64
		reg int
	}{{1<<51 - 1, rMask}, {19, rC19}, {1<<52 - 38, rP0}, {1<<52 - 2, rP1}} {
		g.op("MOVQ $0x%x, AX", c.v)
		g.op("VPBROADCASTQ AX, %s", g.r(c.reg))
	}
}

// carry does one parallel carry of the limbs in registers base..base+4,
// with tmp..tmp+4 as scratch: each limb keeps its low 51 bits and adds the
// carry out of the limb below it; the carry out of limb 4 comes back into
// limb 0 times 19.
func (g *gen) carry(base, tmp int) {
	for i := 0; i < 5; i++ {
		g.op("VPSRLQ $51, %s, %s", g.r(base+i), g.r(tmp+i))
		g.op("VPANDQ %s, %s, %s", g.r(rMask), g.r(base+i), g.r(base+i))
	}
	for i := 0; i < 4; i++ {
		g.op("VPADDQ %s, %s, %s", g.r(tmp+i), g.r(base+i+1), g.r(base+i+1))
	}
	g.op("VPMULLQ %s, %s, %s", g.r(rC19), g.r(tmp+4), g.r(tmp+4))
	g.op("VPADDQ %s, %s, %s", g.r(tmp+4), g.r(base), g.r(base))
}

// add stores a+b at dst.
func (g *gen) add(dst, a, b func(int) string) {
	g.load(a, rA)
	g.load(b, rB)
	for i := 0; i < 5; i++ {
		g.op("VPADDQ %s, %s, %s", g.r(rB+i), g.r(rA+i), g.r(rA+i))
	}
	g.carry(rA, rL)
	g.store(rA, dst)
}

// sub stores a-b at dst, as a + 2p - b (b loose, so every limb stays
// non-negative).
func (g *gen) sub(dst, a, b func(int) string) {
	g.load(a, rA)
	g.load(b, rB)
	for i := 0; i < 5; i++ {
		p := rP1
		if i == 0 {
			p = rP0
		}
		g.op("VPADDQ %s, %s, %s", g.r(p), g.r(rA+i), g.r(rA+i))
		g.op("VPSUBQ %s, %s, %s", g.r(rB+i), g.r(rA+i), g.r(rA+i))
	}
	g.carry(rA, rL)
	g.store(rA, dst)
}

// mulRegs multiplies the elements in registers A and b (b = rA for a
// square) and leaves the loose product in L0..L4.
func (g *gen) mulRegs(b int) {
	for k := 0; k <= 8; k++ {
		g.op("VPXORQ %s, %s, %s", g.r(rL+k), g.r(rL+k), g.r(rL+k))
	}
	for k := 1; k <= 9; k++ {
		g.op("VPXORQ %s, %s, %s", g.r(rH+k), g.r(rH+k), g.r(rH+k))
	}
	for i := 0; i < 5; i++ {
		for j := 0; j < 5; j++ {
			g.op("VPMADD52LUQ %s, %s, %s", g.r(b+j), g.r(rA+i), g.r(rL+i+j))
		}
		for j := 0; j < 5; j++ {
			g.op("VPMADD52HUQ %s, %s, %s", g.r(b+j), g.r(rA+i), g.r(rH+i+j+1))
		}
	}
	g.reduce(9)
}

// squareRegs squares the element in registers A and leaves the loose
// result in L0..L4: the ten cross products a_i·a_j (i < j) first, then
// every column doubled, then the five squares a_i² added (30
// multiply-accumulates instead of 50). The columns are the same sums as in
// mulRegs, so the same bounds hold.
func (g *gen) squareRegs() {
	for k := 0; k <= 8; k++ {
		g.op("VPXORQ %s, %s, %s", g.r(rL+k), g.r(rL+k), g.r(rL+k))
	}
	for k := 1; k <= 9; k++ {
		g.op("VPXORQ %s, %s, %s", g.r(rH+k), g.r(rH+k), g.r(rH+k))
	}
	for i := 0; i < 5; i++ {
		for j := i + 1; j < 5; j++ {
			g.op("VPMADD52LUQ %s, %s, %s", g.r(rA+j), g.r(rA+i), g.r(rL+i+j))
			g.op("VPMADD52HUQ %s, %s, %s", g.r(rA+j), g.r(rA+i), g.r(rH+i+j+1))
		}
	}
	for k := 1; k <= 7; k++ { // cross products reach L1..L7 and H2..H8
		g.op("VPSLLQ $1, %s, %s", g.r(rL+k), g.r(rL+k))
		g.op("VPSLLQ $1, %s, %s", g.r(rH+k+1), g.r(rH+k+1))
	}
	for i := 0; i < 5; i++ {
		g.op("VPMADD52LUQ %s, %s, %s", g.r(rA+i), g.r(rA+i), g.r(rL+2*i))
		g.op("VPMADD52HUQ %s, %s, %s", g.r(rA+i), g.r(rA+i), g.r(rH+2*i+1))
	}
	g.reduce(9)
}

// reduce combines columns: c_k = L_k + 2·H_k (c_top = 2·H_top), folds
// columns 5..top into 0..top-5 times 19 and carries L0..L4.
func (g *gen) reduce(top int) {
	for k := 1; k <= top; k++ {
		g.op("VPSLLQ $1, %s, %s", g.r(rH+k), g.r(rH+k))
		if k < top {
			g.op("VPADDQ %s, %s, %s", g.r(rH+k), g.r(rL+k), g.r(rL+k))
		}
	}
	col := func(k int) string {
		if k == top {
			return g.r(rH + k)
		}
		return g.r(rL + k)
	}
	for k := 5; k <= top; k++ {
		g.op("VPMULLQ %s, %s, %s", g.r(rC19), col(k), col(k))
		g.op("VPADDQ %s, %s, %s", col(k), g.r(rL+k-5), g.r(rL+k-5))
	}
	g.carry(rL, rH+1)
}

// mul stores a·b at dst.
func (g *gen) mul(dst, a, b func(int) string) {
	g.load(a, rA)
	g.load(b, rB)
	g.mulRegs(rB)
	g.store(rL, dst)
}

// square stores a² at dst.
func (g *gen) square(dst, a func(int) string) {
	g.load(a, rA)
	g.squareRegs()
	g.store(rL, dst)
}

// mulA24 stores 121666·a at dst ((A+2)/4 for Curve25519, RFC 7748 §5).
func (g *gen) mulA24(dst, a func(int) string) {
	g.load(a, rA)
	g.op("MOVQ $121666, AX")
	g.op("VPBROADCASTQ AX, %s", g.r(rB))
	for k := 0; k <= 4; k++ {
		g.op("VPXORQ %s, %s, %s", g.r(rL+k), g.r(rL+k), g.r(rL+k))
	}
	for k := 1; k <= 5; k++ {
		g.op("VPXORQ %s, %s, %s", g.r(rH+k), g.r(rH+k), g.r(rH+k))
	}
	for i := 0; i < 5; i++ {
		g.op("VPMADD52LUQ %s, %s, %s", g.r(rB), g.r(rA+i), g.r(rL+i))
		g.op("VPMADD52HUQ %s, %s, %s", g.r(rB), g.r(rA+i), g.r(rH+i+1))
	}
	g.reduce(5)
	g.store(rL, dst)
}

// cswap swaps fields f and h in the lanes whose bit of K1 is set.
func (g *gen) cswap(f, h int) {
	for i := 0; i < 5; i++ {
		g.op("VMOVDQU64 %s, %s", field(f)(i), g.r(0))
		g.op("VMOVDQU64 %s, %s", field(h)(i), g.r(1))
		g.op("VPBLENDMQ %s, %s, K1, %s", g.r(1), g.r(0), g.r(2))
		g.op("VPBLENDMQ %s, %s, K1, %s", g.r(0), g.r(1), g.r(3))
		g.op("VMOVDQU64 %s, %s", g.r(2), field(f)(i))
		g.op("VMOVDQU64 %s, %s", g.r(3), field(h)(i))
	}
}

// step is one step of the Montgomery ladder (RFC 7748 §5), on fields
// x2,z2 (the point being doubled) and x3,z3 (the sum), x1 the base.
func (g *gen) step() {
	f := field
	g.add(f(fA), f(fX2), f(fZ2))  // A = x2 + z2
	g.sub(f(fB), f(fX2), f(fZ2))  // B = x2 - z2
	g.add(f(fC), f(fX3), f(fZ3))  // C = x3 + z3
	g.sub(f(fD), f(fX3), f(fZ3))  // D = x3 - z3
	g.mul(f(fDA), f(fD), f(fA))   // DA = D·A
	g.mul(f(fCB), f(fC), f(fB))   // CB = C·B
	g.square(f(fAA), f(fA))       // AA = A²
	g.square(f(fBB), f(fB))       // BB = B²
	g.add(f(fX3), f(fDA), f(fCB)) // x3 = (DA + CB)²
	g.square(f(fX3), f(fX3))      //
	g.sub(f(fZ3), f(fDA), f(fCB)) // z3 = x1·(DA - CB)²
	g.square(f(fZ3), f(fZ3))      //
	g.mul(f(fZ3), f(fX1), f(fZ3)) //
	g.mul(f(fX2), f(fAA), f(fBB)) // x2 = AA·BB
	g.sub(f(fE), f(fAA), f(fBB))  // E = AA - BB
	g.mulA24(f(fT), f(fE))        // z2 = E·(BB + a24·E)
	g.add(f(fT), f(fBB), f(fT))   //
	g.mul(f(fZ2), f(fE), f(fT))   //
}

func (g *gen) text(name, args string, frame int) {
	fmt.Fprintf(g.out, "\n// func %s\nTEXT ·%s(SB), NOSPLIT, $0-%d\n", args, name, frame)
}

func (g *gen) kernels(suffix string) {
	// func ladderAVX512Z(st *ladderState, bits *[255]uint8)
	g.text("ladderAVX512"+suffix, "ladderAVX512"+suffix+"(st *ladderState, bits *[255]uint8)", 16)
	g.op("MOVQ st+0(FP), DI")
	g.op("MOVQ bits+8(FP), SI")
	g.constants()
	g.op("XORQ R8, R8") // the previous bit of every lane
	g.op("MOVQ $255, CX")
	fmt.Fprintf(g.out, "ladder%sLoop:\n", suffix)
	g.op("MOVBQZX (SI), AX")
	g.op("MOVQ AX, R9")
	g.op("XORQ R8, AX")
	g.op("MOVQ R9, R8")
	g.op("KMOVB AX, K1")
	g.cswap(fX2, fX3)
	g.cswap(fZ2, fZ3)
	g.step()
	g.op("INCQ SI")
	g.op("DECQ CX")
	g.op("JNZ ladder%sLoop", suffix)
	g.op("KMOVB R8, K1")
	g.cswap(fX2, fX3)
	g.cswap(fZ2, fZ3)
	g.op("VZEROUPPER")
	g.op("RET")

	// func mulAVX512Z(dst, a, b *fe)
	g.text("mulAVX512"+suffix, "mulAVX512"+suffix+"(dst, a, b *fe)", 24)
	g.op("MOVQ dst+0(FP), DI")
	g.op("MOVQ a+8(FP), SI")
	g.op("MOVQ b+16(FP), DX")
	g.constants()
	g.mul(at("DI"), at("SI"), at("DX"))
	g.op("VZEROUPPER")
	g.op("RET")

	// func sqrnAVX512Z(dst, a *fe, n int): dst = a^(2^n), n >= 1
	g.text("sqrnAVX512"+suffix, "sqrnAVX512"+suffix+"(dst, a *fe, n int)", 24)
	g.op("MOVQ dst+0(FP), DI")
	g.op("MOVQ a+8(FP), SI")
	g.op("MOVQ n+16(FP), CX")
	g.constants()
	g.load(at("SI"), rA)
	fmt.Fprintf(g.out, "sqrn%sLoop:\n", suffix)
	g.squareRegs()
	for i := 0; i < 5; i++ {
		g.op("VMOVDQA64 %s, %s", g.r(rL+i), g.r(rA+i))
	}
	g.op("DECQ CX")
	g.op("JNZ sqrn%sLoop", suffix)
	g.store(rA, at("DI"))
	g.op("VZEROUPPER")
	g.op("RET")
}

func main() {
	var b bytes.Buffer
	b.WriteString("// Code generated by gen.go; DO NOT EDIT.\n\n//go:build amd64 && !purego\n\n#include \"textflag.h\"\n")
	(&gen{out: &b, w: "Z"}).kernels("Z")
	(&gen{out: &b, w: "Y"}).kernels("Y")
	if err := os.WriteFile("x25519_amd64.s", b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
