package replica

import (
	"bytes"
	"context"
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

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
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
	for _, h := range referencedBlobs(n.FSM().Studies()) {
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
	d, err := coordinator.NewDriver(cfg, f, rec, reg, coordtest.NewCohort(6, cohortSeed), quietLogger())
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
