//go:build amd64 && !purego

package x25519

import (
	"math/rand/v2"
	"testing"
)

// TestVectorPerLaneScalars: the kernels with a different scalar and point
// in every lane (the server's case when it rebuilds several keys), for
// every batch length from 1 to 17, against crypto/ecdh.
func TestVectorPerLaneScalars(t *testing.T) {
	if !hasIFMA {
		t.Skip("no AVX-512 IFMA on this CPU: the vector kernels never run here; TestAgreeMatchesECDH covers the crypto/ecdh path that does")
	}
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
