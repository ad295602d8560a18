package finite

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestFirst puts NaN, +Inf, -Inf, the largest finite values and
// subnormals at every position of vectors around the block and unroll
// sizes, and compares with the plain definition.
func TestFirst(t *testing.T) {
	bad := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00001), math.Float32frombits(0xff800001)}
	good := []float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 0, float32(math.Copysign(0, -1)), 1e30}
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, 8, 9, block - 1, block, block + 1, 3*block + 5} {
		x := make([]float32, n)
		for i := range x {
			x[i] = good[r.IntN(len(good))]
		}
		if got := First(x); got != -1 {
			t.Fatalf("n=%d, all finite: got %d", n, got)
		}
		for p := range n {
			if n > 64 && p%13 != 0 && p != n-1 {
				continue
			}
			for _, b := range bad {
				x[p] = b
				if got := First(x); got != p {
					t.Fatalf("n=%d, %v at %d: got %d", n, b, p, got)
				}
				// A second one later does not move the answer.
				if p+1 < n {
					x[n-1] = b
					if got := First(x); got != p {
						t.Fatalf("n=%d, %v at %d and %d: got %d", n, b, p, n-1, got)
					}
					x[n-1] = 1
				}
			}
			x[p] = 1
		}
	}
}

// BenchmarkFirst scans 1M finite values, beside the element-by-element
// loop (math.IsNaN || math.IsInf) it replaced, in the same run.
func BenchmarkFirst(b *testing.B) {
	x := make([]float32, 1<<20)
	for i := range x {
		x[i] = float32(i)
	}
	b.Run("first", func(b *testing.B) {
		b.SetBytes(4 << 20)
		for b.Loop() {
			if First(x) != -1 {
				b.Fatal("non-finite")
			}
		}
	})
	b.Run("plain-loop", func(b *testing.B) {
		b.SetBytes(4 << 20)
		for b.Loop() {
			for j, v := range x {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					b.Fatal(j)
				}
			}
		}
	})
}
