package metrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/metrics"
)

func TestRefusalReasonLabelsTheWorkersTexts(t *testing.T) {
	for text, want := range map[string]string{
		`model "cnn" is not in policy.accepted_models [2nn]`:                                    "model",
		"cohort of 2 institutions is below policy.min_cohort 3":                                 "min_cohort",
		"round has no differential privacy (dp.noise = 0) and policy.max_epsilon is 8":          "no_dp",
		"ε after this round would be 9.1, above policy.max_epsilon 8":                           "budget",
		"dp.min_clients 5 exceeds the SecAgg+ threshold 3, so an unmasked sum could carry less": "dp_threshold",
		"this worker's weight 2e+04 exceeds secagg.max_weight 1e+04":                            "weight",
		"already answered survivor set [1 2 3], refusing [1 2]":                                 "equivocation",
		"round 4 is not after the last committed round 5":                                       "stale",
		"worker refuses round 7: cohort of 2 institutions is below policy.min_cohort 3":         "min_cohort",
		"round has no differential privacy (dp.noise = 0) and policy.max_epsilon requires it":   "no_dp",
		"announced ε 9.1 after this round is above policy.max_epsilon":                          "budget",
		"this worker's weight exceeds secagg.max_weight 1":                                      "weight",
		`model "mlp:16" on the local data does not have the announced num_params 12`:            "model",
		"cohort of 16384 institutions is above policy.max_cohort 1024":                          "work_limit",
		"SecAgg+ degree 1023 is above policy.max_secagg_degree 256":                             "work_limit",
		`policy.evaluation is "none": this worker answers no evaluation`:                        "evaluation",
		"a model was already evaluated for round 1; one model per round":                        "equivocation",
		"the announced model of round 1 is not the one this worker evaluated for that round":    "equivocation",
		"this worker holds no accepted announcement of round 7, so no model of it to evaluate":  "stale",
		"something new": "other",
	} {
		if got := metrics.RefusalReason(text); got != want {
			t.Errorf("RefusalReason(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestCountsFromState(t *testing.T) {
	st := coordinator.State{Round: 5, Models: make([]coordinator.ModelRecord, 4), Current: &coordinator.RoundState{Round: 5}}
	if s, c, f := metrics.Counts(st); s != 5 || c != 3 || f != 1 {
		t.Fatalf("Counts = %d, %d, %d; want 5 started, 3 committed, 1 failed (one in flight)", s, c, f)
	}
	st.Current = nil
	if _, _, f := metrics.Counts(st); f != 2 {
		t.Fatalf("failed = %d, want 2", f)
	}
}

type fakeRepl struct{ err error }

func (r *fakeRepl) Apply(context.Context, []byte) error { return r.err }
func (r *fakeRepl) IsLeader() bool                      { return true }

func mustEncode(t *testing.T, c coordinator.Command) []byte {
	t.Helper()
	b, err := coordinator.EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReplicatorTimesStagesCommitToCommit(t *testing.T) {
	now := time.Unix(1000, 0)
	c := metrics.NewCoordinator(metrics.CoordinatorSource{State: func() coordinator.State { return coordinator.State{} }, Now: func() time.Time { return now }})
	inner := &fakeRepl{}
	r := c.Replicator(inner)
	step := func(d time.Duration, cmd coordinator.Command) {
		now = now.Add(d)
		if err := r.Apply(context.Background(), mustEncode(t, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	sampled := []coordinator.WorkerID{"a", "b", "c", "d"}
	step(0, coordinator.Command{RoundStarted: &coordinator.RoundStarted{Round: 1, OnlineCount: 6, Announce: coordinator.Announce{Sampled: sampled}}})
	step(2*time.Second, coordinator.Command{StageClosed: &coordinator.StageClosed{Round: 1, Stage: secagg.StageAdvertise}})
	step(3*time.Second, coordinator.Command{StageClosed: &coordinator.StageClosed{Round: 1, Stage: secagg.StageShareKeys}})
	step(5*time.Second, coordinator.Command{SurvivorsCommitted: &coordinator.SurvivorsCommitted{Round: 1, Survivors: []uint32{1, 2, 3}, Dropped: []uint32{4}}})
	step(7*time.Second, coordinator.Command{ModelCommitted: &coordinator.ModelCommitted{Round: 1}})
	step(11*time.Second, coordinator.Command{MetricsRecorded: &coordinator.MetricsRecorded{Round: 1}})
	// A refused commit is not observed.
	inner.err = errors.New("not the leader")
	now = now.Add(time.Hour)
	_ = r.Apply(context.Background(), mustEncode(t, coordinator.Command{StageClosed: &coordinator.StageClosed{Round: 2, Stage: secagg.StageAdvertise}}))

	want := `
# HELP sovereign_round_workers Workers of the last round whose survivors this replica committed: online when sampling, sampled, survived (in the sum), dropped (sampled, not in the sum).
# TYPE sovereign_round_workers gauge
sovereign_round_workers{set="dropped"} 1
sovereign_round_workers{set="online"} 6
sovereign_round_workers{set="sampled"} 4
sovereign_round_workers{set="survived"} 3
`
	if err := testutil.GatherAndCompare(c.Registry(), strings.NewReader(want), "sovereign_round_workers"); err != nil {
		t.Fatal(err)
	}
	mfs, err := c.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]float64{}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "sovereign_stage_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			sums[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleSum()
			counts[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
		}
	}
	for stage, sec := range map[string]float64{"advertise": 2, "sharekeys": 3, "masked": 5, "unmask": 7, "evaluate": 11} {
		if counts[stage] != 1 || sums[stage] != sec {
			t.Errorf("stage %s: %d observations summing %v s, want 1 of %v s", stage, counts[stage], sums[stage], sec)
		}
	}
}

// A new leader that resumes a round mid-way has no start mark for the
// stage in flight: it must not report a duration for it.
func TestResumedStageNotTimed(t *testing.T) {
	c := metrics.NewCoordinator(metrics.CoordinatorSource{State: func() coordinator.State { return coordinator.State{} }})
	r := c.Replicator(&fakeRepl{})
	if err := r.Apply(context.Background(), mustEncode(t, coordinator.Command{StageClosed: &coordinator.StageClosed{Round: 3, Stage: secagg.StageShareKeys}})); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c.Registry(), "sovereign_stage_duration_seconds"); n != 6 {
		t.Fatalf("%d stage series, want the 6 pre-declared", n)
	}
	mfs, _ := c.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() == "sovereign_stage_duration_seconds" {
			for _, m := range mf.GetMetric() {
				if m.GetHistogram().GetSampleCount() != 0 {
					t.Fatalf("stage %s timed without a start", m.GetLabel()[0].GetValue())
				}
			}
		}
	}
}

type refusingCohort struct{ coordinator.Cohort }

func (refusingCohort) Advertise(_ context.Context, w coordinator.WorkerID, a *coordinator.Announce) (secagg.AdvertiseKeys, error) {
	return secagg.AdvertiseKeys{}, &coordinator.RefusalError{Worker: w, Round: a.Round, Reason: "worker refuses round 2: cohort of 2 institutions is below policy.min_cohort 3"}
}

func TestCohortCountsRefusals(t *testing.T) {
	c := metrics.NewCoordinator(metrics.CoordinatorSource{State: func() coordinator.State { return coordinator.State{} }})
	co := c.Cohort(refusingCohort{})
	for range 3 {
		if _, err := co.Advertise(context.Background(), "w9", &coordinator.Announce{Round: 2}); err == nil {
			t.Fatal("the wrapper swallowed the refusal")
		}
	}
	if v := refusals(c, "min_cohort"); v != 3 {
		t.Fatalf("refusals{min_cohort} = %v, want 3", v)
	}
	rs := c.Refusals()
	if len(rs) != 3 || rs[0].Worker != "w9" || rs[0].Round != 2 || rs[0].Label != "min_cohort" {
		t.Fatalf("refusals kept: %+v", rs)
	}
}

// refusals reads one sovereign_refusals_total series (-1 if absent).
func refusals(c *metrics.Coordinator, reason string) float64 {
	mfs, _ := c.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() == "sovereign_refusals_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestLeaderChanges(t *testing.T) {
	c := metrics.NewCoordinator(metrics.CoordinatorSource{State: func() coordinator.State { return coordinator.State{} }})
	for _, l := range []string{"", "a", "a", "", "b", "b", "a"} {
		c.LeaderObserved(l)
	}
	if n := testutil.CollectAndCount(c.Registry(), "sovereign_raft_leader_changes_total"); n != 1 {
		t.Fatal(n)
	}
	want := "# HELP sovereign_raft_leader_changes_total Times this replica saw the Raft leader change to a new known leader.\n# TYPE sovereign_raft_leader_changes_total counter\nsovereign_raft_leader_changes_total 3\n"
	if err := testutil.GatherAndCompare(c.Registry(), strings.NewReader(want), "sovereign_raft_leader_changes_total"); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerObserver(t *testing.T) {
	dir := t.TempDir()
	w := metrics.NewWorker(metrics.WorkerSource{Epsilon: func() (float64, error) { return 2.5, nil }, Budget: 8, StoreDir: dir})
	w.RoundJoined(1)
	w.RoundJoined(2)
	w.RoundRefused(3, "ε after this round would be 9, above policy.max_epsilon 8")
	w.Trained(1, 1500*time.Millisecond)
	w.Redialed("coord-1")
	want := `
# HELP sovereign_worker_epsilon_budget The worker's policy.max_epsilon (+Inf when unset).
# TYPE sovereign_worker_epsilon_budget gauge
sovereign_worker_epsilon_budget 8
# HELP sovereign_worker_epsilon_spent Total ε this worker has spent in committed rounds (NaN if its store cannot be read).
# TYPE sovereign_worker_epsilon_spent gauge
sovereign_worker_epsilon_spent 2.5
# HELP sovereign_worker_redials_total Dials of a coordinator after a lost connection or a failed dial, by coordinator name.
# TYPE sovereign_worker_redials_total counter
sovereign_worker_redials_total{coordinator="coord-1"} 1
# HELP sovereign_worker_rounds_joined_total Rounds this worker accepted (answered stage 0 for the first time).
# TYPE sovereign_worker_rounds_joined_total counter
sovereign_worker_rounds_joined_total 2
`
	if err := testutil.GatherAndCompare(w.Registry(), strings.NewReader(want), "sovereign_worker_epsilon_budget", "sovereign_worker_epsilon_spent",
		"sovereign_worker_redials_total", "sovereign_worker_rounds_joined_total"); err != nil {
		t.Fatal(err)
	}
}

// The worker's own ε per study: one sample per study of its privacy
// ledger, the default study named "default".
func TestWorkerEpsilonPerStudy(t *testing.T) {
	w := metrics.NewWorker(metrics.WorkerSource{Epsilon: func() (float64, error) { return 0, nil },
		OwnEpsilon:        func() (float64, error) { return 7, nil },
		OwnEpsilonByStudy: func() (map[string]float64, error) { return map[string]float64{"": 4, "sepsis": 5}, nil }})
	want := `
# HELP sovereign_worker_epsilon_own_study ε of this worker's own accountant (q = 1) over the rounds of one study; policy.max_epsilon caps each, policy.max_epsilon_total their composition (worker_epsilon_own).
# TYPE sovereign_worker_epsilon_own_study gauge
sovereign_worker_epsilon_own_study{study="default"} 4
sovereign_worker_epsilon_own_study{study="sepsis"} 5
`
	if err := testutil.GatherAndCompare(w.Registry(), strings.NewReader(want), "sovereign_worker_epsilon_own_study"); err != nil {
		t.Fatal(err)
	}
}

func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		addr     string
		loopback bool
		bad      bool
	}{
		{"127.0.0.1:9464", true, false}, {"[::1]:9464", true, false}, {"localhost:9464", true, false},
		{"0.0.0.0:9464", false, false}, {":9464", false, false}, {"10.0.0.5:9464", false, false},
		{"9464", false, true}, {"127.0.0.1:", false, true}, {"example.org:9464", false, true},
	} {
		loop, err := metrics.CheckListen("metrics_listen", c.addr)
		if (err != nil) != c.bad || loop != c.loopback {
			t.Errorf("CheckListen(%q) = %v, %v; want loopback %v, error %v", c.addr, loop, err, c.loopback, c.bad)
		}
		if err != nil && !strings.Contains(err.Error(), "metrics_listen") {
			t.Errorf("error %q does not name the key", err)
		}
	}
}

// Refusal texts come from workers, who may lie: whatever they send, the
// label takes one of a fixed set of values, so a worker cannot mint new
// Prometheus series.
func TestAttackRefusalTextCannotMintLabels(t *testing.T) {
	c := metrics.NewCoordinator(metrics.CoordinatorSource{State: func() coordinator.State { return coordinator.State{} }})
	before := testutil.CollectAndCount(c.Registry(), "sovereign_refusals_total")
	co := c.Cohort(textCohort{})
	for i := range 500 {
		_, _ = co.Advertise(context.Background(), coordinator.WorkerID("w"), &coordinator.Announce{Round: uint64(i)})
	}
	for _, text := range []string{"", "\x00\xff", strings.Repeat("policy.", 1000), `reason="x"} 1`} {
		if l := metrics.RefusalReason(text); !contains(metrics.RefusalReasons, l) {
			t.Fatalf("RefusalReason(%q) = %q, not a declared label", text, l)
		}
	}
	if after := testutil.CollectAndCount(c.Registry(), "sovereign_refusals_total"); after != before {
		t.Fatalf("refusal series grew from %d to %d", before, after)
	}
	if n := len(c.Refusals()); n != 256 {
		t.Fatalf("%d refusals kept, want the last 256", n)
	}
}

type textCohort struct{ coordinator.Cohort }

func (textCohort) Advertise(_ context.Context, w coordinator.WorkerID, a *coordinator.Announce) (secagg.AdvertiseKeys, error) {
	return secagg.AdvertiseKeys{}, &coordinator.RefusalError{Worker: w, Round: a.Round, Reason: strings.Repeat("z", int(a.Round)) + " invented reason " + string(rune(0x4e00+int(a.Round)))}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
