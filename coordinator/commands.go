package coordinator

// The commands of the replicated state machine: their kinds, payloads and
// encoding. Their JSON is the Raft log's format: kinds are never
// renumbered, fields never renamed.

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
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
