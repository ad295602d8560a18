package worker

// Security review M5: the coordinator announces the ε of its own
// accountant, which it can under-report (a sampling rate q far below the
// truth, or no accounting at all). Each worker keeps its own accountant
// at q = 1 over the rounds it actually sent a noised masked input in, and
// enforces policy.max_epsilon on that.

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/wire"
)

// budgetFor returns a max_epsilon that allows exactly rounds releases of
// noise sigma at q = 1 and δ = DefaultDelta.
func budgetFor(t *testing.T, sigma float64, rounds int) float64 {
	t.Helper()
	eps := func(k int) float64 {
		a := &dp.Accountant{}
		a.Step(1, sigma, k)
		e, _, err := a.Epsilon(DefaultDelta, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	return (eps(rounds) + eps(rounds+1)) / 2
}

func dpAnnounce(cl *cluster, r uint64, sigma float64) Announce {
	a := cl.announce(r, maxExamples)
	a.DP = DPParams{Clip: 1, Noise: sigma, MinClients: 2}
	a.Epsilon = 0.001 * float64(r) // the coordinator's under-reported ε
	if r > 1 {
		a.ModelVersion = 0
	}
	return a
}

func TestAttackUnderReportedSamplingRate(t *testing.T) {
	const sigma, allowed = 2.0, 3
	budget := budgetFor(t, sigma, allowed)
	mk := func() *cluster {
		return newCluster(t, 3, func(i int, c *Config) { c.Policy.MaxEpsilon = budget })
	}

	// Rounds announced one after the other: the fourth is refused at
	// stage 0 although the announced ε is far below the budget.
	cl := mk()
	for r := uint64(1); r <= allowed; r++ {
		cl.runRound(dpAnnounce(cl, r, sigma), hooks{})
	}
	for i, n := range cl.nodes {
		own, err := n.OwnEpsilon()
		if err != nil || !(own > 0 && own <= budget) {
			t.Fatalf("worker %d: own ε %v (%v) after %d rounds, budget %v", i, own, err, allowed, budget)
		}
	}
	a := dpAnnounce(cl, allowed+1, sigma)
	_, err := cl.nodes[0].Advertise(a)
	var r *Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Reason, "own ε (q = 1)") {
		t.Fatalf("round %d with announced ε %v: err = %v, want a refusal on the worker's own ε", a.Round, a.Epsilon, err)
	}
	if strings.Contains(r.Reason, fmt.Sprintf("%.4g", budget)) {
		t.Fatalf("the refusal tells the coordinator the worker's figures: %q", r.Reason)
	}
	// The ledger survives a restart.
	cl.restart(0)
	if _, err := cl.nodes[0].Advertise(a); !errors.As(err, &r) {
		t.Fatalf("after a restart: err = %v, want the refusal again", err)
	}

	// Two rounds opened at once: each passes stage 0 alone, but the
	// second masked input is refused where the budget is spent.
	cl = mk()
	for r := uint64(1); r < allowed; r++ {
		cl.runRound(dpAnnounce(cl, r, sigma), hooks{})
	}
	last, extra := dpAnnounce(cl, allowed, sigma), dpAnnounce(cl, allowed+1, sigma)
	srv, err := secagg.NewServer(extra.SecAgg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	for i, n := range cl.nodes {
		if _, err := n.Advertise(last); err != nil {
			t.Fatalf("worker %d: round %d: %v", i, last.Round, err)
		}
		ads, err := n.Advertise(extra)
		if err != nil {
			t.Fatalf("worker %d: round %d advertised early: %v", i, extra.Round, err)
		}
		if err := srv.Receive(ads, now); err != nil {
			t.Fatal(err)
		}
	}
	cl.runRound(last, hooks{}) // charges round `allowed`
	for stage := 0; stage < 2; stage++ {
		out, _, err := srv.Advance(now)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			node := cl.nodes[o.To-1]
			switch m := o.Msg.(type) {
			case secagg.KeyBroadcast:
				shares, err := node.ShareKeys(m)
				if err != nil {
					t.Fatalf("worker %d share keys: %v", o.To-1, err)
				}
				if err := srv.Receive(shares, now); err != nil {
					t.Fatal(err)
				}
			case secagg.ShareBundle:
				_, err := node.MaskedInput(m, cl.global)
				if !errors.As(err, &r) || !strings.Contains(r.Reason, "own ε (q = 1)") {
					t.Fatalf("worker %d: masked input of round %d beyond its budget: err = %v, want a refusal", o.To-1, extra.Round, err)
				}
			}
		}
	}
	for i, n := range cl.nodes {
		own, err := n.OwnEpsilon()
		if err != nil || own > budget || math.IsNaN(own) {
			t.Fatalf("worker %d: own ε %v (%v) exceeds budget %v", i, own, err, budget)
		}
	}
}

// TestAttackStudySplittingCappedByTotal: policy.max_epsilon caps each
// study, so a second study on the same data is accepted after the first
// spent its budget; but a coordinator that files every round under a new
// study name cannot escape policy.max_epsilon_total, the cap over all
// studies together (the data is the same in each: privacy loss composes).
func TestAttackStudySplittingCappedByTotal(t *testing.T) {
	const sigma, perStudy, total = 2.0, 2, 3
	budget, budgetTotal := budgetFor(t, sigma, perStudy), budgetFor(t, sigma, total)
	cl := newCluster(t, 3, func(i int, c *Config) {
		c.Policy.MaxEpsilon, c.Policy.MaxEpsilonTotal = budget, budgetTotal
	})
	inStudy := func(r uint64, study string) Announce {
		a := dpAnnounce(cl, r, sigma)
		a.Study = study
		return a
	}
	// Study a: its two rounds, then a third is refused for the study's cap.
	cl.runRound(inStudy(1, "a"), hooks{})
	cl.runRound(inStudy(2, "a"), hooks{})
	var r *Refusal
	if _, err := cl.nodes[0].Advertise(inStudy(3, "a")); !errors.As(err, &r) || !strings.Contains(r.Reason, "in this study") {
		t.Fatalf("a third round of study a: err = %v, want the per-study refusal", err)
	}
	// Study b on the same workers: accepted (its own ε is 0) up to the
	// total cap, which the next round passes.
	cl.runRound(inStudy(3, "b"), hooks{})
	for i, n := range cl.nodes {
		a, err := n.OwnEpsilonStudy("a")
		if err != nil {
			t.Fatal(err)
		}
		b, err := n.OwnEpsilonStudy("b")
		if err != nil {
			t.Fatal(err)
		}
		all, err := n.OwnEpsilon()
		if err != nil {
			t.Fatal(err)
		}
		if !(b > 0 && b < a && all > a && all <= budgetTotal) {
			t.Fatalf("worker %d: ε of a %v, of b %v, over all %v (total cap %v)", i, a, b, all, budgetTotal)
		}
	}
	if _, err := cl.nodes[0].Advertise(inStudy(4, "c")); !errors.As(err, &r) || !strings.Contains(r.Reason, "policy.max_epsilon_total") {
		t.Fatalf("round 4 filed under a fresh study c: err = %v, want the total-cap refusal", err)
	}
	if got := wire.RefusalRule(r.Reason); got != "budget" {
		t.Fatalf("the total-cap refusal is classified %q, want budget (the study then ends budget-exhausted)", got)
	}
}
