package memfloor

import (
	"math/rand/v2"
	"testing"
)

// ReadSum equals the word-by-word sum for every length around the 64-word
// steps and misaligned starts, on the vector path and the Go loop.
func TestReadSum(t *testing.T) {
	defer func(v bool) { haveAVX512 = v }(haveAVX512)
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]uint32, 1000)
	for i := range buf {
		buf[i] = rng.Uint32()
	}
	for _, vec := range []bool{false, haveAVX512} {
		haveAVX512 = vec
		for n := 0; n <= 300; n++ {
			off := rng.IntN(3)
			p := buf[off : off+n]
			var want uint32
			for _, x := range p {
				want += x
			}
			if got := ReadSum(p); got != want {
				t.Fatalf("vector %v n=%d: ReadSum = %d, want %d", vec, n, got, want)
			}
		}
	}
}
