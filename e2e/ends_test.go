package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/coordinator"
)

// A study whose institutions' budgets run out ends budget-exhausted, in
// `sovereign status` and in the ledger file, and the coordinator stays up
// and answering; restarted with --resume and the same budgets, it ends the
// same way again instead of retrying forever.
func TestBudgetExhaustedStudyEnds(t *testing.T) {
	f := newFed(t, fedOptions{workers: 3, rounds: 40, noise: 2.0, noBudget: true})
	for _, p := range f.wcfg {
		patch(t, p, "[policy]\n", "[policy]\nmax_epsilon = 4.0\n")
	}
	f.startCoordinator()
	for i := range f.wnames {
		f.startWorker(i)
	}
	st := f.waitStatus("the study ended", 120*time.Second, func(s status) bool { return s.StudyState != "" && s.StudyState != "running" })
	if st.StudyState != coordinator.EndBudgetExhausted || !strings.Contains(st.EndReason, "privacy budget") {
		t.Fatalf("study %q (%s), want budget-exhausted", st.StudyState, st.EndReason)
	}
	if st.CommittedRounds == 0 || st.CommittedRounds >= 40 {
		t.Fatalf("%d models committed before the budget ran out", st.CommittedRounds)
	}
	// Still healthy: it answers, and starts no round.
	again := f.waitStatus("status after the end", 10*time.Second, func(s status) bool { return true })
	if again.Round != st.Round || again.StudyState != coordinator.EndBudgetExhausted {
		t.Fatalf("after the end: round %d (was %d), study %q", again.Round, st.Round, again.StudyState)
	}
	if hasLine(f.coord, "round driver stopped") {
		t.Fatal("the coordinator logged its driver as stopped")
	}
	f.stopCoordinator()
	entries, end, err := coordinator.ReadLedgerFileEnd(filepath.Join(f.coordDir, coordinator.LedgerFileName))
	if err != nil || end == nil || end.State != coordinator.EndBudgetExhausted || len(entries) != st.CommittedRounds+1 {
		t.Fatalf("ledger file: %d entries, end %+v, %v", len(entries), end, err)
	}
	out, err := run(t, "ledger", "verify", "--data", f.coordDir)
	if err != nil || !strings.Contains(out, "study budget-exhausted") {
		t.Fatalf("ledger verify: %q, %v", out, err)
	}
	for _, e := range entries[1:] {
		if e.Epsilon > 4.0 {
			t.Fatalf("round %d committed with ε %v above every institution's budget", e.Round, e.Epsilon)
		}
	}
	// --resume reopens it; the institutions still refuse, so it ends the
	// same way after one more attempt.
	f.coord = f.start("coord", "coordinator", "--config", f.coordCfg, "--resume")
	waitLog(t, f.coord, 60*time.Second, 100*time.Millisecond, "study resumed")
	re := f.waitStatus("the resumed study ended", 60*time.Second, func(s status) bool {
		return s.Round > st.Round && s.StudyState == coordinator.EndBudgetExhausted
	})
	if re.CommittedRounds != st.CommittedRounds {
		t.Fatalf("resumed study committed %d models, before %d", re.CommittedRounds, st.CommittedRounds)
	}
}
