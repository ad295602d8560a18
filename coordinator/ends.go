package coordinator

// How a study ends (docs/runbook.md): when its rounds are done, when the
// privacy budget is exhausted (the study's own [rounds] max_epsilon, or the
// institutions refusing rounds beyond theirs), or when more than
// retry_limit rounds fail in a row. Each end is committed through Raft
// (StudyEnded), so every replica's status and ledger file say why, a new
// leader does not restart a study that ended, and the coordinator stays
// healthy: the driver returns instead of failing every second. A failed
// (or budget-exhausted) study is resumed with StudyResumed after its
// configuration is fixed (`sovereign coordinator --resume`).

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sovereign-fl/sovereign/wire"
)

// Study end states.
const (
	EndFinished        = "finished"
	EndFailed          = "failed"
	EndBudgetExhausted = "budget-exhausted"
)

// MaxRecentFailures is how many round-failure reasons State keeps.
const MaxRecentFailures = 5

// StudyEnded ends the study after round Round (the last round started).
type StudyEnded struct {
	Round uint64 `json:"round"`
	// State is EndFinished, EndFailed or EndBudgetExhausted.
	State string `json:"state"`
	// Reason says why, in words (at most MaxRefusalReason bytes).
	Reason string `json:"reason"`
}

// StudyResumed reopens a failed or budget-exhausted study: its failure
// count starts again from zero. It also lifts a pause.
type StudyResumed struct {
	// Round is the last round started (the study's Round).
	Round uint64 `json:"round"`
	// Spec, for a created study that ended, replaces its spec (the
	// configuration fix it is resumed after); the model, its input and
	// its classes must stay those of the committed models.
	Spec *StudySpec `json:"spec,omitempty"`
}

func (f *FSM) applyEnded(c *Command) error {
	s := f.st()
	m := c.StudyEnded
	if s.Current != nil {
		return stale(c, "round %d is still in flight", s.Current.Round)
	}
	if m.Round != s.Round {
		return stale(c, "ended after round %d, the last round started is %d", m.Round, s.Round)
	}
	if s.Ended != nil {
		return stale(c, "the study already ended (%s)", s.Ended.State)
	}
	switch m.State {
	case EndFinished, EndFailed, EndBudgetExhausted, EndStopped:
	default:
		return refuse(c, "end state %q unknown", m.State)
	}
	if len(m.Reason) > MaxRefusalReason {
		return refuse(c, "reason of %d bytes, at most %d", len(m.Reason), MaxRefusalReason)
	}
	e := *m
	s.Ended = &e
	s.Paused = nil
	return nil
}

func (f *FSM) applyResumed(c *Command) error {
	s := f.st()
	m := c.StudyResumed
	if m.Spec != nil && s.Ended == nil {
		return refuse(c, "a new spec only comes with resuming an ended study")
	}
	if s.Ended == nil && s.Paused != nil {
		if s.Paused.Stop {
			return stale(c, "study %s is stopping", studyLabel(c.Study))
		}
		s.Paused = nil
		return nil
	}
	if s.Ended == nil {
		return stale(c, "the study has not ended")
	}
	// A finished default study reopens when the coordinator file raises its
	// rounds (Driver.Step); a created study's rounds are in its spec.
	if s.Ended.State == EndStopped || s.Ended.State == EndFinished && (c.Study != DefaultStudy || m.Spec != nil) {
		return refuse(c, "a %s study is not resumed; start a new study", s.Ended.State)
	}
	if m.Round != s.Round {
		return stale(c, "resumed at round %d, the last round started is %d", m.Round, s.Round)
	}
	if m.Spec != nil {
		if err := f.replaceSpec(c.Study, m.Spec); err != nil {
			return refuse(c, "%v", err)
		}
	}
	s.Ended = nil
	s.Failures = 0
	return nil
}

// end commits the study's end and logs it.
func (d *Driver) end(ctx context.Context, st *State, state, reason string) error {
	reason = truncate(reason)
	if err := d.commit(ctx, Command{StudyEnded: &StudyEnded{Round: st.Round, State: state, Reason: reason}}); err != nil {
		return err
	}
	d.setStage(state)
	d.log.Info("study ended", "round", st.Round, "stage", state, "reason", reason, "committed", st.CommittedRounds())
	if d.LedgerPath != "" {
		if err := WriteLedgerFileEnd(d.LedgerPath, d.fsm.Ledger(), d.fsm.State().Ended); err != nil {
			d.log.Warn("ledger export", "err", err)
		}
	}
	return nil
}

// Resume reopens the study if it ended failed or budget-exhausted; a
// finished or running study is left alone (ok false).
func (d *Driver) Resume(ctx context.Context) (ok bool, err error) {
	st := d.fsm.State()
	if st.Ended == nil || st.Ended.State == EndFinished {
		return false, nil
	}
	if err := d.commit(ctx, Command{StudyResumed: &StudyResumed{Round: st.Round}}); err != nil {
		return false, err
	}
	d.log.Info("study resumed", "round", st.Round, "was", st.Ended.State, "reason", st.Ended.Reason)
	return true, nil
}

// budgetError stops a round whose ε would pass the study's budget.
type budgetError struct {
	Round        uint64
	Epsilon, Max float64
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("round %d would bring ε to %.4g, above the study's max_epsilon %g", e.Round, e.Epsilon, e.Max)
}

// failedReasons joins the recent failure reasons for a StudyEnded.
func failedReasons(st *State) string {
	return fmt.Sprintf("%d rounds failed in a row (retry limit); last: %s", st.Failures, strings.Join(st.RecentFailures, "; "))
}

// budgetExhausted reports whether round r failed because more of its
// sampled workers refused it for their privacy budget than the round could
// lose: ε only grows, so they will refuse every later round too.
func (d *Driver) budgetExhausted(st *State, r uint64, sampled int) (bool, string) {
	var who []WorkerID
	reason := ""
	for _, rf := range st.Refusals {
		if rf.Round == r && wire.RefusalRule(rf.Reason) == "budget" && !slices.Contains(who, rf.Worker) {
			who = append(who, rf.Worker)
			reason = rf.Reason
		}
	}
	if len(who) == 0 || sampled-len(who) >= d.cfg.MinWorkers {
		return false, ""
	}
	return true, fmt.Sprintf("round %d: %d of %d sampled institutions refused it for their privacy budget (%s)", r, len(who), sampled, reason)
}

// recentFailure appends a round failure's reason to the recent ones.
func recentFailure(rs []string, round uint64, reason string) []string {
	if len(reason) > 256 {
		reason = strings.ToValidUTF8(reason[:256], "") + "…"
	}
	rs = append(rs, fmt.Sprintf("round %d: %s", round, reason))
	if len(rs) > MaxRecentFailures {
		rs = slices.Clone(rs[len(rs)-MaxRecentFailures:])
	}
	return rs
}
