package aggregation

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randomUpdates returns n updates of dim values drawn from N(0,1) with
// weights in [0.5, 100), from the given seed.
func randomUpdates(seed uint64, n, dim int) []Update {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	us := make([]Update, n)
	for i := range us {
		d := make([]float32, dim)
		for j := range d {
			d[j] = float32(rng.NormFloat64())
		}
		us[i] = Update{Client: fmt.Sprintf("c%02d", i), Delta: d, Weight: 0.5 + 99.5*rng.Float64()}
	}
	return us
}

// cloneUpdates deep-copies updates.
func cloneUpdates(us []Update) []Update {
	out := make([]Update, len(us))
	for i, u := range us {
		out[i] = Update{Client: u.Client, Delta: append([]float32(nil), u.Delta...), Weight: u.Weight}
	}
	return out
}

// assertClose fails unless got and want agree within rel·max(1,|want|) per
// coordinate.
func assertClose(t *testing.T, what string, got, want []float32, rel float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	for j := range want {
		g, w := float64(got[j]), float64(want[j])
		if math.IsNaN(g) || math.Abs(g-w) > rel*math.Max(1, math.Abs(w)) {
			t.Fatalf("%s: [%d] = %v, want %v (tolerance %g)", what, j, g, w, rel)
		}
	}
}

// assertSameUpdates fails unless a and b hold identical updates.
func assertSameUpdates(t *testing.T, a, b []Update) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("updates changed length: %d vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Client != b[i].Client || math.Float64bits(a[i].Weight) != math.Float64bits(b[i].Weight) || len(a[i].Delta) != len(b[i].Delta) {
			t.Fatalf("update %d changed: %+v vs %+v", i, a[i].Client, b[i].Client)
		}
		for j := range a[i].Delta {
			if math.Float32bits(a[i].Delta[j]) != math.Float32bits(b[i].Delta[j]) {
				t.Fatalf("update %d delta[%d] changed: %v vs %v", i, j, a[i].Delta[j], b[i].Delta[j])
			}
		}
	}
}
