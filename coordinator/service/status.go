package service

import (
	"github.com/sovereign-fl/sovereign/coordinator"
)

// createdStudiesEnded reports whether every study created with `sovereign
// study start` has ended (--exit-when-done waits for them too).
func createdStudiesEnded(fsm *coordinator.FSM) bool {
	for _, st := range fsm.Studies() {
		if st.Name != coordinator.DefaultStudy && st.State.Ended == nil {
			return false
		}
	}
	return true
}

// headHash returns the ledger head's hash in hex ("" before any entry).
func headHash(st coordinator.State) string {
	if h := st.Head(); h != nil {
		return h.Hash.String()
	}
	return ""
}

// finished reports whether every configured round is committed and the
// last model evaluated, as the replicated state says.
func finished(st coordinator.State, rounds int) bool {
	if st.Current == nil && st.Ended != nil && st.Ended.State != coordinator.EndFinished {
		return true // failed or budget-exhausted: nothing more will come
	}
	if st.Current != nil || st.CommittedRounds() < rounds {
		return false
	}
	if n := len(st.Metrics); n > 0 {
		m, _ := latestModelRound(st)
		return st.Metrics[n-1].Round >= m
	}
	return false
}

func latestModelRound(st coordinator.State) (uint64, bool) {
	if len(st.Models) == 0 {
		return 0, false
	}
	return st.Models[len(st.Models)-1].Round, true
}

// followerStage names what the replicated state says the round is doing.
func followerStage(st coordinator.State, rounds int) string {
	switch {
	case st.Current != nil:
		return st.Current.Next.String()
	case st.CommittedRounds() >= rounds:
		return "finished"
	case len(st.Models) == 0:
		return "init"
	}
	return "sample"
}
