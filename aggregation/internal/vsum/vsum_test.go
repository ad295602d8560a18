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
	}
}

// AddU32Many equals AddU32 of each source in turn, for every length (the
// 128-word steps and the tail), source count and misaligned start, on the
// assembly path and on the forced Go path.
func TestAddU32ManyMatchesAddU32(t *testing.T) {
	for _, forced := range []bool{false, true} {
		if forced {
			defer ForceGo()()
		}
		rng := rand.New(rand.NewPCG(3, 4))
		for _, n := range []int{0, 1, 63, 127, 128, 129, 255, 256, 1000, 4099} {
			for _, k := range []int{1, 2, 3, 8, 17} {
				off := rng.IntN(3)
				dst := make([]uint32, n+off)[off:]
				for i := range dst {
					dst[i] = rng.Uint32()
				}
				srcs := make([][]uint32, k)
				for i := range srcs {
					srcs[i] = make([]uint32, n+rng.IntN(5))[rng.IntN(1):]
					for j := range srcs[i] {
						srcs[i][j] = rng.Uint32()
					}
				}
				srcs[0] = srcs[0][:n]
				want := slices.Clone(dst)
				for _, s := range srcs {
					addU32Go(want, s[:n])
				}
				AddU32Many(dst, srcs)
				if !slices.Equal(dst, want) {
					t.Fatalf("forced Go %v: AddU32Many n=%d k=%d differs from one AddU32 per source", forced, n, k)
				}
			}
		}
	}
}

// The forced Go path gives the same results as the assembly.
func TestForceGoMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	a := make([]uint32, 1000)
	b := make([]uint32, 1000)
	for i := range a {
		a[i], b[i] = rng.Uint32(), rng.Uint32()
	}
	fast := slices.Clone(a)
	AddU32(fast, b)
	restore := ForceGo()
	slow := slices.Clone(a)
	AddU32(slow, b)
	restore()
	if !slices.Equal(fast, slow) {
		t.Fatal("forced Go path differs from the assembly")
	}
}
