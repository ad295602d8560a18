//go:build amd64 && !purego

package x25519

import (
	"math/big"
	"math/rand/v2"
	"testing"
)

// needKernels skips a test of the vector kernels on a CPU that cannot run
// them: there the package never calls them (Path is "go"), and
// TestAgreeMatchesECDH covers the crypto/ecdh path it calls instead.
func needKernels(t *testing.T) {
	t.Helper()
	if !hasIFMA {
		t.Skip("no AVX-512 IFMA on this CPU: the vector kernels never run here; TestAgreeMatchesECDH covers the crypto/ecdh path that does")
	}
}

// TestVectorPerLaneScalars: the kernels with a different scalar and point
// in every lane (the server's case when it rebuilds several keys), for
// every batch length from 1 to 17, against crypto/ecdh.
func TestVectorPerLaneScalars(t *testing.T) {
	needKernels(t)
	r := rand.New(rand.NewPCG(5, 6))
	for n := 1; n <= 17; n++ {
		scalars := make([][Size]byte, n)
		points := make([][Size]byte, n)
		for i := range scalars {
			fill(r, scalars[i][:])
			fill(r, points[i][:])
		}
		got := make([][Size]byte, n)
		scalarMultVector(got, scalars, points)
		for i := range got {
			if want := reference(t, scalars[i], points[i]); got[i] != want {
				t.Fatalf("batch of %d, lane %d: got %x, crypto/ecdh %x", n, i, got[i], want)
			}
		}
	}
}

// toBig is the value Σ l[i]·2^(51i) of one lane of v (not reduced).
func toBig(v *fe, lane int) *big.Int {
	x := new(big.Int)
	for i := 4; i >= 0; i-- {
		x.Lsh(x, 51)
		x.Add(x, new(big.Int).SetUint64(v[i][lane]))
	}
	return x
}

// TestKernelMulBounds drives the field multiplication and repeated
// squaring of both widths with limbs anywhere below 2^52 (the kernels'
// input bound; the extremes 0, 2^51-1, 2^51+2^15 and 2^52-1 in most
// lanes) and checks every lane against math/big modulo p, and that every
// output limb is loose (below 2^51 + 2^15), as the next operation needs.
func TestKernelMulBounds(t *testing.T) {
	needKernels(t)
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	r := rand.New(rand.NewPCG(7, 8))
	extremes := []uint64{0, 1, 1<<51 - 1, 1 << 51, 1<<51 + 1<<15, 1<<52 - 1}
	limb := func() uint64 {
		if r.IntN(4) > 0 {
			return extremes[r.IntN(len(extremes))]
		}
		return r.Uint64() & (1<<52 - 1)
	}
	const loose = 1<<51 + 1<<15
	for _, k := range []*kernels{&kernelsZ, &kernelsY} {
		for iter := range 300 {
			var a, b, out fe
			for i := range 5 {
				for l := range 8 {
					a[i][l], b[i][l] = limb(), limb()
				}
			}
			n := 1 + iter%5
			if iter%2 == 0 {
				k.mul(&out, &a, &b)
			} else {
				k.sqrn(&out, &a, n)
			}
			for l := range k.lanes {
				var want *big.Int
				if iter%2 == 0 {
					want = new(big.Int).Mul(toBig(&a, l), toBig(&b, l))
				} else {
					want = toBig(&a, l)
					for range n {
						want.Mul(want, want).Mod(want, p)
					}
				}
				want.Mod(want, p)
				if got := new(big.Int).Mod(toBig(&out, l), p); got.Cmp(want) != 0 {
					t.Fatalf("%d lanes, iteration %d, lane %d: got %x, want %x", k.lanes, iter, l, got, want)
				}
				for i := range 5 {
					if out[i][l] >= loose {
						t.Fatalf("%d lanes, iteration %d, lane %d: limb %d = %#x not loose", k.lanes, iter, l, i, out[i][l])
					}
				}
			}
		}
	}
}
