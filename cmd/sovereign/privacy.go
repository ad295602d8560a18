package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
)

func init() { rootCmd.AddCommand(newPrivacyCmd()) }

// privacyOptions are the flags of `sovereign privacy`.
type privacyOptions struct {
	q          float64
	noise      float64
	steps      int
	delta      float64
	orders     string
	targetEps  float64
	conversion string
	json       bool
}

func newPrivacyCmd() *cobra.Command {
	var o privacyOptions
	cmd := &cobra.Command{
		Use:   "privacy",
		Short: "Privacy spent by rounds of the sampled Gaussian mechanism (Rényi DP accountant)",
		Long: `privacy computes the (epsilon, delta) guarantee of running the sampled
Gaussian mechanism --steps times: each institution takes part in a round with
probability --q, its update is clipped to norm C and the sum carries Gaussian
noise of std --noise times C. The Rényi DP of the mechanism (Mironov, Talwar,
Zhang 2019) is composed over the steps and converted to (epsilon, delta) by
Balle et al. 2020, Theorem 21 (or the classic Mironov 2017 bound with
--conversion mironov), minimised over the Rényi orders.

With --orders it also prints the RDP at each given order and uses only those
orders; with --target-epsilon it prints how many steps fit that budget.

A federation reports two figures, both with q = 1. The coordinator's
accountant (the ledger's epsilon, announced with each round) charges every
released sum at q = 1: the coordinator picks the sample and every sampled
worker is told it, so amplification by sampling does not hold against
either. Each worker also keeps its own accountant (its log's own_epsilon,
metric sovereign_worker_epsilon_own) over the rounds it actually sent a
noised update in, at q = 1 and its policy.delta, and refuses a round that
would take it above policy.max_epsilon whatever epsilon was announced. The
two differ when a worker sat rounds out (its own is lower) or when a
coordinator under-reports (its own is the one enforced). Reproduce either
with --q 1 --noise SIGMA --steps ROUNDS; a smaller --q answers only an
observer who does not know the sample.`,
		Example: `  sovereign privacy --q 0.01 --noise 1.1 --steps 1000 --delta 1e-5
  sovereign privacy --q 0.01 --noise 1.1 --steps 1000 --orders 1.5,2.5,5
  sovereign privacy --q 0.01 --noise 1.1 --target-epsilon 3 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPrivacy(cmd.OutOrStdout(), o, cmd.Flags().Changed("target-epsilon"))
		},
	}
	f := cmd.Flags()
	f.Float64Var(&o.q, "q", 0, "sampling rate: probability an institution takes part in a round, in [0, 1]")
	f.Float64Var(&o.noise, "noise", 0, "noise multiplier sigma: noise std divided by the clipping bound, > 0")
	f.IntVar(&o.steps, "steps", 1, "number of rounds (applications of the mechanism), >= 0")
	f.Float64Var(&o.delta, "delta", 1e-5, "target delta, in (0, 1)")
	f.StringVar(&o.orders, "orders", "", "comma-separated Rényi orders > 1 (default: 1.1..10.9 by 0.1 and 12..63)")
	f.Float64Var(&o.targetEps, "target-epsilon", 0, "if set, also print the largest number of steps with epsilon <= this, > 0")
	f.StringVar(&o.conversion, "conversion", "balle", "RDP to (epsilon, delta) conversion: balle or mironov")
	f.BoolVar(&o.json, "json", false, "print JSON with keys epsilon, order, rdp, steps (and max_steps)")
	_ = cmd.MarkFlagRequired("q")
	_ = cmd.MarkFlagRequired("noise")
	return cmd
}

// privacyReport is what `sovereign privacy --json` prints.
type privacyReport struct {
	Q          float64          `json:"q"`
	Noise      float64          `json:"noise"`
	Steps      int              `json:"steps"`
	Delta      float64          `json:"delta"`
	Conversion string           `json:"conversion"`
	Epsilon    jsonFloat        `json:"epsilon"`
	Order      float64          `json:"order"`
	RDP        []privacyRDPItem `json:"rdp"`
	TargetEps  *float64         `json:"target_epsilon,omitempty"`
	// MaxSteps is math.MaxInt when no number of steps exceeds the budget
	// (q = 0).
	MaxSteps *int `json:"max_steps,omitempty"`
}

type privacyRDPItem struct {
	Order float64   `json:"order"`
	RDP   jsonFloat `json:"rdp"`
}

// jsonFloat encodes +Inf (no guarantee) as null, which JSON can carry.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	x := float64(f)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, x, 'g', -1, 64), nil
}

// parsePrivacyOrders parses the --orders list.
func parsePrivacyOrders(s string) ([]float64, error) {
	var orders []float64
	for _, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			return nil, fmt.Errorf("--orders: empty entry in %q; want comma-separated numbers > 1", s)
		}
		a, err := strconv.ParseFloat(field, 64)
		if err != nil {
			return nil, fmt.Errorf("--orders: %q is not a number; want comma-separated numbers > 1", field)
		}
		if math.IsNaN(a) || math.IsInf(a, 0) || a <= 1 {
			return nil, fmt.Errorf("--orders: each order must be a finite number > 1, got %s", field)
		}
		orders = append(orders, a)
	}
	return orders, nil
}

func finitePositive(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) && x > 0 }

// runPrivacy validates the options, runs the accountant and writes the
// report to w, as text or JSON. withTarget says whether --target-epsilon was
// given.
func runPrivacy(w io.Writer, o privacyOptions, withTarget bool) error {
	if math.IsNaN(o.q) || o.q < 0 || o.q > 1 {
		return fmt.Errorf("--q must be in [0, 1], got %v", o.q)
	}
	if !finitePositive(o.noise) {
		return fmt.Errorf("--noise must be a finite number > 0, got %v", o.noise)
	}
	if o.steps < 0 {
		return fmt.Errorf("--steps must be >= 0, got %d", o.steps)
	}
	if math.IsNaN(o.delta) || o.delta <= 0 || o.delta >= 1 {
		return fmt.Errorf("--delta must be in (0, 1), got %v", o.delta)
	}
	if withTarget && !finitePositive(o.targetEps) {
		return fmt.Errorf("--target-epsilon must be a finite number > 0, got %v", o.targetEps)
	}
	var conv dp.Conversion
	switch o.conversion {
	case "balle":
		conv = dp.ConversionBalle
	case "mironov":
		conv = dp.ConversionMironov
	default:
		return fmt.Errorf("--conversion must be balle or mironov, got %q", o.conversion)
	}
	orders := dp.DefaultOrders()
	if o.orders != "" {
		var err error
		if orders, err = parsePrivacyOrders(o.orders); err != nil {
			return err
		}
	}

	var acc dp.Accountant
	if err := acc.Step(o.q, o.noise, o.steps); err != nil {
		return err
	}
	rdp, err := acc.RDPChecked(orders)
	if err != nil {
		return err
	}
	eps, order, err := dp.EpsilonFromRDP(orders, rdp, o.delta, conv)
	if err != nil {
		return err
	}
	rep := privacyReport{
		Q: o.q, Noise: o.noise, Steps: o.steps, Delta: o.delta, Conversion: conv.String(),
		Epsilon: jsonFloat(eps), Order: order,
	}
	for i, a := range orders {
		rep.RDP = append(rep.RDP, privacyRDPItem{Order: a, RDP: jsonFloat(rdp[i])})
	}
	if withTarget {
		n, err := dp.MaxStepsWith(o.q, o.noise, o.targetEps, o.delta, orders, conv)
		if err != nil {
			return err
		}
		target := o.targetEps
		rep.TargetEps, rep.MaxSteps = &target, &n
	}

	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(w, "sampled Gaussian mechanism: q=%v noise=%v steps=%d delta=%v\n", o.q, o.noise, o.steps, o.delta)
	fmt.Fprintf(w, "epsilon: %.6g (best order %v, %s conversion)\n", eps, order, conv)
	if o.orders != "" {
		fmt.Fprintf(w, "%-10s %s\n", "order", "rdp")
		for i, a := range orders {
			fmt.Fprintf(w, "%-10v %.6g\n", a, rdp[i])
		}
	}
	if withTarget {
		if *rep.MaxSteps == math.MaxInt {
			fmt.Fprintf(w, "max steps with epsilon <= %v: unlimited (q = 0 spends nothing)\n", o.targetEps)
		} else {
			fmt.Fprintf(w, "max steps with epsilon <= %v: %d\n", o.targetEps, *rep.MaxSteps)
		}
	}
	return nil
}
