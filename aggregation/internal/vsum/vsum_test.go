package vsum

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The kernels must equal the plain loops bit for bit, for every length
// (tails included) and misaligned starts.
func TestKernelsMatchGoLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	f32 := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 1e3)
		}
		return v
	}
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 200, 1000, 4099} {
		off := rng.IntN(3)
		acc := make([]float64, n+off)[off:]
		for i := range acc {
			acc[i] = rng.NormFloat64()
		}
		r0, r1, r2, r3 := f32(n + 1)[1:], f32(n), f32(n), f32(n+5)
		w := [4]float64{rng.Float64() * 7, rng.Float64(), -rng.Float64(), 1e-3}
		want := slices.Clone(acc)
		accumulate4Go(want, r0, r1, r2, r3[:n], w[0], w[1], w[2], w[3])
		Accumulate4(acc, r0, r1, r2, r3, w[0], w[1], w[2], w[3])
		for j := range acc {
			if acc[j] != want[j] {
				t.Fatalf("Accumulate4 n=%d: acc[%d] = %v, Go loop %v", n, j, acc[j], want[j])
			}
		}
		accumulate1Go(want, r2, w[1])
		Accumulate1(acc, r2, w[1])
		for j := range acc {
			if acc[j] != want[j] {
				t.Fatalf("Accumulate1 n=%d: acc[%d] = %v, Go loop %v", n, j, acc[j], want[j])
			}
		}
		u := make([]uint32, n+off)[off:]
		v := make([]uint32, n+2)
		for i := range u {
			u[i] = rng.Uint32()
		}
		for i := range v {
			v[i] = rng.Uint32()
		}
		wantU := slices.Clone(u)
		addU32Go(wantU, v[:n])
		AddU32(u, v)
		if !slices.Equal(u, wantU) {
			t.Fatalf("AddU32 n=%d differs from the Go loop", n)
		}
		wantU = slices.Clone(u)
		subU32Go(wantU, v[1:n+1])
		SubU32(u, v[1:])
		if !slices.Equal(u, wantU) {
			t.Fatalf("SubU32 n=%d differs from the Go loop", n)
		}
		var s uint32
		for _, x := range u {
			s += x
		}
		if got := ReadSum(u); got != s {
			t.Fatalf("ReadSum n=%d = %d, want %d", n, got, s)
		}
	}
}
