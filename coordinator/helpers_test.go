package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

// memWorker is a worker of the in-memory cohort: a secagg.Client per round
// and a fixed, seeded update.
type memWorker struct {
	id      WorkerID
	weight  float64
	clients map[uint64]*secagg.Client
}

// memCohort is the in-memory Cohort of the tests: secagg.Client instances
// driven directly. drop[round][worker] = stage from which the worker fails.
type memCohort struct {
	mu      sync.Mutex
	seed    uint64
	workers map[WorkerID]*memWorker
	online  []WorkerID
	drop    map[uint64]map[WorkerID]secagg.Stage
	// block makes a dropped worker block until ctx ends instead of
	// failing at once.
	block bool
	// updates[round][worker] is the update the worker masked.
	updates map[uint64]map[WorkerID][]float32
	// unmask[round][worker] lists the survivor sets asked of the worker.
	unmask map[uint64]map[WorkerID][][]uint32
	calls  map[secagg.Stage]int
}

func newMemCohort(n int, seed uint64) *memCohort {
	c := &memCohort{seed: seed, workers: map[WorkerID]*memWorker{}, drop: map[uint64]map[WorkerID]secagg.Stage{},
		updates: map[uint64]map[WorkerID][]float32{}, unmask: map[uint64]map[WorkerID][][]uint32{}, calls: map[secagg.Stage]int{}}
	for i := range n {
		id := WorkerID(fmt.Sprintf("w%02d", i))
		c.workers[id] = &memWorker{id: id, weight: float64(10 + 7*i), clients: map[uint64]*secagg.Client{}}
		c.online = append(c.online, id)
	}
	return c
}

func (c *memCohort) dropAt(r uint64, w WorkerID, s secagg.Stage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.drop[r] == nil {
		c.drop[r] = map[WorkerID]secagg.Stage{}
	}
	c.drop[r][w] = s
}

func (c *memCohort) Online() []WorkerID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.online)
}

var errDropped = errors.New("worker dropped out")

// enter counts the call and returns the worker or the dropout error.
func (c *memCohort) enter(ctx context.Context, w WorkerID, r uint64, s secagg.Stage) (*memWorker, error) {
	c.mu.Lock()
	c.calls[s]++
	wk, ok := c.workers[w]
	ds, dropped := c.drop[r][w]
	block := c.block
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown worker %s", w)
	}
	if dropped && s >= ds {
		if block {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, errDropped
	}
	return wk, nil
}

func (c *memCohort) client(w *memWorker, r uint64) (*secagg.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := w.clients[r]
	if !ok {
		return nil, fmt.Errorf("worker %s has no client for round %d", w.id, r)
	}
	return cl, nil
}

func (c *memCohort) Advertise(ctx context.Context, w WorkerID, a *Announce) (secagg.AdvertiseKeys, error) {
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
		// The update: seeded values in [-0.5, 0.5).
		rng := rand.New(rand.NewPCG(c.seed, binary.BigEndian.Uint64(seed[:8])))
		u := make([]float32, a.NumParams)
		for i := range u {
			u[i] = float32(rng.Float64() - 0.5)
		}
		if c.updates[a.Round] == nil {
			c.updates[a.Round] = map[WorkerID][]float32{}
		}
		c.updates[a.Round][w] = u
	}
	c.mu.Unlock()
	return cl.Advertise()
}

func (c *memCohort) ShareKeys(ctx context.Context, w WorkerID, kb secagg.KeyBroadcast) ([]secagg.EncryptedShare, error) {
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

func (c *memCohort) MaskedInput(ctx context.Context, w WorkerID, sb secagg.ShareBundle) (secagg.MaskedInput, error) {
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
	return cl.MaskedInput(sb.Shares, c.updates[sb.Round][w], wk.weight)
}

func (c *memCohort) Unmask(ctx context.Context, w WorkerID, req secagg.UnmaskRequest) (secagg.UnmaskResponse, error) {
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
		c.unmask[req.Round] = map[WorkerID][][]uint32{}
	}
	c.unmask[req.Round][w] = append(c.unmask[req.Round][w], slices.Clone(req.Survivors))
	return cl.Unmask(req)
}

func (c *memCohort) Evaluate(ctx context.Context, w WorkerID, r uint64, h [32]byte) (Metrics, error) {
	wk, err := c.enter(ctx, w, r, secagg.StageDone)
	if err != nil {
		return Metrics{}, err
	}
	// A fake evaluation: deterministic from the model hash and worker.
	acc := float64(h[0]) / 255
	return Metrics{Examples: int(wk.weight), Loss: 1 - acc, Accuracy: acc}, nil
}

// distinctUnmaskSets fails if any worker was asked two survivor sets.
func (c *memCohort) distinctUnmaskSets(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for r, m := range c.unmask {
		for w, sets := range m {
			for _, s := range sets[1:] {
				if !slices.Equal(s, sets[0]) {
					t.Errorf("round %d: worker %s asked to unmask %v and %v", r, w, sets[0], s)
				}
			}
		}
	}
}

// testConfig is a small logreg federation: 10 parameters.
func testConfig() Config {
	c := DefaultConfig()
	c.Model, c.InC, c.InH, c.InW, c.Classes = "logreg", 1, 1, 4, 2
	c.Rounds = 2
	c.WorkersPerRound = 5
	c.MinWorkers = 3
	c.MaxWeight = 100
	c.Seed = 7
	return c
}

// recorder is a Replicator that applies to an FSM, keeps every committed
// command, and "crashes" (returns errCrash after applying) when crashAfter
// says so.
type recorder struct {
	fsm        *FSM
	mu         sync.Mutex
	cmds       [][]byte
	crashAfter func(Command) bool
}

var errCrash = errors.New("leader crashed")

func (r *recorder) Apply(ctx context.Context, b []byte) error {
	if err := r.fsm.Apply(b); err != nil {
		return err
	}
	r.mu.Lock()
	r.cmds = append(r.cmds, slices.Clone(b))
	r.mu.Unlock()
	c, _ := DecodeCommand(b)
	if r.crashAfter != nil && r.crashAfter(c) {
		r.crashAfter = nil
		return errCrash
	}
	return nil
}

func (r *recorder) IsLeader() bool { return true }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestDriver(t *testing.T, cfg Config, fsm *FSM, repl Replicator, reg ModelStore, c Cohort) *Driver {
	t.Helper()
	d, err := NewDriver(cfg, fsm, repl, reg, c, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
