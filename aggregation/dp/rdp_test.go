package dp

import (
	"math"
	"strings"
	"testing"
)

// relClose reports whether got is within rel relative error of want.
func relClose(got, want, rel float64) bool {
	if math.IsInf(want, 1) {
		return math.IsInf(got, 1)
	}
	return math.Abs(got-want) <= rel*math.Abs(want)
}

func intOrders(lo, hi int) []float64 {
	var o []float64
	for a := lo; a <= hi; a++ {
		o = append(o, float64(a))
	}
	return o
}

// TestOpacusDoctest reproduces the example in the docstring of Opacus'
// opacus/accountants/analysis/rdp.py: (q=1e-5, σ=1, 10 steps) then
// (q=1e-4, σ=3, 4 steps), δ=1e-5, orders 2..32 → ε ≈ 0.336 at order 23.
// Opacus' get_privacy_spent uses the Balle et al. 2020 conversion, and so
// does this value; the classic Mironov conversion gives a larger ε.
func TestOpacusDoctest(t *testing.T) {
	var a Accountant
	if err := a.Step(1e-5, 1.0, 10); err != nil {
		t.Fatal(err)
	}
	if err := a.Step(1e-4, 3.0, 4); err != nil {
		t.Fatal(err)
	}
	orders := intOrders(2, 32)
	eps, order, err := a.Epsilon(1e-5, orders)
	if err != nil {
		t.Fatal(err)
	}
	if math.Round(eps*1000)/1000 != 0.336 || order != 23 {
		t.Fatalf("Balle conversion: got eps=%v at order %v, want 0.336 at 23", eps, order)
	}
	classic, corder, err := a.EpsilonWith(1e-5, orders, ConversionMironov)
	if err != nil {
		t.Fatal(err)
	}
	// The classic bound, recomputed by hand from the RDP curve.
	rdp := a.RDP(orders)
	want := math.Inf(1)
	for i, o := range orders {
		want = math.Min(want, rdp[i]-math.Log(1e-5)/(o-1))
	}
	if !relClose(classic, want, 1e-12) || classic <= eps {
		t.Fatalf("Mironov conversion: got %v at %v, want %v (> Balle %v)", classic, corder, want, eps)
	}
}

// TestGaussianEpsilonOne reproduces Google dp_accounting's
// test_compute_epsilon_delta_gaussian: the full-batch Gaussian mechanism
// with σ = 4.530877117, chosen by the analytic Gaussian mechanism (Balle and
// Wang 2018) to be exactly (1, 1e-6)-DP, converts with the Balle et al. 2020
// bound over orders 1.000..99.999 to ε = 1.
func TestGaussianEpsilonOne(t *testing.T) {
	var fine []float64
	for i := 1001; i < 100000; i++ {
		fine = append(fine, 0.001*float64(i))
	}
	rdp, err := SampledGaussianRDP(1, 4.530877117, 1, fine)
	if err != nil {
		t.Fatal(err)
	}
	eps, _, err := EpsilonFromRDP(fine, rdp, 1e-6, ConversionBalle)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(eps-1) > 1e-6 {
		t.Fatalf("eps = %v, want 1", eps)
	}
	classic, _, _ := EpsilonFromRDP(fine, rdp, 1e-6, ConversionMironov)
	if classic < 1.1 {
		t.Fatalf("classic conversion gave %v; expected it to be looser than 1", classic)
	}
	// With the coarser default orders ε can only be larger, and not by much.
	var a Accountant
	a.Step(1, 4.530877117, 1)
	def, _, err := a.Epsilon(1e-6, nil)
	if err != nil {
		t.Fatal(err)
	}
	if def < eps || def > 1.01 {
		t.Fatalf("default orders: eps = %v, want in [%v, 1.01]", def, eps)
	}
}

// TestTFPrivacySequence reproduces TF Privacy's test_compute_rdp_sequence
// (also dp_accounting 0.4.3): q=0.01, σ=2.5, 50 steps.
func TestTFPrivacySequence(t *testing.T) {
	orders := []float64{1.5, 2.5, 5, 50, 100, math.Inf(1)}
	want := []float64{6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02, 1.6742e+02, math.Inf(1)}
	got, err := SampledGaussianRDP(0.01, 2.5, 50, orders)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !relClose(got[i], want[i], 1e-4) {
			t.Errorf("order %v: rdp = %v, want %v", orders[i], got[i], want[i])
		}
	}
}

// TestPureDPConversion reproduces dp_accounting's
// test_compute_epsilon_delta_pure_dp: constant RDP 1.1 over orders 2..32.
func TestPureDPConversion(t *testing.T) {
	orders := intOrders(2, 32)
	rdp := make([]float64, len(orders))
	for i := range rdp {
		rdp[i] = 1.1
	}
	eps, order, err := EpsilonFromRDP(orders, rdp, 1e-5, ConversionBalle)
	if err != nil {
		t.Fatal(err)
	}
	if !relClose(eps, 1.32783806176, 1e-10) || order != 32 {
		t.Fatalf("got %v at %v, want 1.32783806176 at 32", eps, order)
	}
}

func TestFullBatchIsGaussian(t *testing.T) {
	orders := []float64{1.01, 1.5, 2, 2.5, 7, 31.3, 64, 1000}
	for _, sigma := range []float64{0.3, 1, 4.2} {
		one, err := SampledGaussianRDP(1, sigma, 1, orders)
		if err != nil {
			t.Fatal(err)
		}
		three, err := SampledGaussianRDP(1, sigma, 3, orders)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range orders {
			if want := a / (2 * sigma * sigma); one[i] != want {
				t.Errorf("σ=%v α=%v: rdp = %v, want exactly %v", sigma, a, one[i], want)
			}
			if want := 3 * a / (2 * sigma * sigma); !relClose(three[i], want, 1e-15) {
				t.Errorf("σ=%v α=%v, 3 steps: rdp = %v, want %v", sigma, a, three[i], want)
			}
		}
	}
}

func TestZeroRateAndZeroSteps(t *testing.T) {
	orders := append(DefaultOrders(), math.Inf(1))
	for _, r := range ComputeRDP(0, 0.5, 1000, orders) {
		if r != 0 {
			t.Fatalf("q=0 gave rdp %v, want 0", r)
		}
	}
	for _, r := range ComputeRDP(0.3, 0.5, 0, DefaultOrders()) {
		if r != 0 {
			t.Fatalf("0 steps gave rdp %v, want 0", r)
		}
	}
}

// logANumeric integrates A_α = E_{z~N(0,σ²)}[((1-q) + q e^{(2z-1)/(2σ²)})^α]
// by Simpson's rule in log space: the plain definition the series must match
// (Mironov, Talwar, Zhang 2019, §3.3).
func logANumeric(q, sigma, alpha float64) float64 {
	lo, hi := -30*sigma, alpha+30*sigma
	const n = 400000 // even
	h := (hi - lo) / n
	logf := func(z float64) float64 {
		logPdf := -z*z/(2*sigma*sigma) - math.Log(sigma*math.Sqrt(2*math.Pi))
		return logPdf + alpha*logAdd(math.Log1p(-q), math.Log(q)+(2*z-1)/(2*sigma*sigma))
	}
	vals := make([]float64, n+1)
	m := math.Inf(-1)
	for i := range vals {
		vals[i] = logf(lo + float64(i)*h)
		m = math.Max(m, vals[i])
	}
	var s float64
	for i, v := range vals {
		w := 2.0
		switch {
		case i == 0 || i == n:
			w = 1
		case i%2 == 1:
			w = 4
		}
		s += w * math.Exp(v-m)
	}
	return m + math.Log(s*h/3)
}

func TestSeriesMatchesIntegral(t *testing.T) {
	cases := []struct{ q, sigma, alpha float64 }{
		{1e-4, 1, 1.5},
		{1e-3, 1, 2},
		{1e-6, 1, 27},
		{0.01, 10, 20},
		{0.1, 100, 20.5},
		{0.3, 2, 3.7},
		{0.05, 0.8, 6.25},
		{0.9, 3, 2.2},
		{0.01, 2.5, 1.5},
	}
	for _, c := range cases {
		var got float64
		if c.alpha == math.Trunc(c.alpha) {
			got = logAInt(c.q, c.sigma, int(c.alpha))
		} else {
			var err error
			got, err = logAFrac(c.q, c.sigma, c.alpha)
			if err != nil {
				t.Fatal(err)
			}
		}
		want := logANumeric(c.q, c.sigma, c.alpha)
		// Simpson's rule sums terms near 1, so its absolute error is ~1e-13.
		if math.Abs(got-want) > 1e-12+1e-6*math.Abs(want) {
			t.Errorf("q=%v σ=%v α=%v: log A = %v, integral gives %v", c.q, c.sigma, c.alpha, got, want)
		}
	}
}

// TestFractionalMatchesIntegerNeighbours checks that the two series agree:
// the fractional one just off an integer order tends to the binomial sum
// there, and the RDP curve is nondecreasing in the order (Mironov 2017,
// Proposition 9) across fractional and integer orders alike.
func TestFractionalMatchesIntegerNeighbours(t *testing.T) {
	for _, p := range []struct{ q, sigma float64 }{{0.01, 1.1}, {0.2, 2}, {1e-3, 0.7}} {
		for _, k := range []float64{2, 3, 5, 10, 20} {
			intR, err := SampledGaussianRDP(p.q, p.sigma, 1, []float64{k})
			if err != nil {
				t.Fatal(err)
			}
			near, err := SampledGaussianRDP(p.q, p.sigma, 1, []float64{k - 1e-7, k + 1e-7})
			if err != nil {
				t.Fatal(err)
			}
			if !relClose(near[0], intR[0], 1e-4) || !relClose(near[1], intR[0], 1e-4) {
				t.Errorf("q=%v σ=%v: rdp(%v±1e-7) = %v, %v; rdp(%v) = %v", p.q, p.sigma, k, near[0], near[1], k, intR[0])
			}
			if !(near[0] <= intR[0]*(1+1e-9) && intR[0] <= near[1]*(1+1e-9)) {
				t.Errorf("q=%v σ=%v: not monotone around %v: %v %v %v", p.q, p.sigma, k, near[0], intR[0], near[1])
			}
		}
		orders := DefaultOrders()
		r, err := SampledGaussianRDP(p.q, p.sigma, 1, orders)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(r); i++ {
			if r[i] < r[i-1]*(1-1e-9) {
				t.Errorf("q=%v σ=%v: rdp(%v)=%v < rdp(%v)=%v", p.q, p.sigma, orders[i], r[i], orders[i-1], r[i-1])
			}
		}
	}
}

func TestInvalidInputsNameTheParameter(t *testing.T) {
	good := []float64{2, 3}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"q<0", errOf(SampledGaussianRDP(-0.1, 1, 1, good)), "q must be in [0, 1]"},
		{"q>1", errOf(SampledGaussianRDP(1.5, 1, 1, good)), "q must be in [0, 1]"},
		{"q NaN", errOf(SampledGaussianRDP(math.NaN(), 1, 1, good)), "q must be in [0, 1]"},
		{"sigma 0", errOf(SampledGaussianRDP(0.1, 0, 1, good)), "sigma must be finite and > 0"},
		{"sigma<0", errOf(SampledGaussianRDP(0.1, -2, 1, good)), "sigma must be finite and > 0"},
		{"sigma Inf", errOf(SampledGaussianRDP(0.1, math.Inf(1), 1, good)), "sigma must be finite and > 0"},
		{"steps<0", errOf(SampledGaussianRDP(0.1, 1, -1, good)), "steps must be >= 0"},
		{"order 1", errOf(SampledGaussianRDP(0.1, 1, 1, []float64{2, 1})), "order 1 must be > 1"},
		{"order 0.5", errOf(SampledGaussianRDP(0.1, 1, 1, []float64{0.5})), "order 0 must be > 1"},
		{"order NaN", errOf(SampledGaussianRDP(0.1, 1, 1, []float64{math.NaN()})), "must be > 1"},
		{"no orders", errOf(SampledGaussianRDP(0.1, 1, 1, nil)), "orders must not be empty"},
		{"delta 0", errOf3(EpsilonFromRDP(good, []float64{1, 1}, 0, ConversionBalle)), "delta must be in (0, 1)"},
		{"delta 1", errOf3(EpsilonFromRDP(good, []float64{1, 1}, 1, ConversionBalle)), "delta must be in (0, 1)"},
		{"delta NaN", errOf3(EpsilonFromRDP(good, []float64{1, 1}, math.NaN(), ConversionBalle)), "delta must be in (0, 1)"},
		{"rdp length", errOf3(EpsilonFromRDP(good, []float64{1}, 1e-5, ConversionBalle)), "rdp has 1 values for 2 orders"},
		{"rdp negative", errOf3(EpsilonFromRDP(good, []float64{1, -1}, 1e-5, ConversionBalle)), "rdp at order 3 must be >= 0"},
		{"conversion", errOf3(EpsilonFromRDP(good, []float64{1, 1}, 1e-5, Conversion(7))), "unknown conversion 7"},
		{"target eps", errOf(MaxSteps(0.1, 1, 0, 1e-5, nil)), "target epsilon must be finite and > 0"},
		{"maxsteps delta", errOf(MaxSteps(0.1, 1, 1, 2, nil)), "delta must be in (0, 1)"},
		{"maxsteps q", errOf(MaxSteps(2, 1, 1, 1e-5, nil)), "q must be in [0, 1]"},
	}
	for _, c := range cases {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}
	// The error-free forms answer conservatively.
	for _, r := range ComputeRDP(0.1, -1, 1, good) {
		if !math.IsInf(r, 1) {
			t.Fatalf("ComputeRDP on invalid sigma gave %v, want +Inf", r)
		}
	}
	if n := RoundsForBudget(0.1, 1, -1, 1e-5, nil); n != 0 {
		t.Fatalf("RoundsForBudget on invalid target gave %d, want 0", n)
	}
}

func errOf[T any](_ T, err error) error { return err }

func errOf3[A, B any](_ A, _ B, err error) error { return err }
