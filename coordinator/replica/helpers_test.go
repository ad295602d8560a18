package replica

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/p2p"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// testKey returns a deterministic Ed25519 key for seed.
func testKey(t testing.TB, seed uint64) crypto.PrivKey {
	t.Helper()
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	sk, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(s))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// cluster is an in-process group of replicas, each with its own libp2p
// host on 127.0.0.1 and its own data folder.
type cluster struct {
	t     testing.TB
	hosts []*p2p.Host
	dirs  []string
	nodes []*Node // nil when shut down
	tune  func(c *cluster, i int, cfg *Config)
}

// testTimings are the short Raft timeouts of the tests.
func testTimings(c *Config) {
	c.HeartbeatTimeout = 300 * time.Millisecond
	c.ElectionTimeout = 300 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	c.CommitTimeout = 20 * time.Millisecond
	c.TransportTimeout = 20 * time.Second
	c.RestartDelay = 100 * time.Millisecond
	c.NoSync = true
}

// newCluster starts n replicas. tune adjusts each replica's Config.
func newCluster(t testing.TB, n int, tune func(c *cluster, i int, cfg *Config)) *cluster {
	t.Helper()
	placeholder := ma.StringCast("/ip4/127.0.0.1/tcp/1")
	members := make([]p2p.Member, n)
	keys := make([]crypto.PrivKey, n)
	for i := range n {
		keys[i] = testKey(t, uint64(100+i))
		id, err := peer.IDFromPrivateKey(keys[i])
		if err != nil {
			t.Fatal(err)
		}
		members[i] = p2p.Member{Name: fmt.Sprintf("coord%d", i), ID: id, Role: p2p.RoleCoordinator, Addrs: []ma.Multiaddr{placeholder}}
	}
	// A worker identity, so that the federation is realistic.
	wid, _ := peer.IDFromPrivateKey(testKey(t, 999))
	members = append(members, p2p.Member{Name: "worker", ID: wid, Role: p2p.RoleWorker})
	fed0, err := p2p.NewFederation("test", members, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, hosts: make([]*p2p.Host, n), dirs: make([]string, n), nodes: make([]*Node, n), tune: tune}
	for i := range n {
		h, err := p2p.NewHost(context.Background(), p2p.HostConfig{Identity: keys[i], ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Federation: fed0})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		c.hosts[i] = h
		c.dirs[i] = t.TempDir()
		members[i].Addrs = h.AddrInfo().Addrs
	}
	fed, err := p2p.NewFederation("test", members, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range c.hosts {
		if err := h.SetFederation(fed); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		c.start(i)
	}
	t.Cleanup(c.shutdownAll)
	return c
}

func (c *cluster) config(i int) Config {
	cfg := Config{Dir: c.dirs[i], Host: c.hosts[i], Logger: quietLogger()}
	testTimings(&cfg)
	if c.tune != nil {
		c.tune(c, i, &cfg)
	}
	return cfg
}

// start opens replica i from its data folder on its host.
func (c *cluster) start(i int) *Node {
	c.t.Helper()
	n, err := Open(c.config(i))
	if err != nil {
		c.t.Fatalf("replica %d: %v", i, err)
	}
	c.nodes[i] = n
	return n
}

// stop shuts replica i down (its host stays up, its data folder stays).
func (c *cluster) stop(i int) {
	c.t.Helper()
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Shutdown(); err != nil {
		c.t.Errorf("shutdown replica %d: %v", i, err)
	}
	c.nodes[i] = nil
}

func (c *cluster) shutdownAll() {
	for i := range c.nodes {
		c.stop(i)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leader waits until exactly one running replica leads and the others
// that run agree on it, and returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	idx := -1
	waitFor(c.t, "a leader", 20*time.Second, func() bool {
		idx = -1
		for i, n := range c.nodes {
			if n != nil && n.IsLeader() {
				if idx >= 0 {
					return false
				}
				idx = i
			}
		}
		if idx < 0 {
			return false
		}
		for _, n := range c.nodes {
			if n != nil && n.Leader() != c.nodes[idx].ID() {
				return false
			}
		}
		return true
	})
	return idx
}

// snapshotBytes returns a replica's coordinator FSM snapshot.
func snapshotBytes(t testing.TB, n *Node) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := n.FSM().Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// converged waits until every running replica has the same FSM snapshot
// as replica ref and has applied everything it has.
func (c *cluster) converged(ref int) {
	c.t.Helper()
	waitFor(c.t, "replicas to converge", 30*time.Second, func() bool {
		want := snapshotBytes(c.t, c.nodes[ref])
		for _, n := range c.nodes {
			if n != nil && !bytes.Equal(snapshotBytes(c.t, n), want) {
				return false
			}
		}
		return true
	})
}

// checkModels checks that replica n serves every committed model and
// optimizer state with the bytes of ref.
func checkModels(t testing.TB, n *Node, ref coordinator.ModelStore) {
	t.Helper()
	st := n.FSM().State()
	if len(st.Models) == 0 {
		t.Fatal("no model committed")
	}
	for _, h := range referencedBlobs(&st) {
		got, err := n.Registry().GetBytes(h)
		if err != nil {
			t.Fatalf("replica %s: %v", n.ID(), err)
		}
		want, err := ref.GetBytes(h)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("replica %s: blob %s differs", n.ID(), h)
		}
	}
	if err := coordinator.VerifyLedger(st.Ledger); err != nil {
		t.Fatalf("replica %s: %v", n.ID(), err)
	}
}

// ---- the in-memory cohort (same approach as the coordinator package's
// driver tests: secagg.Client instances driven directly) ----

type memWorker struct {
	id      coordinator.WorkerID
	weight  float64
	clients map[uint64]*secagg.Client
	dims    map[uint64]int
}

// memCohort reaches in-memory workers. gate, when set, holds every call of
// stage gateStage (in any round ≥ 1) until release is closed or the call's
// ctx ends, and signals reached the first time.
type memCohort struct {
	mu      sync.Mutex
	seed    uint64
	workers map[coordinator.WorkerID]*memWorker
	online  []coordinator.WorkerID
	unmask  map[uint64]map[coordinator.WorkerID][][]uint32
	calls   map[secagg.Stage]int

	gated     bool
	gateStage secagg.Stage
	reached   chan struct{}
	release   chan struct{}
	once      sync.Once
}

func newMemCohort(n int, seed uint64) *memCohort {
	c := &memCohort{seed: seed, workers: map[coordinator.WorkerID]*memWorker{},
		unmask: map[uint64]map[coordinator.WorkerID][][]uint32{}, calls: map[secagg.Stage]int{}}
	for i := range n {
		id := coordinator.WorkerID(fmt.Sprintf("w%02d", i))
		c.workers[id] = &memWorker{id: id, weight: float64(10 + 7*i), clients: map[uint64]*secagg.Client{}, dims: map[uint64]int{}}
		c.online = append(c.online, id)
	}
	return c
}

// gate holds the calls of stage s until the returned release func runs.
func (c *memCohort) gate(s secagg.Stage) (reached <-chan struct{}, release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gated, c.gateStage = true, s
	c.reached, c.release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	return c.reached, func() { once.Do(func() { close(c.release) }) }
}

func (c *memCohort) Online() []coordinator.WorkerID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.online)
}

func (c *memCohort) enter(ctx context.Context, w coordinator.WorkerID, s secagg.Stage) (*memWorker, error) {
	c.mu.Lock()
	c.calls[s]++
	wk, ok := c.workers[w]
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

// update is the worker's seeded update for round r, in [-0.5, 0.5).
func (c *memCohort) update(w coordinator.WorkerID, r uint64, n int) []float32 {
	seed := sha256.Sum256(fmt.Appendf(nil, "update/%d/%s/%d", c.seed, w, r))
	rng := rand.New(rand.NewPCG(c.seed, binary.BigEndian.Uint64(seed[:8])))
	u := make([]float32, n)
	for i := range u {
		u[i] = float32(rng.Float64() - 0.5)
	}
	return u
}

func (c *memCohort) Advertise(ctx context.Context, w coordinator.WorkerID, a *coordinator.Announce) (secagg.AdvertiseKeys, error) {
	wk, err := c.enter(ctx, w, secagg.StageAdvertise)
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
		wk.dims[a.Round] = a.NumParams
	}
	c.mu.Unlock()
	return cl.Advertise()
}

func (c *memCohort) ShareKeys(ctx context.Context, w coordinator.WorkerID, kb secagg.KeyBroadcast) ([]secagg.EncryptedShare, error) {
	wk, err := c.enter(ctx, w, secagg.StageShareKeys)
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

func (c *memCohort) MaskedInput(ctx context.Context, w coordinator.WorkerID, sb secagg.ShareBundle) (secagg.MaskedInput, error) {
	wk, err := c.enter(ctx, w, secagg.StageMaskedInput)
	if err != nil {
		return secagg.MaskedInput{}, err
	}
	cl, err := c.client(wk, sb.Round)
	if err != nil {
		return secagg.MaskedInput{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return cl.MaskedInput(sb.Shares, c.update(w, sb.Round, wk.dims[sb.Round]), wk.weight)
}

func (c *memCohort) Unmask(ctx context.Context, w coordinator.WorkerID, req secagg.UnmaskRequest) (secagg.UnmaskResponse, error) {
	wk, err := c.enter(ctx, w, secagg.StageUnmask)
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

func (c *memCohort) Evaluate(ctx context.Context, w coordinator.WorkerID, r uint64, h [32]byte) (coordinator.Metrics, error) {
	wk, err := c.enter(ctx, w, secagg.StageDone)
	if err != nil {
		return coordinator.Metrics{}, err
	}
	acc := float64(h[0]) / 255
	return coordinator.Metrics{Examples: int(wk.weight), Loss: 1 - acc, Accuracy: acc}, nil
}

// distinctUnmaskSets fails if any worker was asked two survivor sets.
func (c *memCohort) distinctUnmaskSets(t testing.TB) {
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

// testDriverConfig is a small logreg federation: 10 parameters.
func testDriverConfig(rounds int) coordinator.Config {
	c := coordinator.DefaultConfig()
	c.Model, c.InC, c.InH, c.InW, c.Classes = "logreg", 1, 1, 4, 2
	c.Rounds = rounds
	c.WorkersPerRound = 5
	c.MinWorkers = 3
	c.MaxWeight = 100
	c.Seed = 7
	c.StageTimeout = 20 * time.Second
	c.PollInterval = 50 * time.Millisecond
	return c
}

// recorder is a single-node Replicator that keeps every committed command.
type recorder struct {
	fsm  *coordinator.FSM
	mu   sync.Mutex
	cmds [][]byte
}

func (r *recorder) Apply(ctx context.Context, b []byte) error {
	if err := r.fsm.Apply(b); err != nil {
		return err
	}
	r.mu.Lock()
	r.cmds = append(r.cmds, slices.Clone(b))
	r.mu.Unlock()
	return nil
}

func (r *recorder) IsLeader() bool { return true }

// recordRun runs the driver on one node and returns the commands it
// committed, the registry holding the models, and the final FSM.
func recordRun(t testing.TB, cfg coordinator.Config, cohortSeed uint64) ([][]byte, *coordinator.MemRegistry, *coordinator.FSM) {
	t.Helper()
	f := coordinator.NewFSM()
	rec := &recorder{fsm: f}
	reg := coordinator.NewMemRegistry()
	d, err := coordinator.NewDriver(cfg, f, rec, reg, newMemCohort(6, cohortSeed), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rec.cmds, reg, f
}

// applyRecorded applies a recorded command on node n, first putting the
// blobs a ModelCommitted names into n's registry (as the driver would).
func applyRecorded(ctx context.Context, n *Node, cmd []byte, reg coordinator.ModelStore) error {
	c, err := coordinator.DecodeCommand(cmd)
	if err != nil {
		return err
	}
	if c.ModelCommitted != nil {
		for _, h := range neededBlobs(c.ModelCommitted) {
			b, err := reg.GetBytes(h)
			if err != nil {
				return err
			}
			if _, err := n.Registry().PutBytes(b); err != nil {
				return err
			}
		}
	}
	return n.Apply(ctx, cmd)
}
