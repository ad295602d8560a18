package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
)

func ptr[T any](v T) *T { return &v }

// studySpec is a created study like testConfig's default one.
func studySpec(model string, rounds int) *StudySpec {
	return &StudySpec{Rounds: RoundsTable{
		Model: ptr(model), Input: []int{1, 1, 4}, Classes: ptr(2), Rounds: ptr(rounds), WorkersPerRound: ptr(5),
		MinWorkers: ptr(3), MaxWeight: ptr(100.0), Seed: ptr(int64(9)), PollInterval: ptr("10ms"),
	}}
}

type studyFixture struct {
	reg   ModelStore
	fsm   *FSM
	rec   *recorder
	sched *Scheduler
	stop  func()
	errc  chan error
}

// newStudies starts a scheduler of a default study (testConfig, rounds
// models) over a seeded in-memory cohort of six workers.
func newStudies(t *testing.T, rounds int) *studyFixture {
	t.Helper()
	cfg := testConfig()
	cfg.Rounds = rounds
	cfg.PollInterval = 10 * time.Millisecond
	f := NewFSM()
	rec := &recorder{fsm: f}
	reg := NewMemRegistry()
	cohort := coordtest.NewCohort(6, 21)
	def := newTestDriver(t, cfg, f, rec, reg, cohort)
	sched := NewScheduler(def, func(name string, c Config) (*Driver, error) {
		return NewDriver(c, f.Study(name), rec, reg, cohort, quietLogger())
	}, quietLogger())
	ctx, cancel := context.WithCancel(context.Background())
	fx := &studyFixture{reg: reg, fsm: f, rec: rec, sched: sched, errc: make(chan error, 1)}
	go func() { fx.errc <- sched.Run(ctx) }()
	var once sync.Once
	fx.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-fx.errc; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("scheduler: %v", err)
			}
		})
	}
	t.Cleanup(fx.stop)
	return fx
}

// waitUntil polls cond with a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ended(f *FSM, name string) string {
	st := f.Study(name).State()
	if st.Ended == nil {
		return ""
	}
	return st.Ended.State
}

// TestSchedulerInterleavesStudies: two created studies started together
// run round by round in turn, each with its own ledger; the replicated
// commands rebuild the same state and snapshot, which restores.
func TestSchedulerInterleavesStudies(t *testing.T) {
	fx := newStudies(t, 2)
	waitUntil(t, "the default study to finish", func() bool { return ended(fx.fsm, DefaultStudy) == EndFinished })
	ctx := context.Background()
	for _, s := range []struct {
		name, model string
	}{{"a", "logreg"}, {"b", "mlp:3"}} {
		if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "start", Name: s.name, Spec: studySpec(s.model, 3)}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "studies a and b to finish", func() bool {
		return ended(fx.fsm, "a") == EndFinished && ended(fx.fsm, "b") == EndFinished
	})
	fx.stop()
	var ra, rb []uint64
	for _, name := range []string{"a", "b"} {
		st := fx.fsm.Study(name).State()
		if st.CommittedRounds() != 3 || st.Attempts != 3 {
			t.Fatalf("study %s: %d models in %d rounds, want 3 in 3", name, st.CommittedRounds(), st.Attempts)
		}
		if err := VerifyLedger(st.Ledger); err != nil {
			t.Fatalf("study %s: %v", name, err)
		}
		for _, e := range st.Ledger[1:] {
			if name == "a" {
				ra = append(ra, e.Round)
			} else {
				rb = append(rb, e.Round)
			}
		}
	}
	if !(ra[0] < rb[len(rb)-1] && rb[0] < ra[len(ra)-1]) {
		t.Fatalf("rounds of a %v and b %v do not interleave", ra, rb)
	}
	// Determinism across studies: the commands rebuild the snapshot.
	f2 := NewFSM()
	for i, b := range fx.rec.cmds {
		if err := f2.Apply(b); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	s1, s2 := snap(t, fx.fsm), snap(t, f2)
	if !bytes.Equal(s1, s2) {
		t.Fatal("replayed commands give another snapshot")
	}
	f3 := NewFSM()
	if err := f3.Restore(bytes.NewReader(s1)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap(t, f3), s1) || f3.NextRound() != fx.fsm.NextRound() {
		t.Fatal("restored state differs")
	}
	for i, b := range fx.rec.cmds {
		if err := f3.Apply(b); err == nil {
			t.Fatalf("replayed command %d accepted", i)
		}
	}
}

// TestStudyPauseResumeStop: a paused study starts no round until resumed;
// a stopped one ends as stopped and is not resumed.
func TestStudyPauseResumeStop(t *testing.T) {
	fx := newStudies(t, 1)
	ctx := context.Background()
	waitUntil(t, "the default study to finish", func() bool { return ended(fx.fsm, DefaultStudy) == EndFinished })
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "start", Name: "p", Spec: studySpec("logreg", 50)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "pause", Name: "p", Reason: "data refresh"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the pause to take", func() bool { st := fx.fsm.Study("p").State(); return st.Paused != nil && st.Current == nil })
	at := fx.fsm.Study("p").State().Attempts
	// While paused, the scheduler starts nothing: give it many polls.
	for range 20 {
		time.Sleep(10 * time.Millisecond)
		if st := fx.fsm.Study("p").State(); st.Attempts != at {
			t.Fatalf("a paused study started round %d", st.Round)
		}
	}
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "resume", Name: "p"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the study to run again", func() bool { st := fx.fsm.Study("p").State(); return st.CommittedRounds() >= at+2 })
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "stop", Name: "p", Reason: "enough"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the study to stop", func() bool { return ended(fx.fsm, "p") == EndStopped })
	if st := fx.fsm.Study("p").State(); st.Ended.Reason != "enough" || st.CommittedRounds() >= 50 {
		t.Fatalf("stopped study: %+v after %d models", st.Ended, st.CommittedRounds())
	}
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "resume", Name: "p"}); err == nil || !strings.Contains(err.Error(), "not resumed") {
		t.Fatalf("a stopped study was resumed (%v)", err)
	}
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "start", Name: "p", Spec: studySpec("logreg", 2)}); err == nil {
		t.Fatal("a study name was reused")
	}
}

// TestAttackStudyCommandsRefused: commands a leader (or a replayed log)
// could use to mix studies up are refused, naming the study, and change
// nothing: a round of one study while another's is in flight, an
// announcement of another study, a command of an unknown study, a created
// study with a bad or taken name or an initial model with participants.
func TestAttackStudyCommandsRefused(t *testing.T) {
	fx := newStudies(t, 1)
	ctx := context.Background()
	waitUntil(t, "the default study to finish", func() bool { return ended(fx.fsm, DefaultStudy) == EndFinished })
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "start", Name: "a", Spec: studySpec("logreg", 1)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "study a to finish", func() bool { return ended(fx.fsm, "a") == EndFinished })
	fx.stop()
	h, _ := fx.fsm.Study("a").LatestModel()
	// Study m: created, no round yet.
	mk, _ := EncodeCommand(Command{Study: "m", StudyCreated: &StudyCreated{Name: "m", Spec: *studySpec("logreg", 1), Initial: ModelCommitted{ModelHash: h.Hash, Participants: []WorkerID{}}}})
	if err := fx.fsm.Apply(mk); err != nil {
		t.Fatal(err)
	}
	before := snap(t, fx.fsm)
	// The default study's first RoundStarted, replayed as study m's next
	// round on m's model, with the announcement still naming the default.
	var rs Command
	for _, b := range fx.rec.cmds {
		if c, _ := DecodeCommand(b); c.RoundStarted != nil {
			rs = c
			break
		}
	}
	cases := map[string]Command{}
	next := fx.fsm.NextRound()
	c := rs
	c.Study = "m"
	c.RoundStarted = &RoundStarted{Round: next, Announce: rs.RoundStarted.Announce, OnlineCount: rs.RoundStarted.OnlineCount}
	c.RoundStarted.Announce.Round, c.RoundStarted.Announce.SecAgg.Round = next, next
	c.RoundStarted.Announce.ModelHash, c.RoundStarted.Announce.ModelVersion = h.Hash, 0
	cases["announce of another study"] = c
	c2 := rs
	c2.Study, c2.RoundStarted = "a", &RoundStarted{Round: fx.fsm.NextRound(), Announce: rs.RoundStarted.Announce, OnlineCount: rs.RoundStarted.OnlineCount}
	c2.RoundStarted.Announce.Study = "a"
	c2.RoundStarted.Announce.ModelHash, c2.RoundStarted.Announce.ModelVersion = h.Hash, h.Round
	cases["study a ended"] = c2
	c3 := rs
	c3.Study = "nope"
	cases["study unknown"] = c3
	for name, spec := range map[string]*StudySpec{"default": studySpec("logreg", 1), "Bad Name": studySpec("logreg", 1), "a": studySpec("logreg", 1)} {
		cases["create "+name] = Command{Study: name, StudyCreated: &StudyCreated{Name: name, Spec: *spec, Initial: ModelCommitted{ModelHash: h.Hash, Participants: []WorkerID{}}}}
	}
	cases["create with participants"] = Command{Study: "z", StudyCreated: &StudyCreated{Name: "z", Spec: *studySpec("logreg", 1), Initial: ModelCommitted{ModelHash: h.Hash, Participants: []WorkerID{"w01"}}}}
	cases["create under another name"] = Command{Study: "y", StudyCreated: &StudyCreated{Name: "z", Spec: *studySpec("logreg", 1), Initial: ModelCommitted{ModelHash: h.Hash, Participants: []WorkerID{}}}}
	cases["create with a spec that does not validate"] = Command{Study: "z", StudyCreated: &StudyCreated{Name: "z", Spec: *studySpec("nosuchmodel", 1), Initial: ModelCommitted{ModelHash: h.Hash, Participants: []WorkerID{}}}}
	for name, c := range cases {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		err = fx.fsm.Apply(b)
		var ce *CommandError
		if !errors.As(err, &ce) {
			t.Errorf("%s: accepted or not a CommandError: %v", name, err)
			continue
		}
		if name == "announce of another study" && !strings.Contains(err.Error(), `announce of study ""`) {
			t.Errorf("%s: refused for another reason: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if !bytes.Equal(snap(t, fx.fsm), before) {
		t.Fatal("refused commands changed the state")
	}
}

// TestAttackTwoRoundsInFlight: a RoundStarted of a second study while a
// round of the first is in flight is refused: at most one round in
// flight in the federation, so no worker sees two rounds' state at once.
func TestAttackTwoRoundsInFlight(t *testing.T) {
	fx := newStudies(t, 1)
	ctx := context.Background()
	waitUntil(t, "the default study to finish", func() bool { return ended(fx.fsm, DefaultStudy) == EndFinished })
	for _, n := range []string{"a", "b"} {
		if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "pause", Name: n}); err == nil {
			t.Fatalf("paused unknown study %s", n)
		}
		if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "start", Name: n, Spec: studySpec("logreg", 1)}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "a and b to finish", func() bool { return ended(fx.fsm, "a") != "" && ended(fx.fsm, "b") != "" })
	fx.stop()
	// Rebuild the log up to a's RoundStarted, then try b's with a's round
	// still in flight.
	f := NewFSM()
	var started []Command
	for _, b := range fx.rec.cmds {
		c, _ := DecodeCommand(b)
		if c.RoundStarted != nil && c.Study != DefaultStudy {
			started = append(started, c)
		}
	}
	if len(started) != 2 {
		t.Fatalf("%d rounds started in a and b, want 2", len(started))
	}
	first := started[0]
	for _, b := range fx.rec.cmds {
		c, _ := DecodeCommand(b)
		if err := f.Apply(b); err != nil {
			t.Fatal(err)
		}
		if c.RoundStarted != nil && c.Study == first.Study {
			break
		}
	}
	second := started[1]
	second.RoundStarted.Round = f.NextRound()
	second.RoundStarted.Announce.Round, second.RoundStarted.Announce.SecAgg.Round = f.NextRound(), f.NextRound()
	b, _ := EncodeCommand(second)
	err := f.Apply(b)
	if err == nil || !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "in flight") {
		t.Fatalf("a second round in flight was accepted or refused for another reason: %v", err)
	}
}

// TestStudyResumedWithNewSpec: a failed created study is resumed with a
// fixed spec (here more rounds and another retry limit) and finishes under
// it; a spec with another model is refused and changes nothing.
func TestStudyResumedWithNewSpec(t *testing.T) {
	fx := newStudies(t, 1)
	ctx := context.Background()
	waitUntil(t, "the default study to finish", func() bool { return ended(fx.fsm, DefaultStudy) == EndFinished })
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "start", Name: "r", Spec: studySpec("logreg", 50)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "pause", Name: "r"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the pause", func() bool { st := fx.fsm.Study("r").State(); return st.Paused != nil && st.Current == nil })
	// The study fails (as after retry_limit failed rounds).
	st := fx.fsm.Study("r").State()
	b, _ := EncodeCommand(Command{Study: "r", StudyEnded: &StudyEnded{Round: st.Round, State: EndFailed, Reason: "test"}})
	if err := fx.rec.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	other := studySpec("mlp:3", 2)
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "resume", Name: "r", Spec: other}); err == nil || !strings.Contains(err.Error(), "start a new study") {
		t.Fatalf("a resume with another model: %v", err)
	}
	if ended(fx.fsm, "r") != EndFailed {
		t.Fatal("the refused resume changed the study")
	}
	fixed := studySpec("logreg", st.CommittedRounds()+2)
	fixed.Rounds.RetryLimit = ptr(7)
	if _, err := fx.sched.Handle(ctx, StudyRequest{Op: "resume", Name: "r", Spec: fixed}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the resumed study to finish", func() bool { return ended(fx.fsm, "r") == EndFinished })
	after := fx.fsm.Study("r").State()
	if got := after.CommittedRounds(); got != st.CommittedRounds()+2 {
		t.Fatalf("resumed study committed %d models, want %d (the new spec's rounds)", got, st.CommittedRounds()+2)
	}
	if sp := fx.fsm.Study("r").Spec(); sp == nil || *sp.Rounds.RetryLimit != 7 {
		t.Fatal("the new spec was not installed")
	}
}

// TestSchedulerReopensDefaultStudyWithMoreRounds: a finished default study
// goes on when the coordinator restarts with a higher rounds.
func TestSchedulerReopensDefaultStudyWithMoreRounds(t *testing.T) {
	fx := newStudies(t, 1)
	waitUntil(t, "the default study to finish", func() bool { return ended(fx.fsm, DefaultStudy) == EndFinished })
	fx.stop()
	cfg := testConfig()
	cfg.Rounds = 2
	cfg.PollInterval = 10 * time.Millisecond
	cohort := coordtest.NewCohort(6, 21)
	def := newTestDriver(t, cfg, fx.fsm, fx.rec, fx.reg, cohort)
	sched := NewScheduler(def, func(name string, c Config) (*Driver, error) {
		return NewDriver(c, fx.fsm.Study(name), fx.rec, fx.reg, cohort, quietLogger())
	}, quietLogger())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- sched.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := fx.fsm.State()
		if st.Ended != nil && st.CommittedRounds() == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reopened study did not finish its second model: ended %+v, %d models, %d failures, recent %v", st.Ended, st.CommittedRounds(), st.Failures, st.RecentFailures)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
