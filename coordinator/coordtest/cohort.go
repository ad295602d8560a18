// Package coordtest is test support for the coordinator and its replicas:
// an in-memory coordinator.Cohort whose workers are secagg.Client instances
// (SecAgg+, Bell et al. 2020; SecAgg, Bonawitz et al. 2017) driven directly,
// with seeded updates, scripted dropouts and a stage gate. It is imported
// only by tests.
package coordtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/wire"
)

// ErrDropped is the error of a call made by a worker scripted to drop out.
var ErrDropped = errors.New("worker dropped out")

// worker is one in-memory worker: a secagg.Client per round.
type worker struct {
	id      coordinator.WorkerID
	weight  float64
	clients map[uint64]*secagg.Client
}

// Cohort is an in-memory coordinator.Cohort. Worker i is "w%02d" with weight
// 10+7i; its update for a round is seeded from the cohort seed, the worker
// and the round, with values in [-0.5, 0.5). Evaluate returns a fake metric
// derived from the model hash.
type Cohort struct {
	mu      sync.Mutex
	seed    uint64
	workers map[coordinator.WorkerID]*worker
	online  []coordinator.WorkerID
	// drop[round][worker] is the stage from which the worker fails.
	drop map[uint64]map[coordinator.WorkerID]secagg.Stage
	// block makes a dropped worker block until ctx ends instead of failing
	// at once.
	block bool
	// updates[round][worker] is the update the worker masked.
	updates map[uint64]map[coordinator.WorkerID][]float32
	// evalTail[round] is what every worker appends to its update in a
	// round with secure evaluation: the evaluation Evaluate would give of
	// the announced model (wire.EvalTail).
	evalTail map[uint64][]float32
	// uniform holds the rounds with DP on (round → true): weights are 1.
	uniform sync.Map
	// unmask[round][worker] lists the survivor sets asked of the worker.
	unmask map[uint64]map[coordinator.WorkerID][][]uint32
	// signed[round][worker] lists the survivor sets it was asked to sign.
	signed map[uint64]map[coordinator.WorkerID][][]uint32
	calls  map[secagg.Stage]int

	// The gate: every call of gateStage waits for release.
	gated     bool
	gateStage secagg.Stage
	reached   chan struct{}
	release   chan struct{}
	once      sync.Once
}

var _ coordinator.Cohort = (*Cohort)(nil)

// NewCohort returns a cohort of n workers, all online, whose updates and
// keys are seeded by seed.
func NewCohort(n int, seed uint64) *Cohort {
	c := &Cohort{seed: seed, workers: map[coordinator.WorkerID]*worker{},
		drop:     map[uint64]map[coordinator.WorkerID]secagg.Stage{},
		updates:  map[uint64]map[coordinator.WorkerID][]float32{},
		evalTail: map[uint64][]float32{},
		unmask:   map[uint64]map[coordinator.WorkerID][][]uint32{},
		signed:   map[uint64]map[coordinator.WorkerID][][]uint32{},
		calls:    map[secagg.Stage]int{}}
	for i := range n {
		id := coordinator.WorkerID(fmt.Sprintf("w%02d", i))
		c.workers[id] = &worker{id: id, weight: float64(10 + 7*i), clients: map[uint64]*secagg.Client{}}
		c.online = append(c.online, id)
	}
	return c
}

// DropAt makes worker w fail every call of round r from stage s on.
func (c *Cohort) DropAt(r uint64, w coordinator.WorkerID, s secagg.Stage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.drop[r] == nil {
		c.drop[r] = map[coordinator.WorkerID]secagg.Stage{}
	}
	c.drop[r][w] = s
}

// BlockDropped makes the calls of dropped workers block until their ctx
// ends (a silent worker) instead of failing at once.
func (c *Cohort) BlockDropped() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.block = true
}

// Gate holds every call of stage s until release runs (or the call's ctx
// ends); reached is closed the first time a call is held.
func (c *Cohort) Gate(s secagg.Stage) (reached <-chan struct{}, release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gated, c.gateStage = true, s
	c.reached, c.release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	return c.reached, func() { once.Do(func() { close(c.release) }) }
}

// Weight is worker w's weight (0 for an unknown worker).
func (c *Cohort) Weight(w coordinator.WorkerID) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if wk, ok := c.workers[w]; ok {
		return wk.weight
	}
	return 0
}

// Update is the update worker w masked in round r (nil if it has none).
func (c *Cohort) Update(r uint64, w coordinator.WorkerID) []float32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.updates[r][w])
}

// Calls is how many calls of stage s the cohort received.
func (c *Cohort) Calls(s secagg.Stage) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[s]
}

// UnmaskAsked is how many workers were asked to unmask in round r.
func (c *Cohort) UnmaskAsked(r uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.unmask[r])
}

// DistinctUnmaskSets fails t if any worker was asked two survivor sets to
// unmask or to sign.
func (c *Cohort) DistinctUnmaskSets(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for what, asked := range map[string]map[uint64]map[coordinator.WorkerID][][]uint32{"unmask": c.unmask, "sign": c.signed} {
		for r, m := range asked {
			for w, sets := range m {
				for _, s := range sets[1:] {
					if !slices.Equal(s, sets[0]) {
						t.Errorf("round %d: worker %s asked to %s %v and %v", r, w, what, sets[0], s)
					}
				}
			}
		}
	}
}

// Online implements coordinator.Cohort.
func (c *Cohort) Online() []coordinator.WorkerID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.online)
}

// enter counts the call, applies the gate and the dropout script, and
// returns the worker.
func (c *Cohort) enter(ctx context.Context, w coordinator.WorkerID, r uint64, s secagg.Stage) (*worker, error) {
	c.mu.Lock()
	c.calls[s]++
	wk, ok := c.workers[w]
	ds, dropped := c.drop[r][w]
	block := c.block
	gated := c.gated && c.gateStage == s
	reached, release := c.reached, c.release
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown worker %s", w)
	}
	if gated {
		c.once.Do(func() { close(reached) })
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if dropped && s >= ds {
		if block {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, ErrDropped
	}
	return wk, nil
}

func (c *Cohort) client(w *worker, r uint64) (*secagg.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := w.clients[r]
	if !ok {
		return nil, fmt.Errorf("worker %s has no client for round %d", w.id, r)
	}
	return cl, nil
}

// Advertise implements coordinator.Cohort. The first call of a round makes
// the worker's client and update for it.
func (c *Cohort) Advertise(ctx context.Context, w coordinator.WorkerID, a *coordinator.Announce) (secagg.AdvertiseKeys, error) {
	wk, err := c.enter(ctx, w, a.Round, secagg.StageAdvertise)
	if err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	c.mu.Lock()
	cl, ok := wk.clients[a.Round]
	if !ok {
		seed := sha256.Sum256(fmt.Appendf(nil, "%d/%s/%d", c.seed, w, a.Round))
		cl, err = secagg.NewClient(a.SecAgg, a.NodeIndex(w), rand.NewChaCha8(seed))
		if err != nil {
			c.mu.Unlock()
			return secagg.AdvertiseKeys{}, err
		}
		wk.clients[a.Round] = cl
		rng := rand.New(rand.NewPCG(c.seed, binary.BigEndian.Uint64(seed[:8])))
		u := make([]float32, a.NumParams)
		for i := range u {
			u[i] = float32(rng.Float64() - 0.5)
		}
		if c.updates[a.Round] == nil {
			c.updates[a.Round] = map[coordinator.WorkerID][]float32{}
		}
		c.updates[a.Round][w] = u
		if a.SecAgg.Dim == a.NumParams+wire.EvalWords {
			acc := float64(a.ModelHash[0]) / 255
			c.evalTail[a.Round] = wire.EvalTail(acc, 1-acc, a.SecAgg.WithDefaults().ClipRange)
		}
		if a.DP.Noise > 0 {
			// DP-FedAvg weights every client 1, as the real worker does.
			c.uniform.Store(a.Round, true)
		}
	}
	c.mu.Unlock()
	return cl.Advertise()
}

// weightIn is wk's weight in round r: 1 with DP on, else its example count.
func (c *Cohort) weightIn(wk *worker, r uint64) float64 {
	if _, ok := c.uniform.Load(r); ok {
		return 1
	}
	return wk.weight
}

// ShareKeys implements coordinator.Cohort.
func (c *Cohort) ShareKeys(ctx context.Context, w coordinator.WorkerID, kb secagg.KeyBroadcast) ([]secagg.EncryptedShare, error) {
	wk, err := c.enter(ctx, w, kb.Round, secagg.StageShareKeys)
	if err != nil {
		return nil, err
	}
	cl, err := c.client(wk, kb.Round)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return cl.ShareKeys(kb.Keys)
}

// MaskedInput implements coordinator.Cohort.
func (c *Cohort) MaskedInput(ctx context.Context, w coordinator.WorkerID, sb secagg.ShareBundle, _ int) (secagg.MaskedInput, error) {
	wk, err := c.enter(ctx, w, sb.Round, secagg.StageMaskedInput)
	if err != nil {
		return secagg.MaskedInput{}, err
	}
	cl, err := c.client(wk, sb.Round)
	if err != nil {
		return secagg.MaskedInput{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.updates[sb.Round][w]
	if tail := c.evalTail[sb.Round]; tail != nil {
		u = append(slices.Clone(u), tail...)
	}
	return cl.MaskedInput(sb.Shares, u, c.weightIn(wk, sb.Round))
}

// ConsistencyCheck implements coordinator.Cohort and records the survivor
// set asked.
func (c *Cohort) ConsistencyCheck(ctx context.Context, w coordinator.WorkerID, req secagg.ConsistencyRequest) (secagg.ConsistencyResponse, error) {
	wk, err := c.enter(ctx, w, req.Round, secagg.StageConsistency)
	if err != nil {
		return secagg.ConsistencyResponse{}, err
	}
	cl, err := c.client(wk, req.Round)
	if err != nil {
		return secagg.ConsistencyResponse{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.signed[req.Round] == nil {
		c.signed[req.Round] = map[coordinator.WorkerID][][]uint32{}
	}
	c.signed[req.Round][w] = append(c.signed[req.Round][w], slices.Clone(req.Survivors))
	return cl.ConsistencyCheck(req)
}

// Unmask implements coordinator.Cohort and records the survivor set asked.
func (c *Cohort) Unmask(ctx context.Context, w coordinator.WorkerID, req secagg.UnmaskRequest) (secagg.UnmaskResponse, error) {
	wk, err := c.enter(ctx, w, req.Round, secagg.StageUnmask)
	if err != nil {
		return secagg.UnmaskResponse{}, err
	}
	cl, err := c.client(wk, req.Round)
	if err != nil {
		return secagg.UnmaskResponse{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unmask[req.Round] == nil {
		c.unmask[req.Round] = map[coordinator.WorkerID][][]uint32{}
	}
	c.unmask[req.Round][w] = append(c.unmask[req.Round][w], slices.Clone(req.Survivors))
	return cl.Unmask(req)
}

// Evaluate implements coordinator.Cohort with a fake evaluation,
// deterministic from the model hash and the worker.
func (c *Cohort) Evaluate(ctx context.Context, w coordinator.WorkerID, r uint64, h [32]byte) (coordinator.Metrics, error) {
	wk, err := c.enter(ctx, w, r, secagg.StageDone)
	if err != nil {
		return coordinator.Metrics{}, err
	}
	acc := float64(h[0]) / 255
	return coordinator.Metrics{Examples: int(wk.weight), Loss: 1 - acc, Accuracy: acc}, nil
}
