package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation"
	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/modelfile"
	"github.com/sovereign-fl/sovereign/trainer"
)

// RoundMetrics is one row of metrics.csv.
type RoundMetrics struct {
	Round    int     `json:"round"`
	Accuracy float64 `json:"accuracy"` // global model on the held-out test set
	Loss     float64 `json:"loss"`     // held-out cross-entropy
	// LocalAccuracy is the example-weighted accuracy of the global model on
	// the local test splits of the round's participants (federated evaluation).
	LocalAccuracy float64 `json:"local_accuracy"`
	TrainLoss     float64 `json:"train_loss"` // mean local training loss
	Clients       int     `json:"clients"`    // updates aggregated
	Sampled       int     `json:"sampled"`
	Dropped       int     `json:"dropped"`
	Rejected      int     `json:"rejected"`
	Attempts      int     `json:"attempts"` // samples tried (secure rounds retry when too many vanish)
	Seconds       float64 `json:"seconds"`  // wall time of the round
	Epsilon       float64 `json:"epsilon"`  // privacy spent so far (NaN when DP is off)
	// With two classes: ROC AUC (NaN otherwise, or when the test set has
	// one class only) and the confusion matrix of the global model on the
	// held-out test set (class 1 is positive).
	AUC float64 `json:"auc"`
	TP  int     `json:"tp"`
	FP  int     `json:"fp"`
	TN  int     `json:"tn"`
	FN  int     `json:"fn"`
}

// Summary is summary.json.
type Summary struct {
	FinalAccuracy  float64 `json:"final_accuracy"`
	BestAccuracy   float64 `json:"best_accuracy"`
	FinalLoss      float64 `json:"final_loss"`
	RoundsRun      int     `json:"rounds_run"`
	RoundsToTarget *int    `json:"rounds_to_target"`
	WallSeconds    float64 `json:"wall_seconds"`
	// Interrupted is true when the run was stopped (SIGINT) before its
	// last round; the other figures are those of the rounds completed.
	Interrupted   bool     `json:"interrupted"`
	Epsilon       *float64 `json:"epsilon"`
	DPOrder       *float64 `json:"dp_order,omitempty"`
	Parameters    int      `json:"parameters"`
	TrainExamples int      `json:"train_examples"`
	TestExamples  int      `json:"test_examples"`
	Config        Config   `json:"config"`
}

// Result is what Run returns: the per-round metrics, the summary and the
// final global parameters.
type Result struct {
	Rounds  []RoundMetrics
	Summary Summary
	Params  []float32
	// Spec is the architecture of Params; Standardize the z-score map the
	// data set applied to its features (nil if none).
	Spec        model.Spec
	Standardize *modelfile.Standardization
	// Stats are the federation's feature statistics of a --schema run
	// (written to StatsFile, the transform of new data), else nil.
	Stats *data.Stats
	// SchemaText is the --schema file's text, carried by the model file.
	SchemaText string
}

// Progress receives each round's metrics as the run goes (may be nil).
type Progress func(m RoundMetrics, elapsed, eta time.Duration)

// federation is the state of one run.
type federation struct {
	cfg      Config
	spec     model.Spec
	train    *data.Dataset
	test     *data.Dataset
	clients  []data.Client
	attack   AttackSpec
	attacker map[int]bool
	strategy *aggregation.Strategy
	pool     chan *model.Network
	acct     *dp.Accountant
	// trainers, with --trainer, pools the trainer processes (procs) that
	// train the clients instead of pooled networks (trainer.go).
	trainers chan *trainer.Process
	procs    []*trainer.Process
}

// seedFor derives an independent 64-bit seed for one purpose of one round
// from the run's seed (SplitMix64 finaliser), so every random choice
// depends on --seed only and not on scheduling.
func seedFor(seed int64, parts ...uint64) int64 {
	z := uint64(seed)
	for _, p := range parts {
		z += 0x9e3779b97f4a7c15 + p
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
	}
	return int64(z)
}

// Purposes of derived seeds; values reach results, don't renumber.
const (
	seedPartition uint64 = iota + 1
	seedSample
	seedTrain
	seedDrop
	seedAttack
	seedInit
	seedAttackers
	seedNoise
	seedSecAgg
)

// seedBytes derives a 32-byte seed (four seedFor words) for one purpose.
func seedBytes(seed int64, parts ...uint64) [32]byte {
	var b [32]byte
	for i := range 4 {
		z := uint64(seedFor(seed, append(parts, uint64(i))...))
		for j := range 8 {
			b[i*8+j] = byte(z >> (8 * j))
		}
	}
	return b
}

func newRNG(s int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(s), uint64(s)^0x5851f42d4c957f2d))
}

// Run executes the simulated federation described by cfg. It writes nothing
// to disk; see WriteOutputs.
func Run(ctx context.Context, cfg Config, progress Progress) (*Result, error) {
	p, err := Prepare(cfg)
	if err != nil {
		return nil, err
	}
	return p.Run(ctx, progress)
}

// Prepared is a simulation whose inputs have been checked: the
// configuration validated, the data loaded (and, with a schema, the
// federation statistics computed), the partition drawn, the model built and
// any initial model file read. Nothing has been trained yet.
type Prepared struct {
	cfg         Config
	train, test *data.Dataset
	stats       *data.Stats
	schemaText  string
	f           *federation
	global      *model.Network
}

// Prepare checks every input of cfg, loading the data set it names, so
// that a caller can report a bad input before announcing a run.
func Prepare(cfg Config) (*Prepared, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Schema != "" {
		train, test, st, err := LoadWithSchema(cfg)
		if err != nil {
			return nil, err
		}
		p, err := PrepareOn(cfg, train, test)
		if p != nil {
			p.stats = st
			if b, rerr := os.ReadFile(cfg.Schema); rerr == nil {
				p.schemaText = string(b)
			}
		}
		return p, err
	}
	train, test, err := data.Load(cfg.Dataset)
	if err != nil {
		return nil, fmt.Errorf("--dataset %q: %w", cfg.Dataset, err)
	}
	return PrepareOn(cfg, train, test)
}

// PrepareOn is Prepare on data already loaded (cfg.Dataset is then only
// recorded).
func PrepareOn(cfg Config, train, test *data.Dataset) (*Prepared, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if test == nil || test.N == 0 {
		// Every round evaluates the global model on the held-out split;
		// with none there is no accuracy to report (or to target).
		return nil, fmt.Errorf("--dataset %s: no held-out test examples (a csv's test=0?): the simulator evaluates the global model on them every round; keep test above 0 (default %g)", cfg.Dataset, data.DefaultTestFrac)
	}
	f, err := newFederation(cfg, train, test)
	if err != nil {
		return nil, err
	}
	global, err := model.New(f.spec)
	if err != nil {
		f.close()
		return nil, fmt.Errorf("--model %q: %w", cfg.Model, err)
	}
	global.Init(seedFor(cfg.Seed, seedInit))
	if cfg.Init != "" {
		p, err := modelfile.LoadFor(cfg.Init, f.spec)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("--init: %w", err)
		}
		copy(global.Params(), p)
	}
	// Run closes f (its trainer processes, with --trainer).
	return &Prepared{cfg: cfg, train: train, test: test, f: f, global: global}, nil
}

// RunOn is Run on data already loaded (cfg.Dataset is then only recorded).
func RunOn(ctx context.Context, cfg Config, train, test *data.Dataset, progress Progress) (*Result, error) {
	p, err := PrepareOn(cfg, train, test)
	if err != nil {
		return nil, err
	}
	return p.Run(ctx, progress)
}

// Run trains the prepared federation; call it once. When ctx ends first,
// the result holds the rounds completed so far, Summary.Interrupted is set
// and the error wraps ctx's; Summary.WallSeconds is the time actually run
// either way.
func (p *Prepared) Run(ctx context.Context, progress Progress) (res *Result, err error) {
	start := time.Now()
	cfg, f, global, train, test := p.cfg, p.f, p.global, p.train, p.test
	defer f.close()
	params := global.Params()

	res = &Result{Summary: Summary{
		Parameters:    len(params),
		TrainExamples: train.N,
		TestExamples:  test.N,
		Config:        cfg,
	}, Spec: f.spec, Stats: p.stats, SchemaText: p.schemaText}
	if train.StdMean != nil {
		res.Standardize = &modelfile.Standardization{Mean: train.StdMean, Scale: train.StdScale}
	}
	defer func() {
		res.Summary.WallSeconds = time.Since(start).Seconds()
		if err != nil && ctx.Err() != nil {
			res.Summary.Interrupted = true
		}
		res.Params = slices.Clone(params)
	}()
	for r := 1; r <= cfg.Rounds; r++ {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("round %d: %w", r, err)
		}
		t0 := time.Now()
		m, err := f.round(ctx, r, params)
		if err != nil {
			return res, fmt.Errorf("round %d: %w", r, err)
		}
		m.AUC = math.NaN()
		if f.spec.Classes == 2 {
			if err := binaryMetrics(global, test, &m.RoundMetrics); err != nil {
				return res, fmt.Errorf("round %d: %w", r, err)
			}
		} else {
			m.Loss, m.Accuracy = global.Evaluate(test.X, test.Y, test.N)
		}
		m.LocalAccuracy = f.localAccuracy(global, m.participants)
		m.Seconds = time.Since(t0).Seconds()
		m.Epsilon = math.NaN()
		if f.acct != nil {
			eps, order, err := f.acct.Epsilon(cfg.DPDelta, dp.DefaultOrders())
			if err != nil {
				return res, fmt.Errorf("round %d: privacy accounting: %w", r, err)
			}
			m.Epsilon = eps
			res.Summary.Epsilon, res.Summary.DPOrder = &eps, &order
		}
		res.Rounds = append(res.Rounds, m.RoundMetrics)
		s := &res.Summary
		s.RoundsRun = r
		s.FinalAccuracy, s.FinalLoss = m.Accuracy, m.Loss
		s.BestAccuracy = max(s.BestAccuracy, m.Accuracy)
		if cfg.Target > 0 && s.RoundsToTarget == nil && m.Accuracy >= cfg.Target {
			rr := r
			s.RoundsToTarget = &rr
		}
		if progress != nil {
			elapsed := time.Since(start)
			eta := time.Duration(float64(elapsed) / float64(r) * float64(cfg.Rounds-r))
			progress(m.RoundMetrics, elapsed, eta)
		}
		if s.RoundsToTarget != nil {
			break
		}
	}
	return res, nil
}

func newFederation(cfg Config, train, test *data.Dataset) (*federation, error) {
	if err := train.Validate(); err != nil {
		return nil, fmt.Errorf("training data: %w", err)
	}
	if err := test.Validate(); err != nil {
		return nil, fmt.Errorf("test data: %w", err)
	}
	if train.Dim != test.Dim {
		return nil, fmt.Errorf("training data has %d features but test data %d", train.Dim, test.Dim)
	}
	spec, err := model.ParseSpec(cfg.Model, train.C, train.H, train.W, max(train.Classes, test.Classes))
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	clients, err := data.Partition(train, cfg.Clients, cfg.Partition, cfg.TestFraction, seedFor(cfg.Seed, seedPartition))
	if err != nil {
		return nil, fmt.Errorf("--partition: %w", err)
	}
	st, err := aggregation.ParseStrategy(cfg.Strategy, cfg.ServerLR)
	if err != nil {
		return nil, fmt.Errorf("--strategy: %w", err)
	}
	attack, _ := ParseAttackers(cfg.Attackers)
	f := &federation{
		cfg: cfg, spec: spec, train: train, test: test, clients: clients,
		attack: attack, attacker: map[int]bool{}, strategy: st,
	}
	// The attackers are a fixed, seeded set of institutions.
	for _, id := range newRNG(seedFor(cfg.Seed, seedAttackers)).Perm(cfg.Clients)[:attack.Count] {
		f.attacker[id] = true
	}
	par := cfg.Parallel
	if par == 0 {
		par = runtime.GOMAXPROCS(0)
	}
	// A model exists only while a client trains: the pool holds one network
	// per concurrent trainer, whatever the number of virtual clients.
	f.pool = make(chan *model.Network, par)
	for range par {
		n, err := model.New(spec)
		if err != nil {
			return nil, fmt.Errorf("--model %q: %w", cfg.Model, err)
		}
		f.pool <- n
	}
	if cfg.DPNoise > 0 {
		f.acct = &dp.Accountant{}
	}
	if cfg.Trainer != "" {
		if err := f.startTrainers(par); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

type roundResult struct {
	RoundMetrics
	participants []int
}

type clientOut struct {
	id     int
	delta  []float32
	weight float64
	loss   float64
	err    error
}

// maxAttempts bounds how often a round whose secure aggregation could not
// complete is retried with a new sample.
const maxAttempts = 3

// round runs one round, retrying with a new sample when secure aggregation
// reports that too many sampled clients vanished.
func (f *federation) round(ctx context.Context, r int, params []float32) (roundResult, error) {
	for attempt := 0; ; attempt++ {
		res, err := f.attempt(ctx, r, attempt, params)
		var re *retryError
		if errors.As(err, &re) && attempt+1 < maxAttempts {
			continue
		}
		res.Attempts = attempt + 1
		return res, err
	}
}

// attempt samples clients, trains them in parallel, injects faults and
// aggregates into params in place.
func (f *federation) attempt(ctx context.Context, r, attempt int, params []float32) (roundResult, error) {
	cfg := f.cfg
	m := cfg.Sampled()
	sampleSeed := seedFor(cfg.Seed, seedSample, uint64(r))
	if attempt > 0 {
		sampleSeed = seedFor(cfg.Seed, seedSample, uint64(r), uint64(attempt))
	}
	sampled := newRNG(sampleSeed).Perm(cfg.Clients)[:m]
	slices.Sort(sampled)

	// Dropout injection: a seeded fraction of the sampled clients vanish.
	// In secure mode they vanish at a random SecAgg+ stage instead.
	dropRNG := newRNG(seedFor(cfg.Seed, seedDrop, uint64(r), uint64(attempt)))
	nDrop := int(math.Round(cfg.Dropout * float64(m)))
	dropped := map[int]bool{}
	for _, i := range dropRNG.Perm(m)[:nDrop] {
		dropped[sampled[i]] = true
	}

	if cfg.Secure && f.trainers == nil && streamSecure {
		// In-process training streams into the protocol: each client
		// trains when SecAgg+ asks for its masked input.
		res := roundResult{RoundMetrics: RoundMetrics{Round: r, Sampled: m}}
		if err := f.secureStreamed(r, params, sampled, dropped, &res); err != nil {
			return res, err
		}
		return res, f.accountRound(m)
	}

	if !cfg.Secure && f.strategy.Streams() && streamPlain {
		res := roundResult{RoundMetrics: RoundMetrics{Round: r, Sampled: m}}
		if err := f.plainStreamed(r, params, sampled, dropped, &res); err != nil {
			return res, err
		}
		return res, f.accountRound(m)
	}

	outs := make([]clientOut, len(sampled))
	var wg sync.WaitGroup
	for i, id := range sampled {
		if dropped[id] && !cfg.Secure {
			outs[i] = clientOut{id: id}
			continue
		}
		wg.Add(1)
		net := <-f.pool
		go func() {
			defer wg.Done()
			defer func() { f.pool <- net }()
			outs[i] = f.trainClient(net, r, id, params, nil)
		}()
	}
	wg.Wait()

	res := roundResult{RoundMetrics: RoundMetrics{Round: r, Sampled: m}}
	var updates []aggregation.Update
	var lossSum, wSum float64
	for _, o := range outs {
		if o.err != nil {
			return res, fmt.Errorf("client %d: %w", o.id, o.err)
		}
		if o.delta == nil {
			continue
		}
		f.attackUpdate(r, o.id, o.delta)
		updates = append(updates, aggregation.Update{Client: clientName(o.id), Delta: o.delta, Weight: o.weight})
		lossSum += o.loss * o.weight
		wSum += o.weight
	}
	if wSum > 0 {
		res.TrainLoss = lossSum / wSum
	}
	for i := range updates {
		f.clipForDP(&updates[i])
	}

	var err error
	if cfg.Secure {
		err = f.secureRound(r, params, updates, len(sampled), dropped, &res)
	} else {
		res.Dropped = len(dropped)
		err = f.plainRound(r, params, updates, &res)
	}
	if err != nil {
		return res, err
	}
	return res, f.accountRound(m)
}

// streamSecure selects secureStreamed for in-process secure rounds (tests
// turn it off to compare with secureRound, which holds every update).
var streamSecure = true

// streamPlain selects plainStreamed for plain rounds of a weighted-mean
// strategy (tests turn it off to compare with plainRound).
var streamPlain = true

// clipForDP is DP-FedAvg's treatment of one update (McMahan et al. 2018)
// when differential privacy is on: clipped to L2 norm C and weighted 1 like
// every client's, so that one client's influence on the sum is at most C.
func (f *federation) clipForDP(u *aggregation.Update) {
	if f.acct == nil {
		return
	}
	dp.ClipL2(u.Delta, f.cfg.DPClip)
	u.Weight = 1
}

// deltaPool is a free list of update buffers of dim values, shared by the
// goroutines of one round: get returns nil when it is empty (trainClient
// then allocates), put ignores a slice of another length.
type deltaPool struct {
	dim  int
	mu   sync.Mutex
	free [][]float32
}

func (p *deltaPool) get() []float32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		d := p.free[n-1]
		p.free = p.free[:n-1]
		return d
	}
	return nil
}

func (p *deltaPool) put(d []float32) {
	if len(d) != p.dim {
		return
	}
	p.mu.Lock()
	p.free = append(p.free, d)
	p.mu.Unlock()
}

// plainStreamed is a plain round of a weighted-mean strategy (FedAvg and
// the FedOpt family) with each update added to the round's running sum
// (aggregation.Stream) once it and every earlier sampled client's are
// done, instead of every sampled client's update being held until all have
// trained (1,000 × 0.8 MB for the 2NN at n = 1,000): at most a window of
// updates exists at a time, their buffers reused. The order of additions,
// the checks, the attacks, the clipping and the noise are those of
// attempt and plainRound, so the run is the same bit for bit.
func (f *federation) plainStreamed(r int, params []float32, sampled []int, dropped map[int]bool, res *roundResult) error {
	// Updates trained ahead of the next one to add: enough to keep every
	// pooled network busy while the oldest finishes.
	window := 2*cap(f.pool) + 2
	bufs := &deltaPool{dim: len(params)}
	results := make([]chan clientOut, len(sampled))
	for i := range results {
		results[i] = make(chan clientOut, 1)
	}
	slots := make(chan struct{}, window)
	go func() {
		for i, id := range sampled {
			slots <- struct{}{}
			if dropped[id] {
				results[i] <- clientOut{id: id}
				continue
			}
			net := <-f.pool
			go func() {
				o := f.trainClient(net, r, id, params, bufs.get())
				f.pool <- net
				results[i] <- o
			}()
		}
	}()
	st := aggregation.NewStream(len(params), bufs.put)
	var firstErr error
	var lossSum, wSum float64
	var participants []int
	// Every result is received, also after an error, so that no training
	// goroutine is left blocked.
	for i := range sampled {
		o := <-results[i]
		<-slots
		if firstErr == nil && o.err != nil {
			firstErr = fmt.Errorf("client %d: %w", o.id, o.err)
		}
		if firstErr != nil || o.delta == nil {
			bufs.put(o.delta)
			continue
		}
		f.attackUpdate(r, o.id, o.delta)
		lossSum += o.loss * o.weight
		wSum += o.weight
		u := aggregation.Update{Client: clientName(o.id), Delta: o.delta, Weight: o.weight}
		f.clipForDP(&u)
		// plainRound counts every update as a participant without DP and
		// the valid ones with it.
		if err := st.Add(u); err == nil || f.acct == nil {
			participants = append(participants, o.id)
		}
	}
	if firstErr != nil {
		return firstErr
	}
	if wSum > 0 {
		res.TrainLoss = lossSum / wSum
	}
	res.Dropped = len(dropped)
	res.Rejected = len(st.Rejected())
	res.Clients = st.Valid()
	res.participants = participants
	if f.acct == nil {
		_, err := f.strategy.RoundStream(params, st)
		return err
	}
	if st.Valid() == 0 {
		return errors.New("no valid update to aggregate")
	}
	sum := make([]float32, len(params))
	total, err := st.Sum(sum)
	if err != nil {
		return err
	}
	return f.finishCentralDP(r, params, sum, total)
}

// accountRound adds one round with m sampled clients to the privacy
// accountant (when differential privacy is on).
func (f *federation) accountRound(m int) error {
	if f.acct == nil {
		return nil
	}
	if err := f.acct.Step(float64(m)/float64(f.cfg.Clients), f.cfg.DPNoise, 1); err != nil {
		return fmt.Errorf("privacy accounting: %w", err)
	}
	return nil
}

// plainRound aggregates in the clear, adding central DP noise if on.
func (f *federation) plainRound(r int, params []float32, updates []aggregation.Update, res *roundResult) error {
	if f.acct == nil {
		rejected, err := f.strategy.Round(params, updates)
		res.Rejected = len(rejected)
		res.Clients = len(updates) - len(rejected)
		res.participants = participantIDs(updates)
		if err != nil {
			return err
		}
		return nil
	}
	valid, rejected := aggregation.Validate(updates, len(params))
	res.Rejected = len(rejected)
	res.Clients = len(valid)
	res.participants = participantIDs(valid)
	if len(valid) == 0 {
		return errors.New("no valid update to aggregate")
	}
	// The updates carry weight 1 (see attempt), so this is their plain sum.
	sum := make([]float32, len(params))
	total, err := aggregation.WeightedSum(sum, valid)
	if err != nil {
		return err
	}
	return f.finishCentralDP(r, params, sum, total)
}

// finishCentralDP is the end of a plain round with differential privacy:
// the sum of clipped updates, noised, divided by their count and applied.
func (f *federation) finishCentralDP(r int, params, sum []float32, total float64) error {
	// Central DP: the aggregator adds N(0, σ²C²) to the sum of clipped updates.
	if err := dp.AddGaussian(sum, dp.CentralStd(f.cfg.DPNoise, f.cfg.DPClip), newRNG(seedFor(f.cfg.Seed, seedNoise, uint64(r)))); err != nil {
		return fmt.Errorf("central noise: %w", err)
	}
	inv := float32(1 / total)
	for j := range sum {
		sum[j] *= inv
	}
	return f.strategy.Server.Step(params, sum)
}

func clientName(id int) string { return fmt.Sprintf("client-%04d", id) }

// clientIndex inverts clientName.
func clientIndex(name string) int {
	var id int
	fmt.Sscanf(name, "client-%d", &id)
	return id
}

func participantIDs(updates []aggregation.Update) []int {
	ids := make([]int, len(updates))
	for i, u := range updates {
		ids[i] = clientIndex(u.Client)
	}
	return ids
}

// trainClient runs ClientUpdate (McMahan et al. 2017, Algorithm 1) for one
// client on a pooled network and returns its delta Δ = w_local − w_global,
// in buf if it has the model's length (a reused buffer), else in a new
// slice.
func (f *federation) trainClient(net *model.Network, r, id int, global, buf []float32) clientOut {
	c := f.clients[id]
	if len(c.Train) == 0 {
		return clientOut{id: id}
	}
	if f.trainers != nil {
		return f.trainExternal(r, id, global)
	}
	p := net.Params()
	copy(p, global)
	loss, err := model.Train(net, f.train.X, f.train.Y, f.train.Dim, c.Train, model.TrainConfig{
		Epochs:   f.cfg.Epochs,
		Batch:    f.cfg.Batch,
		LR:       float32(f.cfg.LR),
		Momentum: float32(f.cfg.Momentum),
		ProxMu:   f.strategy.ProxMu,
		Seed:     seedFor(f.cfg.Seed, seedTrain, uint64(r), uint64(id)),
	})
	if err != nil {
		return clientOut{id: id, err: err}
	}
	delta := buf
	if len(delta) != len(p) {
		delta = make([]float32, len(p))
	}
	model.Delta(delta, p, global)
	return clientOut{id: id, delta: delta, weight: float64(len(c.Train)), loss: loss}
}

// attackUpdate replaces an attacker's honest delta in place (Blanchard et
// al. 2017 and Fang et al. 2020 use these simple attacks as baselines).
func (f *federation) attackUpdate(r, id int, delta []float32) {
	if !f.attacker[id] {
		return
	}
	switch f.attack.Kind {
	case "signflip":
		s := float32(-f.attack.Param)
		for j := range delta {
			delta[j] *= s
		}
	case "scale":
		s := float32(f.attack.Param)
		for j := range delta {
			delta[j] *= s
		}
	case "noise":
		rng := newRNG(seedFor(f.cfg.Seed, seedAttack, uint64(r), uint64(id)))
		for j := range delta {
			delta[j] = float32(rng.NormFloat64() * f.attack.Param)
		}
	}
}

// localAccuracy is federated evaluation: the global model on each
// participant's local test split, weighted by its size.
func (f *federation) localAccuracy(global *model.Network, ids []int) float64 {
	var correct, total float64
	var x []float32
	var y []int32
	for _, id := range ids {
		idx := f.clients[id].Test
		if len(idx) == 0 {
			continue
		}
		x, y = x[:0], y[:0]
		for _, i := range idx {
			x = append(x, f.train.Row(i)...)
			y = append(y, f.train.Y[i])
		}
		_, acc := global.Evaluate(x, y, len(idx))
		correct += acc * float64(len(idx))
		total += float64(len(idx))
	}
	if total == 0 {
		return math.NaN()
	}
	return correct / total
}

// Fprintf-style progress line used by the CLI.
func FormatProgress(w io.Writer, total int, m RoundMetrics, elapsed, eta time.Duration) {
	eps := ""
	if !math.IsNaN(m.Epsilon) {
		eps = fmt.Sprintf("  ε %.3f", m.Epsilon)
	}
	fmt.Fprintf(w, "round %*d/%d  accuracy %.4f  loss %.4f  clients %d/%d%s  elapsed %s  eta %s\n",
		len(fmt.Sprint(total)), m.Round, total, m.Accuracy, m.Loss, m.Clients, m.Sampled, eps,
		elapsed.Round(100*time.Millisecond), eta.Round(time.Second))
}

// binaryMetrics fills the loss, accuracy, ROC AUC and confusion matrix of
// a two-class model on the test set, from one forward pass.
func binaryMetrics(n *model.Network, test *data.Dataset, m *RoundMetrics) error {
	scores := make([]float64, test.N)
	loss, acc, err := n.EvaluateScores(test.X, test.Y, test.N, scores)
	if err != nil {
		return err
	}
	m.Loss, m.Accuracy = loss, acc
	b, err := model.BinaryMetrics(scores, test.Y)
	if err != nil {
		return err
	}
	m.AUC, m.TP, m.FP, m.TN, m.FN = b.AUC, b.TP, b.FP, b.TN, b.FN
	return nil
}
