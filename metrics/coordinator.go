package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
)

// RaftStats is the replica's Raft view the coordinator metrics report.
type RaftStats struct {
	// State is "Leader", "Follower", "Candidate" or "Shutdown".
	State        string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastIndex    uint64
}

// CoordinatorSource is what the coordinator metrics read at scrape time.
// State is required; the others may be nil (their metrics are left out).
// The functions are called on the scraping goroutine and must not block
// for long.
type CoordinatorSource struct {
	// State returns the replicated coordinator state.
	State func() coordinator.State
	// Raft returns this replica's Raft statistics.
	Raft func() RaftStats
	// Online returns the workers connected to this replica now.
	Online func() []coordinator.WorkerID
	// Bandwidth returns the libp2p bytes received and sent.
	Bandwidth Bandwidth
	// Now is the clock for stage durations (default time.Now).
	Now func() time.Time
}

// Stage labels of sovereign_stage_duration_seconds: the four SecAgg+
// stages (Bonawitz et al. 2017, §4) and the federated evaluation after
// the model commit.
const (
	StageAdvertise = "advertise"
	StageShareKeys = "sharekeys"
	StageMasked    = "masked"
	StageUnmask    = "unmask"
	// StageConsistency is the consistency check (Bonawitz et al. 2017,
	// round 4) between masked input and unmask.
	StageConsistency = "consistency"
	StageEvaluate    = "evaluate"
)

// StageName maps the stage whose close is committed next (RoundState.Next)
// to its label.
func StageName(s secagg.Stage) string {
	switch s {
	case secagg.StageAdvertise:
		return StageAdvertise
	case secagg.StageShareKeys:
		return StageShareKeys
	case secagg.StageMaskedInput:
		return StageMasked
	case secagg.StageUnmask:
		return StageUnmask
	case secagg.StageConsistency:
		return StageConsistency
	}
	return "done"
}

// Refusal is one refusal a worker sent this replica's round driver.
type Refusal struct {
	Worker coordinator.WorkerID
	Round  uint64
	// Reason is the worker's text; Label its RefusalReason.
	Reason string
	Label  string
	Time   time.Time
}

// maxRefusals bounds the refusals kept for the dashboard.
const maxRefusals = 256

// Coordinator is the Prometheus instrumentation of one coordinator replica.
// Build it with NewCoordinator; wrap the round driver's Replicator and
// Cohort with its Replicator and Cohort methods. Safe for concurrent use.
type Coordinator struct {
	src CoordinatorSource
	reg *prometheus.Registry

	stage         *prometheus.HistogramVec
	refusals      *prometheus.CounterVec
	leaderChanges prometheus.Counter
	roundWorkers  *prometheus.GaugeVec

	mu       sync.Mutex
	mark     map[uint64]time.Time // round → time its last stage closed, as seen here
	pending  [2]int               // online, sampled of the round in flight
	refused  []Refusal
	lastLead string
}

// NewCoordinator registers the coordinator metrics on a new registry.
func NewCoordinator(src CoordinatorSource) *Coordinator {
	if src.Now == nil {
		src.Now = time.Now
	}
	c := &Coordinator{src: src, reg: newRegistry(), mark: map[uint64]time.Time{}}
	c.stage = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "stage_duration_seconds",
		Help:    "Time from the commit that opened a round stage to the commit that closed it, per stage, as measured by the leader that committed both.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
	}, []string{"stage"})
	c.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "refusals_total",
		Help: "Refusals workers sent this replica's round driver, by reason.",
	}, []string{"reason"})
	c.leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "raft_leader_changes_total",
		Help: "Times this replica saw the Raft leader change to a new known leader.",
	})
	c.roundWorkers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "round_workers",
		Help: "Workers of the last round whose survivors this replica committed: online when sampling, sampled, survived (in the sum), dropped (sampled, not in the sum).",
	}, []string{"set"})
	for _, s := range []string{StageAdvertise, StageShareKeys, StageMasked, StageConsistency, StageUnmask, StageEvaluate} {
		c.stage.WithLabelValues(s)
	}
	for _, r := range RefusalReasons {
		c.refusals.WithLabelValues(r)
	}
	c.reg.MustRegister(c.stage, c.refusals, c.leaderChanges, c.roundWorkers, stateCollector{c})
	for _, bc := range bandwidthCollectors(src.Bandwidth) {
		c.reg.MustRegister(bc)
	}
	return c
}

// Registry returns the registry (for tests and extra collectors).
func (c *Coordinator) Registry() *prometheus.Registry { return c.reg }

// Handler serves /metrics.
func (c *Coordinator) Handler() http.Handler { return handler(c.reg) }

// Refusals returns the refusals seen, oldest first (at most the last 256).
func (c *Coordinator) Refusals() []Refusal {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Refusal(nil), c.refused...)
}

// LeaderObserved records the leader Raft reports (peer ID string, "" when
// none): a new non-empty leader different from the last one counts as a
// leader change.
func (c *Coordinator) LeaderObserved(leader string) {
	if leader == "" {
		return
	}
	c.mu.Lock()
	changed := leader != c.lastLead
	c.lastLead = leader
	c.mu.Unlock()
	if changed {
		c.leaderChanges.Inc()
	}
}

// WatchRaft registers a Raft observer that feeds LeaderObserved until ctx
// ends. The first leader a replica learns of counts as a change, so on a
// fresh cluster every replica reports 1 after the first election.
func (c *Coordinator) WatchRaft(ctx context.Context, r *raft.Raft) {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(obs)
	_, id := r.LeaderWithID()
	c.LeaderObserved(string(id))
	go func() {
		defer r.DeregisterObserver(obs)
		for {
			select {
			case <-ctx.Done():
				return
			case o := <-ch:
				if lo, ok := o.Data.(raft.LeaderObservation); ok {
					c.LeaderObserved(string(lo.LeaderID))
				}
			}
		}
	}()
}

// observe is called after the driver's command cmd was committed.
func (c *Coordinator) observe(cmd []byte) {
	dc, err := coordinator.DecodeCommand(cmd)
	if err != nil {
		return
	}
	now := c.src.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	closeStage := func(r uint64, stage string) {
		if t, ok := c.mark[r]; ok {
			c.stage.WithLabelValues(stage).Observe(now.Sub(t).Seconds())
		}
		c.mark[r] = now
	}
	switch {
	case dc.RoundStarted != nil:
		m := dc.RoundStarted
		clear(c.mark)
		c.mark[m.Round] = now
		c.pending = [2]int{m.OnlineCount, len(m.Announce.Sampled)}
	case dc.StageClosed != nil:
		closeStage(dc.StageClosed.Round, StageName(dc.StageClosed.Stage))
	case dc.SurvivorsCommitted != nil:
		m := dc.SurvivorsCommitted
		closeStage(m.Round, StageMasked)
		if _, ok := c.mark[m.Round]; ok && c.pending[1] > 0 {
			c.roundWorkers.WithLabelValues("online").Set(float64(c.pending[0]))
			c.roundWorkers.WithLabelValues("sampled").Set(float64(c.pending[1]))
			c.roundWorkers.WithLabelValues("survived").Set(float64(len(m.Survivors)))
			c.roundWorkers.WithLabelValues("dropped").Set(float64(c.pending[1] - len(m.Survivors)))
		}
	case dc.ConsistencyCommitted != nil:
		closeStage(dc.ConsistencyCommitted.Round, StageConsistency)
	case dc.ModelCommitted != nil && dc.ModelCommitted.Round > 0:
		closeStage(dc.ModelCommitted.Round, StageUnmask)
	case dc.MetricsRecorded != nil:
		closeStage(dc.MetricsRecorded.Round, StageEvaluate)
		delete(c.mark, dc.MetricsRecorded.Round)
	case dc.RoundFailed != nil:
		delete(c.mark, dc.RoundFailed.Round)
	}
}

func (c *Coordinator) refusal(err error) {
	var re *coordinator.RefusalError
	if !asRefusal(err, &re) {
		return
	}
	label := RefusalReason(re.Reason)
	c.refusals.WithLabelValues(label).Inc()
	c.mu.Lock()
	c.refused = append(c.refused, Refusal{Worker: re.Worker, Round: re.Round, Reason: re.Reason, Label: label, Time: c.src.Now()})
	if len(c.refused) > maxRefusals {
		c.refused = append(c.refused[:0:0], c.refused[len(c.refused)-maxRefusals:]...)
	}
	c.mu.Unlock()
}

// Replicator wraps the round driver's replicator: every command it
// commits is passed on unchanged and then timed.
func (c *Coordinator) Replicator(inner coordinator.Replicator) coordinator.Replicator {
	return &replicator{inner: inner, c: c}
}

type replicator struct {
	inner coordinator.Replicator
	c     *Coordinator
}

func (r *replicator) Apply(ctx context.Context, cmd []byte) error {
	err := r.inner.Apply(ctx, cmd)
	if err == nil {
		r.c.observe(cmd)
	}
	return err
}

func (r *replicator) IsLeader() bool { return r.inner.IsLeader() }

// stateCollector reads the replicated state and Raft at scrape time.
type stateCollector struct{ c *Coordinator }

var (
	dRoundsStarted   = desc("rounds_started_total", "Rounds started (RoundStarted committed); a failed round is retried under the next number.")
	dRoundsCommitted = desc("rounds_committed_total", "Rounds that committed a model (the ledger's entries after the initial model).")
	dRoundsFailed    = desc("rounds_failed_total", "Rounds closed without a model (RoundFailed committed).")
	dRound           = desc("round", "The last round started.")
	dInFlight        = desc("round_in_flight", "1 while a round is open.")
	dRoundStage      = desc("round_stage", "1 for the SecAgg+ stage whose close the round in flight commits next.", "stage")
	dLedger          = desc("ledger_entries", "Entries of the hash-chained ledger, the initial model's included.")
	dEpsilon         = desc("epsilon_spent", "Total ε of (ε, δ)-differential privacy spent by the committed rounds (0 without DP).")
	dAccuracy        = desc("federated_accuracy_ratio", "Accuracy of the last federated evaluation, weighted by the workers' test examples.")
	dLoss            = desc("federated_loss", "Cross-entropy loss of the last federated evaluation.")
	dEvalRound       = desc("federated_evaluated_round", "Round whose model the last federated evaluation measured.")
	dOnline          = desc("workers_online", "Workers connected to this replica now.")
	dMembers         = desc("workers_seen", "Workers last recorded online when a round was sampled (MembersSeen).")
	dRaftState       = desc("raft_state", "1 for this replica's Raft state.", "state")
	dRaftTerm        = desc("raft_term", "This replica's current Raft term.")
	dRaftCommit      = desc("raft_commit_index", "This replica's Raft commit index.")
	dRaftApplied     = desc("raft_applied_index", "This replica's Raft applied index.")
	dRaftLast        = desc("raft_last_index", "Index of the last entry of this replica's Raft log.")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dRoundsStarted, dRoundsCommitted, dRoundsFailed, dRound, dInFlight, dRoundStage, dLedger,
		dEpsilon, dAccuracy, dLoss, dEvalRound, dOnline, dMembers, dRaftState, dRaftTerm, dRaftCommit, dRaftApplied, dRaftLast} {
		ch <- d
	}
}

// Counts derives the round counters from the state: every round number
// started ends in exactly one commit or one failure, or is in flight.
func Counts(st coordinator.State) (started, committed, failed uint64) {
	started, committed = st.Round, uint64(st.CommittedRounds())
	failed = started - min(started, committed)
	if st.Current != nil && failed > 0 {
		failed--
	}
	return started, committed, failed
}

func (s stateCollector) Collect(ch chan<- prometheus.Metric) {
	src := s.c.src
	st := src.State()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	started, committed, failed := Counts(st)
	counter(dRoundsStarted, float64(started))
	counter(dRoundsCommitted, float64(committed))
	counter(dRoundsFailed, float64(failed))
	gauge(dRound, float64(st.Round))
	inFlight := 0.0
	if st.Current != nil {
		inFlight = 1
	}
	gauge(dInFlight, inFlight)
	for _, name := range []string{StageAdvertise, StageShareKeys, StageMasked, StageConsistency, StageUnmask} {
		v := 0.0
		if st.Current != nil && StageName(st.Current.Next) == name {
			v = 1
		}
		gauge(dRoundStage, v, name)
	}
	gauge(dLedger, float64(len(st.Ledger)))
	eps := 0.0
	if h := st.Head(); h != nil {
		eps = h.Epsilon
	}
	gauge(dEpsilon, eps)
	if n := len(st.Metrics); n > 0 {
		m := st.Metrics[n-1]
		gauge(dAccuracy, m.Accuracy)
		gauge(dLoss, m.Loss)
		gauge(dEvalRound, float64(m.Round))
	}
	gauge(dMembers, float64(len(st.Members)))
	if src.Online != nil {
		gauge(dOnline, float64(len(src.Online())))
	}
	if src.Raft != nil {
		rs := src.Raft()
		for _, state := range []string{"Leader", "Follower", "Candidate", "Shutdown"} {
			v := 0.0
			if rs.State == state {
				v = 1
			}
			gauge(dRaftState, v, state)
		}
		gauge(dRaftTerm, float64(rs.Term))
		gauge(dRaftCommit, float64(rs.CommitIndex))
		gauge(dRaftApplied, float64(rs.AppliedIndex))
		gauge(dRaftLast, float64(rs.LastIndex))
	}
}
