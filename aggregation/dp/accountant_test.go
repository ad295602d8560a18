package dp

import (
	"math"
	"strings"
	"testing"
)

func TestDefaultOrders(t *testing.T) {
	o := DefaultOrders()
	if len(o) != 99+52 || o[0] != 1.1 || o[98] != 10.9 || o[99] != 12 || o[len(o)-1] != 63 {
		t.Fatalf("DefaultOrders = %v", o)
	}
	o[0] = 99
	if DefaultOrders()[0] != 1.1 {
		t.Fatal("DefaultOrders shares its slice between calls")
	}
}

func TestAccountantComposesAndMerges(t *testing.T) {
	var a Accountant
	for range 5 {
		if err := a.Step(0.02, 1.3, 1); err != nil {
			t.Fatal(err)
		}
	}
	a.Step(0.05, 0.9, 3)
	a.Step(0.05, 0.9, 0)
	a.Step(0.02, 1.3, 2)
	h := a.History()
	want := []Entry{{0.02, 1.3, 5}, {0.05, 0.9, 3}, {0.02, 1.3, 2}}
	if len(h) != len(want) {
		t.Fatalf("history %v, want %v", h, want)
	}
	for i := range want {
		if h[i] != want[i] {
			t.Fatalf("history %v, want %v", h, want)
		}
	}
	if a.TotalSteps() != 10 {
		t.Fatalf("TotalSteps = %d, want 10", a.TotalSteps())
	}
	// RDP of the history is the sum of one-step RDPs (Mironov 2017, Prop. 1).
	orders := []float64{1.5, 2, 8.5, 32}
	got := a.RDP(orders)
	one1 := ComputeRDP(0.02, 1.3, 1, orders)
	one2 := ComputeRDP(0.05, 0.9, 1, orders)
	for i := range orders {
		want := 7*one1[i] + 3*one2[i]
		if !relClose(got[i], want, 1e-12) {
			t.Errorf("order %v: rdp %v, want %v", orders[i], got[i], want)
		}
	}
	// More steps never buy back privacy.
	e1, _, err := a.Epsilon(1e-5, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Step(0.02, 1.3, 1)
	e2, _, _ := a.Epsilon(1e-5, nil)
	if !(e2 > e1) {
		t.Fatalf("epsilon went from %v to %v after one more step", e1, e2)
	}
}

func TestAccountantPoisonedByInvalidStep(t *testing.T) {
	var a Accountant
	a.Step(0.1, 1, 10)
	err := a.Step(0.1, -1, 1) // error deliberately ignored by the caller
	if err == nil || !strings.Contains(err.Error(), "sigma") || !strings.Contains(err.Error(), "step entry 1") {
		t.Fatalf("Step error = %v", err)
	}
	a.Step(0.1, 1, 1)
	if a.Err() == nil {
		t.Fatal("Err() = nil after an invalid Step")
	}
	if _, _, err := a.Epsilon(1e-5, nil); err == nil || !strings.Contains(err.Error(), "sigma") {
		t.Fatalf("Epsilon error = %v, want the remembered sigma error", err)
	}
	for _, r := range a.RDP(nil) {
		if !math.IsInf(r, 1) {
			t.Fatalf("poisoned accountant reported rdp %v, want +Inf", r)
		}
	}
	var b Accountant
	if r := b.RDP([]float64{0.5, 2}); !math.IsInf(r[0], 1) || !math.IsInf(r[1], 1) {
		t.Fatalf("invalid orders gave rdp %v, want +Inf", r)
	}
	if _, _, err := b.Epsilon(1e-5, []float64{3, 1}); err == nil || !strings.Contains(err.Error(), "order 1 must be > 1") {
		t.Fatalf("Epsilon with order 1: error %v", err)
	}
}

func TestEmptyAccountant(t *testing.T) {
	var a Accountant
	eps, _, err := a.Epsilon(1e-5, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Zero RDP still pays the conversion's δ-dependent term at finite
	// orders, but never a negative ε.
	if eps < 0 || eps > 0.2 {
		t.Fatalf("empty accountant: eps = %v", eps)
	}
}

// epsAfter is the plain computation MaxSteps must agree with.
func epsAfter(t *testing.T, q, sigma float64, steps int, delta float64) float64 {
	t.Helper()
	var a Accountant
	if err := a.Step(q, sigma, steps); err != nil {
		t.Fatal(err)
	}
	e, _, err := a.Epsilon(delta, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestMaxStepsIsTheLargestWithinBudget(t *testing.T) {
	cases := []struct{ q, sigma, eps, delta float64 }{
		{0.01, 1.1, 2, 1e-5},
		{0.1, 1.0, 3, 1e-5},
		{1, 5, 3, 1e-6},
		{0.004, 0.8, 8, 1e-5},
	}
	for _, c := range cases {
		n, err := MaxSteps(c.q, c.sigma, c.eps, c.delta, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n < 1 {
			t.Fatalf("%+v: MaxSteps = %d", c, n)
		}
		if e := epsAfter(t, c.q, c.sigma, n, c.delta); e > c.eps {
			t.Errorf("%+v: eps after %d steps = %v > target", c, n, e)
		}
		if e := epsAfter(t, c.q, c.sigma, n+1, c.delta); e <= c.eps {
			t.Errorf("%+v: eps after %d steps = %v still within target", c, n+1, e)
		}
		if r := RoundsForBudget(c.q, c.sigma, c.eps, c.delta, nil); r != n {
			t.Errorf("RoundsForBudget = %d, MaxSteps = %d", r, n)
		}
	}
	// A linear scan agrees on a small case.
	n, _ := MaxSteps(0.5, 2, 1.5, 1e-5, nil)
	scan := 0
	for epsAfter(t, 0.5, 2, scan+1, 1e-5) <= 1.5 {
		scan++
	}
	if n != scan {
		t.Fatalf("MaxSteps = %d, linear scan = %d", n, scan)
	}
	// Budget smaller than one step; a zero sampling rate never spends.
	if n, _ := MaxSteps(1, 0.5, 0.1, 1e-5, nil); n != 0 {
		t.Fatalf("one step over budget: MaxSteps = %d, want 0", n)
	}
	if n, _ := MaxSteps(0, 0.5, 1, 1e-5, nil); n != math.MaxInt {
		t.Fatalf("q=0: MaxSteps = %d, want MaxInt", n)
	}
}
