package aggregation

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Strategy = Rule + ServerOptimizer + client-side options.
type Strategy struct {
	// Rule combines the round's valid deltas.
	Rule Rule
	// Server applies the combined delta; nil means FedAvg with η = 1.
	Server ServerOptimizer
	// ProxMu is the FedProx proximal weight μ that clients add to their
	// local objective as (μ/2)·‖w − w_global‖² (Li et al. 2020,
	// "Federated Optimization in Heterogeneous Networks"); 0 = off.
	ProxMu float32
}

// Forms lists the strategy strings ParseStrategy accepts.
const Forms = "fedavg | fedavgm | fedadam | fedyogi | fedadagrad | fedprox:MU | median | trimmed:BETA | krum:F | multikrum:F[:M] | bulyan:F"

// ParseStrategy builds a Strategy from one of
//
//	fedavg        weighted mean, FedAvg server step (McMahan et al. 2017)
//	fedavgm       weighted mean, server momentum (Hsu et al. 2019)
//	fedadam       weighted mean, FedAdam (Reddi et al. 2021)
//	fedyogi       weighted mean, FedYogi (Reddi et al. 2021)
//	fedadagrad    weighted mean, FedAdagrad (Reddi et al. 2021)
//	fedprox:MU    weighted mean, FedAvg, clients use FedProx μ = MU >= 0 (Li et al. 2020)
//	median        coordinate-wise median (Yin et al. 2018)
//	trimmed:BETA  coordinate-wise trimmed mean, 0 <= BETA < 0.5 (Yin et al. 2018)
//	krum:F        Krum, F >= 0 Byzantine clients (Blanchard et al. 2017)
//	multikrum:F   Multi-Krum averaging the n−F best; multikrum:F:M averages M
//	bulyan:F      Bulyan, F >= 0 (El Mhamdi et al. 2018)
//
// Robust rules use a FedAvg server step. serverLR sets the server learning
// rate; 0 means each optimizer's documented default. Case and surrounding
// spaces are ignored. Errors name the value and the allowed forms.
func ParseStrategy(s string, serverLR float64) (*Strategy, error) {
	if !isFinite(serverLR) || serverLR < 0 {
		return nil, fmt.Errorf("server learning rate %v: needs a finite value >= 0 (0 = the optimizer's default)", serverLR)
	}
	norm := strings.ToLower(strings.TrimSpace(s))
	name, args, _ := strings.Cut(norm, ":")
	var params []string
	if args != "" || strings.Contains(norm, ":") {
		params = strings.Split(args, ":")
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("strategy %q: %s (forms: %s)", s, fmt.Sprintf(format, a...), Forms)
	}
	nparams := func(want ...int) error {
		for _, w := range want {
			if len(params) == w {
				return nil
			}
		}
		switch name {
		case "fedprox":
			return bad("fedprox:MU needs one parameter MU >= 0")
		case "trimmed":
			return bad("trimmed:BETA needs one parameter with 0 <= BETA < 0.5")
		case "krum", "bulyan":
			return bad("%s:F needs one integer parameter F >= 0", name)
		case "multikrum":
			return bad("multikrum:F or multikrum:F:M needs integers F >= 0 and M >= 1")
		}
		return bad("%s takes no parameter", name)
	}
	intParam := func(i int, what string, lo int) (int, error) {
		v, err := strconv.Atoi(params[i])
		if err != nil || v < lo || v > MaxF {
			return 0, bad("%s is %q, needs an integer %d <= %s <= %d", what, params[i], lo, what, MaxF)
		}
		return v, nil
	}

	st := &Strategy{Rule: WeightedMean{}}
	switch name {
	case "fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad":
		if err := nparams(0); err != nil {
			return nil, err
		}
		st.Server = newServer(name, serverLR)
		return st, nil
	case "fedprox":
		if err := nparams(1); err != nil {
			return nil, err
		}
		mu, err := strconv.ParseFloat(params[0], 32)
		if err != nil || !isFinite(mu) || mu < 0 {
			return nil, bad("fedprox:MU needs MU >= 0, got %q", params[0])
		}
		st.ProxMu = float32(mu)
	case "median":
		if err := nparams(0); err != nil {
			return nil, err
		}
		st.Rule = Median{}
	case "trimmed":
		if err := nparams(1); err != nil {
			return nil, err
		}
		beta, err := strconv.ParseFloat(params[0], 64)
		if err != nil || !(beta >= 0 && beta < 0.5) {
			return nil, bad("trimmed:BETA needs 0 <= BETA < 0.5, got %q", params[0])
		}
		st.Rule = TrimmedMean{Beta: beta}
	case "krum", "bulyan":
		if err := nparams(1); err != nil {
			return nil, err
		}
		f, err := intParam(0, "F", 0)
		if err != nil {
			return nil, err
		}
		if name == "krum" {
			st.Rule = Krum{F: f}
		} else {
			st.Rule = Bulyan{F: f}
		}
	case "multikrum":
		if err := nparams(1, 2); err != nil {
			return nil, err
		}
		f, err := intParam(0, "F", 0)
		if err != nil {
			return nil, err
		}
		m := 0
		if len(params) == 2 {
			if m, err = intParam(1, "M", 1); err != nil {
				return nil, err
			}
		}
		st.Rule = MultiKrum{F: f, M: m}
	default:
		return nil, bad("unknown strategy %q", name)
	}
	st.Server = newServer("fedavg", serverLR)
	return st, nil
}

// newServer returns the named optimizer with learning rate lr (0 = default).
func newServer(name string, lr float64) ServerOptimizer {
	switch name {
	case "fedavgm":
		return NewFedAvgM(lr)
	case "fedadam":
		return NewFedAdam(lr)
	case "fedyogi":
		return NewFedYogi(lr)
	case "fedadagrad":
		return NewFedAdagrad(lr)
	}
	return NewFedAvg(lr)
}

// String describes the strategy, e.g. "rule=krum:2 server=fedavg(lr=1)".
func (s *Strategy) String() string {
	if s == nil {
		return "<nil strategy>"
	}
	var b strings.Builder
	rule := "<nil>"
	if s.Rule != nil {
		rule = s.Rule.Name()
	}
	fmt.Fprintf(&b, "rule=%s server=%s", rule, s.server().Name())
	if s.ProxMu != 0 {
		fmt.Fprintf(&b, " prox_mu=%g", s.ProxMu)
	}
	return b.String()
}

// MinUpdates returns the fewest valid updates a round needs.
func (s *Strategy) MinUpdates() int {
	if s == nil || s.Rule == nil {
		return 1
	}
	return MinUpdates(s.Rule)
}

// server returns the configured optimizer or FedAvg with η = 1.
func (s *Strategy) server() ServerOptimizer {
	if s.Server == nil {
		return NewFedAvg(1)
	}
	return s.Server
}

// Round runs one server step: Validate, Combine, Step. It returns the
// rejections; if fewer valid updates remain than the rule needs (e.g. krum
// with n < 2f+3) it returns an error that says so and leaves global
// unchanged. On any error global and the optimizer state are unchanged.
func (s *Strategy) Round(global []float32, updates []Update) (rejected []Rejection, err error) {
	if s == nil || s.Rule == nil {
		return nil, errors.New("round: strategy has no rule")
	}
	if math.IsNaN(float64(s.ProxMu)) || s.ProxMu < 0 {
		return nil, fmt.Errorf("round: ProxMu is %v, needs >= 0", s.ProxMu)
	}
	valid, rejected := Validate(updates, len(global))
	if need := s.MinUpdates(); len(valid) < need {
		return rejected, fmt.Errorf("round with %s: %w: %d of %d updates valid (%d rejected), the rule needs at least %d",
			s.Rule.Name(), ErrTooFewUpdates, len(valid), len(updates), len(rejected), need)
	}
	delta := make([]float32, len(global))
	if err := s.Rule.Combine(delta, valid); err != nil {
		return rejected, fmt.Errorf("round: %w", err)
	}
	if err := s.server().Step(global, delta); err != nil {
		return rejected, fmt.Errorf("round: %w", err)
	}
	return rejected, nil
}
