package aggregation

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// benchUpdates returns n updates of dim uniform values, built fast.
func benchUpdates(seed uint64, n, dim int) []Update {
	rng := rand.New(rand.NewPCG(seed, 1))
	us := make([]Update, n)
	for i := range us {
		d := make([]float32, dim)
		for j := range d {
			d[j] = rng.Float32() - 0.5
		}
		us[i] = Update{Client: fmt.Sprintf("c%03d", i), Delta: d, Weight: 1 + float64(rng.IntN(1000))}
	}
	return us
}

// baselineLoop is the plain single-pass weighted sum the blocked kernel is
// measured against: for each update, for j: acc[j] += w·u[j].
func baselineLoop(acc []float32, us []Update) {
	clear(acc)
	total := TotalWeight(us)
	for _, u := range us {
		w := float32(u.Weight / total)
		d := u.Delta[:len(acc)]
		for j, v := range d {
			acc[j] += w * v
		}
	}
}

// BenchmarkFedAvg1M: weighted mean of 100 updates × 1M float32 parameters.
// Bytes per op = the 400 MB of deltas read.
func BenchmarkFedAvg1M(b *testing.B) {
	const n, dim = 100, 1 << 20
	us := benchUpdates(1, n, dim)
	dst := make([]float32, dim)
	bytes := int64(n * dim * 4)

	b.Run("loop-baseline", func(b *testing.B) {
		b.SetBytes(bytes)
		for b.Loop() {
			baselineLoop(dst, us)
		}
	})
	b.Run("loop-baseline-parallel", func(b *testing.B) {
		// The same plain loop over GOMAXPROCS contiguous coordinate ranges.
		b.SetBytes(bytes)
		p := runtime.GOMAXPROCS(0)
		for b.Loop() {
			var wg sync.WaitGroup
			for w := 0; w < p; w++ {
				lo, hi := dim*w/p, dim*(w+1)/p
				part := make([]Update, n)
				for i, u := range us {
					part[i] = Update{Delta: u.Delta[lo:hi], Weight: u.Weight}
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					baselineLoop(dst[lo:hi], part)
				}()
			}
			wg.Wait()
		}
	})
	b.Run("fedavg-1worker", func(b *testing.B) {
		b.SetBytes(bytes)
		r := WeightedMean{Workers: 1}
		for b.Loop() {
			if err := r.Combine(dst, us); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fedavg", func(b *testing.B) {
		b.SetBytes(bytes)
		r := WeightedMean{}
		for b.Loop() {
			if err := r.Combine(dst, us); err != nil {
				b.Fatal(err)
			}
		}
	})
	// paired alternates the baseline and both kernels inside every
	// iteration, so that load from other processes on the machine hits all
	// three alike, and reports each one's throughput and their ratios.
	b.Run("paired", func(b *testing.B) {
		var tBase, tOne, tPar time.Duration
		timeIt := func(acc *time.Duration, f func()) {
			start := time.Now()
			f()
			*acc += time.Since(start)
		}
		for b.Loop() {
			timeIt(&tBase, func() { baselineLoop(dst, us) })
			timeIt(&tOne, func() { _ = WeightedMean{Workers: 1}.Combine(dst, us) })
			timeIt(&tPar, func() { _ = WeightedMean{}.Combine(dst, us) })
		}
		mbps := func(d time.Duration) float64 { return float64(bytes) * float64(b.N) / d.Seconds() / 1e6 }
		b.ReportMetric(mbps(tBase), "baseline-MB/s")
		b.ReportMetric(mbps(tOne), "fedavg1-MB/s")
		b.ReportMetric(mbps(tPar), "fedavg-MB/s")
		b.ReportMetric(tBase.Seconds()/tOne.Seconds(), "fedavg1/baseline")
		b.ReportMetric(tBase.Seconds()/tPar.Seconds(), "fedavg/baseline")
	})
}

// BenchmarkRobust: the robust rules on 23 updates × 100K parameters, each
// beside the plain reference implementation from the tests.
func BenchmarkRobust(b *testing.B) {
	const n, dim = 23, 100_000
	us := benchUpdates(2, n, dim)
	dst := make([]float32, dim)
	bytes := int64(n * dim * 4)
	run := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(bytes)
			for b.Loop() {
				f()
			}
		})
	}
	combine := func(r Rule) func() {
		return func() {
			if err := r.Combine(dst, us); err != nil {
				b.Fatal(err)
			}
		}
	}
	run("median-naive", func() { naiveMedian(us, dim) })
	run("median", combine(Median{}))
	run("trimmed-naive", func() { naiveTrimmed(us, dim, 0.2) })
	run("trimmed", combine(TrimmedMean{Beta: 0.2}))
	run("krum-naive", func() { naiveMultiKrum(us, dim, 5, 1) })
	run("krum", combine(Krum{F: 5}))
	run("bulyan-naive", func() { naiveBulyan(us, dim, 5) })
	run("bulyan", combine(Bulyan{F: 5}))
}
