package coordinator

// The state the FSM holds, per study: plain data, so that its JSON (the
// snapshot) is byte-identical on every replica.

import (
	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

// RoundState is the committed progress of the round in flight.
type RoundState struct {
	Round       uint64   `json:"round"`
	Announce    Announce `json:"announce"`
	OnlineCount int      `json:"online_count"`
	// Next is the SecAgg+ stage whose close is committed next: 0 after
	// RoundStarted, 1 after stage 0 closed, 2 after stage 1; once the
	// survivors are committed, 5 (the consistency check) in a round that
	// runs it, else 3; 3 once its signatures are committed.
	Next       secagg.Stage            `json:"next"`
	Advertised []uint32                `json:"advertised"`
	Keys       []secagg.AdvertiseKeys  `json:"keys"`
	Shared     []uint32                `json:"shared"`
	Shares     []secagg.EncryptedShare `json:"shares"`
	Survivors  []uint32                `json:"survivors"`
	Dropped    []uint32                `json:"dropped"`
	// Signatures are the committed consistency-check signatures.
	Signatures []secagg.ConsistencyResponse `json:"signatures,omitempty"`
}

// ModelRecord indexes a committed model: the bytes are in the registry.
type ModelRecord struct {
	Round uint64 `json:"round"`
	Hash  Hash   `json:"hash"`
}

// State is everything the FSM holds. It is plain data with no maps, so its
// JSON encoding (the snapshot) is byte-identical on every replica.
type State struct {
	// Round is the last round started (0 before the first); Attempts
	// counts the rounds this study started (committed or not).
	Round    uint64 `json:"round"`
	Attempts int    `json:"attempts,omitempty"`
	// Current is the round in flight, nil when idle.
	Current *RoundState `json:"current"`
	// Failures counts the rounds failed since the last committed model.
	Failures int `json:"failures"`
	// Refusals are the newest MaxRefusals refusals workers answered.
	Refusals []RefusalRecord `json:"refusals,omitempty"`
	// LastFailure is the most recent RoundFailed.
	LastFailure *RoundFailed `json:"last_failure"`
	// Excluded maps each named culprit to the first round it may be
	// sampled in again.
	Excluded map[WorkerID]uint64 `json:"excluded,omitempty"`
	// Members are the workers last seen online, sorted.
	Members []WorkerID `json:"members"`
	// Models index the committed models, oldest first.
	Models []ModelRecord `json:"models"`
	// Ledger is the hash chain, one entry per committed model.
	Ledger []LedgerEntry `json:"ledger"`
	// Metrics are the recorded evaluations, oldest first.
	Metrics []MetricsRecorded `json:"metrics"`
	// Privacy is the accountant's history.
	Privacy []dp.Entry `json:"privacy"`
	// Optimizer is the server optimizer state after the last commit.
	Optimizer OptimizerRef `json:"optimizer"`
	// Stats are the federation statistics of the data schema, once its
	// statistics round committed (stats.go).
	Stats *StatsRecord `json:"stats,omitempty"`
	// Ended is set once the study ended (ends.go); RecentFailures are the
	// last MaxRecentFailures round-failure reasons, "round N: reason".
	Ended          *StudyEnded `json:"ended,omitempty"`
	RecentFailures []string    `json:"recent_failures,omitempty"`
	// Paused is set while the study is paused or asked to stop
	// (studies.go): no new round starts.
	Paused *StudyPaused `json:"paused,omitempty"`
}

// Head returns the latest ledger entry, or nil.
func (s *State) Head() *LedgerEntry {
	if len(s.Ledger) == 0 {
		return nil
	}
	return &s.Ledger[len(s.Ledger)-1]
}

// CommittedRounds returns the number of models committed after the
// initial one.
func (s *State) CommittedRounds() int { return max(0, len(s.Models)-1) }

// Accountant rebuilds the privacy accountant from the history.
func (s *State) Accountant() *dp.Accountant {
	a := &dp.Accountant{}
	for _, e := range s.Privacy {
		a.Step(e.Q, e.Sigma, e.Steps)
	}
	return a
}
