package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	. "github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
	"github.com/sovereign-fl/sovereign/wire"
)

func announceOf(t *testing.T, rec *recorder, r uint64) Announce {
	t.Helper()
	for _, b := range rec.cmds {
		c, _ := DecodeCommand(b)
		if c.RoundStarted != nil && c.RoundStarted.Round == r {
			return c.RoundStarted.Announce
		}
	}
	t.Fatalf("round %d never started", r)
	return Announce{}
}

// checkPlainMean checks that the model committed in round r moved from the
// previous model by the plain weighted mean of the participants' updates,
// within the quantization bound of SecAgg+.
func checkPlainMean(t *testing.T, f *FSM, reg ModelStore, c *coordtest.Cohort, a Announce, r uint64) {
	t.Helper()
	st := f.State()
	var entry *LedgerEntry
	for i := range st.Ledger {
		if st.Ledger[i].Round == r {
			entry = &st.Ledger[i]
		}
	}
	if entry == nil {
		t.Fatalf("round %d: no ledger entry", r)
	}
	before, err := reg.Get(Hash(a.ModelHash))
	if err != nil {
		t.Fatal(err)
	}
	after, err := reg.Get(entry.ModelHash)
	if err != nil {
		t.Fatal(err)
	}
	sum := make([]float64, len(before))
	var w float64
	for _, p := range entry.Participants {
		weight := c.Weight(p)
		for i, v := range c.Update(r, p) {
			sum[i] += weight * float64(v)
		}
		w += weight
	}
	cfg := a.SecAgg
	q, err := secagg.NewQuantizer(cfg.Bits, cfg.ClipRange, cfg.MaxWeight, len(cfg.Clients))
	if err != nil {
		t.Fatal(err)
	}
	per, werr := q.ErrorBound(len(entry.Participants))
	for i := range sum {
		want := sum[i] / w
		got := float64(after[i]) - float64(before[i])
		bound := per/(w-werr) + math.Abs(sum[i])*werr/(w*(w-werr)) + 1e-6*(1+math.Abs(float64(before[i])))
		if bound > 1e-3 {
			t.Fatalf("bound %g too loose to test anything", bound)
		}
		if math.Abs(got-want) > bound {
			t.Errorf("round %d coordinate %d: model moved by %v, plain weighted mean %v (bound %g)", r, i, got, want, bound)
		}
	}
}

func TestFullRoundsEqualPlainMean(t *testing.T) {
	cfg := testConfig()
	c := coordtest.NewCohort(8, 1)
	f := NewFSM()
	rec := &recorder{fsm: f}
	reg := NewMemRegistry()
	d := newTestDriver(t, cfg, f, rec, reg, c)
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := f.State()
	if st.CommittedRounds() != 2 || len(st.Ledger) != 3 {
		t.Fatalf("committed %d rounds, %d ledger entries", st.CommittedRounds(), len(st.Ledger))
	}
	for r := uint64(1); r <= 2; r++ {
		a := announceOf(t, rec, r)
		if len(a.Sampled) != 5 {
			t.Fatalf("round %d sampled %d", r, len(a.Sampled))
		}
		checkPlainMean(t, f, reg, c, a, r)
		if got := st.Ledger[r].Participants; !slices.Equal(got, a.Sampled) {
			t.Errorf("round %d participants %v, sampled %v", r, got, a.Sampled)
		}
	}
	if err := VerifyLedger(st.Ledger); err != nil {
		t.Fatal(err)
	}
	if len(st.Metrics) != 2 || st.Metrics[1].Round != 2 {
		t.Fatalf("metrics %+v", st.Metrics)
	}
	// Example-weighted accuracy over the participants.
	h := st.Ledger[2].ModelHash
	if want := float64(h[0]) / 255; math.Abs(st.Metrics[1].Accuracy-want) > 1e-12 {
		t.Errorf("accuracy %v, want %v", st.Metrics[1].Accuracy, want)
	}
	s := d.Status()
	if s.LedgerHead != st.Ledger[2].Hash || s.CommittedRounds != 2 || s.Round != 2 || s.InFlight {
		t.Errorf("status %+v", s)
	}
	c.DistinctUnmaskSets(t)
}

func TestRunIsDeterministic(t *testing.T) {
	run := func() []LedgerEntry {
		f := NewFSM()
		d := newTestDriver(t, testConfig(), f, NewLocal(f), NewMemRegistry(), coordtest.NewCohort(8, 3))
		if err := d.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return f.Ledger()
	}
	a, b := run(), run()
	if a[len(a)-1].Hash != b[len(b)-1].Hash {
		t.Fatalf("same seed, different ledger heads %s and %s", a[len(a)-1].Hash, b[len(b)-1].Hash)
	}
}

func TestDropoutAtEachStage(t *testing.T) {
	for _, s := range []secagg.Stage{secagg.StageAdvertise, secagg.StageShareKeys, secagg.StageMaskedInput, secagg.StageConsistency, secagg.StageUnmask} {
		t.Run(s.String(), func(t *testing.T) {
			cfg := testConfig()
			cfg.Rounds = 1
			cfg.WorkersPerRound = 6
			cfg.SecAggDegree = 5
			c := coordtest.NewCohort(6, 2)
			c.DropAt(1, "w02", s)
			f := NewFSM()
			rec := &recorder{fsm: f}
			reg := NewMemRegistry()
			d := newTestDriver(t, cfg, f, rec, reg, c)
			if err := d.Init(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := d.RunRound(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			st := f.State()
			parts := st.Ledger[1].Participants
			in := slices.Contains(parts, "w02")
			// Past masked input its vector is in the sum: a survivor.
			if want := s == secagg.StageUnmask || s == secagg.StageConsistency; in != want {
				t.Errorf("w02 dropped at %v: in participants = %v, want %v", s, in, want)
			}
			if len(parts) != 5+btoi(in) {
				t.Errorf("%d participants", len(parts))
			}
			checkPlainMean(t, f, reg, c, announceOf(t, rec, 1), 1)
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestStageTimeoutDropsBlockedWorker(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 1
	cfg.WorkersPerRound = 4
	cfg.StageTimeout = 50 * time.Millisecond
	c := coordtest.NewCohort(4, 4)
	c.BlockDropped()
	c.DropAt(1, "w01", secagg.StageMaskedInput)
	f := NewFSM()
	d := newTestDriver(t, cfg, f, NewLocal(f), NewMemRegistry(), c)
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	parts := f.State().Ledger[1].Participants
	if slices.Contains(parts, "w01") || len(parts) != 3 {
		t.Fatalf("participants %v", parts)
	}
}

func TestRetryOnInsufficientSurvivors(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 1
	cfg.WorkersPerRound = 5
	c := coordtest.NewCohort(5, 5)
	// Round 1: three of five vanish before unmasking: too few shares.
	for _, w := range []WorkerID{"w00", "w01", "w02"} {
		c.DropAt(1, w, secagg.StageUnmask)
	}
	f := NewFSM()
	rec := &recorder{fsm: f}
	reg := NewMemRegistry()
	d := newTestDriver(t, cfg, f, rec, reg, c)
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := f.State()
	if st.LastFailure == nil || st.LastFailure.Round != 1 {
		t.Fatalf("last failure %+v", st.LastFailure)
	}
	if len(st.LastFailure.Missing) == 0 {
		t.Errorf("failure names no missing worker: %+v", st.LastFailure)
	}
	for _, m := range st.LastFailure.Missing {
		if !slices.Contains([]WorkerID{"w00", "w01", "w02"}, m) {
			t.Errorf("failure names %s, which did not drop", m)
		}
	}
	if len(st.Ledger) != 2 || st.Ledger[1].Round != 2 {
		t.Fatalf("ledger %+v", st.Ledger)
	}
	checkPlainMean(t, f, reg, c, announceOf(t, rec, 2), 2)
	c.DistinctUnmaskSets(t)
}

// More than RetryLimit failed rounds in a row end the study as failed (with
// the reasons, through the FSM), and Run returns: the coordinator does not
// retry every second forever. A second Run starts no round; after Resume
// (the configuration fixed: here, the drops gone) the study goes on and
// finishes.
func TestRetryLimit(t *testing.T) {
	cfg := testConfig()
	cfg.RetryLimit = 1
	cfg.WorkersPerRound = 3
	c := coordtest.NewCohort(3, 6)
	for r := uint64(1); r <= 2; r++ {
		c.DropAt(r, "w00", secagg.StageMaskedInput)
		c.DropAt(r, "w01", secagg.StageMaskedInput)
	}
	f := NewFSM()
	d := newTestDriver(t, cfg, f, NewLocal(f), NewMemRegistry(), c)
	if err := d.Run(context.Background()); err != nil {
		t.Fatalf("run with every round failing: %v, want the study ended", err)
	}
	st := f.State()
	if st.Failures != 2 || st.Round != 2 {
		t.Fatalf("failures %d after round %d", st.Failures, st.Round)
	}
	if st.Ended == nil || st.Ended.State != EndFailed || !strings.Contains(st.Ended.Reason, "round 2:") || !strings.Contains(st.Ended.Reason, "round 1:") {
		t.Fatalf("end %+v, want failed naming rounds 1 and 2", st.Ended)
	}
	if len(st.RecentFailures) != 2 {
		t.Fatalf("recent failures %q", st.RecentFailures)
	}
	if err := d.Run(context.Background()); err != nil || f.State().Round != 2 {
		t.Fatalf("second run: %v, round %d: an ended study starts no round", err, f.State().Round)
	}
	if d.Status().Stage != EndFailed {
		t.Fatalf("status stage %q, want %q", d.Status().Stage, EndFailed)
	}
	if ok, err := d.Resume(context.Background()); !ok || err != nil {
		t.Fatalf("resume: %v %v", ok, err)
	}
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = f.State()
	if st.CommittedRounds() != cfg.Rounds || st.Ended == nil || st.Ended.State != EndFinished {
		t.Fatalf("after resume: %d committed, end %+v", st.CommittedRounds(), st.Ended)
	}
	if ok, _ := d.Resume(context.Background()); ok {
		t.Fatal("a finished study was resumed")
	}
}

// A study with its own max_epsilon ends budget-exhausted before the round
// that would pass it, in the FSM, the status and the ledger file.
func TestBudgetExhaustedEndsStudy(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 50
	cfg.WorkersPerRound = 3
	cfg.DP = DPParams{Clip: 1, Noise: 3}
	cfg.ClipRange = 0
	cfg.MaxEpsilon = 5
	c := coordtest.NewCohort(3, 6)
	f := NewFSM()
	d := newTestDriver(t, cfg, f, NewLocal(f), NewMemRegistry(), c)
	d.LedgerPath = filepath.Join(t.TempDir(), LedgerFileName)
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := f.State()
	if st.Ended == nil || st.Ended.State != EndBudgetExhausted || !strings.Contains(st.Ended.Reason, "max_epsilon 5") {
		t.Fatalf("end %+v, want budget-exhausted", st.Ended)
	}
	n := st.CommittedRounds()
	if n == 0 || n >= cfg.Rounds {
		t.Fatalf("%d rounds committed before the budget ran out", n)
	}
	if eps := st.Ledger[len(st.Ledger)-1].Epsilon; eps > 5 {
		t.Fatalf("last committed ε %v above the budget", eps)
	}
	entries, end, err := ReadLedgerFileEnd(d.LedgerPath)
	if err != nil || len(entries) != n+1 || end == nil || end.State != EndBudgetExhausted {
		t.Fatalf("ledger file: %d entries, end %+v, %v", len(entries), end, err)
	}
}

// TestResumeAfterLeaderCrash stops the leader right after each kind of
// commit of round 1, hands the committed commands to a fresh FSM (as a new
// leader would have them) and checks that the new driver finishes the
// round with the same model as an uninterrupted run, without any worker
// asked to unmask two survivor sets.
func TestResumeAfterLeaderCrash(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 1
	ref := func() Hash {
		f := NewFSM()
		d := newTestDriver(t, cfg, f, NewLocal(f), NewMemRegistry(), coordtest.NewCohort(6, 9))
		if err := d.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return f.Ledger()[1].ModelHash
	}()
	points := map[string]func(Command) bool{
		"RoundStarted":         func(c Command) bool { return c.RoundStarted != nil },
		"Stage0Closed":         func(c Command) bool { return c.StageClosed != nil && c.StageClosed.Stage == 0 },
		"Stage1Closed":         func(c Command) bool { return c.StageClosed != nil && c.StageClosed.Stage == 1 },
		"SurvivorsCommitted":   func(c Command) bool { return c.SurvivorsCommitted != nil },
		"ConsistencyCommitted": func(c Command) bool { return c.ConsistencyCommitted != nil },
	}
	for name, crash := range points {
		t.Run(name, func(t *testing.T) {
			c := coordtest.NewCohort(6, 9)
			reg := NewMemRegistry()
			f1 := NewFSM()
			rec := &recorder{fsm: f1, crashAfter: crash}
			d1 := newTestDriver(t, cfg, f1, rec, reg, c)
			if err := d1.Run(context.Background()); !errors.Is(err, errCrash) {
				t.Fatalf("first leader: %v, want crash", err)
			}
			f2 := NewFSM()
			for _, b := range rec.cmds {
				if err := f2.Apply(b); err != nil {
					t.Fatal(err)
				}
			}
			if f2.State().Current == nil {
				t.Fatal("no round in flight after the crash")
			}
			before, signs := c.Calls(secagg.StageShareKeys), c.Calls(secagg.StageConsistency)
			d2 := newTestDriver(t, cfg, f2, NewLocal(f2), reg, c)
			if err := d2.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := f2.Ledger()[1].ModelHash; got != ref {
				t.Errorf("resumed round committed %s, uninterrupted run %s", got, ref)
			}
			if name == "Stage1Closed" || name == "SurvivorsCommitted" {
				if c.Calls(secagg.StageShareKeys) != before {
					t.Errorf("new leader asked for shares again although they were committed")
				}
			}
			if name == "ConsistencyCommitted" && c.Calls(secagg.StageConsistency) != signs {
				t.Errorf("new leader asked for consistency signatures again although they were committed")
			}
			if c.Calls(secagg.StageConsistency) == 0 {
				t.Errorf("the round ran no consistency check")
			}
			c.DistinctUnmaskSets(t)
		})
	}
}

// TestEquivocationGuard: after a failover with the survivors committed, one
// survivor cannot resend its masked input. The new leader must fail the
// round rather than ask anyone to unmask a different survivor set.
func TestEquivocationGuard(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 1
	c := coordtest.NewCohort(6, 10)
	reg := NewMemRegistry()
	f1 := NewFSM()
	rec := &recorder{fsm: f1, crashAfter: func(c Command) bool { return c.SurvivorsCommitted != nil }}
	d1 := newTestDriver(t, cfg, f1, rec, reg, c)
	if err := d1.Run(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("first leader: %v", err)
	}
	surv := f1.State().Current.Survivors
	victim := f1.State().Current.Announce.Sampled[surv[0]-1]
	c.DropAt(1, victim, secagg.StageMaskedInput)
	f2 := NewFSM()
	for _, b := range rec.cmds {
		if err := f2.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	d2 := newTestDriver(t, cfg, f2, NewLocal(f2), reg, c)
	err := d2.RunRound(context.Background(), 1)
	var rf *RoundFailedError
	if !errors.As(err, &rf) || !slices.Equal(rf.Missing, []WorkerID{victim}) {
		t.Fatalf("got %v, want round 1 failed naming %s", err, victim)
	}
	if n := c.UnmaskAsked(1); n != 0 {
		t.Errorf("%d workers were asked to unmask round 1", n)
	}
}

func TestNotEnoughOnlineWaits(t *testing.T) {
	cfg := testConfig()
	cfg.WorkersPerRound = 5
	c := coordtest.NewCohort(3, 11)
	f := NewFSM()
	d := newTestDriver(t, cfg, f, NewLocal(f), NewMemRegistry(), c)
	if err := d.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := d.RunRound(context.Background(), 1)
	if !errors.Is(err, ErrNotEnoughOnline) {
		t.Fatalf("got %v", err)
	}
	if f.State().Current != nil {
		t.Fatal("a round started without enough workers")
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"rounds":        func(c *Config) { c.Rounds = 0 },
		"min workers":   func(c *Config) { c.MinWorkers = 1 },
		"strategy":      func(c *Config) { c.Strategy = "krum:1" },
		"dp clip":       func(c *Config) { c.DP.Noise = 1 },
		"stage timeout": func(c *Config) { c.StageTimeout = 0 },
		"model":         func(c *Config) { c.Model = "nope" },
		"fraction":      func(c *Config) { c.WorkersPerRound = 0; c.Fraction = 2 },
	} {
		c := testConfig()
		mod(&c)
		err := c.Validate()
		if err == nil || !containsFold(err.Error(), name) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if err := testConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// With DP on, the announced noise share must cover the smallest sum SecAgg+
// could unmask: MinClients never exceeds the round's threshold, even when
// MinWorkers does (three workers: k = 2, t = 2).
func TestDPMinClientsWithinThreshold(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 1
	cfg.WorkersPerRound = 3
	cfg.MinWorkers = 3
	cfg.DP.Clip, cfg.DP.Noise = 1, 1
	c := coordtest.NewCohort(3, 4)
	f := NewFSM()
	rec := &recorder{fsm: f}
	d := newTestDriver(t, cfg, f, rec, NewMemRegistry(), c)
	if err := d.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.RunRound(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	a := announceOf(t, rec, 1)
	if a.DP.MinClients < 1 || a.DP.MinClients > a.SecAgg.Threshold {
		t.Fatalf("DP.MinClients %d outside [1, threshold %d]", a.DP.MinClients, a.SecAgg.Threshold)
	}
	if a.DP.MinClients != 2 {
		t.Fatalf("DP.MinClients %d, want 2 (threshold of 3 workers)", a.DP.MinClients)
	}
}

// A leader that dies right after committing the last model leaves the
// federated evaluation to its successor, which records it before finishing.
func TestMetricsRecordedAfterCrashAtModelCommit(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 1
	c := coordtest.NewCohort(6, 9)
	reg := NewMemRegistry()
	f1 := NewFSM()
	rec := &recorder{fsm: f1, crashAfter: func(c Command) bool { return c.ModelCommitted != nil && c.ModelCommitted.Round > 0 }}
	d1 := newTestDriver(t, cfg, f1, rec, reg, c)
	if err := d1.Run(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("first leader: %v, want crash", err)
	}
	f2 := NewFSM()
	for _, b := range rec.cmds {
		if err := f2.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	if st := f2.State(); len(st.Metrics) != 0 || st.CommittedRounds() != 1 {
		t.Fatalf("after the crash: %d metrics, %d rounds committed; want 0 and 1", len(st.Metrics), st.CommittedRounds())
	}
	d2 := newTestDriver(t, cfg, f2, NewLocal(f2), reg, c)
	if err := d2.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := f2.State()
	if len(st.Metrics) != 1 || st.Metrics[0].Round != 1 {
		t.Fatalf("metrics after the new leader: %+v, want one record for round 1", st.Metrics)
	}
	if st.CommittedRounds() != 1 {
		t.Fatalf("%d rounds committed, want 1 (no extra round)", st.CommittedRounds())
	}
}

// With secure evaluation the announced model's metrics ride in the round's
// SecAgg+ sum: the driver records the mean over the survivors for the model
// the round trained from, still trains the same model (the update part of
// the sum is the plain mean), and asks no worker for its own figures.
func TestSecureEvaluationRecordsAggregateMetrics(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 3
	cfg.SecureEvaluation = true
	c := coordtest.NewCohort(8, 1)
	f := NewFSM()
	rec := &recorder{fsm: f}
	reg := NewMemRegistry()
	d := newTestDriver(t, cfg, f, rec, reg, c)
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := f.State()
	if st.CommittedRounds() != 3 {
		t.Fatalf("committed %d rounds", st.CommittedRounds())
	}
	for r := uint64(1); r <= 3; r++ {
		a := announceOf(t, rec, r)
		if a.SecAgg.Dim != a.NumParams+wire.EvalWords {
			t.Fatalf("round %d: secagg dim %d for %d parameters, want %d", r, a.SecAgg.Dim, a.NumParams, a.NumParams+wire.EvalWords)
		}
		checkPlainMean(t, f, reg, c, a, r)
	}
	if n := c.Calls(secagg.StageDone); n != 0 {
		t.Fatalf("%d evaluation requests sent, want none with secure evaluation", n)
	}
	// Rounds 2 and 3 evaluated the models of rounds 1 and 2; the last
	// model has none yet, the initial one is never recorded.
	if len(st.Metrics) != 2 {
		t.Fatalf("metrics %+v, want two records", st.Metrics)
	}
	for i, m := range st.Metrics {
		v := uint64(i + 1)
		h := st.Ledger[v].ModelHash
		want := float64(h[0]) / 255 // every fake worker reports this
		if m.Round != v || math.Abs(m.Accuracy-want) > 1e-3 || math.Abs(m.Loss-(1-want)) > 1e-2 || m.Workers != len(st.Ledger[v+1].Participants) {
			t.Errorf("metrics[%d] = %+v, want round %d, accuracy %.4f, loss %.4f from %d workers", i, m, v, want, 1-want, len(st.Ledger[v+1].Participants))
		}
	}
}

// budgetCohort's workers refuse rounds whose announced ε passes their
// budget, as worker.Node's policy does.
type budgetCohort struct {
	*coordtest.Cohort
	max float64
}

func (b budgetCohort) Advertise(ctx context.Context, w WorkerID, a *Announce) (secagg.AdvertiseKeys, error) {
	if a.Epsilon > b.max {
		return secagg.AdvertiseKeys{}, &RefusalError{Worker: w, Round: a.Round, Reason: fmt.Sprintf("worker refuses round %d: announced ε %.4g after this round is above policy.max_epsilon", a.Round, a.Epsilon)}
	}
	return b.Cohort.Advertise(ctx, w, a)
}

// When the institutions refuse rounds for their own budget, so that too
// few are left, the study ends budget-exhausted with the reason (it would
// otherwise fail until the retry limit).
func TestWorkersBudgetEndsStudy(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 50
	cfg.WorkersPerRound = 3
	cfg.RetryLimit = 10
	cfg.DP = DPParams{Clip: 1, Noise: 3}
	cfg.ClipRange = 0
	c := budgetCohort{coordtest.NewCohort(3, 6), 4}
	f := NewFSM()
	d := newTestDriver(t, cfg, f, NewLocal(f), NewMemRegistry(), c)
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := f.State()
	if st.Ended == nil || st.Ended.State != EndBudgetExhausted || !strings.Contains(st.Ended.Reason, "refused it for their privacy budget") {
		t.Fatalf("end %+v, want budget-exhausted from the workers' refusals", st.Ended)
	}
	if st.Failures != 1 {
		t.Fatalf("%d failed rounds, want the study to end at the first budget refusal", st.Failures)
	}
}
