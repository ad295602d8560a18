package aggregation

import (
	"fmt"
	"math"
	"slices"
)

// MaxF is the largest number of Byzantine clients the Krum family accepts;
// it keeps 4F+3 far from integer overflow.
const MaxF = 1 << 20

// checkF refuses F outside [0, MaxF].
func checkF(name string, f int) error {
	if f < 0 || f > MaxF {
		return fmt.Errorf("%s: F is %d, needs 0 <= F <= %d", name, f, MaxF)
	}
	return nil
}

// Krum selects the one update closest to its neighbours (Blanchard et al.
// 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient
// Descent", §4): each update i is scored by the sum of squared Euclidean
// distances to its n−f−2 nearest other updates, and the lowest score wins
// (ties go to the earlier update). It tolerates F Byzantine clients and
// refuses to run unless n ≥ 2F+3. Weights are ignored.
type Krum struct {
	// F is the number of Byzantine clients tolerated, F >= 0.
	F int
}

// Name returns "krum:F".
func (r Krum) Name() string { return fmt.Sprintf("krum:%d", r.F) }

// MinUpdates returns 2F+3 (F clamped to [0, MaxF]).
func (r Krum) MinUpdates() int { return 2*clampF(r.F) + 3 }

// Combine copies the Krum-selected delta into dst.
func (r Krum) Combine(dst []float32, updates []Update) error {
	sel, err := multiKrumSelect("krum", dst, updates, r.F, 1)
	if err != nil {
		return err
	}
	copy(dst, updates[sel[0]].Delta)
	return nil
}

// MultiKrum averages the M updates with the best Krum scores (Blanchard et
// al. 2017, §4, "Multi-Krum"); scores are computed once over all n
// updates. M = 0 means n − F. It refuses to run unless n ≥ 2F+3 and
// 1 ≤ M ≤ n. As in the paper the average is unweighted: a robust rule does
// not trust self-reported example counts.
type MultiKrum struct {
	// F is the number of Byzantine clients tolerated, F >= 0.
	F int
	// M is how many of the best-scored updates are averaged; 0 = n - F.
	M int
}

// Name returns "multikrum:F", or "multikrum:F:M" when M is set.
func (r MultiKrum) Name() string {
	if r.M == 0 {
		return fmt.Sprintf("multikrum:%d", r.F)
	}
	return fmt.Sprintf("multikrum:%d:%d", r.F, r.M)
}

// MinUpdates returns max(2F+3, M) (F clamped to [0, MaxF]).
func (r MultiKrum) MinUpdates() int { return max(2*clampF(r.F)+3, r.M) }

// Combine writes the mean of the M best-scored deltas into dst.
func (r MultiKrum) Combine(dst []float32, updates []Update) error {
	m := r.M
	if m == 0 {
		m = len(updates) - r.F
	}
	if r.M < 0 || m > len(updates) {
		return fmt.Errorf("%s: M is %d, needs 1 <= M <= n = %d (0 means n - F)", r.Name(), r.M, len(updates))
	}
	sel, err := multiKrumSelect(r.Name(), dst, updates, r.F, m)
	if err != nil {
		return err
	}
	meanOfSelected(dst, updates, sel)
	return nil
}

// Bulyan (El Mhamdi et al. 2018, "The Hidden Vulnerability of Distributed
// Learning in Byzantium", §4) first selects θ = n − 2F updates by applying
// Krum repeatedly, removing each winner from the candidate set, and then,
// for each coordinate, averages the β = θ − 2F selected values closest to
// the selected values' median (ties go to the smaller value). It refuses
// to run unless n ≥ 4F+3. Weights are ignored.
//
// While the candidate set R shrinks, Krum's neighbour count |R|−F−2 is
// clamped to [1, |R|−1], as in common implementations, so that every one
// of the θ selections is defined.
type Bulyan struct {
	// F is the number of Byzantine clients tolerated, F >= 0.
	F int
}

// Name returns "bulyan:F".
func (r Bulyan) Name() string { return fmt.Sprintf("bulyan:%d", r.F) }

// MinUpdates returns 4F+3 (F clamped to [0, MaxF]).
func (r Bulyan) MinUpdates() int { return 4*clampF(r.F) + 3 }

// clampF limits f to [0, MaxF] so that MinUpdates cannot overflow;
// Combine refuses such F with an error.
func clampF(f int) int { return min(max(f, 0), MaxF) }

// Combine writes the Bulyan aggregate of the deltas into dst.
func (r Bulyan) Combine(dst []float32, updates []Update) error {
	if err := checkF(r.Name(), r.F); err != nil {
		return err
	}
	need := fmt.Sprintf("n >= 4F+3 = %d to tolerate F = %d Byzantine clients", r.MinUpdates(), r.F)
	if err := checkShapes(r.Name(), dst, updates, r.MinUpdates(), need); err != nil {
		return err
	}
	n := len(updates)
	theta := n - 2*r.F
	beta := theta - 2*r.F
	dist := pairwiseSqDist(updates, 0)

	remaining := make([]int, n)
	for i := range remaining {
		remaining[i] = i
	}
	selected := make([]Update, 0, theta)
	for range theta {
		k := min(max(len(remaining)-r.F-2, 1), len(remaining)-1)
		best := krumRank(dist, remaining, k)[0]
		selected = append(selected, updates[remaining[best]])
		remaining = slices.Delete(remaining, best, best+1)
	}

	perCoordinate(dst, selected, func(col []float32) float32 {
		sortColumn(col)
		t := len(col)
		var med float64
		if t%2 == 1 {
			med = float64(col[t/2])
		} else {
			med = (float64(col[t/2-1]) + float64(col[t/2])) / 2
		}
		// The β values closest to the median of a sorted column form a
		// contiguous window around it: grow it one side at a time.
		l, r := t/2-1, t/2
		for range beta {
			if r >= t || (l >= 0 && med-float64(col[l]) <= float64(col[r])-med) {
				l--
			} else {
				r++
			}
		}
		return meanOf(col[l+1 : r])
	})
	return nil
}

// multiKrumSelect checks Krum's preconditions and returns the indices of
// the m updates with the lowest Krum scores, best first.
func multiKrumSelect(name string, dst []float32, updates []Update, f, m int) ([]int, error) {
	if err := checkF(name, f); err != nil {
		return nil, err
	}
	need := fmt.Sprintf("n >= 2F+3 = %d to tolerate F = %d Byzantine clients", 2*f+3, f)
	if err := checkShapes(name, dst, updates, 2*f+3, need); err != nil {
		return nil, err
	}
	if m < 1 {
		return nil, fmt.Errorf("%s: selects %d updates, needs at least 1", name, m)
	}
	n := len(updates)
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	rank := krumRank(pairwiseSqDist(updates, 0), all, n-f-2)
	sel := make([]int, m)
	for i, p := range rank[:m] {
		sel[i] = all[p]
	}
	return sel, nil
}

// krumRank scores each candidate (an index into dist) by the sum of its k
// smallest squared distances to the other candidates, and returns
// positions in candidates ordered by score, ties by position.
func krumRank(dist [][]float64, candidates []int, k int) []int {
	scores := make([]float64, len(candidates))
	row := make([]float64, 0, len(candidates))
	for p, i := range candidates {
		row = row[:0]
		for _, j := range candidates {
			if j != i {
				row = append(row, dist[i][j])
			}
		}
		slices.Sort(row)
		var s float64
		for _, d := range row[:k] {
			s += d
		}
		scores[p] = s
	}
	order := make([]int, len(candidates))
	for p := range order {
		order[p] = p
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	return order
}

// pairwiseSqDist returns the symmetric matrix of squared Euclidean
// distances between the deltas, in float64. Partial sums are kept per
// block of coordinates and added in block order, so the result does not
// depend on the number of goroutines.
func pairwiseSqDist(updates []Update, workers int) [][]float64 {
	n := len(updates)
	d := len(updates[0].Delta)
	blocks := max((d+blockLen-1)/blockLen, 1)
	pairs := n * (n - 1) / 2
	partial := make([]float64, blocks*pairs)
	parallelRanges(workersFor(workers, d*pairs), d, func(lo, hi int) {
		for b := lo; b < hi; b += blockLen {
			e := min(b+blockLen, hi)
			out := partial[(b/blockLen)*pairs:]
			p := 0
			for i := 0; i < n; i++ {
				x := updates[i].Delta[b:e]
				for j := i + 1; j < n; j++ {
					out[p] = sqDist(x, updates[j].Delta[b:e])
					p++
				}
			}
		}
	})
	dist := make([][]float64, n)
	for i := range dist {
		dist[i] = make([]float64, n)
	}
	p := 0
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			var s float64
			for b := 0; b < blocks; b++ {
				s += partial[b*pairs+p]
			}
			dist[i][j], dist[j][i] = s, s
			p++
		}
	}
	return dist
}

// sqDist returns Σ (x[j]−y[j])² in float64; len(y) >= len(x).
func sqDist(x, y []float32) float64 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float64
	j := 0
	for ; j+4 <= len(x); j += 4 {
		d0 := float64(x[j]) - float64(y[j])
		d1 := float64(x[j+1]) - float64(y[j+1])
		d2 := float64(x[j+2]) - float64(y[j+2])
		d3 := float64(x[j+3]) - float64(y[j+3])
		s0 += float64(d0 * d0)
		s1 += float64(d1 * d1)
		s2 += float64(d2 * d2)
		s3 += float64(d3 * d3)
	}
	for ; j < len(x); j++ {
		d := float64(x[j]) - float64(y[j])
		s0 += float64(d * d)
	}
	return (s0 + s1) + (s2 + s3)
}

// meanOfSelected writes the unweighted mean of updates[sel] into dst.
func meanOfSelected(dst []float32, updates []Update, sel []int) {
	chosen := make([]Update, len(sel))
	for i, p := range sel {
		chosen[i] = Update{Client: updates[p].Client, Delta: updates[p].Delta, Weight: 1}
	}
	weightedCombine(dst, chosen, 1/float64(len(chosen)), 0)
}

// isFinite reports whether v is neither NaN nor ±Inf.
func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
