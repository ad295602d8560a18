package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/p2p"
)

// TestAttackWorkerCannotStartStudy: the study protocol admits operators
// and coordinators only; a worker's request to start (or stop) a study is
// refused by the role rule before any handler runs, and nothing changes.
// A study whose model does not fit the workers' data is refused at start
// with every online worker named, from their answers over the real
// study-plan protocol.
func TestAttackWorkerCannotStartStudy(t *testing.T) {
	f := newNetFed(t, 3, 41)
	cfg := netConfig()
	fsm := coordinator.NewFSM()
	repl := coordinator.NewLocal(fsm)
	reg := coordinator.NewMemRegistry()
	def, err := coordinator.NewDriver(cfg, fsm, repl, reg, f.cohort, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	sched := coordinator.NewScheduler(def, func(name string, c coordinator.Config) (*coordinator.Driver, error) {
		return coordinator.NewDriver(c, fsm.Study(name), repl, reg, f.cohort, quietLogger())
	}, quietLogger())
	sched.CheckPlan = f.cohort.CheckStudyPlan
	if err := def.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := coordinator.ServeStudies(f.coordHost, sched, repl.IsLeader, func() peer.ID { return f.coordHost.ID() }, quietLogger()); err != nil {
		t.Fatal(err)
	}
	spec := &coordinator.StudySpec{Rounds: coordinator.RoundsTable{Model: ptr("logreg"), Input: []int{1, 8, 8}, Classes: ptr(10), Rounds: ptr(1),
		WorkersPerRound: ptr(3), MinWorkers: ptr(3), MaxWeight: ptr(1000.0), Clip: ptr(2.0), Noise: ptr(0.3)}}
	b, _ := json.Marshal(coordinator.StudyRequest{Op: "start", Name: "w", Spec: spec})
	var out wrapperspb.BytesValue
	err = p2p.NewClient(f.hosts[0]).Request(context.Background(), f.coordHost.ID(), p2p.ProtoStudy, wrapperspb.Bytes(b), &out)
	if err == nil {
		t.Fatalf("a worker's study request was answered: %s", out.Value)
	}
	if fsm.Study("w").Exists() {
		t.Fatal("a worker started a study")
	}
	// The same study is fine for the workers' data (8×8 digits).
	if _, err := sched.Handle(context.Background(), coordinator.StudyRequest{Op: "start", Name: "ok", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	// One whose input does not fit is refused, naming each worker.
	bad := *spec
	bad.Rounds.Input = []int{1, 1, 4}
	_, err = sched.Handle(context.Background(), coordinator.StudyRequest{Op: "start", Name: "misfit", Spec: &bad})
	var ie *coordinator.IncompatibleError
	if !errors.As(err, &ie) || len(ie.Workers) != 3 || !strings.Contains(err.Error(), "on the local data does not have the planned num_params") {
		t.Fatalf("a study that fits no worker's data: err = %v, want every worker named", err)
	}
	if fsm.Study("misfit").Exists() {
		t.Fatal("the refused study exists")
	}
}
