package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/wire"
)

// FSM is the coordinator's replicated state machine. Apply must be
// deterministic: the same commands in the same order give byte-identical
// state and snapshots on every replica. It does no I/O besides Snapshot and
// Restore, reads no clock and no randomness. Safe for concurrent use.
//
// One FSM holds every study of the federation (studies.go): an *FSM value
// is a view of one study (NewFSM's is the default study, FSM.Study gives
// the others), and Apply on any view applies the command to the study it
// names. Round numbers are the federation's: one counter across studies,
// so a worker's per-round state never mixes two studies.
type FSM struct {
	fed  *federation
	name string
}

// federation is the state every view shares.
type federation struct {
	mu sync.RWMutex
	// round is the last round started in any study.
	round   uint64
	studies map[string]*study
}

// NewFSM returns an empty state machine (a view of its default study).
func NewFSM() *FSM {
	return &FSM{fed: &federation{studies: map[string]*study{DefaultStudy: {}}}}
}

// st returns the study's state; the caller holds fed.mu. A view of a study
// not (yet) created reads an empty state.
func (f *FSM) st() *State {
	if s, ok := f.fed.studies[f.name]; ok {
		return &s.State
	}
	return &State{}
}

// CommandError is a refused command: it names the round and the command.
type CommandError struct {
	Kind   CommandKind
	Round  uint64
	Reason string
	// Stale is true when the command is for the wrong round or stage.
	Stale bool
}

// Unwrap lets errors.Is(err, ErrStale) match stale commands.
func (e *CommandError) Unwrap() error {
	if e.Stale {
		return ErrStale
	}
	return nil
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("round %d: command %v refused: %s", e.Round, e.Kind, e.Reason)
}

// ErrStale is wrapped by refusals of commands for a round other than the
// one they must follow (a stale or replayed command).
var ErrStale = errors.New("stale command")

// Apply decodes and applies one command. A malformed or out-of-order
// command is refused with a *CommandError naming the round and command and
// leaves the state unchanged. This has the shape of raft.FSM.Apply.
func (f *FSM) Apply(cmd []byte) error {
	c, err := DecodeCommand(cmd)
	if err != nil {
		return err
	}
	f.fed.mu.Lock()
	defer f.fed.mu.Unlock()
	v := &FSM{fed: f.fed, name: c.Study}
	if _, ok := f.fed.studies[c.Study]; !ok && c.Kind != KindStudyCreated {
		return refuse(&c, "study %q unknown", c.Study)
	}
	return v.apply(&c)
}

func refuse(c *Command, format string, a ...any) error {
	return &CommandError{Kind: c.Kind, Round: c.Round(), Reason: fmt.Sprintf(format, a...)}
}

func stale(c *Command, format string, a ...any) error {
	e := refuse(c, format, a...).(*CommandError)
	e.Stale = true
	return e
}

// apply checks everything first and mutates last, so a refused command
// changes nothing.
func (f *FSM) apply(c *Command) error {
	s := f.st()
	switch c.Kind {
	case KindMembersSeen:
		m := c.MembersSeen
		if s.Current != nil || m.Round != f.fed.round+1 {
			return stale(c, "members are recorded before round %d starts", f.fed.round+1)
		}
		if !sortedDistinctIDs(m.Members) {
			return refuse(c, "members not sorted and distinct")
		}
		s.Members = slices.Clone(m.Members)
		return nil

	case KindRoundStarted:
		m := c.RoundStarted
		if len(s.Models) == 0 {
			return refuse(c, "no initial model committed")
		}
		if s.Current != nil {
			return stale(c, "round %d is still in flight", s.Current.Round)
		}
		if s.Ended != nil {
			return stale(c, "the study ended (%s) after round %d", s.Ended.State, s.Ended.Round)
		}
		if other, ok := f.fed.inFlight(); ok {
			return stale(c, "a round of study %s is in flight", studyLabel(other))
		}
		if m.Round != f.fed.round+1 {
			return stale(c, "round must be %d", f.fed.round+1)
		}
		a := &m.Announce
		if a.Study != c.Study {
			return refuse(c, "announce of study %q in a command of study %q", a.Study, c.Study)
		}
		if a.Round != m.Round || a.SecAgg.Round != m.Round {
			return refuse(c, "announce round %d / secagg round %d differ", a.Round, a.SecAgg.Round)
		}
		head := s.Models[len(s.Models)-1]
		if Hash(a.ModelHash) != head.Hash || a.ModelVersion != head.Round {
			return stale(c, "announce model %s (round %d) is not the latest %s (round %d)",
				Hash(a.ModelHash), a.ModelVersion, head.Hash, head.Round)
		}
		if len(a.Sampled) < 2 || !sortedDistinctIDs(a.Sampled) {
			return refuse(c, "sampled workers must be at least 2, sorted and distinct")
		}
		if len(a.SecAgg.Clients) != len(a.Sampled) {
			return refuse(c, "secagg has %d clients for %d sampled workers", len(a.SecAgg.Clients), len(a.Sampled))
		}
		for i, id := range a.SecAgg.Clients {
			if id != uint32(i+1) {
				return refuse(c, "secagg client %d at position %d, want %d", id, i, i+1)
			}
		}
		if a.SecAgg.WithDefaults().Degree != a.SecAgg.Degree || a.SecAgg.WithDefaults().Threshold != a.SecAgg.Threshold {
			return refuse(c, "secagg config must have its defaults applied")
		}
		if err := a.SecAgg.Validate(); err != nil {
			return refuse(c, "secagg: %v", err)
		}
		switch a.Purpose {
		case "":
		case wire.PurposeStatistics:
			if a.SchemaHash == ([32]byte{}) || len(a.Stats) != 0 || a.StatsMaxRows < 1 {
				return refuse(c, "a statistics round names its schema and its max rows and carries no statistics")
			}
		default:
			return refuse(c, "purpose %q unknown", a.Purpose)
		}
		if len(a.Stats) > MaxStatsBytes {
			return refuse(c, "announced statistics of %d bytes, above %d", len(a.Stats), MaxStatsBytes)
		}
		if a.Purpose == "" && (a.SecAgg.Dim != a.NumParams && a.SecAgg.Dim != a.NumParams+wire.EvalWords) || a.NumParams <= 0 {
			return refuse(c, "num_params %d vs secagg dim %d (want it, or +%d with secure evaluation)", a.NumParams, a.SecAgg.Dim, wire.EvalWords)
		}
		if m.OnlineCount < len(a.Sampled) {
			return refuse(c, "online count %d below the %d sampled", m.OnlineCount, len(a.Sampled))
		}
		s.Round = m.Round
		s.Attempts++
		f.fed.round = m.Round
		s.Current = &RoundState{Round: m.Round, Announce: cloneAnnounce(a), OnlineCount: m.OnlineCount}
		return nil

	case KindStageClosed:
		m := c.StageClosed
		cur, err := f.current(c, m.Round)
		if err != nil {
			return err
		}
		if m.Stage != cur.Next || m.Stage > secagg.StageShareKeys {
			return stale(c, "stage %v closed, expected stage %v", m.Stage, cur.Next)
		}
		if err := checkRefused(c, cur, m.Refused); err != nil {
			return err
		}
		n := uint32(len(cur.Announce.Sampled))
		allowed := func(id uint32) bool { return id >= 1 && id <= n }
		if m.Stage == secagg.StageShareKeys {
			allowed = func(id uint32) bool { _, ok := slices.BinarySearch(cur.Advertised, id); return ok }
		}
		if !sortedDistinct(m.Completed) {
			return refuse(c, "completed not sorted and distinct")
		}
		for _, id := range m.Completed {
			if !allowed(id) {
				return refuse(c, "completed client %d not eligible for stage %v", id, m.Stage)
			}
		}
		switch m.Stage {
		case secagg.StageAdvertise:
			if len(m.Shares) != 0 || len(m.Keys) != len(m.Completed) {
				return refuse(c, "stage 0 needs one key advertisement per completed client, have %d for %d", len(m.Keys), len(m.Completed))
			}
			for i, k := range m.Keys {
				if k.From != m.Completed[i] || k.Round != m.Round || len(k.EncKey) != secagg.KeySize || len(k.MaskKey) != secagg.KeySize || len(k.SeedCommit) != secagg.KeySize {
					return refuse(c, "key advertisement %d (from %d) malformed or out of order", i, k.From)
				}
			}
			cur.Keys = slices.Clone(m.Keys)
			cur.Advertised = slices.Clone(m.Completed)
		case secagg.StageShareKeys:
			if len(m.Keys) != 0 {
				return refuse(c, "stage 1 carries no keys")
			}
			for i, e := range m.Shares {
				if _, ok := slices.BinarySearch(m.Completed, e.From); !ok || e.Round != m.Round || len(e.Ciphertext) != secagg.CiphertextSize {
					return refuse(c, "share %d (from %d to %d) malformed or from a client not completed", i, e.From, e.To)
				}
				if i > 0 && e.From < m.Shares[i-1].From {
					return refuse(c, "shares not grouped by sender at %d", i)
				}
			}
			cur.Shares = slices.Clone(m.Shares)
			cur.Shared = slices.Clone(m.Completed)
		}
		cur.Next = m.Stage + 1
		s.addRefusals(m.Refused)
		return nil

	case KindSurvivorsCommitted:
		m := c.SurvivorsCommitted
		cur, err := f.current(c, m.Round)
		if err != nil {
			return err
		}
		if cur.Next != secagg.StageMaskedInput {
			return stale(c, "survivors committed at stage %v, expected after stage 1 closed", cur.Next)
		}
		if err := checkRefused(c, cur, m.Refused); err != nil {
			return err
		}
		if !sortedDistinct(m.Survivors) || !sortedDistinct(m.Dropped) {
			return refuse(c, "survivors and dropped must be sorted and distinct")
		}
		union := append(slices.Clone(m.Survivors), m.Dropped...)
		slices.Sort(union)
		if !slices.Equal(union, cur.Shared) {
			return refuse(c, "survivors %v + dropped %v must be exactly the stage-1 clients %v", m.Survivors, m.Dropped, cur.Shared)
		}
		if len(m.Survivors) < 2 {
			return refuse(c, "%d survivors, need at least 2", len(m.Survivors))
		}
		cur.Survivors = slices.Clone(m.Survivors)
		cur.Dropped = slices.Clone(m.Dropped)
		cur.Next = secagg.StageMaskedInput.Next(cur.Announce.SecAgg.ConsistencyCheck)
		s.addRefusals(m.Refused)
		return nil

	case KindConsistencyCommitted:
		m := c.ConsistencyCommitted
		cur, err := f.current(c, m.Round)
		if err != nil {
			return err
		}
		if cur.Next != secagg.StageConsistency {
			return stale(c, "consistency signatures committed at stage %v, expected after the survivors", cur.Next)
		}
		if err := checkRefused(c, cur, m.Refused); err != nil {
			return err
		}
		for i, sg := range m.Signatures {
			if sg.Round != m.Round {
				return refuse(c, "signature %d is of round %d", i, sg.Round)
			}
			if _, ok := slices.BinarySearch(cur.Survivors, sg.From); !ok {
				return refuse(c, "signature %d from client %d, which is not a survivor", i, sg.From)
			}
			if i > 0 && sg.From <= m.Signatures[i-1].From {
				return refuse(c, "signatures not sorted by signer at %d", i)
			}
			if len(sg.Signature) > wire.MaxSignatureLen {
				return refuse(c, "signature %d of %d bytes, at most %d", i, len(sg.Signature), wire.MaxSignatureLen)
			}
		}
		if t := cur.Announce.SecAgg.Threshold; len(m.Signatures) < t {
			return refuse(c, "%d signatures, fewer than the threshold %d", len(m.Signatures), t)
		}
		cur.Signatures = slices.Clone(m.Signatures)
		cur.Next = secagg.StageUnmask
		s.addRefusals(m.Refused)
		return nil

	case KindModelCommitted:
		m := c.ModelCommitted
		if m.Epsilon < 0 || math.IsNaN(m.Epsilon) || math.IsInf(m.Epsilon, 0) {
			return refuse(c, "epsilon %v not finite and non-negative", m.Epsilon)
		}
		if !sortedDistinctIDs(m.Participants) {
			return refuse(c, "participants not sorted and distinct")
		}
		var headHash Hash
		if h := s.Head(); h != nil {
			headHash = h.Hash
		}
		if m.Prev != headHash {
			return stale(c, "prev %s is not the ledger head %s", m.Prev, headHash)
		}
		if m.DP != nil {
			if a := s.Accountant(); a.Step(m.DP.Q, m.DP.Sigma, m.DP.Steps) != nil {
				return refuse(c, "privacy step q=%v sigma=%v steps=%d invalid", m.DP.Q, m.DP.Sigma, m.DP.Steps)
			}
		}
		if m.Round == 0 {
			if len(s.Models) != 0 || s.Round != 0 {
				return stale(c, "the initial model is already committed")
			}
			if len(m.Participants) != 0 || m.Epsilon != 0 || m.DP != nil {
				return refuse(c, "the initial model has no participants and no privacy spent")
			}
		} else {
			cur, err := f.current(c, m.Round)
			if err != nil {
				return err
			}
			if cur.Next != secagg.StageUnmask {
				return stale(c, "model committed before the survivors")
			}
			if cur.Announce.Purpose != "" {
				return refuse(c, "round %d is a %s round: it commits no model", m.Round, cur.Announce.Purpose)
			}
			want := make([]WorkerID, len(cur.Survivors))
			for i, id := range cur.Survivors {
				want[i] = cur.Announce.Sampled[id-1]
			}
			slices.Sort(want)
			if !slices.Equal(want, m.Participants) {
				return refuse(c, "participants %v are not the committed survivors %v", m.Participants, want)
			}
		}
		e := NewLedgerEntry(s.Head(), m.Round, m.ModelHash, m.Participants, m.Epsilon)
		s.Ledger = append(s.Ledger, e)
		s.Models = append(s.Models, ModelRecord{Round: m.Round, Hash: m.ModelHash})
		if m.DP != nil {
			s.Privacy = appendPrivacy(s.Privacy, *m.DP)
		}
		s.Optimizer = m.Optimizer
		s.Current = nil
		s.Failures = 0
		return nil

	case KindRoundFailed:
		m := c.RoundFailed
		if _, err := f.current(c, m.Round); err != nil {
			return err
		}
		if !sortedDistinctIDs(m.Missing) {
			return refuse(c, "missing workers not sorted and distinct")
		}
		if !sortedDistinctIDs(m.Culprits) {
			return refuse(c, "culprits not sorted and distinct")
		}
		if len(m.Culprits) > 0 && m.ExcludedUntil <= m.Round {
			return refuse(c, "culprits excluded until round %d, not after round %d", m.ExcludedUntil, m.Round)
		}
		if m.DP != nil {
			s.Privacy = appendPrivacy(s.Privacy, *m.DP)
		}
		fail := *m
		fail.Missing = slices.Clone(m.Missing)
		fail.Culprits = slices.Clone(m.Culprits)
		s.LastFailure = &fail
		s.RecentFailures = recentFailure(s.RecentFailures, m.Round, m.Reason)
		for _, w := range m.Culprits {
			if s.Excluded == nil {
				s.Excluded = map[WorkerID]uint64{}
			}
			s.Excluded[w] = max(s.Excluded[w], m.ExcludedUntil)
		}
		s.Current = nil
		s.Failures++
		return nil

	case KindMetricsRecorded:
		m := c.MetricsRecorded
		if len(s.Models) == 0 || s.Models[len(s.Models)-1].Round != m.Round || m.Round == 0 {
			return stale(c, "round %d did not commit the latest model", m.Round)
		}
		if n := len(s.Metrics); n > 0 && s.Metrics[n-1].Round >= m.Round {
			return stale(c, "metrics of round %d already recorded", m.Round)
		}
		if !(m.Accuracy >= 0 && m.Accuracy <= 1) || math.IsNaN(m.Loss) || math.IsInf(m.Loss, 0) || m.Examples < 0 || m.Workers < 0 {
			return refuse(c, "accuracy %v, loss %v, examples %d, workers %d out of range", m.Accuracy, m.Loss, m.Examples, m.Workers)
		}
		if b := m.Binary; b != nil && (b.TP < 0 || b.FP < 0 || b.TN < 0 || b.FN < 0 || b.TP+b.FP+b.TN+b.FN > m.Examples || !(b.AUC == -1 || b.AUC >= 0 && b.AUC <= 1)) {
			return refuse(c, "binary metrics %+v out of range for %d examples", *b, m.Examples)
		}
		s.Metrics = append(s.Metrics, *m)
		return nil

	case KindStatsCommitted:
		return f.applyStats(c)
	case KindStudyEnded:
		return f.applyEnded(c)
	case KindStudyResumed:
		return f.applyResumed(c)
	case KindStudyCreated:
		return f.applyCreated(c)
	case KindStudyPaused:
		return f.applyPaused(c)
	}
	return refuse(c, "unknown kind")
}

func (f *FSM) current(c *Command, round uint64) (*RoundState, error) {
	s := f.st()
	if s.Current == nil {
		return nil, stale(c, "no round in flight")
	}
	if s.Current.Round != round {
		return nil, stale(c, "round %d is in flight", s.Current.Round)
	}
	return s.Current, nil
}

func appendPrivacy(h []dp.Entry, e dp.Entry) []dp.Entry {
	if n := len(h); n > 0 && h[n-1].Q == e.Q && h[n-1].Sigma == e.Sigma {
		h[n-1].Steps += e.Steps
		return h
	}
	return append(h, e)
}

func cloneAnnounce(a *Announce) Announce {
	b := *a
	b.Sampled = slices.Clone(a.Sampled)
	b.SecAgg.Clients = slices.Clone(a.SecAgg.Clients)
	b.Stats = slices.Clone(a.Stats)
	return b
}

func sortedDistinct(x []uint32) bool {
	for i := 1; i < len(x); i++ {
		if x[i] <= x[i-1] {
			return false
		}
	}
	return true
}

func sortedDistinctIDs(x []WorkerID) bool {
	for i := 1; i < len(x); i++ {
		if x[i] <= x[i-1] {
			return false
		}
	}
	return true
}

// State returns a deep copy of the state.
func (f *FSM) State() State {
	f.fed.mu.RLock()
	b, err := json.Marshal(f.st())
	f.fed.mu.RUnlock()
	if err != nil {
		panic("coordinator: state does not encode: " + err.Error()) // plain data: cannot happen
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		panic("coordinator: state does not decode: " + err.Error())
	}
	return s
}

// Ledger returns a copy of the ledger.
func (f *FSM) Ledger() []LedgerEntry {
	f.fed.mu.RLock()
	defer f.fed.mu.RUnlock()
	out := make([]LedgerEntry, len(f.st().Ledger))
	for i, e := range f.st().Ledger {
		e.Participants = slices.Clone(e.Participants)
		out[i] = e
	}
	return out
}

// Model returns the hash of the model committed in round and whether there
// is one.
func (f *FSM) Model(round uint64) (Hash, bool) {
	f.fed.mu.RLock()
	defer f.fed.mu.RUnlock()
	for _, m := range f.st().Models {
		if m.Round == round {
			return m.Hash, true
		}
	}
	return Hash{}, false
}

// ModelRound returns the round that committed the model with hash h and
// whether it is known.
func (f *FSM) ModelRound(h Hash) (uint64, bool) {
	f.fed.mu.RLock()
	defer f.fed.mu.RUnlock()
	for _, m := range f.st().Models {
		if m.Hash == h {
			return m.Round, true
		}
	}
	return 0, false
}

// LatestModel returns the newest committed model (ok false before the
// initial model).
func (f *FSM) LatestModel() (ModelRecord, bool) {
	f.fed.mu.RLock()
	defer f.fed.mu.RUnlock()
	ms := f.st().Models
	if len(ms) == 0 {
		return ModelRecord{}, false
	}
	return ms[len(ms)-1], true
}

// checkRefused refuses refusal records not of the round in flight, from a
// worker it did not sample, or with an oversized reason.
func checkRefused(c *Command, cur *RoundState, rs []RefusalRecord) error {
	if len(rs) > len(cur.Announce.Sampled) {
		return refuse(c, "%d refusals for %d sampled workers", len(rs), len(cur.Announce.Sampled))
	}
	for i, r := range rs {
		if r.Round != cur.Round {
			return refuse(c, "refused[%d] is of round %d", i, r.Round)
		}
		if cur.Announce.NodeIndex(r.Worker) == 0 {
			return refuse(c, "refused[%d]: worker %s was not sampled", i, r.Worker)
		}
		if len(r.Reason) > MaxRefusalReason {
			return refuse(c, "refused[%d]: reason of %d bytes, at most %d", i, len(r.Reason), MaxRefusalReason)
		}
	}
	return nil
}

// addRefusals appends rs, keeping the newest MaxRefusals.
func (s *State) addRefusals(rs []RefusalRecord) {
	if len(rs) == 0 {
		return
	}
	s.Refusals = append(s.Refusals, rs...)
	if n := len(s.Refusals); n > MaxRefusals {
		s.Refusals = slices.Clone(s.Refusals[n-MaxRefusals:])
	}
}
