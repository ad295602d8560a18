package coordinator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/wire"
)

// CommandVersion is the encoding version of commands and snapshots.
const CommandVersion = 1

// CommandKind names a command. The values reach the Raft log and snapshots:
// do not renumber.
type CommandKind int

// Command kinds.
const (
	// KindRoundStarted opens a round: sample, announcement, model.
	KindRoundStarted CommandKind = 1
	// KindStageClosed closes SecAgg+ stage 0 or 1 with its payloads.
	KindStageClosed CommandKind = 2
	// KindSurvivorsCommitted closes stage 2: the survivor set that the
	// unmask requests will name. It is committed before any goes out.
	KindSurvivorsCommitted CommandKind = 3
	// KindModelCommitted closes a round with a new model and ledger entry
	// (round 0: the initial model).
	KindModelCommitted CommandKind = 4
	// KindRoundFailed closes a round without a model.
	KindRoundFailed CommandKind = 5
	// KindMetricsRecorded stores the federated evaluation of a model.
	KindMetricsRecorded CommandKind = 6
	// KindMembersSeen records the workers online when a round was sampled.
	KindMembersSeen CommandKind = 7
	// KindStatsCommitted closes the statistics round of a data schema
	// with the federation's statistics (stats.go).
	KindStatsCommitted CommandKind = 8
	// KindStudyEnded ends the study (finished, failed, budget-exhausted;
	// ends.go); KindStudyResumed reopens a failed one.
	KindStudyEnded   CommandKind = 9
	KindStudyResumed CommandKind = 10
	// KindConsistencyCommitted closes the consistency check (Bonawitz et
	// al. 2017, round 4): the survivors' signatures over the committed
	// survivor set, committed before any unmask request goes out.
	KindConsistencyCommitted CommandKind = 11
	// KindStudyCreated adds a named study with its initial model;
	// KindStudyPaused pauses one or asks it to stop (studies.go).
	KindStudyCreated CommandKind = 12
	KindStudyPaused  CommandKind = 13
)

// String names the kind.
func (k CommandKind) String() string {
	switch k {
	case KindRoundStarted:
		return "RoundStarted"
	case KindStageClosed:
		return "StageClosed"
	case KindSurvivorsCommitted:
		return "SurvivorsCommitted"
	case KindModelCommitted:
		return "ModelCommitted"
	case KindRoundFailed:
		return "RoundFailed"
	case KindMetricsRecorded:
		return "MetricsRecorded"
	case KindMembersSeen:
		return "MembersSeen"
	case KindStatsCommitted:
		return "StatsCommitted"
	case KindStudyEnded:
		return "StudyEnded"
	case KindStudyResumed:
		return "StudyResumed"
	case KindConsistencyCommitted:
		return "ConsistencyCommitted"
	case KindStudyCreated:
		return "StudyCreated"
	case KindStudyPaused:
		return "StudyPaused"
	}
	return fmt.Sprintf("CommandKind(%d)", int(k))
}

// Command is one state change of the coordinator. Exactly the field that
// matches Kind is set. Encode it with EncodeCommand; the FSM applies the
// bytes.
type Command struct {
	V                  int                 `json:"v"`
	Kind               CommandKind         `json:"kind"`
	RoundStarted       *RoundStarted       `json:"round_started,omitempty"`
	StageClosed        *StageClosed        `json:"stage_closed,omitempty"`
	SurvivorsCommitted *SurvivorsCommitted `json:"survivors_committed,omitempty"`
	ModelCommitted     *ModelCommitted     `json:"model_committed,omitempty"`
	RoundFailed        *RoundFailed        `json:"round_failed,omitempty"`
	MetricsRecorded    *MetricsRecorded    `json:"metrics_recorded,omitempty"`
	MembersSeen        *MembersSeen        `json:"members_seen,omitempty"`
	StatsCommitted     *StatsCommitted     `json:"stats_committed,omitempty"`
	StudyEnded         *StudyEnded         `json:"study_ended,omitempty"`
	StudyResumed       *StudyResumed       `json:"study_resumed,omitempty"`
	// ConsistencyCommitted is set for KindConsistencyCommitted.
	ConsistencyCommitted *ConsistencyCommitted `json:"consistency_committed,omitempty"`
	// StudyCreated and StudyPaused are set for their kinds (studies.go).
	StudyCreated *StudyCreated `json:"study_created,omitempty"`
	StudyPaused  *StudyPaused  `json:"study_paused,omitempty"`
	// Study names the study the command is about: "" is the default
	// study (the coordinator file's [rounds] table).
	Study string `json:"study,omitempty"`
}

// RoundStarted opens round Round. Round numbers are never reused: a round
// retried after a failure gets the next number, so a worker's cached
// answers for one round number always belong to one sample.
type RoundStarted struct {
	Round uint64 `json:"round"`
	// Announce is what every sampled worker receives; its SecAgg config is
	// complete (defaults applied) so that every replica rebuilds the same
	// server.
	Announce Announce `json:"announce"`
	// OnlineCount is the number of workers online when sampling (the
	// denominator of the privacy accountant's sampling rate).
	OnlineCount int `json:"online_count"`
}

// StageClosed closes SecAgg+ stage 0 (Keys set) or 1 (Shares set) of Round:
// Completed lists the node indices whose messages the server accepted, and
// the payloads let a new leader rebuild the server without asking again.
type StageClosed struct {
	Round     uint64                  `json:"round"`
	Stage     secagg.Stage            `json:"stage"`
	Completed []uint32                `json:"completed"`
	Keys      []secagg.AdvertiseKeys  `json:"keys,omitempty"`
	Shares    []secagg.EncryptedShare `json:"shares,omitempty"`
	// Refused are the refusals the stage's workers answered.
	Refused []RefusalRecord `json:"refused,omitempty"`
}

// RefusalRecord is one worker's refusal, replicated so that every
// replica's dashboard lists it. Reason is the worker's own text (at most
// MaxRefusalReason bytes): display it escaped.
type RefusalRecord struct {
	Round  uint64   `json:"round"`
	Worker WorkerID `json:"worker"`
	Reason string   `json:"reason"`
	// AtMs is the leader's clock when the refusal arrived (Unix ms).
	AtMs int64 `json:"at_ms"`
}

// MaxRefusalReason bounds a replicated refusal's text; the driver cuts
// longer ones. MaxRefusals is how many State keeps (the newest).
const (
	MaxRefusalReason = 1024
	MaxRefusals      = 256
)

// SurvivorsCommitted closes stage 2: Survivors are the node indices whose
// masked inputs are in the sum and Dropped those that shared keys but sent
// no masked input. Unmask requests name exactly this set.
type SurvivorsCommitted struct {
	Round     uint64   `json:"round"`
	Survivors []uint32 `json:"survivors"`
	Dropped   []uint32 `json:"dropped"`
	// Refused are the refusals stage 2's workers answered.
	Refused []RefusalRecord `json:"refused,omitempty"`
}

// ConsistencyCommitted closes the consistency check of a round whose
// SecAgg+ configuration runs it: Signatures are the survivors' signatures
// (sorted by signer, each a survivor) over the committed survivor set, the
// ones the leader verified. Unmask requests carry exactly these, so a new
// leader after a failover sends the same ones.
type ConsistencyCommitted struct {
	Round      uint64                       `json:"round"`
	Signatures []secagg.ConsistencyResponse `json:"signatures"`
	// Refused are the refusals the consistency check's workers answered.
	Refused []RefusalRecord `json:"refused,omitempty"`
}

// ModelCommitted closes a round with its model. Round 0 registers the
// initial model (no participants, no privacy spent) and must come first.
type ModelCommitted struct {
	Round     uint64 `json:"round"`
	ModelHash Hash   `json:"model_hash"`
	// Participants are the survivors as worker IDs, sorted.
	Participants []WorkerID `json:"participants"`
	// Epsilon is the total privacy spent once this round commits.
	Epsilon float64 `json:"epsilon"`
	// Prev is the hash of the ledger head this entry extends.
	Prev Hash `json:"prev"`
	// DP, if non-nil, is the accountant step of this round.
	DP *dp.Entry `json:"dp,omitempty"`
	// Optimizer is the server optimizer's state after this round.
	Optimizer OptimizerRef `json:"optimizer"`
}

// OptimizerRef names the server optimizer state: its bytes (the JSON of an
// aggregation.OptimizerState) are a blob of the model registry, found by
// hash like a model; a zero hash means "no state".
type OptimizerRef struct {
	Name  string `json:"name"`
	Steps int    `json:"steps"`
	State Hash   `json:"state"`
}

// RoundFailed closes a round without a model.
type RoundFailed struct {
	Round   uint64     `json:"round"`
	Reason  string     `json:"reason"`
	Missing []WorkerID `json:"missing"`
	// Culprits are the workers proven to have sent bad SecAgg+ shares (or
	// shares their neighbours could not open); they are not sampled before
	// round ExcludedUntil.
	Culprits      []WorkerID `json:"culprits,omitempty"`
	ExcludedUntil uint64     `json:"excluded_until,omitempty"`
	// DP is the privacy step of a round that failed after its noised sum
	// was unmasked: the coordinator saw it, so it is charged (review M1).
	DP *dp.Entry `json:"dp,omitempty"`
}

// MetricsRecorded stores the federated evaluation of the model committed in
// Round: accuracy and loss weighted by the reporting workers' examples.
type MetricsRecorded struct {
	Round    uint64  `json:"round"`
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
	Examples int     `json:"examples"`
	Workers  int     `json:"workers"`
	// Binary, for a two-class model, is the federation's confusion
	// matrix (class 1 positive) and ROC AUC (from the workers' summed
	// score histograms, wire.BinaryReport).
	Binary *BinaryMetrics `json:"binary,omitempty"`
}

// BinaryMetrics is a two-class model's federated evaluation.
type BinaryMetrics struct {
	TP  int     `json:"tp"`
	FP  int     `json:"fp"`
	TN  int     `json:"tn"`
	FN  int     `json:"fn"`
	AUC float64 `json:"auc"` // -1 when one class is absent
}

// MembersSeen records the workers online (sorted) before round Round was
// sampled.
type MembersSeen struct {
	Round   uint64     `json:"round"`
	Members []WorkerID `json:"members"`
}

// EncodeCommand encodes c (setting V and Kind from the payload set).
func EncodeCommand(c Command) ([]byte, error) {
	c.V = CommandVersion
	set := 0
	for k, p := range map[CommandKind]bool{
		KindRoundStarted: c.RoundStarted != nil, KindStageClosed: c.StageClosed != nil,
		KindSurvivorsCommitted: c.SurvivorsCommitted != nil, KindModelCommitted: c.ModelCommitted != nil,
		KindRoundFailed: c.RoundFailed != nil, KindMetricsRecorded: c.MetricsRecorded != nil,
		KindMembersSeen: c.MembersSeen != nil, KindStatsCommitted: c.StatsCommitted != nil,
		KindStudyEnded: c.StudyEnded != nil, KindStudyResumed: c.StudyResumed != nil,
		KindConsistencyCommitted: c.ConsistencyCommitted != nil,
		KindStudyCreated:         c.StudyCreated != nil, KindStudyPaused: c.StudyPaused != nil,
	} {
		if p {
			c.Kind = k
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("command: %d payloads set, want exactly 1", set)
	}
	return json.Marshal(c)
}

// DecodeCommand decodes and checks the envelope of a command.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Command{}, fmt.Errorf("command: malformed: %w", err)
	}
	if c.V != CommandVersion {
		return Command{}, fmt.Errorf("command %v: version %d, want %d", c.Kind, c.V, CommandVersion)
	}
	var ok bool
	switch c.Kind {
	case KindRoundStarted:
		ok = c.RoundStarted != nil
	case KindStageClosed:
		ok = c.StageClosed != nil
	case KindSurvivorsCommitted:
		ok = c.SurvivorsCommitted != nil
	case KindModelCommitted:
		ok = c.ModelCommitted != nil
	case KindRoundFailed:
		ok = c.RoundFailed != nil
	case KindMetricsRecorded:
		ok = c.MetricsRecorded != nil
	case KindMembersSeen:
		ok = c.MembersSeen != nil
	case KindStatsCommitted:
		ok = c.StatsCommitted != nil
	case KindStudyEnded:
		ok = c.StudyEnded != nil
	case KindStudyResumed:
		ok = c.StudyResumed != nil
	case KindConsistencyCommitted:
		ok = c.ConsistencyCommitted != nil
	case KindStudyCreated:
		ok = c.StudyCreated != nil
	case KindStudyPaused:
		ok = c.StudyPaused != nil
	default:
		return Command{}, fmt.Errorf("command: unknown kind %d", int(c.Kind))
	}
	if !ok {
		return Command{}, fmt.Errorf("command %v: payload missing", c.Kind)
	}
	return c, nil
}

// Round returns the round a command is about.
func (c *Command) Round() uint64 {
	switch {
	case c.RoundStarted != nil:
		return c.RoundStarted.Round
	case c.StageClosed != nil:
		return c.StageClosed.Round
	case c.SurvivorsCommitted != nil:
		return c.SurvivorsCommitted.Round
	case c.ModelCommitted != nil:
		return c.ModelCommitted.Round
	case c.RoundFailed != nil:
		return c.RoundFailed.Round
	case c.MetricsRecorded != nil:
		return c.MetricsRecorded.Round
	case c.MembersSeen != nil:
		return c.MembersSeen.Round
	case c.StatsCommitted != nil:
		return c.StatsCommitted.Round
	case c.StudyEnded != nil:
		return c.StudyEnded.Round
	case c.StudyResumed != nil:
		return c.StudyResumed.Round
	case c.ConsistencyCommitted != nil:
		return c.ConsistencyCommitted.Round
	}
	return 0
}

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

// snapshot is the FSM's snapshot: State is the default study's (the whole
// snapshot of a federation that never created another study, as before
// studies existed), Round the federation's round counter and Studies the
// created studies, sorted by name.
type snapshot struct {
	V       int             `json:"v"`
	State   State           `json:"state"`
	Round   uint64          `json:"round,omitempty"`
	Studies []studySnapshot `json:"studies,omitempty"`
}

// studySnapshot is one created study in a snapshot.
type studySnapshot struct {
	Name  string     `json:"name"`
	Spec  *StudySpec `json:"spec"`
	State State      `json:"state"`
}

// Snapshot writes the whole state (every study); the bytes are identical
// on replicas that applied the same commands.
func (f *FSM) Snapshot(w io.Writer) error {
	f.fed.mu.RLock()
	sn := snapshot{V: CommandVersion, State: f.fed.studies[DefaultStudy].State, Round: f.fed.round}
	for _, name := range f.fed.names() {
		if name == DefaultStudy {
			continue
		}
		st := f.fed.studies[name]
		sn.Studies = append(sn.Studies, studySnapshot{Name: name, Spec: st.Spec, State: st.State})
	}
	b, err := json.Marshal(sn)
	f.fed.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Restore replaces the state with a snapshot. Every study's ledger is
// verified first; on any error the state is unchanged.
func (f *FSM) Restore(r io.Reader) error {
	var sn snapshot
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sn); err != nil {
		return fmt.Errorf("restore: malformed snapshot: %w", err)
	}
	if sn.V != CommandVersion {
		return fmt.Errorf("restore: snapshot version %d, want %d", sn.V, CommandVersion)
	}
	studies := map[string]*study{DefaultStudy: {State: sn.State}}
	round := max(sn.Round, sn.State.Round)
	for i, ss := range sn.Studies {
		if err := checkStudyName(ss.Name); err != nil || ss.Spec == nil {
			return fmt.Errorf("restore: study %d: name %q or spec invalid", i, ss.Name)
		}
		if _, dup := studies[ss.Name]; dup {
			return fmt.Errorf("restore: study %q twice", ss.Name)
		}
		studies[ss.Name] = &study{Spec: ss.Spec, State: ss.State}
		round = max(round, ss.State.Round)
	}
	inFlight := 0
	for name, st := range studies {
		if err := checkRestoredState(&st.State); err != nil {
			return fmt.Errorf("restore: study %s: %w", studyLabel(name), err)
		}
		if st.State.Current != nil {
			inFlight++
		}
	}
	if inFlight > 1 {
		return fmt.Errorf("restore: %d studies have a round in flight, at most 1", inFlight)
	}
	f.fed.mu.Lock()
	f.fed.studies, f.fed.round = studies, round
	f.fed.mu.Unlock()
	return nil
}

// checkRestoredState verifies a snapshot's study: its ledger chain and its
// models against the ledger.
func checkRestoredState(s *State) error {
	if err := VerifyLedger(s.Ledger); err != nil {
		return err
	}
	if len(s.Ledger) != len(s.Models) {
		return fmt.Errorf("%d ledger entries for %d models", len(s.Ledger), len(s.Models))
	}
	for i, m := range s.Models {
		if e := s.Ledger[i]; e.Round != m.Round || e.ModelHash != m.Hash {
			return fmt.Errorf("model %d (round %d) disagrees with its ledger entry", i, m.Round)
		}
	}
	return nil
}

// ReadSnapshotLedger reads the ledger out of a snapshot written by
// FSM.Snapshot, without verifying it.
func ReadSnapshotLedger(r io.Reader) ([]LedgerEntry, error) {
	l, _, err := ReadSnapshotLedgerEnd(r)
	return l, err
}

// ReadSnapshotLedgerEnd is ReadSnapshotLedger plus the study's end, if it
// ended.
func ReadSnapshotLedgerEnd(r io.Reader) ([]LedgerEntry, *StudyEnded, error) {
	var sn snapshot
	if err := json.NewDecoder(r).Decode(&sn); err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	if sn.V != CommandVersion {
		return nil, nil, fmt.Errorf("snapshot: version %d, want %d", sn.V, CommandVersion)
	}
	return sn.State.Ledger, sn.State.Ended, nil
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
