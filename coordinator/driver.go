package coordinator

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
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
	// in Status; Verdicts, if set, the reasons Status shows, without
	// asking any worker (default: Incompatible).
	Warnings func() map[WorkerID][]string
	Verdicts func() map[WorkerID][]string
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
			if err := d.commit(ctx, Command{StudyResumed: &StudyResumed{Round: st.Round}}); err != nil {
				return 0, err
			}
			d.log.Info("study reopened: rounds raised", "round", st.Round, "committed", st.CommittedRounds(), "rounds", d.cfg.Rounds)
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
