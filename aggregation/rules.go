package aggregation

import (
	"fmt"
	"math"
	"slices"
)

// Rule combines valid client deltas into one delta.
//
// Combine writes the combined delta into dst, which has the model's length;
// every update's Delta must have len(dst) values. Combine expects updates
// that passed Validate (finite values, positive weights, distinct clients);
// it checks counts and lengths and returns an error wrapping
// ErrTooFewUpdates or ErrWrongLength rather than panicking, and leaves dst
// unspecified when it fails. Combine never modifies the updates and is
// deterministic: the same updates in the same order give the same bits.
// A Rule value holds only its parameters and is safe for concurrent use.
type Rule interface {
	// Name returns the rule in ParseStrategy's syntax, e.g. "trimmed:0.1".
	Name() string
	// Combine writes the combined delta of updates into dst.
	Combine(dst []float32, updates []Update) error
}

// Compile-time checks.
var (
	_ Rule = WeightedMean{}
	_ Rule = Median{}
	_ Rule = TrimmedMean{}
	_ Rule = Krum{}
	_ Rule = MultiKrum{}
	_ Rule = Bulyan{}
)

// MinUpdater is implemented by rules that need a minimum number of updates,
// so that a coordinator can size its cohort before a round starts.
type MinUpdater interface {
	// MinUpdates returns the fewest updates Combine accepts.
	MinUpdates() int
}

// MinUpdates returns the fewest updates r accepts: r.MinUpdates() when r
// implements MinUpdater, otherwise 1.
func MinUpdates(r Rule) int {
	if m, ok := r.(MinUpdater); ok {
		return m.MinUpdates()
	}
	return 1
}

// WeightedMean is Federated Averaging's rule (McMahan et al. 2017,
// "Communication-Efficient Learning of Deep Networks from Decentralized
// Data", Algorithm 1): Σ w_i·Δ_i / Σ w_i, accumulated in float64.
type WeightedMean struct {
	// Workers is the number of goroutines to use; 0 means
	// runtime.GOMAXPROCS. The result does not depend on it.
	Workers int
}

// Name returns "mean".
func (WeightedMean) Name() string { return "mean" }

// MinUpdates returns 1.
func (WeightedMean) MinUpdates() int { return 1 }

// Combine writes the weighted mean of the deltas into dst.
func (r WeightedMean) Combine(dst []float32, updates []Update) error {
	if err := checkShapes("mean", dst, updates, 1, "at least 1"); err != nil {
		return err
	}
	total := TotalWeight(updates)
	if math.IsNaN(total) || math.IsInf(total, 0) || total <= 0 {
		return fmt.Errorf("mean: %w: total weight is %v, must be finite and > 0", ErrBadWeight, total)
	}
	weightedCombine(dst, updates, 1/total, r.Workers)
	return nil
}

// Median is the coordinate-wise median (Yin et al. 2018, "Byzantine-Robust
// Distributed Learning: Towards Optimal Statistical Rates", §3). With an
// even number of updates it takes the mean of the two middle values.
// Weights are ignored: a robust rule does not trust self-reported counts.
type Median struct{}

// Name returns "median".
func (Median) Name() string { return "median" }

// MinUpdates returns 1.
func (Median) MinUpdates() int { return 1 }

// Combine writes the coordinate-wise median of the deltas into dst.
func (Median) Combine(dst []float32, updates []Update) error {
	if err := checkShapes("median", dst, updates, 1, "at least 1"); err != nil {
		return err
	}
	perCoordinate(dst, updates, func(col []float32) float32 {
		n := len(col)
		selectK(col, n/2)
		if n%2 == 1 {
			return col[n/2]
		}
		// col[:n/2] <= col[n/2]: the lower middle is their maximum.
		return float32((float64(slices.Max(col[:n/2])) + float64(col[n/2])) / 2)
	})
	return nil
}

// TrimmedMean is the coordinate-wise β-trimmed mean (Yin et al. 2018,
// "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
// Rates", §3): for each coordinate, drop the ⌊β·n⌋ largest and ⌊β·n⌋
// smallest values and average the rest. Beta must satisfy 0 ≤ β < 0.5;
// β = 0 is the plain unweighted mean. Weights are ignored.
type TrimmedMean struct {
	// Beta is the fraction trimmed from each end, 0 <= Beta < 0.5.
	Beta float64
}

// Name returns "trimmed:BETA".
func (r TrimmedMean) Name() string { return fmt.Sprintf("trimmed:%g", r.Beta) }

// MinUpdates returns 1.
func (TrimmedMean) MinUpdates() int { return 1 }

// Combine writes the coordinate-wise trimmed mean of the deltas into dst.
func (r TrimmedMean) Combine(dst []float32, updates []Update) error {
	if !(r.Beta >= 0 && r.Beta < 0.5) {
		return fmt.Errorf("trimmed mean: beta is %v, needs 0 <= beta < 0.5", r.Beta)
	}
	if err := checkShapes(r.Name(), dst, updates, 1, "at least 1"); err != nil {
		return err
	}
	// min guards against β·n rounding up to n/2 for β just below 0.5.
	k := min(int(math.Floor(r.Beta*float64(len(updates)))), (len(updates)-1)/2)
	perCoordinate(dst, updates, func(col []float32) float32 {
		if k > 0 {
			// Move the k smallest to the front, then the k largest of
			// the rest to the back.
			selectK(col, k)
			rest := col[k:]
			selectK(rest, len(rest)-k-1)
		}
		return meanOf(col[k : len(col)-k])
	})
	return nil
}

// meanOf returns the unweighted mean of x in float64 accumulation.
func meanOf(x []float32) float32 {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	return float32(s / float64(len(x)))
}

// perCoordinate sets dst[j] = f(column j), where column j holds
// updates[i].Delta[j] for every i in order. f may reorder its argument.
// Columns are gathered a tile at a time (each update's chunk read
// sequentially into a small column-major scratch) and coordinates are
// split over GOMAXPROCS goroutines.
func perCoordinate(dst []float32, updates []Update, f func(col []float32) float32) {
	n := len(dst)
	m := len(updates)
	// Tile width: about 32 KiB of scratch, at least 1 coordinate.
	tile := max(8192/max(m, 1), 1)
	parallelRanges(workersFor(0, 8*n*m), n, func(lo, hi int) {
		scratch := make([]float32, tile*m)
		rows := make([][]float32, m)
		for i := range updates {
			rows[i] = updates[i].Delta
		}
		for b := lo; b < hi; b += tile {
			e := min(b+tile, hi)
			w := e - b
			for i, r := range rows {
				for j, v := range r[b:e] {
					scratch[j*m+i] = v
				}
			}
			out := dst[b:e]
			for j := 0; j < w; j++ {
				out[j] = f(scratch[j*m : (j+1)*m])
			}
		}
	})
}
