package main

import (
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/coordinator"
)

// The plan's ε is the accountant's after each round at q = 1 (what the
// coordinator announces and each worker charges), rising, and the study's
// own budget allows exactly the rounds whose ε stays within it.
func TestStudyPlanEpsilon(t *testing.T) {
	c := coordinator.DefaultConfig()
	c.Rounds, c.DP = 12, coordinator.DPParams{Clip: 1, Noise: 1.5}
	c.MaxEpsilon = 10
	p, err := planOf(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Epsilon) != 12 {
		t.Fatalf("%d ε values for 12 rounds", len(p.Epsilon))
	}
	a := &dp.Accountant{}
	for r, e := range p.Epsilon {
		a.Step(1, 1.5, 1)
		want, _, _ := a.Epsilon(c.Delta, nil)
		if e != want || (r > 0 && !(e > p.Epsilon[r-1])) {
			t.Fatalf("round %d: ε %v, accountant %v (previous %v)", r+1, e, want, p.Epsilon[max(0, r-1)])
		}
	}
	n := 0
	for _, e := range p.Epsilon {
		if e <= 10 {
			n++
		}
	}
	if p.BudgetRounds != n || n == 0 || n == 12 {
		t.Fatalf("budget allows %d rounds, ε stays within 10 for %d", p.BudgetRounds, n)
	}
}
