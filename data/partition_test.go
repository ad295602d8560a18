package data

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// synthetic returns n rows with labels i mod classes (feature = row index).
func synthetic(n, classes int) *Dataset {
	d := &Dataset{Name: "syn", N: n, Dim: 1, Classes: classes, C: 1, H: 1, W: 1}
	for i := range n {
		d.X = append(d.X, float32(i))
		d.Y = append(d.Y, int32(i%classes))
	}
	return d
}

func digitsTrain(t testing.TB) *Dataset {
	t.Helper()
	tr, _, err := Digits()
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// checkCover fails unless every row index appears exactly once and every
// client has a non-empty train split and the documented test size.
func checkCover(t *testing.T, d *Dataset, cs []Client, testFrac float64) {
	t.Helper()
	seen := make([]int, d.N)
	for i, c := range cs {
		if c.ID != i {
			t.Fatalf("client %d has ID %d", i, c.ID)
		}
		if len(c.Train) == 0 {
			t.Fatalf("client %d has no train rows", i)
		}
		m := len(c.Train) + len(c.Test)
		if want := min(int(math.Round(testFrac*float64(m))), m-1); len(c.Test) != want {
			t.Errorf("client %d: %d test rows of %d, want %d", i, len(c.Test), m, want)
		}
		for _, ix := range append(slices.Clone(c.Train), c.Test...) {
			if ix < 0 || ix >= d.N {
				t.Fatalf("client %d: index %d outside [0, %d)", i, ix, d.N)
			}
			seen[ix]++
		}
	}
	for ix, k := range seen {
		if k != 1 {
			t.Fatalf("index %d used %d times", ix, k)
		}
	}
}

func labelsOf(d *Dataset, c Client) map[int32]int {
	m := map[int32]int{}
	for _, ix := range append(slices.Clone(c.Train), c.Test...) {
		m[d.Y[ix]]++
	}
	return m
}

func TestPartitionCoverAndDeterminism(t *testing.T) {
	d := digitsTrain(t)
	for _, spec := range []string{"iid", "shards:2", "shards:3", "dirichlet:0.1", "dirichlet:10", "quantity:0.5", "shards:1"} {
		for _, n := range []int{1, 3, 10, 37} {
			a, err := Partition(d, n, spec, 0.1, 7)
			if err != nil {
				t.Fatalf("%s n=%d: %v", spec, n, err)
			}
			if len(a) != n {
				t.Fatalf("%s: %d clients, want %d", spec, len(a), n)
			}
			checkCover(t, d, a, 0.1)
			b, _ := Partition(d, n, spec, 0.1, 7)
			c, _ := Partition(d, n, spec, 0.1, 8)
			same := func(x, y []Client) bool {
				for i := range x {
					if !slices.Equal(x[i].Train, y[i].Train) || !slices.Equal(x[i].Test, y[i].Test) {
						return false
					}
				}
				return true
			}
			if !same(a, b) {
				t.Errorf("%s n=%d: same seed gave different partitions", spec, n)
			}
			if same(a, c) {
				t.Errorf("%s n=%d: seeds 7 and 8 gave the same partition", spec, n)
			}
		}
	}
}

func TestPartitionIIDSizes(t *testing.T) {
	cs, err := Partition(synthetic(103, 3), 10, "iid", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if m := len(c.Train); m != 10 && m != 11 {
			t.Errorf("client %d has %d rows, want 10 or 11", c.ID, m)
		}
	}
}

func TestPartitionShardsLabelsPerClient(t *testing.T) {
	d := digitsTrain(t)
	for _, tc := range []struct{ n, k int }{{10, 1}, {10, 2}, {7, 3}, {50, 2}, {100, 5}} {
		cs, err := Partition(d, tc.n, fmt.Sprintf("shards:%d", tc.k), 0, 3)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := d.N, 0
		for _, c := range cs {
			if l := len(labelsOf(d, c)); l > tc.k {
				t.Errorf("n=%d K=%d: client %d has %d labels", tc.n, tc.k, c.ID, l)
			}
			lo, hi = min(lo, len(c.Train)), max(hi, len(c.Train))
		}
		// Shards are near-equal (one class may get one shard more than its share):
		// client sizes within 50% of each other.
		if float64(hi) > 1.5*float64(lo) {
			t.Errorf("n=%d K=%d: client sizes range %d..%d", tc.n, tc.k, lo, hi)
		}
	}
	// With one shard per client and 10 clients, each client holds exactly one class.
	cs, _ := Partition(d, 10, "shards:1", 0, 9)
	classes := map[int32]bool{}
	for _, c := range cs {
		for y := range labelsOf(d, c) {
			classes[y] = true
		}
	}
	if len(classes) != 10 {
		t.Errorf("shards:1 over 10 clients covers %d classes, want 10", len(classes))
	}
	// Fewer shards than classes: shards straddle labels, still a cover.
	cs, err := Partition(d, 2, "shards:2", 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkCover(t, d, cs, 0.2)
}

// dominantShare is the mean, over clients, of the share of the client's
// most frequent label.
func dominantShare(d *Dataset, cs []Client) float64 {
	s := 0.0
	for _, c := range cs {
		best, total := 0, 0
		for _, k := range labelsOf(d, c) {
			best = max(best, k)
			total += k
		}
		s += float64(best) / float64(total)
	}
	return s / float64(len(cs))
}

func TestPartitionDirichletSkew(t *testing.T) {
	d := digitsTrain(t)
	skewed, err := Partition(d, 10, "dirichlet:0.05", 0, 11)
	if err != nil {
		t.Fatal(err)
	}
	mild, _ := Partition(d, 10, "dirichlet:100", 0, 11)
	iid, _ := Partition(d, 10, "iid", 0, 11)
	s, m, i := dominantShare(d, skewed), dominantShare(d, mild), dominantShare(d, iid)
	if s < 0.6 {
		t.Errorf("dirichlet:0.05 dominant label share %.3f, want >= 0.6", s)
	}
	if m > 0.25 || i > 0.25 {
		t.Errorf("dirichlet:100 share %.3f, iid share %.3f, want both <= 0.25", m, i)
	}
	// Tiny alpha and many clients: empty clients are refilled.
	cs, err := Partition(d, 200, "dirichlet:0.001", 0.5, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkCover(t, d, cs, 0.5)
}

func TestPartitionQuantitySkew(t *testing.T) {
	d := digitsTrain(t)
	cs, err := Partition(d, 20, "quantity:0.3", 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	sizes := make([]float64, len(cs))
	mean := 0.0
	for i, c := range cs {
		sizes[i] = float64(len(c.Train))
		mean += sizes[i] / float64(len(cs))
	}
	v := 0.0
	for _, s := range sizes {
		v += (s - mean) * (s - mean) / float64(len(cs))
	}
	// Under Dir(alpha) over k clients Var(p_i) = (1/k)(1-1/k)/(k*alpha+1), so
	// the sizes' coefficient of variation is about sqrt((k-1)/(k*alpha+1)),
	// 1.65 for k = 20, alpha = 0.3; an iid split gives about 0.
	if cv := math.Sqrt(v) / mean; cv < 0.7 {
		t.Errorf("quantity:0.3 size coefficient of variation %.2f, want >= 0.7 (sizes %v)", cv, sizes)
	}
	// Labels stay iid: the largest client's label mix is close to the whole set's.
	big := cs[0]
	for _, c := range cs {
		if len(c.Train) > len(big.Train) {
			big = c
		}
	}
	if sh := dominantShare(d, []Client{big}); sh > 0.2 {
		t.Errorf("largest quantity client (%d rows) has dominant label share %.2f, want iid (~0.1)", len(big.Train), sh)
	}
}

func TestPartitionErrors(t *testing.T) {
	d := synthetic(20, 4)
	for _, tc := range []struct {
		n        int
		spec     string
		testFrac float64
		want     string
	}{
		{0, "iid", 0, "0 clients"},
		{21, "iid", 0, "21 clients but only 20 examples"},
		{5, "shards:5", 0, "25 shards but only 20 examples"},
		{5, "shards:0", 0, "shards per client"},
		{5, "shards:x", 0, "shards per client"},
		{5, "dirichlet:0", 0, "alpha"},
		{5, "dirichlet:-1", 0, "alpha"},
		{5, "quantity:NaN", 0, "alpha"},
		{5, "quantity:Inf", 0, "alpha"},
		{5, "iid:3", 0, "unknown partition"},
		{5, "random", 0, "unknown partition"},
		{5, "iid", 1, "test fraction"},
		{5, "iid", -0.1, "test fraction"},
		{5, "iid", math.NaN(), "test fraction"},
	} {
		_, err := Partition(d, tc.n, tc.spec, tc.testFrac, 1)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.spec) {
			t.Errorf("Partition(n=%d, %q, %v) = %v, want an error naming the spec and %q", tc.n, tc.spec, tc.testFrac, err, tc.want)
		}
		if strings.Contains(tc.want, "unknown") || strings.Contains(tc.want, "alpha") || strings.Contains(tc.want, "per client") {
			if !strings.Contains(err.Error(), "allowed forms") {
				t.Errorf("%q: error %v lacks the allowed forms", tc.spec, err)
			}
		}
	}
	bad := synthetic(5, 2)
	bad.Y[3] = 7
	if _, err := Partition(bad, 2, "iid", 0, 1); err == nil || !strings.Contains(err.Error(), "row 3") {
		t.Errorf("bad label: %v", err)
	}
	if _, err := Partition(nil, 2, "iid", 0, 1); err == nil {
		t.Error("nil dataset accepted")
	}
	if ParsePartitionSpec("dirichlet:0.5") != nil || ParsePartitionSpec("shards") == nil {
		t.Error("ParsePartitionSpec")
	}
}

// TestGammaMoments checks the Marsaglia-Tsang sampler against the Gamma(a, 1)
// mean a and variance a, with a 6-sigma tolerance on the sample mean.
func TestGammaMoments(t *testing.T) {
	rng := newRand(42, 1)
	const n = 200000
	for _, a := range []float64{0.1, 0.5, 1, 2.5, 30} {
		s, s2 := 0.0, 0.0
		for range n {
			g := math.Exp(logGamma(rng, a))
			s += g
			s2 += g * g
		}
		mean := s / n
		variance := s2/n - mean*mean
		if tol := 6 * math.Sqrt(a/n); math.Abs(mean-a) > tol {
			t.Errorf("a=%v: mean %v, want %v ± %v", a, mean, a, tol)
		}
		if math.Abs(variance-a)/a > 0.1 {
			t.Errorf("a=%v: variance %v, want %v within 10%%", a, variance, a)
		}
	}
	// Dirichlet draws sum to 1 and are finite even for extreme alpha.
	for _, alpha := range []float64{1e-300, 1e-6, 0.3, 1e6} {
		p := dirichlet(rng, alpha, 7)
		sum := 0.0
		for _, q := range p {
			if math.IsNaN(q) || q < 0 {
				t.Fatalf("alpha=%v: component %v", alpha, q)
			}
			sum += q
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Errorf("alpha=%v: components sum to %v", alpha, sum)
		}
	}
}

func TestApportion(t *testing.T) {
	for _, tc := range []struct {
		total int
		p     []float64
		want  []int
	}{
		{10, []float64{0.5, 0.5}, []int{5, 5}},
		{10, []float64{0.34, 0.33, 0.33}, []int{4, 3, 3}},
		{7, []float64{0.05, 0.9, 0.05}, []int{1, 6, 0}},
		{3, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}, []int{1, 1, 1}},
		{0, []float64{0.2, 0.8}, []int{0, 0}},
	} {
		if got := apportion(tc.total, tc.p); !slices.Equal(got, tc.want) {
			t.Errorf("apportion(%d, %v) = %v, want %v", tc.total, tc.p, got, tc.want)
		}
	}
}
