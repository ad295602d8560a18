package dp

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkAccountantRDP compares the accountant, which merges identical
// rounds into one history entry and scales the RDP by the step count,
// against the naive baseline that evaluates one step per round and sums.
func BenchmarkAccountantRDP(b *testing.B) {
	const rounds = 500
	orders := DefaultOrders()
	b.Run("merged", func(b *testing.B) {
		for b.Loop() {
			var a Accountant
			for range rounds {
				a.Step(0.01, 1.1, 1)
			}
			_ = a.RDP(orders)
		}
	})
	b.Run("baseline-per-round", func(b *testing.B) {
		for b.Loop() {
			total := make([]float64, len(orders))
			for range rounds {
				r := ComputeRDP(0.01, 1.1, 1, orders)
				for i := range total {
					total[i] += r[i]
				}
			}
		}
	})
}

// BenchmarkMaxSteps compares the doubling + binary search of MaxSteps
// against the baseline linear scan over step counts. Both compute the
// per-step RDP once, which dominates for short budgets; the "long" cases
// allow tens of thousands of rounds.
func BenchmarkMaxSteps(b *testing.B) {
	const delta = 1e-5
	orders := DefaultOrders()
	for _, c := range []struct {
		name             string
		q, sigma, target float64
	}{
		{"short", 0.05, 1.0, 2.0},
		{"long", 0.01, 1.5, 8.0},
	} {
		b.Run(c.name+"/binary-search", func(b *testing.B) {
			for b.Loop() {
				if _, err := MaxSteps(c.q, c.sigma, c.target, delta, orders); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/baseline-linear-scan", func(b *testing.B) {
			for b.Loop() {
				perStep := ComputeRDP(c.q, c.sigma, 1, orders)
				r := make([]float64, len(perStep))
				for n := 1; ; n++ {
					for i, x := range perStep {
						r[i] = x * float64(n)
					}
					if e, _, _ := EpsilonFromRDP(orders, r, delta, ConversionBalle); e > c.target {
						break
					}
				}
			}
		})
	}
}

// BenchmarkClipL2 clips a 1M-parameter update; the baseline is computing
// its norm alone, the least any clipping must do.
func BenchmarkClipL2(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	src := make([]float32, 1<<20)
	for i := range src {
		src[i] = float32(rng.NormFloat64())
	}
	v := make([]float32, len(src))
	b.Run("clip", func(b *testing.B) {
		b.SetBytes(int64(4 * len(v)))
		for b.Loop() {
			copy(v, src)
			ClipL2(v, 10)
		}
	})
	b.Run("baseline-copy-and-norm", func(b *testing.B) {
		b.SetBytes(int64(4 * len(v)))
		for b.Loop() {
			copy(v, src)
			_ = L2Norm(v)
		}
	})
}
