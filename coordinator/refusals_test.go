package coordinator_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	. "github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
)

// refuser refuses every announcement for one worker, with a reason longer
// than the replicated limit.
type refuser struct {
	*coordtest.Cohort
	who WorkerID
}

func (r *refuser) Advertise(ctx context.Context, w WorkerID, a *Announce) (secagg.AdvertiseKeys, error) {
	if w == r.who {
		return secagg.AdvertiseKeys{}, &RefusalError{Worker: w, Round: a.Round, Reason: "below policy.min_cohort " + strings.Repeat("x", 2*MaxRefusalReason)}
	}
	return r.Cohort.Advertise(ctx, w, a)
}

// Refusals are replicated: the driver commits each stage's refusals with
// its close, so every replica's state (and dashboard) lists them, cut to
// MaxRefusalReason bytes.
func TestRefusalsReplicated(t *testing.T) {
	cfg := testConfig()
	cfg.WorkersPerRound = 8
	c := coordtest.NewCohort(8, 1)
	victim := c.Online()[3]
	f := NewFSM()
	rec := &recorder{fsm: f}
	d := newTestDriver(t, cfg, f, rec, NewMemRegistry(), &refuser{Cohort: c, who: victim})
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A follower applies the same commands.
	f2 := NewFSM()
	for _, b := range rec.cmds {
		if err := f2.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []State{f.State(), f2.State()} {
		if st.CommittedRounds() != cfg.Rounds || len(st.Refusals) != cfg.Rounds {
			t.Fatalf("%d rounds committed, refusals %d, want one per round", st.CommittedRounds(), len(st.Refusals))
		}
		for i, r := range st.Refusals {
			if r.Round != uint64(i+1) || r.Worker != victim || len(r.Reason) != MaxRefusalReason || !strings.HasPrefix(r.Reason, "below policy.min_cohort") || r.AtMs == 0 {
				t.Errorf("refusal %d: round %d worker %s reason %d bytes", i, r.Round, r.Worker, len(r.Reason))
			}
		}
	}
}

// TestAttackRefusalOfUnsampledWorker: a leader cannot plant refusals of
// workers that were not sampled, or oversized ones, in the replicated state.
func TestAttackRefusalOfUnsampledWorker(t *testing.T) {
	cfg := testConfig()
	c := coordtest.NewCohort(8, 1)
	f := NewFSM()
	rec := &recorder{fsm: f, crashAfter: func(cmd Command) bool { return cmd.RoundStarted != nil }}
	d := newTestDriver(t, cfg, f, rec, NewMemRegistry(), c)
	_ = d.Run(context.Background())
	cur := f.State().Current
	if cur == nil {
		t.Fatal("no round in flight")
	}
	sampled := map[WorkerID]bool{}
	for _, w := range cur.Announce.Sampled {
		sampled[w] = true
	}
	var outsider WorkerID
	for _, w := range c.Online() {
		if !sampled[w] {
			outsider = w
		}
	}
	if outsider == "" {
		t.Fatal("every worker sampled")
	}
	for name, tc := range map[string]struct {
		r    RefusalRecord
		want string
	}{
		"unsampled": {RefusalRecord{Round: cur.Round, Worker: outsider, Reason: "x"}, "was not sampled"},
		"oversized": {RefusalRecord{Round: cur.Round, Worker: cur.Announce.Sampled[0], Reason: strings.Repeat("x", MaxRefusalReason+1)}, "at most"},
		"stale":     {RefusalRecord{Round: cur.Round + 5, Worker: cur.Announce.Sampled[0], Reason: "x"}, "of round"},
	} {
		b, err := EncodeCommand(Command{StageClosed: &StageClosed{Round: cur.Round, Stage: secagg.StageAdvertise, Completed: []uint32{}, Refused: []RefusalRecord{tc.r}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Apply(b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a refusal containing %q", name, err, tc.want)
		}
		if len(f.State().Refusals) != 0 {
			t.Fatalf("%s: refusal recorded", name)
		}
	}
}
