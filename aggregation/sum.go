package aggregation

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/sovereign-fl/sovereign/aggregation/internal/vsum"
)

// blockLen is the number of coordinates accumulated at a time: a float64
// accumulator of blockLen entries (32 KiB) stays in L1 cache while every
// update streams through it once.
const blockLen = 4096

// minPerWorker is the smallest number of elementary operations worth a
// goroutine.
const minPerWorker = 1 << 16

// workersFor returns how many goroutines to use for a job of `work`
// elementary operations when the caller asked for want (0 =
// runtime.GOMAXPROCS).
func workersFor(want, work int) int {
	if want <= 0 {
		want = runtime.GOMAXPROCS(0)
	}
	if most := work / minPerWorker; want > most {
		want = most
	}
	if want < 1 {
		want = 1
	}
	return want
}

// parallelRanges calls fn on `workers` contiguous, disjoint ranges that
// cover [0, n), concurrently, and waits for them. Each coordinate is
// handled by exactly one call, so results do not depend on workers.
func parallelRanges(workers, n int, fn func(lo, hi int)) {
	if workers <= 1 {
		fn(0, n)
		return
	}
	// Split on block boundaries so that every worker's blocks are whole.
	blocks := (n + blockLen - 1) / blockLen
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo := blocks * w / workers * blockLen
		hi := blocks * (w + 1) / workers * blockLen
		if hi > n {
			hi = n
		}
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// TotalWeight returns the sum of the updates' weights, in float64.
func TotalWeight(updates []Update) float64 {
	var t float64
	for _, u := range updates {
		t += u.Weight
	}
	return t
}

// WeightedSum sets dst to Σ w_i·Δ_i over the updates and returns the total
// weight Σ w_i. It is the numerator and denominator of FedAvg (McMahan et
// al. 2017), for paths such as secure aggregation (Bonawitz et al. 2017)
// where clients pre-scale their deltas and the server only sees sums.
// Accumulation is in float64, in blocks, split over runtime.GOMAXPROCS
// goroutines; the result is the same whatever the number of goroutines.
// Every delta must have len(dst) values and every weight must be finite.
func WeightedSum(dst []float32, updates []Update) (totalWeight float64, err error) {
	if err := checkShapes("weighted sum", dst, updates, 0, ""); err != nil {
		return 0, err
	}
	for _, u := range updates {
		if math.IsNaN(u.Weight) || math.IsInf(u.Weight, 0) {
			return 0, fmt.Errorf("weighted sum: update from client %q: %w: weight is %v", u.Client, ErrBadWeight, u.Weight)
		}
	}
	weightedCombine(dst, updates, 1, 0)
	return TotalWeight(updates), nil
}

// MeanFromSum sets dst to sum / totalWeight: the weighted mean when sum is
// Σ w_i·Δ_i, as produced by WeightedSum or by unmasking a secure sum.
// dst and sum may be the same slice.
func MeanFromSum(dst, sum []float32, totalWeight float64) error {
	if len(dst) != len(sum) {
		return fmt.Errorf("mean from sum: dst has %d values, sum has %d", len(dst), len(sum))
	}
	if math.IsNaN(totalWeight) || math.IsInf(totalWeight, 0) || totalWeight <= 0 {
		return fmt.Errorf("mean from sum: %w: total weight is %v, must be finite and > 0", ErrBadWeight, totalWeight)
	}
	inv := 1 / totalWeight
	for j, v := range sum {
		dst[j] = float32(float64(v) * inv)
	}
	return nil
}

// weightedCombine sets dst[j] = scale · Σ_i w_i·Δ_i[j], accumulating in
// float64 block by block with `workers` goroutines (0 = GOMAXPROCS).
func weightedCombine(dst []float32, updates []Update, scale float64, workers int) {
	n := len(dst)
	if len(updates) == 0 {
		clear(dst)
		return
	}
	ws := make([]float64, len(updates))
	for i, u := range updates {
		ws[i] = u.Weight
	}
	eachBlock(updates, n, workers, func(b, e int, rows [][]float32) {
		var acc [blockLen]float64
		a := acc[:e-b]
		accumulate(a, rows, ws)
		out := dst[b:e]
		for j, v := range a {
			out[j] = float32(v * scale)
		}
	})
}

// eachBlock calls fn for every block [b, e) of blockLen coordinates of
// [0, n) with the updates' deltas cut to it, the blocks split over
// `workers` goroutines (0 = GOMAXPROCS) by contiguous ranges: each
// coordinate is handled by one call, so results do not depend on workers.
func eachBlock(updates []Update, n, workers int, fn func(b, e int, rows [][]float32)) {
	parallelRanges(workersFor(workers, n*len(updates)), n, func(lo, hi int) {
		rows := make([][]float32, len(updates))
		for b := lo; b < hi; b += blockLen {
			e := min(b+blockLen, hi)
			for i, u := range updates {
				rows[i] = u.Delta[b:e]
			}
			fn(b, e, rows)
		}
	})
}

// accumulate sets acc[j] = Σ_i ws[i]·rows[i][j]. Every row has len(acc)
// values. Four rows are folded per pass over acc, which quarters the
// accumulator traffic; the order of additions is fixed, so the result is
// deterministic.
func accumulate(acc []float64, rows [][]float32, ws []float64) {
	clear(acc)
	accumulateInto(acc, rows, ws)
}

// accumulateInto is accumulate onto acc's current values: rows in groups of
// four, then the rest one by one, so that calls on consecutive groups of
// rows whose lengths are multiples of four leave the same bits as one call
// on all of them.
func accumulateInto(acc []float64, rows [][]float32, ws []float64) {
	i := 0
	for ; i+4 <= len(rows); i += 4 {
		// Separately rounded products and sums in a fixed order (no fused
		// multiply-add, the same bits on every architecture, which replicas
		// rely on); AVX-512 where the CPU has it.
		vsum.Accumulate4(acc, rows[i], rows[i+1], rows[i+2], rows[i+3], ws[i], ws[i+1], ws[i+2], ws[i+3])
	}
	for ; i < len(rows); i++ {
		vsum.Accumulate1(acc, rows[i], ws[i])
	}
}
