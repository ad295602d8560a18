package aggregation

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

// Naive reference implementations, written plainly: one coordinate at a
// time, full sorts, brute-force distances.

func naiveMean(us []Update, dim int) []float32 {
	out := make([]float32, dim)
	var total float64
	for _, u := range us {
		total += u.Weight
	}
	for j := 0; j < dim; j++ {
		var s float64
		for _, u := range us {
			s += u.Weight * float64(u.Delta[j])
		}
		out[j] = float32(s / total)
	}
	return out
}

func naiveColumn(us []Update, j int) []float64 {
	col := make([]float64, len(us))
	for i, u := range us {
		col[i] = float64(u.Delta[j])
	}
	sort.Float64s(col)
	return col
}

func naiveMedian(us []Update, dim int) []float32 {
	out := make([]float32, dim)
	for j := range out {
		col := naiveColumn(us, j)
		n := len(col)
		if n%2 == 1 {
			out[j] = float32(col[n/2])
		} else {
			out[j] = float32((col[n/2-1] + col[n/2]) / 2)
		}
	}
	return out
}

func naiveTrimmed(us []Update, dim int, beta float64) []float32 {
	out := make([]float32, dim)
	k := int(math.Floor(beta * float64(len(us))))
	for j := range out {
		col := naiveColumn(us, j)
		var s float64
		for _, v := range col[k : len(col)-k] {
			s += v
		}
		out[j] = float32(s / float64(len(col)-2*k))
	}
	return out
}

func naiveDist(a, b []float32) float64 {
	var s float64
	for j := range a {
		d := float64(a[j]) - float64(b[j])
		s += d * d
	}
	return s
}

// naiveKrumScores scores each update in set by the sum of its k smallest
// squared distances to the other members of set.
func naiveKrumScores(set []Update, k int) []float64 {
	scores := make([]float64, len(set))
	for i := range set {
		var ds []float64
		for j := range set {
			if i != j {
				ds = append(ds, naiveDist(set[i].Delta, set[j].Delta))
			}
		}
		sort.Float64s(ds)
		for _, d := range ds[:k] {
			scores[i] += d
		}
	}
	return scores
}

// naiveMultiKrum returns the unweighted mean of the m best-scored updates.
func naiveMultiKrum(us []Update, dim, f, m int) []float32 {
	scores := naiveKrumScores(us, len(us)-f-2)
	idx := make([]int, len(us))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	chosen := make([]Update, m)
	for i := range chosen {
		chosen[i] = us[idx[i]]
		chosen[i].Weight = 1
	}
	return naiveMean(chosen, dim)
}

func naiveBulyan(us []Update, dim, f int) []float32 {
	theta := len(us) - 2*f
	beta := theta - 2*f
	rest := slices.Clone(us)
	var sel []Update
	for len(sel) < theta {
		k := min(max(len(rest)-f-2, 1), len(rest)-1)
		scores := naiveKrumScores(rest, k)
		best := 0
		for i := range scores {
			if scores[i] < scores[best] {
				best = i
			}
		}
		sel = append(sel, rest[best])
		rest = append(rest[:best:best], rest[best+1:]...)
	}
	med := naiveMedian(sel, dim)
	out := make([]float32, dim)
	for j := range out {
		m := float64(med[j])
		// Recompute the median in float64 to avoid the float32 rounding of med.
		col := naiveColumn(sel, j)
		if len(col)%2 == 0 {
			m = (col[len(col)/2-1] + col[len(col)/2]) / 2
		}
		sort.SliceStable(col, func(a, b int) bool {
			da, db := math.Abs(col[a]-m), math.Abs(col[b]-m)
			if da != db {
				return da < db
			}
			return col[a] < col[b]
		})
		var s float64
		for _, v := range col[:beta] {
			s += v
		}
		out[j] = float32(s / float64(beta))
	}
	return out
}

func TestRulesMatchNaive(t *testing.T) {
	// Sizes cover a single partial block, several blocks with a ragged end
	// (blockLen = 4096) and enough work for several goroutines.
	shapes := []struct{ n, dim int }{{1, 7}, {2, 1}, {3, 33}, {7, 4099}, {11, 9000}, {12, 130}, {24, 6000}}
	for si, sh := range shapes {
		for trial := 0; trial < 2; trial++ {
			seed := uint64(100*si + trial)
			us := randomUpdates(seed, sh.n, sh.dim)
			before := cloneUpdates(us)
			rules := []struct {
				rule Rule
				want func() []float32
			}{
				{WeightedMean{}, func() []float32 { return naiveMean(us, sh.dim) }},
				{WeightedMean{Workers: 1}, func() []float32 { return naiveMean(us, sh.dim) }},
				{Median{}, func() []float32 { return naiveMedian(us, sh.dim) }},
				{TrimmedMean{Beta: 0}, func() []float32 {
					eq := cloneUpdates(us)
					for i := range eq {
						eq[i].Weight = 1
					}
					return naiveMean(eq, sh.dim)
				}},
				{TrimmedMean{Beta: 0.1}, func() []float32 { return naiveTrimmed(us, sh.dim, 0.1) }},
				{TrimmedMean{Beta: 0.34}, func() []float32 { return naiveTrimmed(us, sh.dim, 0.34) }},
			}
			for f := 0; 2*f+3 <= sh.n && f <= 3; f++ {
				f := f
				rules = append(rules,
					struct {
						rule Rule
						want func() []float32
					}{Krum{F: f}, func() []float32 { return naiveMultiKrum(us, sh.dim, f, 1) }},
					struct {
						rule Rule
						want func() []float32
					}{MultiKrum{F: f}, func() []float32 { return naiveMultiKrum(us, sh.dim, f, sh.n-f) }},
					struct {
						rule Rule
						want func() []float32
					}{MultiKrum{F: f, M: 2}, func() []float32 { return naiveMultiKrum(us, sh.dim, f, 2) }},
				)
				if 4*f+3 <= sh.n {
					rules = append(rules, struct {
						rule Rule
						want func() []float32
					}{Bulyan{F: f}, func() []float32 { return naiveBulyan(us, sh.dim, f) }})
				}
			}
			for _, r := range rules {
				got := make([]float32, sh.dim)
				if err := r.rule.Combine(got, us); err != nil {
					t.Fatalf("%s n=%d dim=%d: %v", r.rule.Name(), sh.n, sh.dim, err)
				}
				assertClose(t, fmt.Sprintf("%s n=%d dim=%d seed=%d", r.rule.Name(), sh.n, sh.dim, seed), got, r.want(), 1e-5)
				assertSameUpdates(t, us, before)
			}
		}
	}
}

func TestRobustRulesIgnoreWeightsAndMeanUsesThem(t *testing.T) {
	us := randomUpdates(7, 11, 300)
	heavy := cloneUpdates(us)
	heavy[0].Weight *= 1000
	for _, r := range []Rule{Median{}, TrimmedMean{Beta: 0.2}, Krum{F: 2}, MultiKrum{F: 2}, Bulyan{F: 2}} {
		a, b := make([]float32, 300), make([]float32, 300)
		if err := r.Combine(a, us); err != nil {
			t.Fatal(err)
		}
		if err := r.Combine(b, heavy); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Errorf("%s depends on weights", r.Name())
		}
	}
	a, b := make([]float32, 300), make([]float32, 300)
	_ = WeightedMean{}.Combine(a, us)
	_ = WeightedMean{}.Combine(b, heavy)
	if slices.Equal(a, b) {
		t.Error("weighted mean ignores weights")
	}
}

func TestRulesDeterministicAcrossWorkers(t *testing.T) {
	us := randomUpdates(3, 9, 70001)
	var ref []float32
	for _, w := range []int{1, 2, 3, 8} {
		got := make([]float32, 70001)
		if err := (WeightedMean{Workers: w}).Combine(got, us); err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = got
		} else if !slices.Equal(ref, got) {
			t.Fatalf("WeightedMean with %d workers differs from 1 worker", w)
		}
	}
	d1, d4 := pairwiseSqDist(us, 1), pairwiseSqDist(us, 4)
	for i := range d1 {
		if !slices.Equal(d1[i], d4[i]) {
			t.Fatalf("pairwise distances row %d depends on the number of workers", i)
		}
	}
}

func TestRulePreconditions(t *testing.T) {
	cases := []struct {
		rule    Rule
		n       int
		wantErr string // "" = must succeed
	}{
		{Krum{F: 2}, 6, "n >= 2F+3 = 7"},
		{Krum{F: 2}, 7, ""},
		{Krum{F: 0}, 2, "n >= 2F+3 = 3"},
		{Krum{F: -1}, 9, "F is -1"},
		{MultiKrum{F: 1}, 4, "n >= 2F+3 = 5"},
		{MultiKrum{F: 1}, 5, ""},
		{MultiKrum{F: 1, M: 6}, 5, "M is 6"},
		{MultiKrum{F: 1, M: -2}, 5, "M is -2"},
		{MultiKrum{F: 1, M: 5}, 5, ""},
		{Bulyan{F: 1}, 6, "n >= 4F+3 = 7"},
		{Bulyan{F: 1}, 7, ""},
		{Bulyan{F: 2}, 10, "n >= 4F+3 = 11"},
		{Bulyan{F: 2}, 11, ""},
		{Bulyan{F: -1}, 11, "F is -1"},
		{Bulyan{F: 1 << 61}, 11, "needs 0 <= F <= 1048576"},
		{Krum{F: 1 << 62}, 11, "needs 0 <= F <= 1048576"},
		{TrimmedMean{Beta: 0.5}, 5, "0 <= beta < 0.5"},
		{TrimmedMean{Beta: math.NaN()}, 5, "0 <= beta < 0.5"},
		{WeightedMean{}, 0, "at least 1"},
		{Median{}, 0, "at least 1"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/n=%d", tc.rule.Name(), tc.n), func(t *testing.T) {
			us := randomUpdates(uint64(tc.n), tc.n, 10)
			err := tc.rule.Combine(make([]float32, 10), us)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(tc.wantErr, ">=") && !errors.Is(err, ErrTooFewUpdates) {
				t.Errorf("error %v does not wrap ErrTooFewUpdates", err)
			}
		})
	}
	// A wrong-length delta is an error, not a panic.
	us := randomUpdates(1, 7, 10)
	us[4].Delta = us[4].Delta[:9]
	for _, r := range []Rule{WeightedMean{}, Median{}, TrimmedMean{Beta: 0.1}, Krum{F: 1}, MultiKrum{F: 1}, Bulyan{F: 1}} {
		err := r.Combine(make([]float32, 10), us)
		if !errors.Is(err, ErrWrongLength) || !strings.Contains(err.Error(), `"c04"`) {
			t.Errorf("%s: error %v, want ErrWrongLength naming c04", r.Name(), err)
		}
	}
}

// TestAttackerSignFlip: 10 honest clients send deltas near +1 in every
// coordinate; 2 attackers send a sign-flipped, 100× scaled copy of the
// honest mean. The mean is dragged to the wrong sign; the robust rules
// stay near the honest value.
func TestAttackerSignFlip(t *testing.T) {
	const dim, honest, attackers = 200, 10, 2
	rng := rand.New(rand.NewPCG(42, 1))
	var us []Update
	honestMean := make([]float64, dim)
	for i := 0; i < honest; i++ {
		d := make([]float32, dim)
		for j := range d {
			d[j] = float32(1 + 0.1*rng.NormFloat64())
			honestMean[j] += float64(d[j]) / honest
		}
		us = append(us, Update{Client: fmt.Sprintf("honest%d", i), Delta: d, Weight: 100})
	}
	for i := 0; i < attackers; i++ {
		d := make([]float32, dim)
		for j := range d {
			d[j] = float32(-100 * honestMean[j])
		}
		us = append(us, Update{Client: fmt.Sprintf("attacker%d", i), Delta: d, Weight: 100})
	}
	maxErr := func(got []float32) float64 {
		var m float64
		for j, v := range got {
			m = math.Max(m, math.Abs(float64(v)-honestMean[j]))
		}
		return m
	}
	mean := make([]float32, dim)
	if err := (WeightedMean{}).Combine(mean, us); err != nil {
		t.Fatal(err)
	}
	var dot float64
	for j, v := range mean {
		dot += float64(v) * honestMean[j]
	}
	if dot >= 0 {
		t.Fatalf("mean should be dragged against the honest direction, dot = %v", dot)
	}
	for _, r := range []Rule{Median{}, TrimmedMean{Beta: 0.2}, Krum{F: 2}, MultiKrum{F: 2}, Bulyan{F: 2}} {
		got := make([]float32, dim)
		if err := r.Combine(got, us); err != nil {
			t.Fatalf("%s: %v", r.Name(), err)
		}
		if e := maxErr(got); e > 0.5 {
			t.Errorf("%s: max deviation from the honest mean %v, want <= 0.5", r.Name(), e)
		}
	}
}

func TestWeightedSumAndMeanFromSum(t *testing.T) {
	us := randomUpdates(9, 13, 5000)
	sum := make([]float32, 5000)
	total, err := WeightedSum(sum, us)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 5000)
	var wantTotal float64
	for _, u := range us {
		wantTotal += u.Weight
	}
	for j := range want {
		var s float64
		for _, u := range us {
			s += u.Weight * float64(u.Delta[j])
		}
		want[j] = float32(s)
	}
	if math.Abs(total-wantTotal) > 1e-9*wantTotal || total != TotalWeight(us) {
		t.Fatalf("total weight %v, want %v", total, wantTotal)
	}
	assertClose(t, "weighted sum", sum, want, 1e-5)
	if err := MeanFromSum(sum, sum, total); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "mean from sum", sum, naiveMean(us, 5000), 1e-5)

	if err := MeanFromSum(sum, sum[:3], total); err == nil {
		t.Error("MeanFromSum accepted slices of different lengths")
	}
	if err := MeanFromSum(sum, sum, 0); !errors.Is(err, ErrBadWeight) {
		t.Errorf("MeanFromSum with zero weight: %v", err)
	}
	bad := cloneUpdates(us[:2])
	bad[1].Weight = math.NaN()
	if _, err := WeightedSum(make([]float32, 5000), bad); !errors.Is(err, ErrBadWeight) || !strings.Contains(err.Error(), `"c01"`) {
		t.Errorf("WeightedSum with NaN weight: %v", err)
	}
	if _, err := WeightedSum(make([]float32, 4), us); !errors.Is(err, ErrWrongLength) {
		t.Errorf("WeightedSum with short dst: %v", err)
	}
}

func TestSelectK(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := 0; trial < 300; trial++ {
		n := 1 + rng.IntN(200)
		x := make([]float32, n)
		for i := range x {
			// Few distinct values in some trials, to exercise duplicates.
			if trial%3 == 0 {
				x[i] = float32(rng.IntN(4))
			} else {
				x[i] = float32(rng.NormFloat64())
			}
		}
		sorted := slices.Clone(x)
		slices.Sort(sorted)
		k := rng.IntN(n)
		selectK(x, k)
		if x[k] != sorted[k] {
			t.Fatalf("n=%d k=%d: x[k] = %v, want %v", n, k, x[k], sorted[k])
		}
		for i := range x {
			if (i < k && x[i] > x[k]) || (i > k && x[i] < x[k]) {
				t.Fatalf("n=%d k=%d: x[%d] = %v on the wrong side of %v", n, k, i, x[i], x[k])
			}
		}
		got := slices.Clone(x)
		slices.Sort(got)
		if !slices.Equal(got, sorted) {
			t.Fatalf("n=%d: selectK changed the multiset", n)
		}
	}
}

// TestRulesMatchNaiveWithTies uses small integer values, so that columns
// hold many equal values, Bulyan's "closest to the median" has ties and
// Krum scores tie exactly (integer distances are exact in float64): the
// tie rules must match the reference too.
func TestRulesMatchNaiveWithTies(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		n := 7 + rng.IntN(10)
		dim := 1 + rng.IntN(40)
		us := make([]Update, n)
		for i := range us {
			d := make([]float32, dim)
			for j := range d {
				d[j] = float32(rng.IntN(5) - 2)
			}
			us[i] = Update{Client: fmt.Sprintf("c%d", i), Delta: d, Weight: float64(1 + rng.IntN(3))}
		}
		f := (n - 3) / 4
		checks := []struct {
			rule Rule
			want []float32
		}{
			{Median{}, naiveMedian(us, dim)},
			{TrimmedMean{Beta: 0.25}, naiveTrimmed(us, dim, 0.25)},
			{Krum{F: f}, naiveMultiKrum(us, dim, f, 1)},
			{MultiKrum{F: f, M: 3}, naiveMultiKrum(us, dim, f, 3)},
			{Bulyan{F: f}, naiveBulyan(us, dim, f)},
		}
		for _, c := range checks {
			got := make([]float32, dim)
			if err := c.rule.Combine(got, us); err != nil {
				t.Fatal(err)
			}
			assertClose(t, fmt.Sprintf("%s seed=%d n=%d", c.rule.Name(), seed, n), got, c.want, 1e-6)
		}
	}
}
