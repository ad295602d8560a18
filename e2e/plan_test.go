package e2e

import (
	"strings"
	"testing"
	"time"
)

// An institution whose policy cannot take part in the study (it accepts
// another model) is named with its reason before any round, in status and
// in the coordinator's log; it is never sampled, and the study runs with the
// others instead of failing round after round.
func TestIncompatibleWorkerNamedAtStart(t *testing.T) {
	f := newFed(t, fedOptions{workers: 4, perRound: 3, rounds: 3, noBudget: true})
	patch(t, f.wcfg[3], `accepted_models = ["logreg"]`, `accepted_models = ["2nn"]`)
	f.startCoordinator()
	for i := range f.wnames {
		f.startWorker(i)
	}
	waitLog(t, f.coord, 60*time.Second, 100*time.Millisecond, "worker cannot take part in the study", "hospital-3", `model \"logreg\" is not in policy.accepted_models`)
	st := f.waitStatus("three models committed", 120*time.Second, func(s status) bool { return s.CommittedRounds == 3 })
	out, err := run(t, "status", "--federation", f.fedFile, "--identity", f.observer, "--timeout", "5s")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `cannot take part: hospital-3: model "logreg" is not in policy.accepted_models`) {
		t.Fatalf("status does not name the incompatible worker:\n%s", out)
	}
	plan, err := run(t, "study", "plan", "--config", f.coordCfg, "--federation", f.fedFile, "--identity", f.observer)
	if err != nil || !strings.Contains(plan, `cannot take part: hospital-3: model "logreg" is not in policy.accepted_models`) {
		t.Fatalf("study plan does not name the incompatible worker (%v):\n%s", err, plan)
	}
	if hasLine(f.workers[3], "round accepted") || strings.Contains(f.coord.logText(), "refused round") {
		t.Fatalf("the incompatible worker was sampled (or a worker refused a round)")
	}
	if !hasLine(f.workers[3], "this worker cannot take part in the study") {
		t.Fatal("the incompatible worker did not log why")
	}
	t.Logf("study ran %d rounds with the three compatible workers", st.Round)
}
