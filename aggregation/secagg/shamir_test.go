package secagg

import (
	"bytes"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestFieldMulAgainstBig(t *testing.T) {
	p := new(big.Int).SetUint64(fieldP)
	r := rand.New(seeded(3))
	vals := []uint64{0, 1, 2, fieldP - 1, fieldP - 2, 1 << 60, 1<<61 - 2}
	for range 2000 {
		vals = append(vals, r.Uint64N(fieldP))
	}
	for i := 0; i+1 < len(vals); i++ {
		a, b := vals[i], vals[i+1]
		want := new(big.Int).Mul(new(big.Int).SetUint64(a), new(big.Int).SetUint64(b))
		want.Mod(want, p)
		if got := fMul(a, b); got != want.Uint64() {
			t.Fatalf("fMul(%d, %d) = %d, want %d", a, b, got, want.Uint64())
		}
		if a != 0 && fMul(a, fInv(a)) != 1 {
			t.Fatalf("fInv(%d) wrong", a)
		}
		if fAdd(fSub(a, b), b) != a {
			t.Fatalf("sub/add mismatch for %d, %d", a, b)
		}
	}
}

func TestShamirThresholdOfN(t *testing.T) {
	r := seeded(4)
	for _, tc := range []struct{ n, t int }{{2, 2}, {3, 2}, {5, 3}, {9, 5}, {9, 9}, {40, 21}} {
		secret := make([]byte, KeySize)
		r.Read(secret)
		xs := make([]uint32, tc.n)
		for i := range xs {
			xs[i] = uint32(7*i + 1)
		}
		shares, err := splitSecret(secret, xs, tc.t, r)
		if err != nil {
			t.Fatal(err)
		}
		perm := rand.New(seeded(uint64(tc.n))).Perm(tc.n)
		// Any t shares (here: several random subsets) rebuild the secret.
		for trial := range 5 {
			idx := perm[:tc.t]
			if trial > 0 {
				idx = rand.New(seeded(uint64(trial))).Perm(tc.n)[:tc.t]
			}
			var sx []uint32
			var sy [][]byte
			for _, i := range idx {
				sx, sy = append(sx, xs[i]), append(sy, shares[i])
			}
			got, err := combineShares(sx, sy, nil)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("n=%d t=%d: %d shares rebuilt %x (%v), want %x", tc.n, tc.t, tc.t, got, err, secret)
			}
		}
		// t-1 shares give something else (with overwhelming probability an
		// inconsistency error, else a different value).
		if tc.t > 1 {
			got, err := combineShares(xs[:tc.t-1], shares[:tc.t-1], nil)
			if err == nil && bytes.Equal(got, secret) {
				t.Fatalf("n=%d t=%d: t-1 shares rebuilt the secret", tc.n, tc.t)
			}
		}
		// A corrupted share is detected or gives a wrong secret.
		bad := bytes.Clone(shares[0])
		bad[7] ^= 1
		got, err := combineShares(xs[:tc.t], append([][]byte{bad}, shares[1:tc.t]...), nil)
		if err == nil && bytes.Equal(got, secret) {
			t.Fatal("corrupted share went unnoticed")
		}
	}
}

func TestShamirHidesWithFewerThanT(t *testing.T) {
	// With t = 3 the first limb of two shares is uniform whatever the
	// secret: two different secrets with the same randomness give shares
	// that differ, and shares of one secret under different randomness
	// spread over the field (sanity check of the polynomial's degree).
	xs := []uint32{1, 2, 3}
	s1 := make([]byte, KeySize)
	s2 := bytes.Repeat([]byte{0xff}, KeySize)
	a, _ := splitSecret(s1, xs, 3, seeded(8))
	b, _ := splitSecret(s2, xs, 3, seeded(8))
	if bytes.Equal(a[0], b[0]) {
		t.Fatal("shares do not depend on the secret")
	}
	seen := map[string]bool{}
	for i := range 50 {
		sh, _ := splitSecret(s1, xs, 3, seeded(uint64(100+i)))
		seen[string(sh[0][:8])] = true
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct first-limb shares in 50 sharings", len(seen))
	}
}

func TestShamirErrors(t *testing.T) {
	if _, err := splitSecret(make([]byte, 31), []uint32{1, 2}, 2, seeded(1)); err == nil {
		t.Fatal("short secret accepted")
	}
	if _, err := splitSecret(make([]byte, 32), []uint32{1, 2}, 3, seeded(1)); err == nil {
		t.Fatal("threshold above holders accepted")
	}
	if _, err := splitSecret(make([]byte, 32), []uint32{0, 2}, 2, seeded(1)); err == nil {
		t.Fatal("holder 0 accepted")
	}
	if _, err := combineShares([]uint32{1, 1}, [][]byte{make([]byte, ShareSize), make([]byte, ShareSize)}, nil); err == nil {
		t.Fatal("duplicate holders accepted")
	}
	if _, err := combineShares([]uint32{1, 2}, [][]byte{make([]byte, ShareSize), make([]byte, 3)}, nil); err == nil {
		t.Fatal("short share accepted")
	}
}

// The memoised coefficients at a point are lagrangeAt's, for repeated and
// distinct holder sets, and distinct points do not share an entry.
func TestLagrangeCacheAt(t *testing.T) {
	c := lagrangeCache{}
	for _, xs := range [][]uint32{{1, 2, 3}, {1, 2, 3}, {2, 5, 9, 11}, {1, 2}} {
		for _, x := range []uint64{0, 4, 7, 4} {
			if got, want := c.at(xs, x), lagrangeAt(xs, x); !slices.Equal(got, want) {
				t.Fatalf("at(%v, %d) = %v, want %v", xs, x, got, want)
			}
		}
	}
	if _, err := c.get([]uint32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if got, want := c.at([]uint32{1, 2, 3}, 0), lagrangeAt([]uint32{1, 2, 3}, 0); !slices.Equal(got, want) {
		t.Fatal("at(xs, 0) after get(xs) differs")
	}
}
