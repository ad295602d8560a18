package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation"
	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/wire"
)

// Config holds the federation-level settings of the round driver. Secure
// aggregation (SecAgg+, Bell et al. 2020) is always on in the networked
// federation, so only weighted-mean strategies are accepted: the server
// only ever sees the sum of the updates.
type Config struct {
	// Model is the architecture (model.ParseSpec syntax, e.g. "2nn").
	Model string
	// InC, InH, InW and Classes give the input shape and class count.
	InC, InH, InW, Classes int
	// Rounds is the number of models to commit after the initial one.
	Rounds int
	// WorkersPerRound is how many workers each round samples; if 0,
	// Fraction of the online workers (rounded up) is sampled.
	WorkersPerRound int
	// Fraction is the share of online workers sampled when
	// WorkersPerRound is 0, in (0, 1].
	Fraction float64
	// MinWorkers is the fewest workers a round samples and the fewest
	// survivors whose sum may be released (≥ 2). With DP on, the t of the
	// distributed noise σC/√t (DPParams.MinClients) is the smaller of
	// MinWorkers and the round's SecAgg+ threshold.
	MinWorkers int
	// Train are the local-training settings sent to workers.
	Train TrainParams
	// Strategy is a fedavg-family strategy (fedavg, fedavgm, fedadam,
	// fedyogi, fedadagrad, fedprox:MU); ServerLR its server learning rate
	// (0 = the optimizer's default).
	Strategy string
	ServerLR float64
	// DP are the differential-privacy settings (Noise 0 = off); Delta is
	// the δ of the reported (ε, δ).
	DP    DPParams
	Delta float64
	// ClipRange is SecAgg+'s coordinate range [-R, R] when DP is off
	// (with DP on it is Clip + 6 noise std).
	ClipRange float64
	// MaxWeight is the largest weight (example count) a worker may use.
	MaxWeight float64
	// SecAggDegree is the SecAgg+ graph degree (0 = the default, capped
	// at sampled-1).
	SecAggDegree int
	// StageTimeout bounds each stage (and the evaluation).
	StageTimeout time.Duration
	// RetryLimit is how many failed rounds in a row Run tolerates.
	RetryLimit int
	// Federation is the federation name workers bind their SecAgg+
	// signatures to; when set (and worker IDs are peer IDs) the leader
	// verifies every advertisement before relaying it.
	Federation string
	// ExcludeRounds is how many rounds a worker named as a culprit (a
	// SecAgg+ share that does not verify, or shares its neighbours could
	// not open) is left out of sampling; recorded in the ledger with the
	// failed round. 0 = DefaultExcludeRounds.
	ExcludeRounds int
	// Seed drives the initial model, the sampling and the SecAgg+ graphs.
	Seed int64
	// PollInterval is how often Run checks again for enough online
	// workers (default 1s).
	PollInterval time.Duration
	// SecureEvaluation evaluates each round's announced model inside the
	// round's secure aggregate (wire.EvalWords) instead of asking each
	// participant for its figures after the commit: the coordinator learns
	// only the mean over the survivors. Metrics of model v are then
	// recorded by round v+1; the last model of a run gets none.
	SecureEvaluation bool
	// MaxEpsilon, if > 0, is the study's privacy budget: the study ends
	// budget-exhausted instead of starting a round whose ε would exceed it.
	MaxEpsilon float64
	// Pace, if positive, is how long a round stays in flight before its
	// first stage: a demonstration's rounds then last long enough for an
	// operator to kill the leader mid-round (docs/runbook.md §6). A
	// resumed round does not wait again.
	Pace time.Duration
	// InitParams, if set, is the initial model (round 0) instead of the
	// seeded initialisation: continued training, or a model trained in the
	// simulator ([rounds] init = "FILE"). Its length must match Model.
	InitParams []float32
	// Schema, if set, is the study's federation-wide data schema (hash
	// SchemaHash, the SHA-256 of its file): before the first model round
	// the driver runs the statistics round (stats.go). StatsMaxRows is the
	// public bound on a site's rows (0 = MaxWeight); StatsNoise the σ of
	// the row-level Gaussian noise on the statistics (0 = none).
	Schema     *data.Schema
	SchemaHash [32]byte
	// SchemaText is the schema file's bytes (SHA-256 = SchemaHash); the
	// committed statistics carry it, so an exported model is
	// self-describing.
	SchemaText   []byte
	StatsMaxRows int
	StatsNoise   float64
}

// DefaultConfig returns a configuration with the documented defaults
// (2nn on 28×28 MNIST-shaped input, 10 rounds, 10 workers per round).
func DefaultConfig() Config {
	return Config{
		Model: "2nn", InC: 1, InH: 28, InW: 28, Classes: 10,
		Rounds: 10, WorkersPerRound: 10, Fraction: 0.1, MinWorkers: 3,
		Train:     TrainParams{Epochs: 1, Batch: 10, LR: 0.05},
		Strategy:  "fedavg",
		Delta:     1e-5,
		ClipRange: 1, MaxWeight: 1e4,
		StageTimeout: time.Minute, RetryLimit: 3, PollInterval: time.Second,
	}
}

// Validate checks c; its errors name the field and its limit.
func (c Config) Validate() error {
	if _, err := c.spec(); err != nil {
		return fmt.Errorf("model %q: %w", c.Model, err)
	}
	if c.Rounds < 1 {
		return fmt.Errorf("rounds %d must be >= 1", c.Rounds)
	}
	if c.WorkersPerRound < 0 || c.WorkersPerRound == 1 || c.WorkersPerRound > secagg.MaxClients {
		return fmt.Errorf("workers per round %d must be 0 or in 2..%d", c.WorkersPerRound, secagg.MaxClients)
	}
	if c.WorkersPerRound == 0 && !(c.Fraction > 0 && c.Fraction <= 1) {
		return fmt.Errorf("fraction %v must be in (0, 1] when workers per round is 0", c.Fraction)
	}
	if c.MinWorkers < 2 {
		return fmt.Errorf("min workers %d must be >= 2", c.MinWorkers)
	}
	if c.WorkersPerRound > 0 && c.MinWorkers > c.WorkersPerRound {
		return fmt.Errorf("min workers %d must be <= workers per round %d", c.MinWorkers, c.WorkersPerRound)
	}
	if c.Train.Epochs < 1 || c.Train.Batch < 1 || !(c.Train.LR > 0) || math.IsInf(c.Train.LR, 0) {
		return fmt.Errorf("train: epochs %d, batch %d must be >= 1 and lr %v finite > 0", c.Train.Epochs, c.Train.Batch, c.Train.LR)
	}
	if _, err := c.strategy(); err != nil {
		return err
	}
	if c.DP.Noise < 0 || math.IsNaN(c.DP.Noise) || math.IsInf(c.DP.Noise, 0) {
		return fmt.Errorf("dp noise %v must be finite and >= 0", c.DP.Noise)
	}
	if c.DP.Noise > 0 {
		if !(c.DP.Clip > 0) || math.IsInf(c.DP.Clip, 0) {
			return fmt.Errorf("dp clip %v must be finite and > 0 when noise is on", c.DP.Clip)
		}
		if !(c.Delta > 0 && c.Delta < 1) {
			return fmt.Errorf("dp delta %v must be in (0, 1)", c.Delta)
		}
	} else if !(c.ClipRange > 0) || math.IsInf(c.ClipRange, 0) {
		return fmt.Errorf("clip range %v must be finite and > 0", c.ClipRange)
	}
	if !(c.MaxWeight > 0) || math.IsInf(c.MaxWeight, 0) {
		return fmt.Errorf("max weight %v must be finite and > 0", c.MaxWeight)
	}
	if c.SecAggDegree < 0 {
		return fmt.Errorf("secagg degree %d must be >= 0", c.SecAggDegree)
	}
	if c.StageTimeout <= 0 {
		return fmt.Errorf("stage timeout %v must be > 0", c.StageTimeout)
	}
	if c.ExcludeRounds < 0 {
		return fmt.Errorf("exclude rounds %d must be >= 0", c.ExcludeRounds)
	}
	if c.RetryLimit < 0 {
		return fmt.Errorf("retry limit %d must be >= 0", c.RetryLimit)
	}
	if c.MaxEpsilon < 0 || math.IsNaN(c.MaxEpsilon) || math.IsInf(c.MaxEpsilon, 0) {
		return fmt.Errorf("max epsilon %v must be finite and >= 0 (0 = no budget of the study's own)", c.MaxEpsilon)
	}
	if c.PollInterval < 0 {
		return fmt.Errorf("poll interval %v must be >= 0", c.PollInterval)
	}
	if c.Schema != nil {
		if c.SchemaHash == ([32]byte{}) || sha256.Sum256(c.SchemaText) != c.SchemaHash {
			return errors.New("schema hash must be the SHA-256 of the schema text")
		}
		if len(c.SchemaText) > MaxStatsBytes {
			return fmt.Errorf("schema of %d bytes, above %d", len(c.SchemaText), MaxStatsBytes)
		}
		if c.StatsMaxRows < 0 || c.statsMaxRows() < 1 {
			return fmt.Errorf("stats max rows %d must be >= 1 (0 = max weight)", c.StatsMaxRows)
		}
		if _, err := data.SumScales(c.Schema, c.statsMaxRows()); err != nil {
			return err
		}
		if c.StatsNoise < 0 || math.IsNaN(c.StatsNoise) || math.IsInf(c.StatsNoise, 0) {
			return fmt.Errorf("stats noise %v must be finite and >= 0", c.StatsNoise)
		}
		if c.StatsNoise > 0 && !(c.Delta > 0 && c.Delta < 1) {
			return fmt.Errorf("dp delta %v must be in (0, 1) with stats noise", c.Delta)
		}
	}
	if c.Pace < 0 {
		return fmt.Errorf("pace %v must be >= 0", c.Pace)
	}
	return nil
}

// ModelSpec is the study's model spec.
func (c Config) ModelSpec() (model.Spec, error) { return c.spec() }

func (c Config) spec() (model.Spec, error) {
	return model.ParseSpec(c.Model, c.InC, c.InH, c.InW, c.Classes)
}

func (c Config) strategy() (*aggregation.Strategy, error) {
	st, err := aggregation.ParseStrategy(c.Strategy, c.ServerLR)
	if err != nil {
		return nil, fmt.Errorf("strategy: %w", err)
	}
	if _, ok := st.Rule.(aggregation.WeightedMean); !ok {
		if _, ok := st.Rule.(*aggregation.WeightedMean); !ok {
			return nil, fmt.Errorf("strategy %q: secure aggregation only sums updates, so only the fedavg family (fedavg, fedavgm, fedadam, fedyogi, fedadagrad, fedprox:MU) is allowed", c.Strategy)
		}
	}
	return st, nil
}

// Replicator commits commands to the FSM: directly on a single node
// (Local), through Raft when replicated. Apply returns once the command is
// applied to the local FSM, with the FSM's error if it refused it.
type Replicator interface {
	Apply(ctx context.Context, cmd []byte) error
	IsLeader() bool
}

// Local is the single-node Replicator: it applies commands directly.
type Local struct{ fsm *FSM }

var _ Replicator = (*Local)(nil)

// NewLocal returns a Replicator that applies to fsm directly.
func NewLocal(fsm *FSM) *Local { return &Local{fsm: fsm} }

// Apply implements Replicator.
func (l *Local) Apply(ctx context.Context, cmd []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.fsm.Apply(cmd)
}

// IsLeader implements Replicator: a single node always leads.
func (l *Local) IsLeader() bool { return true }

// ErrNotLeader is returned by Run when the replicator is not the leader.
var ErrNotLeader = errors.New("coordinator: not the leader")

// ErrNotEnoughOnline marks a round that cannot start for lack of workers.
var ErrNotEnoughOnline = errors.New("not enough workers online")

// RoundFailedError reports a round closed by a RoundFailed command.
type RoundFailedError struct {
	Round   uint64
	Reason  string
	Missing []WorkerID
}

func (e *RoundFailedError) Error() string {
	return fmt.Sprintf("round %d failed: %s (missing %v)", e.Round, e.Reason, e.Missing)
}

// Driver runs rounds on the leader. Build it with NewDriver; the FSM holds
// all state, so a Driver may be dropped and a new one started on another
// replica at any time: Run resumes the round in flight from its last
// committed stage.
type Driver struct {
	cfg      Config
	spec     model.Spec
	fsm      *FSM
	repl     Replicator
	reg      ModelStore
	cohort   Cohort
	log      *slog.Logger
	stratErr error

	// LedgerPath, if set, is rewritten with the whole ledger after every
	// committed model (see WriteLedgerFile); the coordinator command sets
	// it to filepath.Join(dataDir, LedgerFileName).
	LedgerPath string

	mu    sync.Mutex
	stage string
	// unmasked remembers the survivor set sent per round: the driver
	// refuses to send a different one.
	unmasked map[uint64][]uint32
	// Incompatible, if set, names the workers that cannot take part (the
	// NetCohort's plan checks, when the cohort is wrapped); otherwise the
	// cohort's own Incompatible method is used, if it has one.
	Incompatible func() map[WorkerID][]string
	// Warnings, if set, gives the plan checks' warnings per worker, shown
	// in Status.
	Warnings func() map[WorkerID][]string
	// sampled is the cohort size of each round this driver ran; commits
	// the times of its model commits (the ETA's pace).
	sampled map[uint64]int
	commits []time.Time
	// evalTries counts Steps spent on a missing evaluation; endLogged
	// keeps an ended study's line to one.
	evalTries int
	endLogged bool
}

// NewDriver builds a round driver. fsm is the state (replicated through
// repl, or NewLocal(fsm) on one node), reg stores the models (Registry or
// MemRegistry; serve it to workers with p2p.ServeBlobs), cohort reaches the
// workers, and logger (nil = slog.Default()) receives progress lines.
func NewDriver(cfg Config, fsm *FSM, repl Replicator, reg ModelStore, cohort Cohort, logger *slog.Logger) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if fsm == nil || repl == nil || reg == nil || cohort == nil {
		return nil, errors.New("coordinator: NewDriver needs an FSM, a replicator, a registry and a cohort")
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	spec, _ := cfg.spec()
	return &Driver{cfg: cfg, spec: spec, fsm: fsm, repl: repl, reg: reg, cohort: cohort, log: logger, unmasked: map[uint64][]uint32{}}, nil
}

func (d *Driver) commit(ctx context.Context, c Command) error {
	c.Study = d.fsm.Name()
	b, err := EncodeCommand(c)
	if err != nil {
		return err
	}
	if err := d.repl.Apply(ctx, b); err != nil {
		return fmt.Errorf("round %d: committing %v: %w", c.Round(), kindOf(c), err)
	}
	return nil
}

func kindOf(c Command) CommandKind {
	b, _ := EncodeCommand(c)
	dc, _ := DecodeCommand(b)
	return dc.Kind
}

func (d *Driver) setStage(s string) {
	d.mu.Lock()
	d.stage = s
	d.mu.Unlock()
}

// Init commits the initial model (round 0) if none is committed yet: the
// spec's network initialised from the seed.
func (d *Driver) Init(ctx context.Context) error {
	if _, ok := d.fsm.LatestModel(); ok {
		return nil
	}
	var params []float32
	if d.spec.External() {
		// An external model starts from the weights its trainer wrote
		// ([rounds] init): Sovereign cannot initialise it.
		if len(d.cfg.InitParams) != d.spec.NumParams() {
			return fmt.Errorf("external model: initial weights of %d parameters, the layout has %d ([rounds] init is required)", len(d.cfg.InitParams), d.spec.NumParams())
		}
		params = d.cfg.InitParams
	} else {
		n, err := model.New(d.spec)
		if err != nil {
			return fmt.Errorf("model %q: %w", d.cfg.Model, err)
		}
		n.Init(d.cfg.Seed)
		if d.cfg.InitParams != nil {
			if err := n.SetParams(d.cfg.InitParams); err != nil {
				return fmt.Errorf("initial model: %w", err)
			}
		}
		params = n.Params()
	}
	h, err := d.reg.Put(params)
	if err != nil {
		return err
	}
	st, _ := d.cfg.strategy()
	d.log.Info("initial model", "round", 0, "stage", "init", "model", h, "params", len(params))
	return d.commit(ctx, Command{ModelCommitted: &ModelCommitted{
		Round: 0, ModelHash: h, Participants: []WorkerID{}, Optimizer: OptimizerRef{Name: optimizerName(st)},
	}})
}

func optimizerName(st *aggregation.Strategy) string {
	if st.Server == nil {
		return "fedavg"
	}
	return st.Server.Name()
}

// Run drives rounds until Rounds models are committed, ctx ends, the
// replicator loses leadership (ErrNotLeader) or the study ends (finished,
// failed after more than RetryLimit rounds failed in a row,
// budget-exhausted, stopped). A round in flight in the FSM is resumed
// first. A paused study waits until it is resumed or stopped.
func (d *Driver) Run(ctx context.Context) error {
	if !d.repl.IsLeader() {
		return ErrNotLeader
	}
	if err := d.Init(ctx); err != nil {
		return err
	}
	for {
		res, err := d.Step(ctx)
		switch {
		case err != nil:
			return err
		case res == StepEnded:
			return nil
		case res == StepWaiting || res == StepPaused:
			t := time.NewTimer(d.cfg.PollInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}

// StepResult is what one Step did.
type StepResult int

// Step results.
const (
	// StepRan: a round ran to its end (committed or failed), or the
	// driver recorded an evaluation; call Step again.
	StepRan StepResult = iota
	// StepWaiting: too few workers are online; try again later.
	StepWaiting
	// StepPaused: the study is paused; no round started.
	StepPaused
	// StepEnded: the study has ended.
	StepEnded
)

// Step does the study's next piece of work: it records a missing
// evaluation, ends the study if it is done, or runs (or resumes) one
// round. The Scheduler calls it for each running study in turn; Run calls
// it in a loop. Errors other than a round's own failure stop the driver
// (the round, if any, stays in flight for a later resume).
func (d *Driver) Step(ctx context.Context) (StepResult, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !d.repl.IsLeader() {
		return 0, ErrNotLeader
	}
	if !d.evaluateUnrecorded(ctx) && d.evalTries < d.cfg.RetryLimit {
		d.evalTries++
		return StepRan, nil
	}
	st := d.fsm.State()
	if e := st.Ended; e != nil {
		if e.State == EndFinished && st.CommittedRounds() < d.cfg.Rounds && d.fsm.Name() == DefaultStudy {
			// rounds was raised in the coordinator file since: the
			// study goes on.
			if _, err := d.Resume(ctx); err != nil {
				return 0, err
			}
			return StepRan, nil
		}
		d.setStage(e.State)
		if !d.endLogged {
			d.endLogged = true
			d.log.Info("study ended", "round", st.Round, "stage", e.State, "reason", e.Reason, "committed", st.CommittedRounds())
		}
		return StepEnded, nil
	}
	d.endLogged = false
	if p := st.Paused; p != nil && st.Current == nil {
		if p.Stop {
			reason := p.Reason
			if reason == "" {
				reason = "stopped from the command line"
			}
			return StepEnded, d.end(ctx, &st, EndStopped, reason)
		}
		d.setStage("paused")
		return StepPaused, nil
	}
	if st.Current == nil && st.CommittedRounds() >= d.cfg.Rounds {
		return StepEnded, d.end(ctx, &st, EndFinished, fmt.Sprintf("%d models committed", st.CommittedRounds()))
	}
	if st.Current == nil && st.Failures > d.cfg.RetryLimit {
		// The study fails; the coordinator stays healthy for the next.
		return StepEnded, d.end(ctx, &st, EndFailed, failedReasons(&st))
	}
	r := d.fsm.NextRound()
	if st.Current != nil {
		r = st.Current.Round
	}
	err := d.RunRound(ctx, r)
	var rf *RoundFailedError
	var be *budgetError
	switch {
	case errors.As(err, &be):
		return StepEnded, d.end(ctx, &st, EndBudgetExhausted, be.Error())
	case errors.As(err, &rf):
		after := d.fsm.State()
		d.mu.Lock()
		sampled := d.sampled[r]
		d.mu.Unlock()
		if ok, why := d.budgetExhausted(&after, r, sampled); ok {
			return StepEnded, d.end(ctx, &after, EndBudgetExhausted, why)
		}
		return StepRan, nil
	case err == nil:
		return StepRan, nil
	case errors.Is(err, ErrNotEnoughOnline):
		d.log.Info("waiting for workers", "round", r, "stage", "sample", "err", err)
		return StepWaiting, nil
	}
	return 0, err
}

// RunRound runs round r to its end: it starts it (r must be the next
// round) or resumes it (r is the round in flight). It returns nil once the
// model is committed, a *RoundFailedError once a RoundFailed is committed,
// an error wrapping ErrNotEnoughOnline when too few workers are online, or
// the error that stopped it (the round then stays in flight for a later
// resume).
func (d *Driver) RunRound(ctx context.Context, r uint64) error {
	st := d.fsm.State()
	var cur *RoundState
	switch {
	case st.Current != nil && st.Current.Round == r:
		cur = st.Current
		d.log.Info("resuming", "round", r, "stage", cur.Next.String())
		// A new leader may be up before the round's workers have redialled
		// it: give them time to come back before asking.
		d.awaitOnline(ctx, cur.Announce.Sampled)
	case st.Current != nil:
		return fmt.Errorf("round %d: round %d is in flight", r, st.Current.Round)
	case r != d.fsm.NextRound():
		return fmt.Errorf("round %d: the next round is %d", r, d.fsm.NextRound())
	default:
		var err error
		if cur, err = d.start(ctx, r, &st); err != nil {
			return err
		}
	}
	d.mu.Lock()
	if d.sampled == nil {
		d.sampled = map[uint64]int{}
	}
	d.sampled[r] = len(cur.Announce.Sampled)
	d.mu.Unlock()
	return d.drive(ctx, cur)
}

// seed32 derives a 32-byte public seed for round r and a purpose label.
func (d *Driver) seed32(label string, r uint64) [32]byte {
	var b [8 + 8]byte
	binary.BigEndian.PutUint64(b[:], uint64(d.cfg.Seed))
	binary.BigEndian.PutUint64(b[8:], r)
	return sha256.Sum256(append([]byte("sovereign/"+label+"\x00"), b[:]...))
}

// sampleSize returns how many of online workers a round samples.
func (d *Driver) sampleSize(online int) int {
	if d.cfg.WorkersPerRound > 0 {
		return d.cfg.WorkersPerRound
	}
	return max(d.cfg.MinWorkers, int(math.Ceil(d.cfg.Fraction*float64(online))))
}

func (d *Driver) start(ctx context.Context, r uint64, st *State) (*RoundState, error) {
	log := d.log.With("round", r, "stage", "sample")
	online := slices.Clone(d.cohort.Online())
	slices.Sort(online)
	online = slices.Compact(online)
	// Culprits of recent rounds are not sampled (security review H3, M3),
	// nor workers whose plan check said they cannot take part (plan.go).
	online = slices.DeleteFunc(online, func(w WorkerID) bool { return st.Excluded[w] > r })
	if inc := d.incompatible(); len(inc) > 0 {
		online = slices.DeleteFunc(online, func(w WorkerID) bool { _, bad := inc[w]; return bad })
	}
	if !slices.Equal(online, st.Members) && !(len(online) == 0 && len(st.Members) == 0) {
		if online == nil {
			online = []WorkerID{}
		}
		if err := d.commit(ctx, Command{MembersSeen: &MembersSeen{Round: r, Members: online}}); err != nil {
			return nil, err
		}
	}
	n := d.sampleSize(len(online))
	if d.statsPending(st) {
		// The statistics cover every site online (at most MaxClients).
		n = max(n, min(len(online), secagg.MaxClients))
	}
	if len(online) < n {
		if inc := d.incompatible(); len(inc) > 0 {
			var names []string
			for w, rs := range inc {
				names = append(names, fmt.Sprintf("%s (%s)", w, strings.Join(rs, "; ")))
			}
			slices.Sort(names)
			return nil, fmt.Errorf("round %d: %w: %d online and able to take part, need %d; cannot take part: %s", r, ErrNotEnoughOnline, len(online), n, strings.Join(names, ", "))
		}
		return nil, fmt.Errorf("round %d: %w: %d online, need %d", r, ErrNotEnoughOnline, len(online), n)
	}
	seed := d.seed32("sample", r)
	rng := rand.New(rand.NewChaCha8(seed))
	perm := rng.Perm(len(online))[:n]
	sampled := make([]WorkerID, n)
	for i, j := range perm {
		sampled[i] = online[j]
	}
	slices.Sort(sampled)
	head, _ := d.fsm.LatestModel()
	names := make([]string, n)
	for i, w := range sampled {
		names[i] = string(w)
	}
	clients := make([]uint32, n)
	for i := range clients {
		clients[i] = uint32(i + 1)
	}
	sc := secagg.Config{
		Round: r, Clients: clients, Degree: d.cfg.SecAggDegree, ClipRange: d.cfg.ClipRange,
		// The graph seed is derived from the announcement itself, so
		// workers check it (security review M7).
		MaxWeight: d.cfg.MaxWeight, Dim: d.spec.NumParams(), GraphSeed: wire.GraphSeed(d.cfg.Federation, r, head.Hash, names),
		StageTimeout: d.cfg.StageTimeout,
		// Bonawitz et al. 2017, round 4: every survivor signs the survivor
		// set before any unmasking (security review H2).
		ConsistencyCheck: true,
	}
	if d.cfg.SecureEvaluation {
		sc.Dim += wire.EvalWords
	}
	if sc.Degree > n-1 {
		sc.Degree = n - 1
	}
	sc = sc.WithDefaults()
	dpp := d.cfg.DP
	// The noise share assumes the fewest clients a released sum can hold:
	// the driver releases no sum of fewer than MinWorkers survivors, but
	// SecAgg+ itself can unmask any t = Threshold of them, and a worker
	// refuses a round whose noise would not cover that case.
	dpp.MinClients = min(d.cfg.MinWorkers, sc.Threshold)
	eps := 0.0
	if dpp.Noise > 0 && d.cfg.MaxEpsilon > 0 && !d.statsPending(st) {
		a := st.Accountant()
		if err := a.Step(float64(n)/float64(len(online)), dpp.Noise, 1); err == nil {
			if e, _, err := a.Epsilon(d.cfg.Delta, nil); err == nil && e > d.cfg.MaxEpsilon {
				return nil, &budgetError{Round: r, Epsilon: e, Max: d.cfg.MaxEpsilon}
			}
		}
	}
	if dpp.Noise > 0 {
		// Distributed DP: each worker adds N(0, σ²C²/t); a released sum of
		// at least t = MinClients survivors carries noise σC (Truex et
		// al. 2019; Kairouz, Liu, Steinke 2021), accounted with RDP
		// (Mironov 2017) at sampling rate q = 1: the coordinator picks and
		// knows the sample, and the announcement names it to every sampled
		// worker, so amplification by sampling (q = n/online) does not
		// hold against the coordinator nor against the workers (security
		// review M5). Each worker keeps its own q = 1 accountant too.
		sc.ClipRange = dpp.Clip + 6*dp.DistributedStd(dpp.Noise, dpp.Clip, dpp.MinClients)
		a := st.Accountant()
		if err := a.Step(ReleaseQ, dpp.Noise, 1); err != nil {
			return nil, fmt.Errorf("round %d: privacy accounting: %w", r, err)
		}
		var err error
		if eps, _, err = a.Epsilon(d.cfg.Delta, nil); err != nil {
			return nil, fmt.Errorf("round %d: privacy accounting: %w", r, err)
		}
	}
	strat, _ := d.cfg.strategy()
	train := d.cfg.Train
	if strat.ProxMu > 0 {
		train.ProxMu = float64(strat.ProxMu)
	}
	a := Announce{
		Round: r, ModelHash: head.Hash, ModelVersion: head.Round, ModelSpec: d.cfg.Model,
		NumParams: d.spec.NumParams(), Train: train, DP: dpp, SecAgg: sc, Sampled: sampled, Epsilon: eps,
		Study: d.fsm.Name(),
	}
	d.shapeStatsAnnounce(&a, st)
	if a.Purpose == wire.PurposeStatistics {
		eps = 0
	}
	if err := d.commit(ctx, Command{RoundStarted: &RoundStarted{Round: r, Announce: a, OnlineCount: len(online)}}); err != nil {
		return nil, err
	}
	log.Info("round started", "sampled", len(sampled), "online", len(online), "model", head.Hash, "epsilon", eps)
	if d.cfg.Pace > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d.cfg.Pace):
		}
	}
	s := d.fsm.State()
	return s.Current, nil
}

type reply[T any] struct {
	v   T
	err error
}

// callAll calls f for every id concurrently under a deadline of one stage
// timeout and returns the replies in the order of ids.
func callAll[T any](ctx context.Context, timeout time.Duration, ids []uint32, f func(context.Context, uint32) (T, error)) []reply[T] {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]reply[T], len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := f(sctx, id)
			out[i] = reply[T]{v, err}
		}()
	}
	wg.Wait()
	return out
}

func (d *Driver) fail(ctx context.Context, cur *RoundState, reason string, missing []uint32) error {
	ids := d.workers(cur, missing)
	d.log.Warn("round failed", "round", cur.Round, "stage", cur.Next.String(), "reason", reason, "missing", ids)
	if err := d.commit(ctx, Command{RoundFailed: &RoundFailed{Round: cur.Round, Reason: reason, Missing: ids}}); err != nil {
		return err
	}
	return &RoundFailedError{Round: cur.Round, Reason: reason, Missing: ids}
}

// ReleaseQ is the sampling rate each released sum is charged at: 1, since
// the coordinator chooses the sample (security review M5; see start).
const ReleaseQ = 1.0

// DefaultExcludeRounds is the default of DriverConfig.ExcludeRounds.
const DefaultExcludeRounds = 10

// failCulprits commits a RoundFailed that names culprits and excludes them
// from sampling until ExcludeRounds rounds later.
func (d *Driver) failCulprits(ctx context.Context, cur *RoundState, reason string, culprits []uint32) error {
	ids := d.workers(cur, culprits)
	n := d.cfg.ExcludeRounds
	if n == 0 {
		n = DefaultExcludeRounds
	}
	until := cur.Round + uint64(n) + 1
	d.log.Warn("round failed: culprits named", "round", cur.Round, "stage", cur.Next.String(), "reason", reason, "culprits", ids, "excluded_until", until)
	if err := d.commit(ctx, Command{RoundFailed: &RoundFailed{Round: cur.Round, Reason: reason, Missing: []WorkerID{}, Culprits: ids, ExcludedUntil: until}}); err != nil {
		return err
	}
	return &RoundFailedError{Round: cur.Round, Reason: reason, Missing: ids}
}

func (d *Driver) workers(cur *RoundState, idx []uint32) []WorkerID {
	ids := make([]WorkerID, 0, len(idx))
	for _, i := range idx {
		if i >= 1 && int(i) <= len(cur.Announce.Sampled) {
			ids = append(ids, cur.Announce.Sampled[i-1])
		}
	}
	slices.Sort(ids)
	return ids
}

// drive runs the SecAgg+ stages of cur from its last committed stage.
func (d *Driver) drive(ctx context.Context, cur *RoundState) error {
	r := cur.Round
	a := &cur.Announce
	srv, err := secagg.NewServer(a.SecAgg)
	if err != nil {
		return fmt.Errorf("round %d: %w", r, err)
	}
	if d.cfg.Federation != "" {
		// Refuse a lying worker's signature here rather than let it make
		// its honest neighbours refuse the round (security review H1).
		sampled := make([]string, len(a.Sampled))
		for i, w := range a.Sampled {
			sampled[i] = string(w)
		}
		v, err := wire.NewSecAggVerifier(d.cfg.Federation, sampled)
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		srv.SetAuthenticator(v)
	}
	// The server's clock is virtual: the driver enforces real deadlines
	// with contexts and then closes each stage at its virtual deadline.
	vnow := time.Unix(0, 0)
	closeStage := func() ([]secagg.Outbound, bool, error) {
		s := srv.Stage()
		out, done, err := srv.Advance(vnow)
		if err != nil || done || srv.Stage() != s {
			return out, done, err
		}
		vnow = srv.Deadline()
		return srv.Advance(vnow)
	}
	insufficient := func(err error) error {
		var ie *secagg.InsufficientError
		if errors.As(err, &ie) {
			return d.fail(ctx, cur, err.Error(), ie.Missing)
		}
		var ce *secagg.CheatingError
		if errors.As(err, &ce) {
			// Security review H3/M3: name and exclude the culprits; never
			// release a sum rebuilt from unverified shares.
			return d.failCulprits(ctx, cur, err.Error(), ce.Culprits)
		}
		return fmt.Errorf("round %d: %w", r, err)
	}
	who := func(id uint32) WorkerID { return a.Sampled[id-1] }
	all := slices.Clone(a.SecAgg.Clients)

	// Stage 0: advertise keys.
	log := d.log.With("round", r, "stage", secagg.StageAdvertise.String())
	d.setStage(secagg.StageAdvertise.String())
	if cur.Next > secagg.StageAdvertise {
		for _, k := range cur.Keys {
			if err := srv.Receive(k, vnow); err != nil {
				return fmt.Errorf("round %d: committed keys of client %d refused: %w", r, k.From, err)
			}
		}
	} else {
		replies := callAll(ctx, d.cfg.StageTimeout, all, func(c context.Context, id uint32) (secagg.AdvertiseKeys, error) {
			return d.cohort.Advertise(c, who(id), a)
		})
		var keys []secagg.AdvertiseKeys
		var done []uint32
		var refused []RefusalRecord
		for i, rp := range replies {
			id := all[i]
			if rp.err == nil && rp.v.From != id {
				rp.err = fmt.Errorf("keys claim node %d", rp.v.From)
			}
			if rp.err == nil {
				rp.err = srv.Receive(rp.v, vnow)
			}
			if rp.err != nil {
				log.Warn("no keys", "worker", who(id), "err", rp.err)
				refused = appendRefused(refused, r, who(id), rp.err)
				continue
			}
			keys, done = append(keys, rp.v), append(done, id)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		if err := d.commit(ctx, Command{StageClosed: &StageClosed{Round: r, Stage: secagg.StageAdvertise, Completed: done, Keys: keys, Refused: refused}}); err != nil {
			return err
		}
		cur.Advertised, cur.Keys, cur.Next = done, keys, secagg.StageShareKeys
		log.Info("stage closed", "completed", len(done), "sampled", len(all))
	}
	out, _, err := closeStage()
	if err != nil {
		return insufficient(err)
	}

	// Stage 1: share keys.
	log = d.log.With("round", r, "stage", secagg.StageShareKeys.String())
	d.setStage(secagg.StageShareKeys.String())
	if cur.Next > secagg.StageShareKeys {
		for _, id := range cur.Shared {
			var batch []secagg.EncryptedShare
			for _, e := range cur.Shares {
				if e.From == id {
					batch = append(batch, e)
				}
			}
			if err := srv.Receive(batch, vnow); err != nil {
				return fmt.Errorf("round %d: committed shares of client %d refused: %w", r, id, err)
			}
		}
	} else {
		kb := map[uint32]secagg.KeyBroadcast{}
		var to []uint32
		for _, o := range out {
			if m, ok := o.Msg.(secagg.KeyBroadcast); ok {
				kb[o.To] = m
				to = append(to, o.To)
			}
		}
		slices.Sort(to)
		replies := callAll(ctx, d.cfg.StageTimeout, to, func(c context.Context, id uint32) ([]secagg.EncryptedShare, error) {
			return d.cohort.ShareKeys(c, who(id), kb[id])
		})
		var shares []secagg.EncryptedShare
		var done []uint32
		var refused []RefusalRecord
		for i, rp := range replies {
			id := to[i]
			for _, e := range rp.v {
				if rp.err == nil && e.From != id {
					rp.err = fmt.Errorf("share claims node %d", e.From)
				}
			}
			if rp.err == nil && len(rp.v) == 0 {
				rp.err = errors.New("no shares")
			}
			if rp.err == nil {
				rp.err = srv.Receive(rp.v, vnow)
			}
			if rp.err != nil {
				log.Warn("no shares", "worker", who(id), "err", rp.err)
				refused = appendRefused(refused, r, who(id), rp.err)
				continue
			}
			shares, done = append(shares, rp.v...), append(done, id)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		if err := d.commit(ctx, Command{StageClosed: &StageClosed{Round: r, Stage: secagg.StageShareKeys, Completed: done, Shares: shares, Refused: refused}}); err != nil {
			return err
		}
		cur.Shared, cur.Shares, cur.Next = done, shares, secagg.StageMaskedInput
		log.Info("stage closed", "completed", len(done))
	}
	out, _, err = closeStage()
	if err != nil {
		return insufficient(err)
	}

	// Stage 2: masked inputs. After a failover with the survivors already
	// committed, only they are asked (they answer from their cache).
	log = d.log.With("round", r, "stage", secagg.StageMaskedInput.String())
	d.setStage(secagg.StageMaskedInput.String())
	bundles := map[uint32]secagg.ShareBundle{}
	var to []uint32
	committed := cur.Next == secagg.StageUnmask || cur.Next == secagg.StageConsistency
	for _, o := range out {
		if m, ok := o.Msg.(secagg.ShareBundle); ok {
			if committed {
				if _, ok := slices.BinarySearch(cur.Survivors, o.To); !ok {
					continue
				}
			}
			bundles[o.To] = m
			to = append(to, o.To)
		}
	}
	slices.Sort(to)
	replies := callAll(ctx, d.cfg.StageTimeout, to, func(c context.Context, id uint32) (secagg.MaskedInput, error) {
		return d.cohort.MaskedInput(c, who(id), bundles[id], a.SecAgg.Dim)
	})
	var refused []RefusalRecord
	for i, rp := range replies {
		id := to[i]
		if rp.err == nil && rp.v.From != id {
			rp.err = fmt.Errorf("masked input claims node %d", rp.v.From)
		}
		if rp.err == nil {
			rp.err = srv.Receive(rp.v, vnow)
		}
		if rp.err != nil {
			log.Warn("no masked input", "worker", who(id), "err", rp.err)
			refused = appendRefused(refused, r, who(id), rp.err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("round %d: %w", r, err)
	}
	out, _, err = closeStage()
	if err != nil {
		return insufficient(err)
	}
	survivors := slices.Clone(srv.Survivors())
	slices.Sort(survivors)
	if committed {
		if !slices.Equal(survivors, cur.Survivors) {
			var missing []uint32
			for _, id := range cur.Survivors {
				if _, ok := slices.BinarySearch(survivors, id); !ok {
					missing = append(missing, id)
				}
			}
			return d.fail(ctx, cur, "committed survivors did not resend their masked inputs", missing)
		}
	} else {
		var dropped []uint32
		for _, id := range cur.Shared {
			if _, ok := slices.BinarySearch(survivors, id); !ok {
				dropped = append(dropped, id)
			}
		}
		if len(survivors) < d.cfg.MinWorkers {
			return d.fail(ctx, cur, fmt.Sprintf("%d survivors, fewer than min workers %d", len(survivors), d.cfg.MinWorkers), dropped)
		}
		if dropped == nil {
			dropped = []uint32{}
		}
		if err := d.commit(ctx, Command{SurvivorsCommitted: &SurvivorsCommitted{Round: r, Survivors: survivors, Dropped: dropped, Refused: refused}}); err != nil {
			return err
		}
		cur.Survivors, cur.Dropped, cur.Next = survivors, dropped, secagg.StageMaskedInput.Next(a.SecAgg.ConsistencyCheck)
		log.Info("survivors committed", "survivors", len(survivors), "dropped", len(dropped))
	}

	// Consistency check (Bonawitz et al. 2017, round 4): every survivor
	// signs the committed survivor set once; the signatures the server
	// verified are committed before any unmask request carries them.
	if a.SecAgg.ConsistencyCheck {
		if out, err = d.consistency(ctx, cur, srv, out, &vnow, closeStage, insufficient); err != nil {
			return err
		}
	}

	// Stage 3: unmask, only for the committed survivor set.
	log = d.log.With("round", r, "stage", secagg.StageUnmask.String())
	d.setStage(secagg.StageUnmask.String())
	d.mu.Lock()
	if prev, ok := d.unmasked[r]; ok && !slices.Equal(prev, cur.Survivors) {
		d.mu.Unlock()
		return fmt.Errorf("round %d: refusing to request unmasking of survivors %v after %v", r, cur.Survivors, prev)
	}
	d.unmasked[r] = slices.Clone(cur.Survivors)
	d.mu.Unlock()
	reqs := map[uint32]secagg.UnmaskRequest{}
	to = to[:0]
	for _, o := range out {
		if m, ok := o.Msg.(secagg.UnmaskRequest); ok {
			if !slices.Equal(m.Survivors, cur.Survivors) {
				return fmt.Errorf("round %d: unmask request for client %d names survivors %v, committed %v", r, o.To, m.Survivors, cur.Survivors)
			}
			reqs[o.To] = m
			to = append(to, o.To)
		}
	}
	slices.Sort(to)
	ureplies := callAll(ctx, d.cfg.StageTimeout, to, func(c context.Context, id uint32) (secagg.UnmaskResponse, error) {
		return d.cohort.Unmask(c, who(id), reqs[id])
	})
	for i, rp := range ureplies {
		id := to[i]
		if rp.err == nil && rp.v.From != id {
			rp.err = fmt.Errorf("unmask response claims node %d", rp.v.From)
		}
		if rp.err == nil {
			rp.err = srv.Receive(rp.v, vnow)
		}
		if rp.err != nil {
			log.Warn("no unmask response", "worker", who(id), "err", rp.err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("round %d: %w", r, err)
	}
	if _, _, err := closeStage(); err != nil {
		return insufficient(err)
	}
	sum, tw, _, err := srv.Result()
	if c, acc := srv.Culprits(), srv.Accused(); err == nil && (len(c) > 0 || len(acc) > 0) {
		// Outvoted bad shares (H3) or complaints that left enough holders
		// (M3): the sum is exact; the liars are named in the log.
		log.Warn("bad SecAgg+ shares outvoted", "culprits", d.workers(cur, c), "accused", d.workers(cur, acc))
	}
	if err != nil {
		return insufficient(err)
	}
	if a.Purpose == wire.PurposeStatistics {
		return d.finishStats(ctx, cur, sum, tw)
	}
	return d.finish(ctx, cur, sum, tw)
}

// consistency runs the consistency-check stage of cur, whose survivors are
// committed: out are the server's consistency requests. After a failover
// with the signatures already committed it feeds them to the server
// instead of asking again. It returns the server's unmask requests.
func (d *Driver) consistency(ctx context.Context, cur *RoundState, srv *secagg.Server, out []secagg.Outbound, vnow *time.Time,
	closeStage func() ([]secagg.Outbound, bool, error), insufficient func(error) error) ([]secagg.Outbound, error) {
	r, a := cur.Round, &cur.Announce
	log := d.log.With("round", r, "stage", secagg.StageConsistency.String())
	d.setStage(secagg.StageConsistency.String())
	who := func(id uint32) WorkerID { return a.Sampled[id-1] }
	if cur.Next == secagg.StageUnmask {
		for _, sg := range cur.Signatures {
			if err := srv.Receive(sg, *vnow); err != nil {
				return nil, fmt.Errorf("round %d: committed consistency signature of client %d refused: %w", r, sg.From, err)
			}
		}
		out, _, err := closeStage()
		if err != nil {
			return nil, insufficient(err)
		}
		return out, nil
	}
	reqs := map[uint32]secagg.ConsistencyRequest{}
	var to []uint32
	for _, o := range out {
		if m, ok := o.Msg.(secagg.ConsistencyRequest); ok {
			if !slices.Equal(m.Survivors, cur.Survivors) {
				return nil, fmt.Errorf("round %d: consistency request for client %d names survivors %v, committed %v", r, o.To, m.Survivors, cur.Survivors)
			}
			reqs[o.To] = m
			to = append(to, o.To)
		}
	}
	slices.Sort(to)
	replies := callAll(ctx, d.cfg.StageTimeout, to, func(c context.Context, id uint32) (secagg.ConsistencyResponse, error) {
		return d.cohort.ConsistencyCheck(c, who(id), reqs[id])
	})
	var sigs []secagg.ConsistencyResponse
	var refused []RefusalRecord
	for i, rp := range replies {
		id := to[i]
		if rp.err == nil && rp.v.From != id {
			rp.err = fmt.Errorf("consistency signature claims node %d", rp.v.From)
		}
		if rp.err == nil {
			rp.err = srv.Receive(rp.v, *vnow)
		}
		if rp.err != nil {
			log.Warn("no consistency signature", "worker", who(id), "err", rp.err)
			refused = appendRefused(refused, r, who(id), rp.err)
			continue
		}
		sigs = append(sigs, rp.v)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("round %d: %w", r, err)
	}
	out, _, err := closeStage()
	if err != nil {
		return nil, insufficient(err)
	}
	if sigs == nil {
		sigs = []secagg.ConsistencyResponse{}
	}
	if err := d.commit(ctx, Command{ConsistencyCommitted: &ConsistencyCommitted{Round: r, Signatures: sigs, Refused: refused}}); err != nil {
		return nil, err
	}
	cur.Signatures, cur.Next = sigs, secagg.StageUnmask
	log.Info("signatures committed", "signed", len(sigs), "survivors", len(cur.Survivors))
	return out, nil
}

// finish applies the server optimizer to sum/totalWeight, stores and
// commits the model, then runs the federated evaluation.
func (d *Driver) finish(ctx context.Context, cur *RoundState, sum []float64, tw float64) error {
	r := cur.Round
	log := d.log.With("round", r, "stage", "commit")
	d.setStage("commit")
	// The noised sum is released from here on: every way out of this
	// function charges the accountant (security review M1).
	var released *dp.Entry
	if cur.Announce.DP.Noise > 0 {
		released = &dp.Entry{Q: ReleaseQ, Sigma: cur.Announce.DP.Noise, Steps: 1}
	}
	failReleased := func(reason string) error {
		d.log.Warn("round failed after its sum was unmasked", "round", r, "reason", reason)
		if err := d.commit(ctx, Command{RoundFailed: &RoundFailed{Round: r, Reason: reason, Missing: []WorkerID{}, DP: released}}); err != nil {
			return err
		}
		return &RoundFailedError{Round: r, Reason: reason}
	}
	// The total weight is one masked word any survivor can bend: it must
	// lie in (0, |U3|·MaxWeight], and be |U3| when DP weights are uniform.
	n := float64(len(cur.Survivors))
	const slack = 1e-3 // far above the quantization error of one word
	if !(tw > 0) || math.IsInf(tw, 0) || tw > n*d.cfg.MaxWeight+slack {
		return failReleased(fmt.Sprintf("total weight %v of the %d survivors is outside (0, %v]", tw, len(cur.Survivors), n*d.cfg.MaxWeight))
	}
	if cur.Announce.DP.Noise > 0 && math.Abs(tw-n) > slack {
		return failReleased(fmt.Sprintf("total weight %v of the %d survivors is not %d: DP weights are 1 each", tw, len(cur.Survivors), len(cur.Survivors)))
	}
	var evalMetrics *MetricsRecorded
	if np := cur.Announce.NumParams; len(sum) == np+wire.EvalWords {
		acc, loss, ok, err := wire.ParseEvalTail(sum[np:])
		if err != nil {
			return d.fail(ctx, cur, "secure evaluation: "+err.Error(), nil)
		}
		if v := cur.Announce.ModelVersion; ok && v > 0 {
			evalMetrics = &MetricsRecorded{Round: v, Accuracy: acc, Loss: loss, Workers: len(cur.Survivors)}
		}
		sum = sum[:np]
	}
	mean := make([]float32, len(sum))
	for i, v := range sum {
		mean[i] = float32(v / tw)
		if math.IsNaN(float64(mean[i])) || math.IsInf(float64(mean[i]), 0) {
			return failReleased(fmt.Sprintf("unmasked mean is not finite at coordinate %d", i))
		}
	}
	st := d.fsm.State()
	params, err := d.reg.Get(Hash(cur.Announce.ModelHash))
	if err != nil {
		return fmt.Errorf("round %d: global model: %w", r, err)
	}
	if len(params) != len(mean) {
		return fmt.Errorf("round %d: global model %s has %d params, sum has %d", r, Hash(cur.Announce.ModelHash), len(params), len(mean))
	}
	strat, _ := d.cfg.strategy()
	opt := strat.Server
	if opt == nil {
		opt = aggregation.NewFedAvg(1)
	}
	if sf, ok := opt.(aggregation.Stateful); ok && !st.Optimizer.State.IsZero() {
		b, err := d.reg.GetBytes(st.Optimizer.State)
		if err != nil {
			return fmt.Errorf("round %d: optimizer state: %w", r, err)
		}
		var os aggregation.OptimizerState
		if err := json.Unmarshal(b, &os); err != nil {
			return fmt.Errorf("round %d: optimizer state %s: %w", r, st.Optimizer.State, err)
		}
		if err := sf.SetState(os); err != nil {
			return fmt.Errorf("round %d: optimizer state %s: %w", r, st.Optimizer.State, err)
		}
	}
	// Server step of Reddi et al. 2021 (FedAvg of McMahan et al. 2017 when
	// the optimizer is fedavg with η = 1) on the mean delta.
	if err := opt.Step(params, mean); err != nil {
		return failReleased("server optimizer: " + err.Error())
	}
	h, err := d.reg.Put(params)
	if err != nil {
		return fmt.Errorf("round %d: %w", r, err)
	}
	ref := OptimizerRef{Name: opt.Name()}
	if sf, ok := opt.(aggregation.Stateful); ok {
		os := sf.State()
		ref.Steps = os.Steps
		b, err := json.Marshal(os)
		if err != nil {
			return fmt.Errorf("round %d: optimizer state: %w", r, err)
		}
		if ref.State, err = d.reg.PutBytes(b); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
	}
	mc := &ModelCommitted{
		Round: r, ModelHash: h, Participants: d.workers(cur, cur.Survivors),
		Epsilon: cur.Announce.Epsilon, Optimizer: ref,
	}
	if head := st.Head(); head != nil {
		mc.Prev = head.Hash
	}
	if evalMetrics != nil {
		// The announced model's secure evaluation, recorded while it is
		// still the latest model (a resumed round records it once).
		if n := len(st.Metrics); n == 0 || st.Metrics[n-1].Round < evalMetrics.Round {
			if err := d.commit(ctx, Command{MetricsRecorded: evalMetrics}); err != nil {
				return err
			}
			log.Info("metrics recorded", "model_round", evalMetrics.Round, "accuracy", evalMetrics.Accuracy, "loss", evalMetrics.Loss, "workers", evalMetrics.Workers, "secure", true)
		}
	}
	mc.DP = released
	if err := d.commit(ctx, Command{ModelCommitted: mc}); err != nil {
		return err
	}
	log.Info("model committed", "model", h, "participants", len(mc.Participants), "epsilon", mc.Epsilon)
	d.mu.Lock()
	d.commits = append(d.commits, time.Now())
	d.mu.Unlock()
	if d.LedgerPath != "" {
		if err := WriteLedgerFileEnd(d.LedgerPath, d.fsm.Ledger(), d.fsm.State().Ended); err != nil {
			log.Warn("ledger export", "err", err)
		}
	}
	if !d.cfg.SecureEvaluation {
		d.evaluate(ctx, r, h, mc.Participants)
	}
	return nil
}

// evaluateUnrecorded evaluates the newest committed model if no metrics
// were recorded for it: a leader that died between ModelCommitted and
// MetricsRecorded leaves that step to its successor.
// It reports whether the newest model's metrics are recorded (or there is
// nothing to evaluate); Run tries again, up to RetryLimit times, while its
// workers are still redialling a new leader.
func (d *Driver) evaluateUnrecorded(ctx context.Context) bool {
	if d.cfg.SecureEvaluation {
		return true
	}
	recorded := func() bool {
		st := d.fsm.State()
		head := st.Head()
		if st.Current != nil || head == nil || head.Round == 0 {
			return true
		}
		n := len(st.Metrics)
		return n > 0 && st.Metrics[n-1].Round >= head.Round
	}
	if recorded() {
		return true
	}
	st := d.fsm.State()
	head := st.Head()
	d.log.Info("resuming", "round", head.Round, "stage", "evaluate")
	d.awaitOnline(ctx, head.Participants)
	d.evaluate(ctx, head.Round, head.ModelHash, head.Participants)
	return recorded()
}

// awaitOnline waits until every one of workers is online, at most two
// stage timeouts (or until ctx ends), checking the cohort every 50 ms. It
// returns either way: the stage that follows deals with whoever is missing.
func (d *Driver) awaitOnline(ctx context.Context, workers []WorkerID) {
	const poll = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, 2*d.cfg.StageTimeout)
	defer cancel()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		online := d.cohort.Online()
		missing := 0
		for _, w := range workers {
			if _, ok := slices.BinarySearch(online, w); !ok {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		select {
		case <-ctx.Done():
			d.log.Info("workers still offline", "stage", "resume", "missing", missing, "of", len(workers))
			return
		case <-t.C:
		}
	}
}

// evaluate asks the participants to evaluate the committed model and
// records the example-weighted accuracy. Failures are logged, not fatal:
// the model is already committed.
func (d *Driver) evaluate(ctx context.Context, r uint64, h Hash, workers []WorkerID) {
	log := d.log.With("round", r, "stage", "evaluate")
	d.setStage("evaluate")
	idx := make([]uint32, len(workers))
	for i := range idx {
		idx[i] = uint32(i)
	}
	replies := callAll(ctx, d.cfg.StageTimeout, idx, func(c context.Context, i uint32) (Metrics, error) {
		return d.cohort.Evaluate(c, workers[i], r, h)
	})
	var acc, loss float64
	var n, k int
	var bin *wire.BinaryReport
	binary := true
	for i, rp := range replies {
		m := rp.v
		if rp.err == nil && (m.Examples <= 0 || !(m.Accuracy >= 0 && m.Accuracy <= 1) || math.IsNaN(m.Loss) || math.IsInf(m.Loss, 0)) {
			rp.err = fmt.Errorf("metrics out of range: examples %d, accuracy %v, loss %v", m.Examples, m.Accuracy, m.Loss)
		}
		if rp.err != nil {
			log.Warn("no metrics", "worker", workers[i], "err", rp.err)
			continue
		}
		acc += m.Accuracy * float64(m.Examples)
		loss += m.Loss * float64(m.Examples)
		n += m.Examples
		k++
		// The confusion matrix and AUC only if every reporting worker sent
		// its counts (a partial sum would misstate them).
		if m.Binary == nil {
			binary = false
		} else if binary {
			if bin == nil {
				bin = &wire.BinaryReport{}
			}
			bin.Add(m.Binary)
		}
	}
	if n == 0 {
		log.Warn("no worker reported metrics")
		return
	}
	mr := &MetricsRecorded{Round: r, Accuracy: acc / float64(n), Loss: loss / float64(n), Examples: n, Workers: k}
	if binary && bin != nil {
		auc := bin.AUC()
		if math.IsNaN(auc) {
			auc = -1
		}
		mr.Binary = &BinaryMetrics{TP: bin.TP, FP: bin.FP, TN: bin.TN, FN: bin.FN, AUC: auc}
	}
	if err := d.commit(ctx, Command{MetricsRecorded: mr}); err != nil {
		log.Warn("recording metrics", "err", err)
		return
	}
	if b := mr.Binary; b != nil {
		log.Info("metrics recorded", "accuracy", mr.Accuracy, "loss", mr.Loss, "examples", n, "workers", k, "auc", b.AUC, "tp", b.TP, "fp", b.FP, "tn", b.TN, "fn", b.FN)
	} else {
		log.Info("metrics recorded", "accuracy", mr.Accuracy, "loss", mr.Loss, "examples", n, "workers", k)
	}
}

// Status is what `sovereign status` shows of a coordinator.
type Status struct {
	// Study names the study ("default" for the default study); Attempts
	// counts the rounds it started (committed or not).
	Study    string
	Attempts int
	// Model is the study's model spec.
	Model string
	// Epsilon is the ε its ledger head records.
	Epsilon float64
	// Round is the last round started; Stage what the driver is doing.
	Round uint64
	Stage string
	// InFlight is true while a round is open.
	InFlight bool
	// Online are the workers reachable now.
	Online []WorkerID
	// CommittedRounds counts the models committed after the initial one.
	CommittedRounds int
	// Accuracy is the latest recorded accuracy (of AccuracyRound's model).
	Accuracy      float64
	AccuracyRound uint64
	// LedgerHead is the hash of the latest ledger entry; LedgerLength the
	// number of entries.
	LedgerHead   Hash
	LedgerLength int
	// Failures counts the rounds failed since the last commit.
	Failures int
	// StudyState is "running", or how the study ended (EndFinished,
	// EndFailed, EndBudgetExhausted), with EndReason; RecentFailures are
	// the last round-failure reasons.
	StudyState     string
	EndReason      string
	RecentFailures []string
	// PlannedRounds is the study's number of models; ETA the time the rest
	// should take at the pace of the rounds this leader committed (0 if
	// unknown).
	PlannedRounds int
	ETA           time.Duration
	// Incompatible are the workers whose plan check said they cannot take
	// part, with the reasons (sorted by worker).
	Incompatible []IncompatibleWorker
	// Studies, in the federation's status, are every study's status (the
	// default one first); the fields above are the default study's.
	Studies []Status
}

// Status reports the driver's progress.
func (d *Driver) Status() Status {
	st := d.fsm.State()
	d.mu.Lock()
	stage := d.stage
	d.mu.Unlock()
	s := Status{
		Round: st.Round, Stage: stage, InFlight: st.Current != nil, Online: d.cohort.Online(),
		CommittedRounds: st.CommittedRounds(), LedgerLength: len(st.Ledger), Failures: st.Failures,
		StudyState: "running", RecentFailures: st.RecentFailures, PlannedRounds: d.cfg.Rounds,
		Study: studyLabel(d.fsm.Name()), Attempts: st.Attempts, Model: d.cfg.Model,
	}
	if p := st.Paused; p != nil {
		s.StudyState = "paused"
		if p.Stop {
			s.StudyState = "stopping"
		}
	}
	byWorker := map[WorkerID]*IncompatibleWorker{}
	for w, rs := range d.incompatible() {
		byWorker[w] = &IncompatibleWorker{Worker: w, Reasons: rs}
	}
	if d.Warnings != nil {
		for w, ws := range d.Warnings() {
			if byWorker[w] == nil {
				byWorker[w] = &IncompatibleWorker{Worker: w}
			}
			byWorker[w].Warnings = ws
		}
	}
	for _, iw := range byWorker {
		s.Incompatible = append(s.Incompatible, *iw)
	}
	slices.SortFunc(s.Incompatible, func(a, b IncompatibleWorker) int { return strings.Compare(string(a.Worker), string(b.Worker)) })
	if e := st.Ended; e != nil {
		s.StudyState, s.EndReason = e.State, e.Reason
	} else {
		d.mu.Lock()
		if n := len(d.commits); n >= 2 {
			per := d.commits[n-1].Sub(d.commits[0]) / time.Duration(n-1)
			s.ETA = per * time.Duration(max(0, d.cfg.Rounds-st.CommittedRounds()))
		}
		d.mu.Unlock()
	}
	if h := st.Head(); h != nil {
		s.LedgerHead = h.Hash
		s.Epsilon = h.Epsilon
	}
	if n := len(st.Metrics); n > 0 {
		s.Accuracy, s.AccuracyRound = st.Metrics[n-1].Accuracy, st.Metrics[n-1].Round
	}
	return s
}

// appendRefused adds err to rs if it is a worker's refusal of round r, with
// the reason cut to MaxRefusalReason bytes (the text is the worker's own).
func appendRefused(rs []RefusalRecord, r uint64, w WorkerID, err error) []RefusalRecord {
	var re *RefusalError
	if !errors.As(err, &re) {
		return rs
	}
	reason := re.Reason
	if len(reason) > MaxRefusalReason {
		reason = strings.ToValidUTF8(reason[:MaxRefusalReason], "")
	}
	return append(rs, RefusalRecord{Round: r, Worker: w, Reason: reason, AtMs: time.Now().UnixMilli()})
}
