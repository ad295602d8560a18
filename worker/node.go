package worker

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/trainer"
	"github.com/sovereign-fl/sovereign/wire"
)

// Announce, TrainParams and DPParams are the round announcement and its
// settings: one type, wire.Announce, shared with the coordinator.
type (
	Announce    = wire.Announce
	TrainParams = wire.TrainParams
	DPParams    = wire.DPParams
)

// Refusal is a worker's reasoned refusal of a round: a policy condition
// (model, cohort size, privacy budget), a stale round, or a request it must
// not answer (a second survivor set, Err then being the
// *secagg.EquivocationError).
//
// Reason is what the coordinator is told: it names the rule that failed,
// never the private values behind it (the example count, the budget left,
// the shape of the local data; security review L2). Detail holds those
// values and stays in the worker's own log.
type Refusal struct {
	Round  uint64
	Reason string
	Detail string
	Err    error
}

// Error implements error; it is the text sent to the coordinator.
func (r *Refusal) Error() string {
	return fmt.Sprintf("worker refuses round %d: %s", r.Round, r.Reason)
}

// Unwrap returns the underlying error, if any.
func (r *Refusal) Unwrap() error { return r.Err }

// ModelHash returns the SHA-256 of params encoded as little-endian float32,
// the hash models are announced and fetched by.
func ModelHash(params []float32) [32]byte {
	h := sha256.New()
	var buf [4096]byte
	for len(params) > 0 {
		n := min(len(params), len(buf)/4)
		for i, v := range params[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		h.Write(buf[:4*n])
		params = params[n:]
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Option configures a Node.
type Option func(*Node) error

// WithID sets the worker's ID (its peer ID string, as listed in
// Announce.Sampled). Without it NewNode reads the peer ID of the
// configuration's identity file.
func WithID(id string) Option {
	return func(n *Node) error {
		if id == "" {
			return errors.New("worker: WithID: empty ID")
		}
		n.id = id
		return nil
	}
}

// WithRand sets the source of the worker's secret randomness (SecAgg+ keys,
// self-mask seeds, share polynomials, DP noise, stochastic rounding). The
// default is crypto/rand; tests pass a seeded generator. Reads happen under
// the node's lock, so r need not be safe for concurrent use.
func WithRand(r io.Reader) Option {
	return func(n *Node) error {
		if r == nil {
			return errors.New("worker: WithRand: nil reader")
		}
		n.rand = r
		return nil
	}
}

// Node is an institution's worker: it answers the SecAgg+ stages of the
// rounds it takes part in, trains on its local data and evaluates
// committed models. Every method is idempotent per round: asked again (by a
// coordinator after a failover, or after the node restarted on the same
// store) it returns what it returned the first time, without retraining.
// Every answer is written to the store before it is returned. Safe for
// concurrent use; calls for one node are serialised except Evaluate.
type Node struct {
	cfg         *Config
	st          *Store
	train, test *data.Dataset
	log         *slog.Logger
	id          string
	rand        io.Reader
	// sk, federation and enrolled authenticate SecAgg+ (WithIdentity).
	sk         crypto.PrivKey
	federation string
	enrolled   Enrolled
	accepted   map[string]bool // canonical specs; nil = any
	obs        Observer
	// sd is the data schema's state (WithData); nil without a schema.
	sd *schemaData
	// ext, if set, is the institution's trainer (external.go), which
	// replaces the built-in networks and the local datasets; extHello is
	// its hello.
	ext      *trainer.Process
	extHello trainer.Hello

	mu      sync.Mutex
	clients map[uint64]*secagg.Client
	// trainNet is reused by every local training (under mu) while the
	// spec stays the same; idx and delta are its per-round buffers.
	trainNet *model.Network
	idx      []int
	delta    []float32

	// evalMu guards evalNet, reused by EvaluateSpec while the spec stays
	// the same.
	evalMu  sync.Mutex
	evalNet *model.Network

	trainCalls atomic.Int64
}

// NewNode creates the worker of cfg on store st with its local train and
// test splits. logger may be nil (slog.Default()).
func NewNode(cfg *Config, st *Store, train, test *data.Dataset, logger *slog.Logger, opts ...Option) (*Node, error) {
	if cfg == nil || st == nil {
		return nil, errors.New("worker: NewNode: nil config or store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Trainer) > 0 || train == nil {
		return newTrainerNode(cfg, st, logger, opts)
	}
	if err := train.Validate(); err != nil {
		return nil, fmt.Errorf("worker %s: train split: %w", cfg.Name, err)
	}
	if train.N == 0 {
		return nil, fmt.Errorf("worker %s: train split %s has no examples", cfg.Name, train.Name)
	}
	if err := test.Validate(); err != nil {
		return nil, fmt.Errorf("worker %s: test split: %w", cfg.Name, err)
	}
	if test.Dim != train.Dim || test.Classes != train.Classes {
		return nil, fmt.Errorf("worker %s: test split has %d features and %d classes, train split %d and %d",
			cfg.Name, test.Dim, test.Classes, train.Dim, train.Classes)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return newNode(cfg, st, train, test, logger, opts, nil)
}

// newNode builds the node; start, if not nil, runs once the options are
// applied and the logger is set (the trainer's start).
func newNode(cfg *Config, st *Store, train, test *data.Dataset, logger *slog.Logger, opts []Option, start func(*Node) error) (*Node, error) {
	if logger == nil {
		logger = slog.Default()
	}
	c := *cfg
	c.Policy = c.Policy.WithDefaults()
	cfg = &c
	n := &Node{cfg: cfg, st: st, train: train, test: test, rand: rand.Reader, clients: map[uint64]*secagg.Client{}, obs: nopObserver{}}
	for _, o := range opts {
		if err := o(n); err != nil {
			return nil, err
		}
	}
	if n.id == "" {
		id, err := p2p.PeerIDFromFile(cfg.Identity)
		if err != nil {
			return nil, fmt.Errorf("worker %s: identity: %w", cfg.Name, err)
		}
		n.id = id.String()
	}
	n.log = logger.With("worker", cfg.Name, "peer", n.id)
	if start != nil {
		if err := start(n); err != nil {
			return nil, err
		}
	}
	if len(cfg.Policy.AcceptedModels) > 0 {
		n.accepted = map[string]bool{}
		for i, s := range cfg.Policy.AcceptedModels {
			c, err := n.canonicalSpec(s)
			if err != nil {
				n.Close()
				return nil, cfg.fieldError(fmt.Sprintf("policy.accepted_models[%d]", i), "does not fit the local data: %v", err)
			}
			n.accepted[c] = true
		}
	}
	return n, nil
}

// ID returns the worker's ID.
func (n *Node) ID() string { return n.id }

// Name returns the institution's name.
func (n *Node) Name() string { return n.cfg.Name }

// Policy returns the institution's policy.
func (n *Node) Policy() Policy { return n.cfg.Policy }

// Examples returns the number of local training examples (the FedAvg weight
// of the worker's update when differential privacy is off).
func (n *Node) Examples() int {
	if n.ext != nil {
		return n.extHello.Examples
	}
	return n.train.N
}

// TestExamples returns the number of local test examples (federated
// evaluation).
func (n *Node) TestExamples() int {
	if n.ext != nil {
		return n.extHello.TestExamples
	}
	return n.test.N
}

// EpsilonSpent returns the ε recorded by the last committed round of the
// default study: the federation's figure, as the coordinator announced it
// (EpsilonSpentStudy for another study).
func (n *Node) EpsilonSpent() (float64, error) { return n.st.Epsilon() }

// EpsilonSpentStudy is EpsilonSpent for study.
func (n *Node) EpsilonSpentStudy(study string) (float64, error) { return n.st.EpsilonStudy(study) }

// OwnEpsilon returns the ε (at policy.delta) of the worker's own
// accountant: every round in which it sent a noised masked input, charged
// at sampling rate q = 1 (security review M5). The coordinator chooses the
// sample and knows it, so privacy amplification by sampling (q < 1) does
// not hold against it; nor can the worker check a sampling rate it is
// told. The accountant is the RDP of the sampled Gaussian mechanism
// (Mironov 2017; with q = 1, the Gaussian mechanism's α/(2σ²)), where σ is
// the round's announced noise multiplier: it assumes, like the
// federation's accountant, that a released sum carries at least
// dp.min_clients honest noise shares, which the SecAgg+ threshold
// enforces against the coordinator alone. It only reads the store, so it
// does not wait for a training in progress.
func (n *Node) OwnEpsilon() (float64, error) {
	total, _, err := n.ownEpsilons(0, "")
	return total, err
}

// OwnEpsilonStudy is OwnEpsilon over the rounds of one study ("" = the
// default study): the figure policy.max_epsilon caps, where
// policy.max_epsilon_total caps OwnEpsilon.
func (n *Node) OwnEpsilonStudy(study string) (float64, error) {
	_, in, err := n.ownEpsilons(0, study)
	return in, err
}

// ownEpsilons returns the worker's own ε over every study and over study,
// with one more round of noise multiplier extra (0: none) charged to both,
// from one read of the privacy ledger.
func (n *Node) ownEpsilons(extra float64, study string) (total, inStudy float64, err error) {
	steps, err := n.st.Privacy()
	if err != nil {
		return 0, 0, err
	}
	if total, err = epsilonOf(steps, n.cfg.Policy.Delta, extra, func(PrivacyStep) bool { return true }); err != nil {
		return 0, 0, err
	}
	inStudy, err = epsilonOf(steps, n.cfg.Policy.Delta, extra, func(p PrivacyStep) bool { return p.Study == study })
	return total, inStudy, err
}

// OwnEpsilonOf returns the ε at delta of the privacy ledger in st over
// every study (see Node.OwnEpsilon), for monitoring.
func OwnEpsilonOf(st *Store, delta float64) (float64, error) {
	steps, err := st.Privacy()
	if err != nil {
		return 0, err
	}
	return epsilonOf(steps, delta, 0, func(PrivacyStep) bool { return true })
}

// OwnEpsilonByStudy returns the ε at delta of each study in st's privacy
// ledger ("" = the default study).
func OwnEpsilonByStudy(st *Store, delta float64) (map[string]float64, error) {
	steps, err := st.Privacy()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, p := range steps {
		if _, ok := out[p.Study]; ok {
			continue
		}
		e, err := epsilonOf(steps, delta, 0, func(q PrivacyStep) bool { return q.Study == p.Study })
		if err != nil {
			return nil, err
		}
		out[p.Study] = e
	}
	return out, nil
}

// epsilonOf composes the steps keep selects (and one more of noise
// multiplier extra, if > 0) by RDP at q = 1 (Mironov 2017): the
// institution's data is the same in every study, so its privacy loss over
// all studies is the composition of all their rounds.
func epsilonOf(steps []PrivacyStep, delta, extra float64, keep func(PrivacyStep) bool) (float64, error) {
	acc := &dp.Accountant{}
	for _, p := range steps {
		if keep(p) {
			acc.Step(1, p.Sigma, 1)
		}
	}
	if extra > 0 {
		acc.Step(1, extra, 1)
	}
	if acc.TotalSteps() == 0 {
		return 0, nil
	}
	eps, _, err := acc.Epsilon(delta, nil)
	return eps, err
}

// charged reports whether round is in the worker's own privacy ledger.
func (n *Node) charged(round uint64) (bool, error) {
	steps, err := n.st.Privacy()
	if err != nil {
		return false, err
	}
	for _, p := range steps {
		if p.Round == round {
			return true, nil
		}
	}
	return false, nil
}

// ownBudget refuses a DP round that would take the worker's own ε (q = 1)
// of the round's study above policy.max_epsilon, or its ε over every study
// above policy.max_epsilon_total, whatever ε the coordinator announced. A
// round already charged passes (it is asked again after a failover).
func (n *Node) ownBudget(a *Announce) error {
	p := n.cfg.Policy
	// The statistics round's noise is row-level, not part of the
	// institution-level budget (coordinator/stats.go).
	if a.DP.Noise == 0 || math.IsInf(p.MaxEpsilon, 1) && !finiteTotal(p) || a.Purpose == wire.PurposeStatistics {
		return nil
	}
	if done, err := n.charged(a.Round); err != nil || done {
		return err
	}
	total, eps, err := n.ownEpsilons(a.DP.Noise, a.Study)
	if err != nil {
		return fmt.Errorf("worker %s: round %d: own privacy accountant: %w", n.cfg.Name, a.Round, err)
	}
	if eps > p.MaxEpsilon {
		return n.refuseDetail(a.Round, nil, "this worker's own ε (q = 1) in this study after this round would be above policy.max_epsilon",
			fmt.Sprintf("study %s: own ε %.4g after the round at δ %g, policy.max_epsilon %.4g, announced ε %.4g", studyName(a.Study), eps, p.Delta, p.MaxEpsilon, a.Epsilon))
	}
	if finiteTotal(p) && total > p.MaxEpsilonTotal {
		return n.refuseDetail(a.Round, nil, "this worker's own ε (q = 1) over all studies after this round would be above policy.max_epsilon_total",
			fmt.Sprintf("study %s: own ε over all studies %.4g after the round at δ %g, policy.max_epsilon_total %.4g", studyName(a.Study), total, p.Delta, p.MaxEpsilonTotal))
	}
	return nil
}

// finiteTotal reports whether the policy caps ε over all studies.
func finiteTotal(p Policy) bool { return p.MaxEpsilonTotal > 0 && !math.IsInf(p.MaxEpsilonTotal, 1) }

// studyName names a study in logs.
func studyName(s string) string { return wire.StudyLabel(s) }

func (n *Node) canonicalSpec(s string) (string, error) {
	sp, err := n.parseSpec(s)
	if err != nil {
		return "", err
	}
	return sp.String(), nil
}

func (n *Node) parseSpec(s string) (model.Spec, error) {
	if n.ext != nil {
		return trainer.SpecFor(s, n.extHello.Tensors)
	}
	return model.ParseSpec(s, n.train.C, n.train.H, n.train.W, n.train.Classes)
}

// refuse logs and returns a refusal whose reason (sent to the coordinator)
// is format applied to a; see refuseDetail for private values.
func (n *Node) refuse(round uint64, err error, format string, a ...any) *Refusal {
	return n.refuseDetail(round, err, fmt.Sprintf(format, a...), "")
}

// refuseDetail logs reason and detail and returns a refusal that tells the
// coordinator only the reason.
func (n *Node) refuseDetail(round uint64, err error, reason, detail string) *Refusal {
	r := &Refusal{Round: round, Reason: reason, Detail: detail, Err: err}
	if detail != "" {
		n.log.Warn("round refused", "round", round, "reason", r.Reason, "detail", detail)
	} else {
		n.log.Warn("round refused", "round", round, "reason", r.Reason)
	}
	n.obs.RoundRefused(round, r.Reason)
	return r
}

// checkStale refuses a round at or before the last committed one: its
// secrets are gone and it can never be answered again.
func (n *Node) checkStale(round uint64) error {
	c, ok, err := n.st.Committed()
	if err != nil {
		return err
	}
	if ok && round <= c {
		return n.refuse(round, nil, "round %d is not after the last committed round %d", round, c)
	}
	return nil
}

// validateAnnounce checks an announcement's structure; its errors name the
// field.
func (n *Node) validateAnnounce(a *Announce) (uint32, error) {
	bad := func(field, format string, v ...any) error {
		return fmt.Errorf("worker %s: announce of round %d: %s: %s", n.cfg.Name, a.Round, field, fmt.Sprintf(format, v...))
	}
	if a.SecAgg.Round != a.Round {
		return 0, bad("secagg.round", "%d, want %d", a.SecAgg.Round, a.Round)
	}
	if err := a.SecAgg.Validate(); err != nil {
		return 0, bad("secagg", "%v", err)
	}
	if a.Purpose == "" && a.SecAgg.Dim != a.NumParams && a.SecAgg.Dim != a.NumParams+wire.EvalWords {
		return 0, bad("secagg.dim", "%d, but num_params is %d (want it, or %d with secure evaluation)", a.SecAgg.Dim, a.NumParams, a.NumParams+wire.EvalWords)
	}
	if len(a.SecAgg.Clients) != len(a.Sampled) {
		return 0, bad("secagg.clients", "%d clients for %d sampled workers", len(a.SecAgg.Clients), len(a.Sampled))
	}
	for i, c := range a.SecAgg.Clients {
		if c != uint32(i+1) {
			return 0, bad(fmt.Sprintf("secagg.clients[%d]", i), "%d, want %d (sampled[%d])", c, i+1, i)
		}
	}
	if !slices.IsSorted(a.Sampled) {
		return 0, bad("sampled", "not sorted")
	}
	idx := a.NodeIndex(n.id)
	if idx == 0 {
		return 0, bad("sampled", "does not list this worker (%s)", n.id)
	}
	if a.ModelVersion >= a.Round && a.ModelVersion != 0 {
		return 0, bad("model_version", "%d is not before the round", a.ModelVersion)
	}
	t := a.Train
	tc := model.TrainConfig{Epochs: t.Epochs, Batch: t.Batch, LR: float32(t.LR), ProxMu: float32(t.ProxMu)}
	if err := tc.Validate(); err != nil {
		return 0, bad("train", "%v", err)
	}
	if math.IsNaN(a.Epsilon) || a.Epsilon < 0 {
		return 0, bad("epsilon", "%v must be >= 0", a.Epsilon)
	}
	d := a.DP
	if math.IsNaN(d.Noise) || math.IsInf(d.Noise, 0) || d.Noise < 0 {
		return 0, bad("dp.noise", "%v must be finite and >= 0", d.Noise)
	}
	if d.Noise > 0 {
		if err := (dp.Params{Clip: d.Clip, NoiseMultiplier: d.Noise, MinClients: d.MinClients}).Validate(); err != nil {
			return 0, bad("dp", "%v", err)
		}
	}
	return idx, nil
}

// policy applies the institution's policy and the worker's own safety
// conditions to a valid announcement.
func (n *Node) policy(a *Announce) *Refusal {
	p := n.cfg.Policy
	// The work limits first: nothing below (and no SecAgg+ graph) is
	// built for an announcement beyond them (security review L3).
	if len(a.Sampled) > p.MaxCohort {
		return n.refuse(a.Round, nil, "cohort of %d institutions is above policy.max_cohort %d", len(a.Sampled), p.MaxCohort)
	}
	if d := a.SecAgg.WithDefaults().Degree; d > p.MaxSecAggDegree {
		return n.refuse(a.Round, nil, "SecAgg+ degree %d is above policy.max_secagg_degree %d", d, p.MaxSecAggDegree)
	}
	if reason, detail, err := n.modelRule(a.ModelSpec, a.NumParams, "announced"); reason != "" {
		return n.refuseDetail(a.Round, err, reason, detail)
	}
	if len(a.Sampled) < p.MinCohort {
		return n.refuse(a.Round, nil, "cohort of %d institutions is below policy.min_cohort %d", len(a.Sampled), p.MinCohort)
	}
	if a.Purpose == wire.PurposeStatistics {
		// Row-level noise on the statistics is the institution's choice;
		// they are not part of the model rounds' ε (stats.go).
		if p.RequireStatsNoise && a.DP.Noise == 0 {
			return n.refuse(a.Round, nil, "the federation-statistics round has no noise (stats_noise = 0) and policy.require_stats_noise is set")
		}
	} else if !math.IsInf(p.MaxEpsilon, 1) && a.DP.Noise == 0 {
		return n.refuseDetail(a.Round, nil, "round has no differential privacy (dp.noise = 0) and policy.max_epsilon requires it",
			fmt.Sprintf("policy.max_epsilon %g", p.MaxEpsilon))
	}
	if a.Epsilon > p.MaxEpsilon {
		return n.refuseDetail(a.Round, nil, fmt.Sprintf("announced ε %.4g after this round is above policy.max_epsilon", a.Epsilon),
			fmt.Sprintf("policy.max_epsilon %.4g", p.MaxEpsilon))
	}
	sc := a.SecAgg.WithDefaults()
	if a.DP.Noise > 0 && a.DP.MinClients > sc.Threshold {
		// A sum of Threshold clients would carry less than the σ·C the
		// accountant assumes (dp.DistributedStd).
		return n.refuse(a.Round, nil, "dp.min_clients %d exceeds the SecAgg+ threshold %d, so an unmasked sum could carry less noise than announced", a.DP.MinClients, sc.Threshold)
	}
	if w := n.weight(a); w > sc.MaxWeight {
		return n.refuseDetail(a.Round, nil, fmt.Sprintf("this worker's weight exceeds secagg.max_weight %g", sc.MaxWeight),
			fmt.Sprintf("weight %g (local examples)", w))
	}
	return nil
}

// weight is the worker's FedAvg weight: its example count, or 1 with DP
// (DP-FedAvg weights clients equally, McMahan et al. 2018).
func (n *Node) weight(a *Announce) float64 {
	if a.DP.Noise > 0 || a.Purpose == wire.PurposeStatistics {
		return 1
	}
	return float64(n.Examples())
}

func announceDigest(a *Announce) ([32]byte, error) {
	c := *a
	c.SecAgg = c.SecAgg.WithDefaults()
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&c); err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b.Bytes()), nil
}

// implicitCommit records round as committed when a later message proves it
// (an announcement built on its model, or an evaluation of it).
func (n *Node) implicitCommit(round uint64) error {
	c, ok, err := n.st.Committed()
	if err != nil || (ok && round <= c) {
		return err
	}
	eps := 0.0
	if a, ok, err := n.st.Announce(round); err != nil {
		return err
	} else if ok && !math.IsInf(a.Epsilon, 0) {
		eps = a.Epsilon
	}
	return n.commitLocked(round, eps)
}

// Commit records that round committed with ε = epsilon spent in total: the
// cached masked input and the round's secrets are deleted (with those of
// every earlier round), and later requests for those rounds are refused.
func (n *Node) Commit(round uint64, epsilon float64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.commitLocked(round, epsilon)
}

func (n *Node) commitLocked(round uint64, epsilon float64) error {
	// The federation's ε is per study: the round's announcement says
	// which; once it is gone only the round mark is recorded.
	study, known := "", false
	if a, ok, err := n.st.Announce(round); err != nil {
		return err
	} else if ok {
		study, known = a.Study, true
	}
	if !known {
		epsilon = 0
	}
	if err := n.st.CommitStudy(round, study, epsilon); err != nil {
		return err
	}
	for r := range n.clients {
		if r <= round {
			delete(n.clients, r)
		}
	}
	own, ownStudy, err := n.ownEpsilons(0, study)
	if err != nil {
		return err
	}
	n.log.Info("round committed", "round", round, "study", studyName(study), "epsilon", epsilon, "own_epsilon", own, "own_epsilon_study", ownStudy)
	return nil
}

// client returns the SecAgg+ client of round, from memory or the store.
func (n *Node) client(round uint64) (*secagg.Client, error) {
	if c, ok := n.clients[round]; ok {
		return c, nil
	}
	state, ok, err := n.st.Client(round)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, n.refuse(round, nil, "no announcement of round %d was accepted", round)
	}
	// The state is stored without the masked vector, which has its own
	// record from stage 2 on (PutMasked writes both in one transaction).
	var masked *secagg.MaskedInput
	if mi, ok, err := n.st.Masked(round); err != nil {
		return nil, err
	} else if ok {
		masked = &mi
	}
	c, err := secagg.RestoreClientWithMasked(state, masked, n.rand)
	if err != nil {
		return nil, &CorruptError{Key: roundKey(round, recClient), Reason: err.Error()}
	}
	if c.Round() != round {
		return nil, &CorruptError{Key: roundKey(round, recClient), Reason: fmt.Sprintf("holds round %d", c.Round())}
	}
	if n.sk != nil {
		a, ok, err := n.st.Announce(round)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, &CorruptError{Key: roundKey(round, recClient), Reason: "client state without its announcement"}
		}
		auth, err := n.roundAuthFor(a)
		if err != nil {
			return nil, err
		}
		c.SetAuthenticator(auth)
	}
	n.clients[round] = c
	return c, nil
}

// Advertise runs stage 0: it applies the policy (refusing with a *Refusal)
// and returns the worker's public keys for the round. Asked again with the
// same announcement it returns the same keys. A different announcement of
// the same round replaces the earlier one while no masked input was sent;
// afterwards it is refused, since a second masked input of one round would
// release the update twice.
func (n *Node) Advertise(a Announce) (secagg.AdvertiseKeys, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a.Sampled = slices.Clone(a.Sampled)
	a.SecAgg.Clients = slices.Clone(a.SecAgg.Clients)
	if a.ModelVersion > 0 && a.ModelVersion < a.Round {
		if err := n.implicitCommit(a.ModelVersion); err != nil {
			return secagg.AdvertiseKeys{}, err
		}
	}
	if err := n.checkStale(a.Round); err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	if pin, ok, err := n.st.EvalPin(); err != nil {
		return secagg.AdvertiseKeys{}, err
	} else if ok && a.ModelVersion == pin.Round && a.ModelHash != pin.Hash {
		return secagg.AdvertiseKeys{}, n.refuseDetail(a.Round, nil,
			fmt.Sprintf("the announced model of round %d is not the one this worker evaluated for that round", pin.Round),
			fmt.Sprintf("announced %x, evaluated %x", a.ModelHash[:8], pin.Hash[:8]))
	}
	idx, err := n.validateAnnounce(&a)
	if err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	if err := n.checkSchema(&a); err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	if r := n.policy(&a); r != nil {
		return secagg.AdvertiseKeys{}, r
	}
	if err := n.ownBudget(&a); err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	if err := n.secAggPolicy(&a); err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	auth, err := n.roundAuthFor(&a)
	if err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	dig, err := announceDigest(&a)
	if err != nil {
		return secagg.AdvertiseKeys{}, fmt.Errorf("worker %s: round %d: %w", n.cfg.Name, a.Round, err)
	}
	prev, ok, err := n.st.Announce(a.Round)
	if err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	if ok {
		pd, err := announceDigest(prev)
		if err != nil {
			return secagg.AdvertiseKeys{}, err
		}
		if pd == dig {
			c, err := n.client(a.Round)
			if err != nil {
				return secagg.AdvertiseKeys{}, err
			}
			return c.Advertise()
		}
		if _, sent, err := n.st.Masked(a.Round); err != nil {
			return secagg.AdvertiseKeys{}, err
		} else if sent {
			return secagg.AdvertiseKeys{}, n.refuse(a.Round, nil, "a masked input was already sent for a different announcement of round %d", a.Round)
		}
		n.log.Info("announcement replaced before masking", "round", a.Round)
		delete(n.clients, a.Round)
		if err := n.st.DropRound(a.Round); err != nil {
			return secagg.AdvertiseKeys{}, err
		}
	}
	c, err := secagg.NewClient(a.SecAgg, idx, n.rand)
	if err != nil {
		return secagg.AdvertiseKeys{}, fmt.Errorf("worker %s: round %d: %w", n.cfg.Name, a.Round, err)
	}
	if auth != nil {
		c.SetAuthenticator(auth)
	}
	ads, err := c.Advertise()
	if err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	state, err := c.MarshalStateWithoutMasked()
	if err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	// One synced transaction: the client state, the announcement and the
	// last announced spec.
	if err := n.st.PutClient(a.Round, state, &a); err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	n.clients[a.Round] = c
	n.log.Info("round accepted", "round", a.Round, "index", idx, "cohort", len(a.Sampled), "model", a.ModelSpec, "epsilon", a.Epsilon)
	n.obs.RoundJoined(a.Round)
	return ads, nil
}

// persist writes the client's state after a stage moved it on; on failure
// the in-memory client is dropped so that nothing unrecorded is answered.
// The state is written without the masked vector, which PutMasked stores
// once in its own record.
func (n *Node) persist(round uint64, c *secagg.Client, write func(state []byte) error) error {
	state, err := c.MarshalStateWithoutMasked()
	if err == nil {
		err = write(state)
	}
	if err != nil {
		delete(n.clients, round)
		return fmt.Errorf("worker %s: round %d: %w", n.cfg.Name, round, err)
	}
	return nil
}

// ShareKeys runs stage 1: given the neighbours' keys it returns the
// worker's encrypted shares for them (the same ones when asked again).
func (n *Node) ShareKeys(kb secagg.KeyBroadcast) ([]secagg.EncryptedShare, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.checkStale(kb.Round); err != nil {
		return nil, err
	}
	c, err := n.client(kb.Round)
	if err != nil {
		return nil, err
	}
	if kb.To != c.ID() {
		return nil, fmt.Errorf("worker %s: round %d: key broadcast addressed to node %d, this worker is node %d", n.cfg.Name, kb.Round, kb.To, c.ID())
	}
	before := c.Stage()
	out, err := c.ShareKeys(kb.Keys)
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", n.cfg.Name, err)
	}
	if c.Stage() != before {
		if err := n.persist(kb.Round, c, func(s []byte) error { return n.st.PutClient(kb.Round, s, nil) }); err != nil {
			return nil, err
		}
		n.log.Info("shares sent", "round", kb.Round, "neighbours", len(out))
	}
	return out, nil
}

// MaskedInput runs stage 2: from the global model it trains locally, takes
// the delta, clips and noises it when DP is on, and returns it weighted,
// quantized and masked. The result is stored before it is returned; asked
// again for the same round it returns the stored vector without
// retraining.
func (n *Node) MaskedInput(sb secagg.ShareBundle, global []float32) (secagg.MaskedInput, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.checkStale(sb.Round); err != nil {
		return secagg.MaskedInput{}, err
	}
	if mi, ok, err := n.st.Masked(sb.Round); err != nil {
		return secagg.MaskedInput{}, err
	} else if ok {
		if mi.From != sb.To {
			return secagg.MaskedInput{}, fmt.Errorf("worker %s: round %d: share bundle addressed to node %d, this worker is node %d", n.cfg.Name, sb.Round, sb.To, mi.From)
		}
		return mi, nil
	}
	c, err := n.client(sb.Round)
	if err != nil {
		return secagg.MaskedInput{}, err
	}
	if sb.To != c.ID() {
		return secagg.MaskedInput{}, fmt.Errorf("worker %s: round %d: share bundle addressed to node %d, this worker is node %d", n.cfg.Name, sb.Round, sb.To, c.ID())
	}
	if mi, ok := c.CachedMaskedInput(); ok {
		return mi, nil
	}
	if c.Stage() != secagg.StageMaskedInput {
		return secagg.MaskedInput{}, fmt.Errorf("worker %s: round %d: masked input requested in stage %v (shares not sent yet)", n.cfg.Name, sb.Round, c.Stage())
	}
	a, ok, err := n.st.Announce(sb.Round)
	if err != nil {
		return secagg.MaskedInput{}, err
	}
	if !ok {
		return secagg.MaskedInput{}, &CorruptError{Key: roundKey(sb.Round, recAnnounce), Reason: "missing while the client state exists"}
	}
	// The budget is checked again here, where it is spent: a coordinator
	// that opened several rounds at once passed each Advertise alone.
	if err := n.ownBudget(a); err != nil {
		return secagg.MaskedInput{}, err
	}
	var delta []float32
	var loss float64
	if a.Purpose == wire.PurposeStatistics {
		delta, err = n.statsInput(a)
	} else {
		delta, loss, err = n.update(a, global)
	}
	if err != nil {
		return secagg.MaskedInput{}, err
	}
	if a.Purpose == "" && a.SecAgg.Dim == a.NumParams+wire.EvalWords {
		// Secure evaluation of the announced model (update checked its
		// hash) on the local test split, inside the aggregate.
		tail := wire.NoEvalTail()
		if n.cfg.Policy.Evaluation != EvalNone {
			ex, eloss, acc, err := n.EvaluateSpec(a.ModelSpec, global)
			if err != nil {
				return secagg.MaskedInput{}, err
			}
			if ex > 0 {
				tail = wire.EvalTail(acc, eloss, a.SecAgg.WithDefaults().ClipRange)
			}
		}
		delta = append(delta, tail...)
	}
	mi, err := c.MaskedInput(sb.Shares, delta, n.weight(a))
	if err != nil {
		return secagg.MaskedInput{}, fmt.Errorf("worker %s: %w", n.cfg.Name, err)
	}
	var step *PrivacyStep
	if a.DP.Noise > 0 && a.Purpose == "" {
		step = &PrivacyStep{Round: sb.Round, Sigma: a.DP.Noise, Study: a.Study}
	}
	if err := n.persist(sb.Round, c, func(s []byte) error { return n.st.PutMaskedCharged(sb.Round, s, mi, step) }); err != nil {
		return secagg.MaskedInput{}, err
	}
	own, ownStudy, err := n.ownEpsilons(0, a.Study)
	if err != nil {
		return secagg.MaskedInput{}, err
	}
	n.log.Info("masked input sent", "round", sb.Round, "study", studyName(a.Study), "train_loss", loss, "shares", len(sb.Shares), "dp", a.DP.Noise > 0,
		"own_epsilon", own, "own_epsilon_study", ownStudy, "announced_epsilon", a.Epsilon)
	return mi, nil
}

// trainSeed derives the shuffling seed of local training from the round, the
// model and the worker, so that retraining after a crash repeats itself.
func trainSeed(a *Announce, id string) int64 {
	h := sha256.New()
	h.Write([]byte("sovereign/worker/train\x00"))
	h.Write(binary.BigEndian.AppendUint64(nil, a.Round))
	h.Write(a.ModelHash[:])
	h.Write([]byte(id))
	return int64(binary.BigEndian.Uint64(h.Sum(nil)) >> 1)
}

// update runs ClientUpdate (McMahan et al. 2017, Algorithm 1; FedProx when
// ProxMu > 0, Li et al. 2020) from global and returns Δ = w_local − w_global,
// clipped to C and noised with N(0, σ²C²/t) when DP is on (DP-FedAvg,
// McMahan et al. 2018, with the noise distributed over the t clients a sum
// contains at least, dp.DistributedStd) — the same steps as the simulator's
// secure rounds.
func (n *Node) update(a *Announce, global []float32) ([]float32, float64, error) {
	if len(global) != a.NumParams {
		return nil, 0, fmt.Errorf("worker %s: round %d: model has %d parameters, the announcement says %d", n.cfg.Name, a.Round, len(global), a.NumParams)
	}
	if h := ModelHash(global); h != a.ModelHash {
		return nil, 0, fmt.Errorf("worker %s: round %d: model hash %x differs from the announced %x", n.cfg.Name, a.Round, h[:8], a.ModelHash[:8])
	}
	sp, err := n.parseSpec(a.ModelSpec)
	if err != nil {
		return nil, 0, err
	}
	var p []float32
	var loss float64
	if n.ext != nil {
		p, loss, err = n.trainExternal(a, sp, global)
	} else {
		p, loss, err = n.trainBuiltin(a, sp, global)
	}
	if err != nil {
		return nil, 0, err
	}
	// The delta buffer is reused: secagg.Client.MaskedInput reads it
	// into a vector of its own and keeps no reference.
	if len(n.delta) != len(p) {
		n.delta = make([]float32, len(p))
	}
	delta := n.delta
	model.Delta(delta, p, global)
	if err := dp.CheckFinite(delta); err != nil {
		return nil, 0, fmt.Errorf("worker %s: round %d: local update: %w", n.cfg.Name, a.Round, err)
	}
	if a.DP.Noise > 0 {
		dp.ClipL2(delta, a.DP.Clip)
		var seed [32]byte
		if _, err := io.ReadFull(n.rand, seed[:]); err != nil {
			return nil, 0, fmt.Errorf("worker %s: round %d: noise seed: %w", n.cfg.Name, a.Round, err)
		}
		std := dp.DistributedStd(a.DP.Noise, a.DP.Clip, a.DP.MinClients)
		if err := dp.AddGaussian(delta, std, mrand.New(mrand.NewChaCha8(seed))); err != nil {
			return nil, 0, fmt.Errorf("worker %s: round %d: %w", n.cfg.Name, a.Round, err)
		}
	}
	return delta, loss, nil
}

// trainBuiltin trains a built-in network of sp from global on the local
// train split and returns the local parameters (the network's own slice).
func (n *Node) trainBuiltin(a *Announce, sp model.Spec, global []float32) ([]float32, float64, error) {
	net, err := reuseNet(n.trainNet, sp)
	if err != nil {
		return nil, 0, err
	}
	n.trainNet = net
	if err := net.SetParams(global); err != nil {
		return nil, 0, fmt.Errorf("worker %s: round %d: global model: %w", n.cfg.Name, a.Round, err)
	}
	if len(n.idx) != n.train.N {
		n.idx = make([]int, n.train.N)
		for i := range n.idx {
			n.idx[i] = i
		}
	}
	idx := n.idx
	n.trainCalls.Add(1)
	trainStart := time.Now()
	loss, err := model.Train(net, n.train.X, n.train.Y, n.train.Dim, idx, model.TrainConfig{
		Epochs: a.Train.Epochs,
		Batch:  a.Train.Batch,
		LR:     float32(a.Train.LR),
		ProxMu: float32(a.Train.ProxMu),
		Seed:   trainSeed(a, n.id),
	})
	if err != nil {
		return nil, 0, fmt.Errorf("worker %s: round %d: local training: %w", n.cfg.Name, a.Round, err)
	}
	n.obs.Trained(a.Round, time.Since(trainStart))
	return net.Params(), loss, nil
}

// ConsistencyCheck runs the consistency check of Bonawitz et al. 2017
// (round 4) between stages 2 and 3: the worker signs, with its identity
// key, the survivor set it is told, once per round. The signed set is in
// the client state, written to the store before the signature is
// returned: asked again (by a new leader after a failover, or after a
// restart) the worker returns the same signature, and a different set is
// refused with a *Refusal wrapping the *secagg.EquivocationError.
func (n *Node) ConsistencyCheck(req secagg.ConsistencyRequest) (secagg.ConsistencyResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.checkStale(req.Round); err != nil {
		return secagg.ConsistencyResponse{}, err
	}
	c, err := n.client(req.Round)
	if err != nil {
		return secagg.ConsistencyResponse{}, err
	}
	if req.To != c.ID() {
		return secagg.ConsistencyResponse{}, fmt.Errorf("worker %s: round %d: consistency request addressed to node %d, this worker is node %d", n.cfg.Name, req.Round, req.To, c.ID())
	}
	first := c.SignedSurvivors() == nil
	resp, err := c.ConsistencyCheck(req)
	if err != nil {
		var eq *secagg.EquivocationError
		if errors.As(err, &eq) {
			return secagg.ConsistencyResponse{}, n.refuse(req.Round, err, "already signed survivor set %v, refusing %v", eq.Answered, eq.Requested)
		}
		return secagg.ConsistencyResponse{}, fmt.Errorf("worker %s: %w", n.cfg.Name, err)
	}
	if first {
		if err := n.persist(req.Round, c, func(s []byte) error { return n.st.PutClient(req.Round, s, nil) }); err != nil {
			return secagg.ConsistencyResponse{}, err
		}
		n.log.Info("survivor set signed", "round", req.Round, "survivors", len(req.Survivors))
	}
	return resp, nil
}

// Unmask runs stage 3: it records the survivor set durably, then returns
// the worker's shares for it. Asked again with the same set it returns the
// same shares; a different set for the same round is refused with a
// *Refusal wrapping the *secagg.EquivocationError, also after a restart.
func (n *Node) Unmask(req secagg.UnmaskRequest) (secagg.UnmaskResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.checkStale(req.Round); err != nil {
		return secagg.UnmaskResponse{}, err
	}
	c, err := n.client(req.Round)
	if err != nil {
		return secagg.UnmaskResponse{}, err
	}
	if req.To != c.ID() {
		return secagg.UnmaskResponse{}, fmt.Errorf("worker %s: round %d: unmask request addressed to node %d, this worker is node %d", n.cfg.Name, req.Round, req.To, c.ID())
	}
	before := c.Stage()
	resp, err := c.Unmask(req)
	if err != nil {
		var eq *secagg.EquivocationError
		if errors.As(err, &eq) {
			return secagg.UnmaskResponse{}, n.refuse(req.Round, err, "already answered survivor set %v, refusing %v", eq.Answered, eq.Requested)
		}
		if errors.Is(err, secagg.ErrInconsistent) || errors.Is(err, secagg.ErrBadSignature) || errors.Is(err, secagg.ErrDisconnected) {
			// The coordinator is lying about the survivors (security
			// review H2, M6): refused, logged and counted as a refusal.
			return secagg.UnmaskResponse{}, n.refuse(req.Round, err, "unmask request refused: %v", err)
		}
		return secagg.UnmaskResponse{}, fmt.Errorf("worker %s: %w", n.cfg.Name, err)
	}
	if before != secagg.StageDone {
		ans := Answer{Survivors: c.AnsweredSurvivors(), Dropped: sortedCopy(req.Dropped)}
		if err := n.persist(req.Round, c, func(s []byte) error { return n.st.PutAnswer(req.Round, s, ans) }); err != nil {
			return secagg.UnmaskResponse{}, err
		}
		n.log.Info("unmask answered", "round", req.Round, "survivors", len(ans.Survivors), "dropped", len(ans.Dropped))
	}
	return resp, nil
}

// reuseNet returns net if it was built for sp, else a new network of sp: a
// worker trains (and evaluates) the same model round after round, and
// building one allocates its parameters, gradients and activation buffers
// anew. Every use starts with SetParams, so nothing carries over.
func reuseNet(net *model.Network, sp model.Spec) (*model.Network, error) {
	if net != nil && reflect.DeepEqual(net.Spec(), sp) {
		return net, nil
	}
	return model.New(sp)
}

func sortedCopy(v []uint32) []uint32 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s
}

// Evaluate evaluates the model committed in round on the local test split
// and returns the example count, mean loss and accuracy. The model's spec
// is the one announced for that round, else the latest announced one, else
// the only accepted model with len(params) parameters. It also records the
// round as committed.
func (n *Node) Evaluate(round uint64, params []float32) (examples int, loss, accuracy float64, err error) {
	n.mu.Lock()
	spec, err := n.evalSpec(round, len(params))
	if err == nil {
		err = n.implicitCommit(round)
	}
	n.mu.Unlock()
	if err != nil {
		return 0, 0, 0, err
	}
	return n.EvaluateSpec(spec, params)
}

func (n *Node) evalSpec(round uint64, numParams int) (string, error) {
	if a, ok, err := n.st.Announce(round); err != nil {
		return "", err
	} else if ok {
		return a.ModelSpec, nil
	}
	if s, ok, err := n.st.LastSpec(); err != nil {
		return "", err
	} else if ok {
		return s, nil
	}
	var match []string
	for _, s := range n.cfg.Policy.AcceptedModels {
		if sp, err := n.parseSpec(s); err == nil && sp.NumParams() == numParams {
			match = append(match, s)
		}
	}
	if len(match) == 1 {
		return match[0], nil
	}
	return "", fmt.Errorf("worker %s: round %d: cannot tell the model spec of a %d-parameter model (no announcement seen; accepted models matching: %s)",
		n.cfg.Name, round, numParams, strings.Join(match, ", "))
}

// EvaluateCommitted answers a coordinator's request to evaluate the model
// hash committed by round (security review M4: evaluation is no oracle).
// The worker evaluates only
//   - if policy.evaluation allows it;
//   - a round it was sampled in and answered to the end (it holds the
//     round's accepted announcement and its unmask answer);
//   - with the round's announced model spec, which policy.accepted_models
//     allowed when the announcement was accepted (spec, if not empty, must
//     name it);
//   - one model per round: the first hash asked is pinned durably, the
//     same hash again gets the same answer without a new evaluation, any
//     other hash is refused, and so is a later announcement that builds on
//     the round with a different model (Advertise checks the pin).
//
// A coordinator therefore learns at most one evaluation per round the
// worker trained in, of a model it must then announce as the federation's
// model. fetch is called with the announced parameter count, only once the
// request passed these checks.
func (n *Node) EvaluateCommitted(round uint64, hash [32]byte, spec string, fetch func(numParams int) ([]float32, error)) (examples int, loss, accuracy float64, err error) {
	p, err := n.EvaluateCommittedReport(round, hash, spec, fetch)
	return p.answer(err)
}

// EvaluateCommittedReport is EvaluateCommitted with the whole answer: with
// a two-class model also the confusion matrix and score histograms
// (wire.BinaryReport), pinned with the rest.
func (n *Node) EvaluateCommittedReport(round uint64, hash [32]byte, spec string, fetch func(numParams int) ([]float32, error)) (*EvalPin, error) {
	n.mu.Lock()
	a, pin, err := n.checkEvaluation(round, hash, spec)
	n.mu.Unlock()
	if err != nil || pin != nil {
		return pin, err
	}
	params, err := fetch(a.NumParams)
	if err != nil {
		return nil, err
	}
	if got := ModelHash(params); got != hash {
		return nil, fmt.Errorf("worker %s: round %d: fetched model hashes to %x, asked %x", n.cfg.Name, round, got[:8], hash[:8])
	}
	m, err := n.evaluateReport(a.ModelSpec, params)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// Another request may have pinned the round meanwhile.
	if _, pin, err := n.checkEvaluation(round, hash, spec); err != nil || pin != nil {
		return pin, err
	}
	p := EvalPin{Round: round, Hash: hash, Examples: m.Examples, Loss: m.Loss, Accuracy: m.Accuracy, Binary: m.Binary}
	if err := n.st.PutEvalPin(p); err != nil {
		return nil, err
	}
	if err := n.implicitCommit(round); err != nil {
		return nil, err
	}
	return &p, nil
}

// answer is EvaluateCommitted's result for a request checkEvaluation ended:
// err, or the pinned answer to a repeat.
func (p *EvalPin) answer(err error) (examples int, loss, accuracy float64, _ error) {
	if err != nil {
		return 0, 0, 0, err
	}
	return p.Examples, p.Loss, p.Accuracy, nil
}

// checkEvaluation applies EvaluateCommitted's rules; n.mu is held. It
// returns the round's announcement to evaluate, or the pin of the same
// request already answered.
func (n *Node) checkEvaluation(round uint64, hash [32]byte, spec string) (*Announce, *EvalPin, error) {
	switch n.cfg.Policy.Evaluation {
	case EvalNone:
		return nil, nil, n.refuse(round, nil, "policy.evaluation is %q: this worker answers no evaluation", EvalNone)
	case EvalAggregate:
		return nil, nil, n.refuse(round, nil, "policy.evaluation is %q: this worker reports evaluations only inside a secure aggregate", EvalAggregate)
	}
	pin, ok, err := n.st.EvalPin()
	if err != nil {
		return nil, nil, err
	}
	if ok && pin.Round == round {
		if pin.Hash != hash {
			return nil, nil, n.refuseDetail(round, nil, fmt.Sprintf("a model was already evaluated for round %d; one model per round", round),
				fmt.Sprintf("evaluated %x, asked %x", pin.Hash[:8], hash[:8]))
		}
		return nil, &pin, nil
	}
	if ok && round < pin.Round {
		return nil, nil, n.refuse(round, nil, "round %d is before round %d, the last one evaluated", round, pin.Round)
	}
	a, ok, err := n.st.Announce(round)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, n.refuse(round, nil, "this worker holds no accepted announcement of round %d, so no model of it to evaluate", round)
	}
	if _, ok, err := n.st.Answer(round); err != nil {
		return nil, nil, err
	} else if !ok {
		return nil, nil, n.refuse(round, nil, "this worker did not take part in round %d to its end (no unmask answered)", round)
	}
	if spec != "" && spec != a.ModelSpec {
		return nil, nil, n.refuse(round, nil, "model spec %q is not the spec %q announced for round %d", spec, a.ModelSpec, round)
	}
	return a, nil, nil
}

// EvaluateSpec evaluates params as a model of the given spec on the local
// test split.
func (n *Node) EvaluateSpec(spec string, params []float32) (examples int, loss, accuracy float64, err error) {
	m, err := n.evaluate(spec, params, false)
	return m.Examples, m.Loss, m.Accuracy, err
}

// evaluateReport is EvaluateSpec plus, for a two-class model, the
// confusion matrix at the argmax decision and the histograms of P(class 1)
// of the positive and negative test examples.
func (n *Node) evaluateReport(spec string, params []float32) (wire.Metrics, error) {
	return n.evaluate(spec, params, true)
}

// evaluate is EvaluateSpec, with the two-class report when binary is set
// (the trainer reports loss and accuracy only). The report comes from the
// same forward pass under the same hold of the evaluation network: two
// passes with the lock released between them could see another
// evaluation's parameters.
func (n *Node) evaluate(spec string, params []float32, binary bool) (wire.Metrics, error) {
	sp, err := n.parseSpec(spec)
	if err != nil {
		return wire.Metrics{}, fmt.Errorf("worker %s: evaluate: %w", n.cfg.Name, err)
	}
	if sp.NumParams() != len(params) {
		return wire.Metrics{}, fmt.Errorf("worker %s: evaluate: model %q has %d parameters, got %d", n.cfg.Name, spec, sp.NumParams(), len(params))
	}
	if n.ext != nil {
		ex, loss, acc, err := n.evaluateExternal(sp, params)
		return wire.Metrics{Examples: ex, Loss: loss, Accuracy: acc}, err
	}
	n.evalMu.Lock()
	defer n.evalMu.Unlock()
	net, err := n.reuseEvalNet(sp, params)
	if err != nil || n.test.N == 0 {
		return wire.Metrics{}, err
	}
	binary = binary && sp.Classes == 2
	var probs []float32
	var loss, acc float64
	if binary {
		probs = make([]float32, 2*n.test.N)
		loss, acc, err = net.EvaluateProbabilities(n.test.X, n.test.Y, n.test.N, probs)
	} else {
		loss, acc, err = net.EvaluateChecked(n.test.X, n.test.Y, n.test.N)
	}
	if err != nil {
		return wire.Metrics{}, fmt.Errorf("worker %s: evaluate: %w", n.cfg.Name, err)
	}
	m := wire.Metrics{Examples: n.test.N, Loss: loss, Accuracy: acc}
	if binary {
		m.Binary = binaryReport(probs, n.test.Y[:n.test.N])
	}
	return m, nil
}

// reuseEvalNet returns the evaluation network of sp holding params; the
// caller holds evalMu.
func (n *Node) reuseEvalNet(sp model.Spec, params []float32) (*model.Network, error) {
	net, err := reuseNet(n.evalNet, sp)
	if err != nil {
		return nil, err
	}
	n.evalNet = net
	if err := net.SetParams(params); err != nil {
		return nil, fmt.Errorf("worker %s: evaluate: %w", n.cfg.Name, err)
	}
	return net, nil
}

// binaryReport is the confusion matrix at the argmax decision and the
// histograms of P(class 1) of the positive and negative examples, from
// their two-class probabilities.
func binaryReport(probs []float32, y []int32) *wire.BinaryReport {
	var b wire.BinaryReport
	for i, yi := range y {
		p1 := float64(probs[2*i+1])
		pred := probs[2*i+1] > probs[2*i]
		switch {
		case yi == 1 && pred:
			b.TP++
		case yi == 1:
			b.FN++
		case pred:
			b.FP++
		default:
			b.TN++
		}
		if yi == 1 {
			b.Pos[wire.ScoreBin(p1)]++
		} else {
			b.Neg[wire.ScoreBin(p1)]++
		}
	}
	return &b
}

// modelRule applies the policy's model rules to spec with numParams
// parameters (which: "announced" or "planned"): reason, empty when they
// hold, names the broken rule (sent to the coordinator), detail the
// private values behind it (logged only), err the parse error if any.
func (n *Node) modelRule(spec string, numParams int, which string) (reason, detail string, err error) {
	sp, err := n.parseSpec(spec)
	switch {
	case err != nil && n.ext != nil:
		// The layout is public (the announced model's), so the reason
		// names the tensor and both shapes.
		return fmt.Sprintf("trainer %q does not train the %s model: %v", n.ext.Name(), which, err), "", err
	case err != nil:
		return fmt.Sprintf("model %q does not fit the local data", specLabel(spec)), err.Error(), err
	case sp.External() && n.ext == nil:
		return fmt.Sprintf("model %q is an external model (its own tensors) and this worker has no trainer", specLabel(spec)), "", nil
	case n.accepted != nil && !n.accepted[sp.String()]:
		return fmt.Sprintf("model %q is not in policy.accepted_models", specLabel(spec)), fmt.Sprintf("accepted: %v", n.cfg.Policy.AcceptedModels), nil
	case sp.NumParams() != numParams:
		return fmt.Sprintf("model %q on the local data does not have the %s num_params %d", specLabel(spec), which, numParams),
			fmt.Sprintf("%d parameters on the local data", sp.NumParams()), nil
	}
	return "", "", nil
}

// specLabel is a model spec as messages quote it: an external model's
// spec lists every tensor, so it is cut.
func specLabel(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}
