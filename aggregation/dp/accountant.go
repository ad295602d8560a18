package dp

import (
	"fmt"
	"math"
)

// Conversion names a way of turning an RDP curve into an (ε, δ) guarantee.
// The values are stable: do not renumber.
type Conversion int

const (
	// ConversionBalle is the conversion of Balle et al. 2020, Theorem 21
	// (also Canonne, Kamath, Steinke 2020, Proposition 12):
	//
	//	ε = rdp(α) + log((α-1)/α) - (log δ + log α)/(α-1),
	//
	// minimised over α. It is never worse than ConversionMironov and is
	// what Opacus' get_privacy_spent and Google's dp_accounting use.
	ConversionBalle Conversion = 0
	// ConversionMironov is the classic conversion of Mironov 2017,
	// Proposition 3: ε = rdp(α) - log(δ)/(α-1), minimised over α. TF
	// Privacy's original rdp_accountant and Opacus before v1.0 used it.
	ConversionMironov Conversion = 1
)

// String returns the conversion's name as the command line spells it.
func (c Conversion) String() string {
	switch c {
	case ConversionBalle:
		return "balle"
	case ConversionMironov:
		return "mironov"
	}
	return fmt.Sprintf("Conversion(%d)", int(c))
}

// EpsilonFromRDP converts the RDP values rdp, one per order, into the
// smallest ε for which the mechanism is (ε, δ)-DP under the chosen
// conversion, and returns the order attaining it. ε is never reported below
// 0. It returns an error naming the parameter when δ ∉ (0, 1), the slices
// differ in length or are empty, an order is ≤ 1 or NaN, an RDP value is
// negative or NaN, or the conversion is unknown. If every order gives +Inf
// the result is ε = +Inf with the first order.
func EpsilonFromRDP(orders, rdp []float64, delta float64, conv Conversion) (eps, bestOrder float64, err error) {
	if math.IsNaN(delta) || delta <= 0 || delta >= 1 {
		return 0, 0, fmt.Errorf("dp: delta must be in (0, 1), got %v", delta)
	}
	if err := validateOrders(orders); err != nil {
		return 0, 0, err
	}
	if len(rdp) != len(orders) {
		return 0, 0, fmt.Errorf("dp: rdp has %d values for %d orders", len(rdp), len(orders))
	}
	if conv != ConversionBalle && conv != ConversionMironov {
		return 0, 0, fmt.Errorf("dp: unknown conversion %d", int(conv))
	}
	logDelta := math.Log(delta)
	eps, bestOrder = math.Inf(1), orders[0]
	for i, a := range orders {
		r := rdp[i]
		if math.IsNaN(r) || r < 0 {
			return 0, 0, fmt.Errorf("dp: rdp at order %v must be >= 0, got %v", a, r)
		}
		if math.IsInf(a, 1) || math.IsInf(r, 1) {
			continue
		}
		var e float64
		switch conv {
		case ConversionBalle:
			e = r + math.Log1p(-1/a) - (logDelta+math.Log(a))/(a-1)
		case ConversionMironov:
			e = r - logDelta/(a-1)
		}
		if e < eps {
			eps, bestOrder = e, a
		}
	}
	if eps < 0 {
		eps = 0
	}
	return eps, bestOrder, nil
}

// Entry is one run of identical sampled-Gaussian steps in an Accountant's
// history.
type Entry struct {
	// Q is the sampling rate: the probability that a given client takes
	// part in a step.
	Q float64
	// Sigma is the noise multiplier: noise std over clipping bound.
	Sigma float64
	// Steps is how many times the mechanism ran with these parameters.
	Steps int
}

// Accountant tracks the privacy spent by a sequence of sampled Gaussian
// mechanisms (one per federated round) with Rényi DP: the RDP of the
// history is the sum of its entries' RDP (Mironov 2017, Proposition 1), and
// the (ε, δ) guarantee follows by ConversionBalle.
//
// The zero value is an empty accountant ready for use. An Accountant is not
// safe for concurrent use. Once Step has been given invalid parameters the
// accountant is poisoned: Err reports the first such call, RDP returns +Inf
// and Epsilon returns that error, so a forgotten error check can never
// under-count the privacy spent.
type Accountant struct {
	history []Entry
	err     error
}

// Step records that the sampled Gaussian mechanism with sampling rate q and
// noise multiplier sigma ran steps more times. Consecutive steps with the
// same q and sigma are merged into one Entry. It returns (and remembers) an
// error naming the parameter when q ∉ [0, 1], σ ≤ 0 or not finite, or
// steps < 0.
func (a *Accountant) Step(q, sigma float64, steps int) error {
	if err := validateSGM(q, sigma, steps); err != nil {
		err = fmt.Errorf("%w (step entry %d)", err, len(a.history))
		if a.err == nil {
			a.err = err
		}
		return err
	}
	if steps == 0 {
		return nil
	}
	if n := len(a.history); n > 0 && a.history[n-1].Q == q && a.history[n-1].Sigma == sigma {
		a.history[n-1].Steps += steps
		return nil
	}
	a.history = append(a.history, Entry{Q: q, Sigma: sigma, Steps: steps})
	return nil
}

// Err returns the first error Step reported, or nil.
func (a *Accountant) Err() error { return a.err }

// History returns a copy of the recorded entries, oldest first.
func (a *Accountant) History() []Entry { return append([]Entry(nil), a.history...) }

// TotalSteps returns the number of steps recorded.
func (a *Accountant) TotalSteps() int {
	n := 0
	for _, e := range a.history {
		n += e.Steps
	}
	return n
}

// RDP returns the RDP of the whole history at each order (DefaultOrders when
// orders is nil). Orders that are ≤ 1 or NaN, a poisoned accountant, or a
// numerical failure give +Inf: no guarantee is claimed where none was
// computed. Use RDPChecked to get the reason.
func (a *Accountant) RDP(orders []float64) []float64 {
	r, err := a.RDPChecked(orders)
	if err != nil {
		if orders == nil {
			orders = DefaultOrders()
		}
		return infVector(len(orders))
	}
	return r
}

// RDPChecked is RDP with an error naming what was wrong instead of +Inf.
func (a *Accountant) RDPChecked(orders []float64) ([]float64, error) {
	if a.err != nil {
		return nil, a.err
	}
	if orders == nil {
		orders = DefaultOrders()
	}
	if err := validateOrders(orders); err != nil {
		return nil, err
	}
	total := make([]float64, len(orders))
	for _, e := range a.history {
		r, err := SampledGaussianRDP(e.Q, e.Sigma, e.Steps, orders)
		if err != nil {
			return nil, err
		}
		for i := range total {
			total[i] += r[i]
		}
	}
	return total, nil
}

// Epsilon returns the smallest ε for which the history is (ε, δ)-DP over the
// given orders (DefaultOrders when nil), with ConversionBalle, and the order
// attaining it. It returns an error naming the parameter when δ ∉ (0, 1), an
// order is ≤ 1, or Step was earlier given invalid parameters.
func (a *Accountant) Epsilon(delta float64, orders []float64) (eps float64, bestOrder float64, err error) {
	return a.EpsilonWith(delta, orders, ConversionBalle)
}

// EpsilonWith is Epsilon with an explicit conversion.
func (a *Accountant) EpsilonWith(delta float64, orders []float64, conv Conversion) (eps float64, bestOrder float64, err error) {
	if orders == nil {
		orders = DefaultOrders()
	}
	r, err := a.RDPChecked(orders)
	if err != nil {
		return 0, 0, err
	}
	return EpsilonFromRDP(orders, r, delta, conv)
}

// MaxSteps returns the largest number of steps T of the sampled Gaussian
// mechanism (q, sigma) whose (ε, δ) guarantee, by ConversionBalle over the
// given orders (DefaultOrders when nil), stays within targetEps. RDP grows
// linearly in T and ε is monotone in it, so T is found by doubling and then
// binary search over the per-step RDP. It returns math.MaxInt when no number
// of steps can exceed the budget (q = 0), and 0 when even one step does.
// It returns an error naming the parameter when q ∉ [0, 1], σ ≤ 0 or not
// finite, targetEps ≤ 0 or not finite, δ ∉ (0, 1), or an order is ≤ 1.
func MaxSteps(q, sigma, targetEps, delta float64, orders []float64) (int, error) {
	return MaxStepsWith(q, sigma, targetEps, delta, orders, ConversionBalle)
}

// MaxStepsWith is MaxSteps with an explicit conversion.
func MaxStepsWith(q, sigma, targetEps, delta float64, orders []float64, conv Conversion) (int, error) {
	if math.IsNaN(targetEps) || math.IsInf(targetEps, 0) || targetEps <= 0 {
		return 0, fmt.Errorf("dp: target epsilon must be finite and > 0, got %v", targetEps)
	}
	if math.IsNaN(delta) || delta <= 0 || delta >= 1 {
		return 0, fmt.Errorf("dp: delta must be in (0, 1), got %v", delta)
	}
	if orders == nil {
		orders = DefaultOrders()
	}
	perStep, err := SampledGaussianRDP(q, sigma, 1, orders)
	if err != nil {
		return 0, err
	}
	fits := func(t int) (bool, error) {
		r := make([]float64, len(perStep))
		for i, x := range perStep {
			r[i] = x * float64(t)
		}
		eps, _, err := EpsilonFromRDP(orders, r, delta, conv)
		return eps <= targetEps, err
	}
	ok, err := fits(1)
	if err != nil || !ok {
		return 0, err
	}
	// Doubling: find hi with fits(lo) and !fits(hi).
	lo, hi := 1, 2
	for {
		ok, err := fits(hi)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		if hi > math.MaxInt/2 {
			return math.MaxInt, nil
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := fits(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// RoundsForBudget is MaxSteps without the error: invalid input yields 0
// rounds, the conservative answer. Use MaxSteps to learn what was wrong.
func RoundsForBudget(q, sigma, targetEps, delta float64, orders []float64) int {
	n, err := MaxSteps(q, sigma, targetEps, delta, orders)
	if err != nil {
		return 0
	}
	return n
}
