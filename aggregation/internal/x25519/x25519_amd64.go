//go:build amd64 && !purego

package x25519

import "golang.org/x/sys/cpu"

//go:generate go run gen.go

// hasIFMA: the kernels use AVX-512F, DQ (vpmullq, kmovb), VL (the four-lane
// kernels on 256-bit registers) and IFMA; x/sys/cpu reports them only when
// the OS saves the AVX-512 state.
var hasIFMA = cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512IFMA

// fe is a vector of field elements: limb i of lane l at fe[i][l] (eight
// lanes; the four-lane kernels use lanes 0..3).
type fe [5][8]uint64

// ladderState is the working memory of the ladder kernels; the field
// order is gen.go's (fX1, fX2, …).
type ladderState [15]fe

const (
	stX1 = iota
	stX2
	stZ2
	stX3
	stZ3
	stScratch // first of the fields the ladder uses as scratch
)

//go:noescape
func ladderAVX512Z(st *ladderState, bits *[255]uint8)

//go:noescape
func mulAVX512Z(dst, a, b *fe)

//go:noescape
func sqrnAVX512Z(dst, a *fe, n int)

//go:noescape
func ladderAVX512Y(st *ladderState, bits *[255]uint8)

//go:noescape
func mulAVX512Y(dst, a, b *fe)

//go:noescape
func sqrnAVX512Y(dst, a *fe, n int)

type kernels struct {
	lanes  int
	ladder func(*ladderState, *[255]uint8)
	mul    func(dst, a, b *fe)
	sqrn   func(dst, a *fe, n int)
}

var (
	kernelsZ = kernels{8, ladderAVX512Z, mulAVX512Z, sqrnAVX512Z}
	kernelsY = kernels{4, ladderAVX512Y, mulAVX512Y, sqrnAVX512Y}
)

// scalarMultVector sets dst[i] = X25519(scalars[i], points[i]), eight
// lanes at a time, the last batch on four lanes when it has at most four; a
// scalars or points of length one serves every i.
func scalarMultVector(dst, scalars, points [][Size]byte) {
	var st ladderState
	var bits [255]uint8
	for off := 0; off < len(dst); {
		k := &kernelsZ
		if len(dst)-off <= 4 {
			k = &kernelsY
		}
		n := min(k.lanes, len(dst)-off)
		k.batch(&st, &bits, dst[off:off+n], window(scalars, off, n), window(points, off, n))
		off += n
	}
	clear(bits[:])
	clear(st[:])
}

// window is s[off:off+n], or s itself when it has one element for all.
func window(s [][Size]byte, off, n int) [][Size]byte {
	if len(s) == 1 {
		return s
	}
	return s[off : off+n]
}

// batch computes up to k.lanes results; unused lanes repeat the last
// point (and run with a zero scalar: their results are dropped), and
// scalars or points of length one serve every lane.
func (k *kernels) batch(st *ladderState, bits *[255]uint8, dst, scalars, points [][Size]byte) {
	for l := 0; l < k.lanes; l++ {
		var x elem
		x.setBytes(&points[min(l, len(points)-1, len(dst)-1)])
		for i := range x {
			st[stX1][i][l] = x[i]
			st[stX3][i][l] = x[i]
			st[stX2][i][l] = 0
			st[stZ2][i][l] = 0
			st[stZ3][i][l] = 0
		}
		st[stX2][0][l] = 1
		st[stZ3][0][l] = 1
	}
	clear(bits[:])
	if len(scalars) == 1 {
		setBits(bits, &scalars[0], 1<<k.lanes-1)
	} else {
		for l := range dst {
			setBits(bits, &scalars[l], 1<<l)
		}
	}
	k.ladder(st, bits)
	// x2/z2 → x2 · z2^(p-2), with the scratch fields of the state.
	inv := &st[stScratch]
	k.invert(inv, &st[stZ2], st[stScratch+1:])
	k.mul(&st[stX2], &st[stX2], inv)
	for l := range dst {
		var x elem
		for i := range x {
			x[i] = st[stX2][i][l]
		}
		x.bytes(&dst[l])
	}
}

// setBits sets, in the lanes of mask, bit pos of the clamped scalar s at
// bits[254-pos]: the ladder's order, most significant bit first.
func setBits(bits *[255]uint8, s *[Size]byte, mask uint8) {
	e := clamp(s)
	for t := range bits {
		pos := 254 - t
		bits[t] |= mask & -(e[pos>>3] >> (pos & 7) & 1)
	}
	clear(e[:])
}

// clamp returns the scalar as RFC 7748 §5 decodes it.
func clamp(s *[Size]byte) [Size]byte {
	e := *s
	e[0] &= 248
	e[31] &= 127
	e[31] |= 64
	return e
}

// invert sets out = z^(p-2) = 1/z by the addition chain of Bernstein's
// curve25519 (254 squarings, 11 multiplications), with eight scratch
// vectors in t.
func (k *kernels) invert(out, z *fe, t []fe) {
	z2, z9, z11, z2_5_0, z2_10_0, z2_20_0, z2_50_0, z2_100_0 := &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]
	w := out
	k.sqrn(z2, z, 1)
	k.sqrn(w, z2, 2)
	k.mul(z9, w, z)
	k.mul(z11, z9, z2)
	k.sqrn(w, z11, 1)
	k.mul(z2_5_0, w, z9)
	k.sqrn(w, z2_5_0, 5)
	k.mul(z2_10_0, w, z2_5_0)
	k.sqrn(w, z2_10_0, 10)
	k.mul(z2_20_0, w, z2_10_0)
	k.sqrn(w, z2_20_0, 20)
	k.mul(w, w, z2_20_0)
	k.sqrn(w, w, 10)
	k.mul(z2_50_0, w, z2_10_0)
	k.sqrn(w, z2_50_0, 50)
	k.mul(z2_100_0, w, z2_50_0)
	k.sqrn(w, z2_100_0, 100)
	k.mul(w, w, z2_100_0)
	k.sqrn(w, w, 50)
	k.mul(w, w, z2_50_0)
	k.sqrn(w, w, 5)
	k.mul(out, w, z11)
}
