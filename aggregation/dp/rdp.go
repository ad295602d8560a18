package dp

import (
	"errors"
	"fmt"
	"math"
)

// This file computes the Rényi differential privacy (Mironov 2017) of the
// sampled Gaussian mechanism (SGM): each record (here: each client) is
// included independently with probability q, the included contributions are
// clipped to L2 norm C and summed, and N(0, σ²C²) noise is added.
//
// For 0 < q < 1 the RDP at order α is log(A_α)/(α-1) with
//
//	A_α = E_{z~μ0} [ ((1-q) + q·exp((2z-1)/(2σ²)))^α ],  μ0 = N(0, σ²),
//
// (Mironov, Talwar, Zhang 2019, §3.3). For integer α the binomial expansion
// gives the finite sum
//
//	A_α = Σ_{i=0..α} C(α,i) (1-q)^{α-i} q^i exp((i²-i)/(2σ²)),
//
// and for fractional α the integral is split at z0 = σ² log(1/q - 1) + 1/2,
// where the two mixture components cross, and each half is expanded as a
// binomial series whose terms involve erfc (§3.3 of the same paper). This is
// the computation TF Privacy's rdp_accountant and Opacus'
// accountants/analysis/rdp.py perform; it is rewritten here in Go with every
// sum kept in log space.

// DefaultOrders returns the Rényi orders the accountant uses when none are
// given: 1.1, 1.2, …, 10.9 and 12, 13, …, 63 — the defaults of Opacus'
// RDPAccountant. A fresh slice is returned on each call.
func DefaultOrders() []float64 {
	orders := make([]float64, 0, 99+52)
	for x := 1; x <= 99; x++ {
		orders = append(orders, 1+float64(x)/10)
	}
	for a := 12; a <= 63; a++ {
		orders = append(orders, float64(a))
	}
	return orders
}

// validateSGM checks the parameters of the sampled Gaussian mechanism and
// names the one that is out of range.
func validateSGM(q, sigma float64, steps int) error {
	if math.IsNaN(q) || q < 0 || q > 1 {
		return fmt.Errorf("dp: sampling rate q must be in [0, 1], got %v", q)
	}
	if math.IsNaN(sigma) || math.IsInf(sigma, 0) || sigma <= 0 {
		return fmt.Errorf("dp: noise multiplier sigma must be finite and > 0, got %v", sigma)
	}
	if steps < 0 {
		return fmt.Errorf("dp: steps must be >= 0, got %d", steps)
	}
	return nil
}

// validateOrders checks that every Rényi order is > 1 (+Inf is allowed).
func validateOrders(orders []float64) error {
	if len(orders) == 0 {
		return errors.New("dp: orders must not be empty")
	}
	for i, a := range orders {
		if math.IsNaN(a) || a <= 1 {
			return fmt.Errorf("dp: order %d must be > 1, got %v", i, a)
		}
	}
	return nil
}

// SampledGaussianRDP returns the RDP of the sampled Gaussian mechanism with
// sampling rate q and noise multiplier sigma, composed over steps
// applications (RDP adds up under composition, Mironov 2017 Proposition 1),
// at each of the given orders. Orders may be fractional; +Inf gives +Inf
// (unless q = 0).
//
// Special cases: q = 0 gives 0 at every order; q = 1 gives the plain
// Gaussian mechanism α/(2σ²) (Mironov 2017, Proposition 7). It returns an
// error naming the parameter when q ∉ [0, 1], σ ≤ 0 or not finite, steps < 0,
// or an order ≤ 1 or NaN, and an error naming the order if the series fails
// numerically.
func SampledGaussianRDP(q, sigma float64, steps int, orders []float64) ([]float64, error) {
	if err := validateSGM(q, sigma, steps); err != nil {
		return nil, err
	}
	if err := validateOrders(orders); err != nil {
		return nil, err
	}
	out := make([]float64, len(orders))
	for i, a := range orders {
		r, err := rdpOne(q, sigma, a)
		if err != nil {
			return nil, err
		}
		if steps == 0 {
			out[i] = 0
			continue
		}
		out[i] = r * float64(steps)
	}
	return out, nil
}

// ComputeRDP is SampledGaussianRDP without the error: on invalid input it
// returns +Inf at every order ("no guarantee"), the conservative answer, so
// that a mistake can never make a mechanism look more private than it is.
// Use SampledGaussianRDP to learn what was wrong.
func ComputeRDP(q, sigma float64, steps int, orders []float64) []float64 {
	r, err := SampledGaussianRDP(q, sigma, steps, orders)
	if err != nil {
		return infVector(len(orders))
	}
	return r
}

func infVector(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Inf(1)
	}
	return out
}

// rdpOne is the RDP of one application of the SGM at order a. The
// parameters have been validated.
func rdpOne(q, sigma, a float64) (float64, error) {
	switch {
	case q == 0:
		return 0, nil
	case math.IsInf(a, 1):
		return math.Inf(1), nil
	case q == 1:
		return a / (2 * sigma * sigma), nil
	}
	var logA float64
	var err error
	if a == math.Trunc(a) && a <= 1<<20 {
		logA = logAInt(q, sigma, int(a))
	} else {
		logA, err = logAFrac(q, sigma, a)
		if err != nil {
			return 0, err
		}
	}
	r := logA / (a - 1)
	// A_α ≥ 1 mathematically; rounding may give a value a hair below.
	if r < 0 {
		r = 0
	}
	return r, nil
}

// logAInt is log(A_α) for integer α ≥ 2 and 0 < q < 1 by the binomial
// expansion (Mironov, Talwar, Zhang 2019, §3.3, Eq. for integer α).
func logAInt(q, sigma float64, alpha int) float64 {
	logQ := math.Log(q)
	log1mQ := math.Log1p(-q)
	twoS2 := 2 * sigma * sigma
	a := float64(alpha)
	logA := math.Inf(-1)
	logBinom := 0.0 // log C(α, 0)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		if i > 0 {
			logBinom += math.Log((a - fi + 1) / fi)
		}
		s := logBinom + fi*logQ + (a-fi)*log1mQ + (fi*fi-fi)/twoS2
		logA = logAdd(logA, s)
	}
	return logA
}

// maxFracTerms bounds the fractional-order series; it converges long
// before this for any parameters of practical interest.
const maxFracTerms = 1 << 20

// logAFrac is log(A_α) for fractional α > 1 and 0 < q < 1: the integral
// split at z0 into two binomial series in erfc (Mironov, Talwar, Zhang 2019,
// §3.3), summed until both terms fall below e^-30.
//
// The binomial coefficients C(α, i) change sign for i > α+1, so the exact
// sum subtracts terms. Alongside it the sum of absolute values is kept: it
// bounds A_α from above (the choice dp_accounting ≥ 0.4.4 makes throughout)
// and is returned instead if the signed sum loses its precision, so the
// result is exact where it can be and never an under-estimate.
func logAFrac(q, sigma, alpha float64) (float64, error) {
	logQ := math.Log(q)
	log1mQ := math.Log1p(-q)
	s2 := sigma * sigma
	z0 := s2*math.Log(1/q-1) + 0.5
	sqrt2S := math.Sqrt2 * sigma

	logA0, logA1 := math.Inf(-1), math.Inf(-1)     // signed sums
	logAbs0, logAbs1 := math.Inf(-1), math.Inf(-1) // sums of |terms|
	signedOK := true
	logBinom := 0.0 // log |C(α, i)|
	positive := true
	for i := 0; i < maxFracTerms; i++ {
		fi := float64(i)
		if i > 0 {
			f := (alpha - fi + 1) / fi
			if f < 0 {
				positive = !positive
			}
			logBinom += math.Log(math.Abs(f))
		}
		j := alpha - fi
		logT0 := logBinom + fi*logQ + j*log1mQ
		logT1 := logBinom + j*logQ + fi*log1mQ
		logE0 := math.Log(0.5) + logErfc((fi-z0)/sqrt2S)
		logE1 := math.Log(0.5) + logErfc((z0-j)/sqrt2S)
		logS0 := logT0 + (fi*fi-fi)/(2*s2) + logE0
		logS1 := logT1 + (j*j-j)/(2*s2) + logE1
		if math.IsNaN(logS0) || math.IsNaN(logS1) {
			return 0, fmt.Errorf("dp: RDP series at order %v (q=%v, sigma=%v) produced NaN", alpha, q, sigma)
		}
		logAbs0 = logAdd(logAbs0, logS0)
		logAbs1 = logAdd(logAbs1, logS1)
		if signedOK {
			if positive {
				logA0 = logAdd(logA0, logS0)
				logA1 = logAdd(logA1, logS1)
			} else {
				var ok0, ok1 bool
				logA0, ok0 = logSub(logA0, logS0)
				logA1, ok1 = logSub(logA1, logS1)
				signedOK = ok0 && ok1
			}
		}
		if math.Max(logS0, logS1) < -30 {
			if signedOK {
				return logAdd(logA0, logA1), nil
			}
			return logAdd(logAbs0, logAbs1), nil
		}
	}
	return 0, fmt.Errorf("dp: RDP series at order %v (q=%v, sigma=%v) did not converge in %d terms", alpha, q, sigma, maxFracTerms)
}

// logAdd returns log(e^x + e^y).
func logAdd(x, y float64) float64 {
	a, b := math.Min(x, y), math.Max(x, y)
	if math.IsInf(a, -1) {
		return b
	}
	return math.Log1p(math.Exp(a-b)) + b
}

// logSub returns log(e^x - e^y) for x ≥ y; ok is false when x < y.
func logSub(x, y float64) (float64, bool) {
	switch {
	case x < y:
		return 0, false
	case math.IsInf(y, -1):
		return x, true
	case x == y:
		return math.Inf(-1), true
	}
	return math.Log(-math.Expm1(y-x)) + x, true
}

// logErfc returns log(erfc(x)), accurate also where erfc(x) underflows.
func logErfc(x float64) float64 {
	if x < 25 {
		return math.Log(math.Erfc(x))
	}
	// Asymptotic (Laurent) series of log(erfc(x)) + x² + log(x√π) at +∞
	// (Abramowitz & Stegun 7.1.23); at x ≥ 25 the omitted terms are far
	// below float64 precision.
	x2 := x * x
	return -x2 - math.Log(x) - 0.5*math.Log(math.Pi) -
		0.5/x2 + 0.625/(x2*x2) - 37.0/24.0/(x2*x2*x2) + 353.0/64.0/(x2*x2*x2*x2)
}
