package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sovereign-fl/sovereign/model"
)

// Scheduler drives every study of the federation on the leader: the round
// in flight first (whatever its study), then the running studies in turn,
// one round each (studies.go says why one round at a time). A paused,
// waiting or ended study is passed over; when none can make progress the
// scheduler waits PollInterval. Like a Driver it holds nothing that the
// FSM does not: a new leader's Scheduler picks up where the last stopped.
type Scheduler struct {
	fsm   *FSM
	def   *Driver
	build func(name string, cfg Config) (*Driver, error)
	log   *slog.Logger

	// PollInterval is how long Run waits when no study can make progress
	// (default: the default study's poll interval).
	PollInterval time.Duration

	// NameOf, if set, names workers in messages (federation names).
	NameOf func(WorkerID) string
	// CheckPlan, if set, asks the online workers for their verdict on a
	// study's plan before it starts (NetCohort.CheckStudyPlan).
	CheckPlan func(ctx context.Context, d *Driver) []IncompatibleWorker

	mu      sync.Mutex
	drivers map[string]*Driver
	specs   map[string]*StudySpec // the replicated spec each driver was built from
	broken  map[string]brokenStudy
	next    int
}

// NewScheduler returns a scheduler for the federation of def's FSM: def
// drives the default study, build makes the driver of a created study from
// its replicated configuration (with the same replicator, registry and
// cohort as def).
func NewScheduler(def *Driver, build func(name string, cfg Config) (*Driver, error), logger *slog.Logger) *Scheduler {
	if logger == nil {
		logger = slog.Default()
	}
	return &Scheduler{fsm: def.fsm.Study(DefaultStudy), def: def, build: build, log: logger, PollInterval: def.cfg.PollInterval,
		drivers: map[string]*Driver{DefaultStudy: def}, specs: map[string]*StudySpec{}, broken: map[string]brokenStudy{}}
}

// Driver returns the driver of study name, building it on first use.
func (s *Scheduler) Driver(name string) (*Driver, error) {
	var spec *StudySpec
	for _, b := range s.fsm.briefs() {
		if b.Name == name {
			spec = b.spec
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A study resumed with a new spec (study resume --config) gets a new
	// driver: the cached one is keyed by the spec it was built from.
	if d, ok := s.drivers[name]; ok && (name == DefaultStudy || s.specs[name] == spec) {
		return d, nil
	}
	if b, ok := s.broken[name]; ok && b.spec == spec {
		return nil, b.err
	}
	if spec == nil {
		return nil, fmt.Errorf("study %q unknown", name)
	}
	fail := func(err error) (*Driver, error) {
		s.broken[name] = brokenStudy{spec: spec, err: err}
		return nil, err
	}
	cfg, err := spec.Config(name)
	if err != nil {
		return fail(err)
	}
	cfg.Federation = s.def.cfg.Federation
	d, err := s.build(name, cfg)
	if err != nil {
		return fail(err)
	}
	if d.fsm.Name() != name {
		return nil, fmt.Errorf("study %s: its driver reads study %q", studyLabel(name), d.fsm.Name())
	}
	s.drivers[name], s.specs[name] = d, spec
	delete(s.broken, name)
	return d, nil
}

// brokenStudy is a study whose spec did not give a driver.
type brokenStudy struct {
	spec *StudySpec
	err  error
}

// Run drives the studies until ctx ends or leadership is lost
// (ErrNotLeader). A study whose driver cannot be built (its replicated
// configuration no longer validates) is ended as failed with the reason;
// another error of one study is logged and that study retried after
// PollInterval, so one study never stops the others.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.def.repl.IsLeader() {
		return ErrNotLeader
	}
	if err := s.def.Init(ctx); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		progressed, err := s.step(ctx)
		if err != nil {
			return err
		}
		if progressed {
			continue
		}
		t := time.NewTimer(s.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// step gives one study a Step: the one with a round in flight, else the
// next running one after the last that made progress.
func (s *Scheduler) step(ctx context.Context) (bool, error) {
	studies := s.fsm.briefs()
	order := make([]int, 0, len(studies))
	for i, st := range studies {
		if st.InFlight {
			order = append(order, i)
		}
	}
	if len(order) == 0 {
		s.mu.Lock()
		start := s.next
		s.mu.Unlock()
		for k := range studies {
			i := (start + k) % len(studies)
			// The default study is asked even when it ended: a higher
			// rounds in the coordinator file reopens it (Driver.Step).
			if !studies[i].Ended || studies[i].Name == DefaultStudy {
				order = append(order, i)
			}
		}
	}
	for _, i := range order {
		name := studies[i].Name
		d, err := s.Driver(name)
		if err != nil {
			s.failBroken(ctx, name, err)
			continue
		}
		res, err := d.Step(ctx)
		switch {
		case errors.Is(err, ErrNotLeader) || ctx.Err() != nil:
			return false, err
		case err != nil:
			d.log.Error("study driver", "study", studyLabel(name), "err", err)
			continue
		case res == StepRan:
			s.mu.Lock()
			s.next = i + 1
			s.mu.Unlock()
			return true, nil
		}
	}
	return false, nil
}

// failBroken ends a study whose driver cannot be built.
func (s *Scheduler) failBroken(ctx context.Context, name string, err error) {
	v := s.fsm.Study(name)
	st := v.State()
	if st.Ended != nil || st.Current != nil {
		return
	}
	b, e := EncodeCommand(Command{Study: name, StudyEnded: &StudyEnded{Round: st.Round, State: EndFailed, Reason: truncate("configuration: " + err.Error())}})
	if e == nil {
		e = s.def.repl.Apply(ctx, b)
	}
	if e != nil {
		s.log.Error("study cannot be driven", "study", studyLabel(name), "err", err, "end_err", e)
		return
	}
	s.log.Error("study failed: its configuration does not validate", "study", studyLabel(name), "err", err)
}

func truncate(reason string) string {
	if len(reason) > MaxRefusalReason {
		return strings.ToValidUTF8(reason[:MaxRefusalReason], "")
	}
	return reason
}

// StudyRequest is an operator's request about a study (the study protocol,
// studyproto.go).
type StudyRequest struct {
	// Op is "start", "pause", "resume", "stop" or "check" (ask the
	// online workers about Spec without starting it).
	Op   string `json:"op"`
	Name string `json:"name"`
	// Spec and Init (little-endian float32 parameters, optional) start a
	// study; AllowIncompatible starts it even if some online workers'
	// plan checks name reasons (they are then never sampled).
	Spec              *StudySpec `json:"spec,omitempty"`
	Init              []byte     `json:"init,omitempty"`
	AllowIncompatible bool       `json:"allow_incompatible,omitempty"`
	Reason            string     `json:"reason,omitempty"`
}

// IncompatibleError refuses a study start: online workers whose plan
// checks name reasons.
type IncompatibleError struct {
	Study   string
	Workers []IncompatibleWorker
	// Names maps worker IDs to federation names, for the message.
	Names func(WorkerID) string
}

func (e *IncompatibleError) Error() string {
	var parts []string
	for _, w := range e.Workers {
		name := string(w.Worker)
		if e.Names != nil {
			name = e.Names(w.Worker)
		}
		parts = append(parts, fmt.Sprintf("%s: %s", name, strings.Join(w.Reasons, "; ")))
	}
	return fmt.Sprintf("study %s refused at start: %d worker(s) cannot take part: %s (fix the study or the workers' policies, or start it with --allow-incompatible to leave them out)",
		e.Study, len(e.Workers), strings.Join(parts, " | "))
}

// Handle carries out req on the leader.
func (s *Scheduler) Handle(ctx context.Context, req StudyRequest) (string, error) {
	if !s.def.repl.IsLeader() {
		return "", ErrNotLeader
	}
	key := StudyKey(req.Name)
	switch req.Op {
	case "start":
		return s.start(ctx, req)
	case "check":
		return s.check(ctx, req)
	}
	v := s.fsm.Study(key)
	if !v.Exists() {
		return "", fmt.Errorf("study %q unknown", req.Name)
	}
	st := v.State()
	var c Command
	switch req.Op {
	case "pause":
		c = Command{StudyPaused: &StudyPaused{Reason: truncate(req.Reason)}}
	case "stop":
		c = Command{StudyPaused: &StudyPaused{Stop: true, Reason: truncate(req.Reason)}}
	case "resume":
		c = Command{StudyResumed: &StudyResumed{Round: st.Round, Spec: req.Spec}}
	default:
		return "", fmt.Errorf("study request: unknown operation %q (start, pause, resume, stop)", req.Op)
	}
	c.Study = key
	b, err := EncodeCommand(c)
	if err != nil {
		return "", err
	}
	if err := s.def.repl.Apply(ctx, b); err != nil {
		return "", err
	}
	s.mu.Lock()
	if d := s.drivers[key]; d != nil && req.Op == "resume" {
		d.evalTries = 0
	}
	s.mu.Unlock()
	s.log.Info("study "+req.Op, "study", studyLabel(key), "reason", req.Reason)
	switch req.Op {
	case "stop":
		if st.Current != nil {
			return fmt.Sprintf("study %s stops once round %d ends", studyLabel(key), st.Current.Round), nil
		}
		return fmt.Sprintf("study %s stops", studyLabel(key)), nil
	case "pause":
		return fmt.Sprintf("study %s paused", studyLabel(key)), nil
	}
	return fmt.Sprintf("study %s resumed", studyLabel(key)), nil
}

// PlanVerdicts is the answer to a "check" request: the online workers and
// what each said of the study's plan (no reasons and no warnings: it takes
// part).
type PlanVerdicts struct {
	Online  int                  `json:"online"`
	Workers []IncompatibleWorker `json:"workers"`
	// Names are the workers' federation names, by worker ID.
	Names map[WorkerID]string `json:"names"`
}

// check asks the online workers about a study without starting it (`sovereign
// study plan --config study.toml --federation`): the JSON of PlanVerdicts.
func (s *Scheduler) check(ctx context.Context, req StudyRequest) (string, error) {
	// A driver of a study that does not exist yet: the plan of a fresh
	// study (a later start asks every worker again).
	d, _, err := s.prepare(req)
	if err != nil {
		return "", err
	}
	v := PlanVerdicts{Online: len(s.def.cohort.Online()), Workers: []IncompatibleWorker{}, Names: map[WorkerID]string{}}
	if s.CheckPlan != nil {
		v.Workers = append(v.Workers, s.CheckPlan(ctx, d)...)
	}
	for _, w := range v.Workers {
		v.Names[w.Worker] = s.names(w.Worker)
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// prepare checks a start or check request and builds the study's driver.
func (s *Scheduler) prepare(req StudyRequest) (*Driver, Config, error) {
	if err := checkStudyName(req.Name); err != nil {
		return nil, Config{}, err
	}
	if req.Spec == nil {
		return nil, Config{}, fmt.Errorf("study %s %s: no spec", req.Op, req.Name)
	}
	if s.fsm.Study(req.Name).Exists() {
		return nil, Config{}, fmt.Errorf("study %s already exists (names are never reused: its ledger stays)", req.Name)
	}
	cfg, err := req.Spec.Config(req.Name)
	if err != nil {
		return nil, Config{}, err
	}
	cfg.Federation = s.def.cfg.Federation
	d, err := s.build(req.Name, cfg)
	return d, cfg, err
}

func (s *Scheduler) start(ctx context.Context, req StudyRequest) (string, error) {
	d, cfg, err := s.prepare(req)
	if err != nil {
		return "", err
	}
	// Checks at the start: every online worker's verdict on the plan.
	if s.CheckPlan != nil {
		var bad []IncompatibleWorker
		for _, iw := range s.CheckPlan(ctx, d) {
			if len(iw.Reasons) > 0 {
				bad = append(bad, iw)
			}
		}
		if len(bad) > 0 && !req.AllowIncompatible {
			return "", &IncompatibleError{Study: req.Name, Workers: bad, Names: s.names}
		}
	}
	var params []float32
	if len(req.Init) > 0 {
		if len(req.Init)%4 != 0 || len(req.Init)/4 != d.spec.NumParams() {
			return "", fmt.Errorf("study %s: initial model of %d bytes, the model %s has %d parameters", req.Name, len(req.Init), cfg.Model, d.spec.NumParams())
		}
		if params, err = DecodeParams(req.Init); err != nil {
			return "", fmt.Errorf("study %s: initial model: %w", req.Name, err)
		}
	} else if d.spec.External() {
		return "", fmt.Errorf("study %s: an external model needs its initial weights ([rounds] init)", req.Name)
	} else {
		n, err := model.New(d.spec)
		if err != nil {
			return "", fmt.Errorf("study %s: model %q: %w", req.Name, cfg.Model, err)
		}
		n.Init(cfg.Seed)
		params = n.Params()
	}
	h, err := d.reg.Put(params)
	if err != nil {
		return "", err
	}
	strat, _ := cfg.strategy()
	c := Command{Study: req.Name, StudyCreated: &StudyCreated{Name: req.Name, Spec: *req.Spec, Initial: ModelCommitted{
		Round: 0, ModelHash: h, Participants: []WorkerID{}, Optimizer: OptimizerRef{Name: optimizerName(strat)},
	}}}
	b, err := EncodeCommand(c)
	if err != nil {
		return "", err
	}
	if err := s.def.repl.Apply(ctx, b); err != nil {
		return "", err
	}
	// The driver is cached against the spec the FSM now holds (the next
	// Driver call would build the same one).
	for _, b := range s.fsm.briefs() {
		if b.Name == req.Name {
			s.mu.Lock()
			s.drivers[req.Name], s.specs[req.Name] = d, b.spec
			s.mu.Unlock()
		}
	}
	s.log.Info("study started", "study", req.Name, "model", cfg.Model, "rounds", cfg.Rounds, "initial_model", h)
	return fmt.Sprintf("study %s started: model %s, %d rounds, initial model %s", req.Name, cfg.Model, cfg.Rounds, h), nil
}

func (s *Scheduler) names(w WorkerID) string {
	if s.NameOf != nil {
		return s.NameOf(w)
	}
	return string(w)
}

// Statuses returns every study's status, the default study first.
func (s *Scheduler) Statuses() []Status {
	var out []Status
	for _, st := range s.fsm.briefs() {
		d, err := s.Driver(st.Name)
		if err != nil {
			out = append(out, Status{Study: studyLabel(st.Name), StudyState: EndFailed, EndReason: err.Error(), Round: st.Round,
				CommittedRounds: st.CommittedRounds, Attempts: st.Attempts})
			continue
		}
		out = append(out, d.Status())
	}
	return out
}
