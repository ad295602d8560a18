package aggregation

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/sovereign-fl/sovereign/internal/memfloor"
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

// readFloor reads every byte of the updates' deltas once with vectorised
// loads (memfloor.ReadSum: four AVX-512 accumulators), split over workers by
// coordinate ranges as the kernel splits them: the memory-speed floor of
// any weighted sum of the same bytes.
func readFloor(us []Update, dim, workers int) uint32 {
	var total atomic.Uint32
	parallelRanges(workers, dim, func(lo, hi int) {
		var s uint32
		for _, u := range us {
			d := u.Delta[lo:hi]
			s += memfloor.ReadSum(unsafe.Slice((*uint32)(unsafe.Pointer(&d[0])), len(d)))
		}
		total.Add(s)
	})
	return total.Load()
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
	b.Run("read-floor-1worker", func(b *testing.B) {
		b.SetBytes(bytes)
		for b.Loop() {
			readFloor(us, dim, 1)
		}
	})
	b.Run("read-floor", func(b *testing.B) {
		b.SetBytes(bytes)
		for b.Loop() {
			readFloor(us, dim, runtime.GOMAXPROCS(0))
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
	// paired alternates the read floor and the kernel, on one goroutine and
	// on GOMAXPROCS, and the plain loop, inside every iteration, so that load
	// from other processes on the machine hits all of them alike; it reports
	// each one's throughput and the kernel's fraction of the floor.
	b.Run("paired", func(b *testing.B) {
		var tBase, tRead1, tRead, tOne, tPar time.Duration
		timeIt := func(acc *time.Duration, f func()) {
			start := time.Now()
			f()
			*acc += time.Since(start)
		}
		p := runtime.GOMAXPROCS(0)
		for b.Loop() {
			timeIt(&tRead1, func() { readFloor(us, dim, 1) })
			timeIt(&tOne, func() { _ = WeightedMean{Workers: 1}.Combine(dst, us) })
			timeIt(&tRead, func() { readFloor(us, dim, p) })
			timeIt(&tPar, func() { _ = WeightedMean{}.Combine(dst, us) })
			timeIt(&tBase, func() { baselineLoop(dst, us) })
		}
		mbps := func(d time.Duration) float64 { return float64(bytes) * float64(b.N) / d.Seconds() / 1e6 }
		b.ReportMetric(mbps(tBase), "loop-MB/s")
		b.ReportMetric(mbps(tRead1), "read1-MB/s")
		b.ReportMetric(mbps(tOne), "fedavg1-MB/s")
		b.ReportMetric(mbps(tRead), "read-MB/s")
		b.ReportMetric(mbps(tPar), "fedavg-MB/s")
		b.ReportMetric(tRead1.Seconds()/tOne.Seconds(), "fedavg1/read1")
		b.ReportMetric(tRead.Seconds()/tPar.Seconds(), "fedavg/read")
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
