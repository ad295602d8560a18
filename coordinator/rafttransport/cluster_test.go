package rafttransport

import (
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/sovereign-fl/sovereign/coordinator/raftstore"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// hashFSM records the SHA-256 of every applied command, so that replicas
// can be compared without keeping 40 MB commands in memory.
type hashFSM struct {
	mu     sync.Mutex
	hashes [][32]byte
}

func (f *hashFSM) Apply(l *raft.Log) any {
	h := sha256.Sum256(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hashes = append(f.hashes, h)
	return len(f.hashes)
}

func (f *hashFSM) list() [][32]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][32]byte(nil), f.hashes...)
}

func (f *hashFSM) Snapshot() (raft.FSMSnapshot, error) {
	return &hashSnap{hashes: f.list()}, nil
}

func (f *hashFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if len(b)%32 != 0 {
		return fmt.Errorf("hashFSM: snapshot of %d bytes is not a multiple of 32", len(b))
	}
	hs := make([][32]byte, len(b)/32)
	for i := range hs {
		copy(hs[i][:], b[32*i:])
	}
	f.mu.Lock()
	f.hashes = hs
	f.mu.Unlock()
	return nil
}

type hashSnap struct{ hashes [][32]byte }

func (s *hashSnap) Persist(sink raft.SnapshotSink) error {
	for _, h := range s.hashes {
		if _, err := sink.Write(h[:]); err != nil {
			sink.Cancel()
			return err
		}
	}
	return sink.Close()
}

func (s *hashSnap) Release() {}

// newHost starts a libp2p host on loopback TCP with Noise, its key drawn
// from seed.
func newHost(t testing.TB, seed uint64) host.Host {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	priv, _, err := crypto.GenerateEd25519Key(rngReader{rng})
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatalf("libp2p host: %v", err)
	}
	return h
}

// rngReader turns a seeded math/rand generator into an io.Reader for key
// generation in tests.
type rngReader struct{ r *rand.Rand }

func (r rngReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.r.Uint32())
	}
	return len(p), nil
}

type replica struct {
	id    raft.ServerID
	host  host.Host
	store *raftstore.Store
	fsm   *hashFSM
	raft  *raft.Raft
	down  bool
}

// stop shuts down raft (which closes the transport), the store and the host.
func (r *replica) stop(t testing.TB) {
	t.Helper()
	if r.down {
		return
	}
	r.down = true
	if err := r.raft.Shutdown().Error(); err != nil {
		t.Errorf("%s: raft shutdown: %v", r.id, err)
	}
	if err := r.store.Close(); err != nil {
		t.Errorf("%s: close store: %v", r.id, err)
	}
	if err := r.host.Close(); err != nil {
		t.Errorf("%s: close host: %v", r.id, err)
	}
}

type clusterOpts struct {
	sync      bool          // badger SyncWrites
	inmem     bool          // raft.InmemStore instead of badger (benchmark baseline)
	timeout   time.Duration // transport timeout
	heartbeat time.Duration // raft HeartbeatTimeout and ElectionTimeout
	lease     time.Duration // raft LeaderLeaseTimeout; 0 means heartbeat/2
}

// makeCluster starts n raft replicas on libp2p hosts, each knowing the
// others' addresses through its peerstore, and bootstraps them.
func makeCluster(t testing.TB, n int, o clusterOpts) []*replica {
	t.Helper()
	dir := t.TempDir()
	var reps []*replica
	var servers []raft.Server
	for i := 0; i < n; i++ {
		h := newHost(t, uint64(100+i))
		id := raft.ServerID(h.ID().String())
		reps = append(reps, &replica{id: id, host: h, fsm: &hashFSM{}})
		servers = append(servers, raft.Server{ID: id, Address: raft.ServerAddress(id), Suffrage: raft.Voter})
	}
	for _, a := range reps {
		for _, b := range reps {
			if a != b {
				a.host.Peerstore().AddAddrs(b.host.ID(), b.host.Addrs(), peerstore.PermanentAddrTTL)
			}
		}
	}
	for _, r := range reps {
		logs, stable, snaps, err := raftstore.OpenAll(filepath.Join(dir, string(r.id)), raftstore.Options{NoSync: !o.sync, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		r.store = logs
		var ls raft.LogStore = logs
		var ss raft.StableStore = stable
		if o.inmem {
			m := raft.NewInmemStore()
			ls, ss = m, m
		}
		trans, err := New(r.host, allowAll, o.timeout, Limits{}, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		if got := trans.LocalAddr(); got != raft.ServerAddress(r.id) {
			t.Fatalf("transport LocalAddr = %q, want the peer ID %q", got, r.id)
		}
		c := raft.DefaultConfig()
		c.LocalID = r.id
		c.HeartbeatTimeout = o.heartbeat
		c.ElectionTimeout = o.heartbeat
		c.LeaderLeaseTimeout = o.heartbeat / 2
		if o.lease > 0 {
			c.LeaderLeaseTimeout = o.lease
		}
		c.CommitTimeout = 5 * time.Millisecond
		c.Logger = hcLogger(quietLogger(), "raft")
		r.raft, err = raft.NewRaft(c, r.fsm, ls, ss, snaps, trans)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := reps[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return reps
}

func stopAll(t testing.TB, reps []*replica) {
	for _, r := range reps {
		r.stop(t)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}

// leader returns the one live replica that is leader, or nil.
func leader(reps []*replica) *replica {
	for _, r := range reps {
		if !r.down && r.raft.State() == raft.Leader {
			return r
		}
	}
	return nil
}

func waitLeader(t testing.TB, reps []*replica) *replica {
	t.Helper()
	var l *replica
	waitFor(t, "a leader", 15*time.Second, func() bool { l = leader(reps); return l != nil })
	return l
}

func command(i int) []byte { return []byte(fmt.Sprintf("command-%04d", i)) }

func TestThreeReplicasOverLibp2p(t *testing.T) {
	reps := makeCluster(t, 3, clusterOpts{timeout: 5 * time.Second, heartbeat: 200 * time.Millisecond})
	defer func() { stopAll(t, reps) }()

	want := func(n int) [][32]byte {
		var out [][32]byte
		for i := 0; i < n; i++ {
			out = append(out, sha256.Sum256(command(i)))
		}
		return out
	}
	agree := func(n int) func() bool {
		w := want(n)
		return func() bool {
			for _, r := range reps {
				if r.down {
					continue
				}
				got := r.fsm.list()
				if len(got) != n {
					return false
				}
				for i := range got {
					if got[i] != w[i] {
						t.Fatalf("%s applied %x at position %d, want %x", r.id, got[i], i, w[i])
					}
				}
			}
			return true
		}
	}
	apply := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			l := waitLeader(t, reps)
			if err := l.raft.Apply(command(i), 5*time.Second).Error(); err != nil {
				t.Fatalf("apply command %d on %s: %v", i, l.id, err)
			}
		}
	}

	old := waitLeader(t, reps)
	apply(0, 50)
	waitFor(t, "3 FSMs to agree on 50 commands", 15*time.Second, agree(50))

	// The raft traffic rode Noise-secured libp2p connections from the
	// leader to each follower (followers need not talk to each other).
	for _, o := range reps {
		if o == old {
			continue
		}
		conns := old.host.Network().ConnsToPeer(o.host.ID())
		if len(conns) == 0 {
			t.Fatalf("leader %s has no connection to %s", old.id, o.id)
		}
		if sec := conns[0].ConnState().Security; sec != noise.ID {
			t.Fatalf("%s to %s: security %q, want %q", old.id, o.id, sec, noise.ID)
		}
	}

	old.stop(t)
	var next *replica
	waitFor(t, "a new leader", 15*time.Second, func() bool { next = leader(reps); return next != nil && next != old })
	apply(50, 70)
	waitFor(t, "2 remaining FSMs to agree on 70 commands", 15*time.Second, agree(70))
}

func TestDialRejectsBadAddress(t *testing.T) {
	h := newHost(t, 7)
	defer h.Close()
	sl, err := NewStreamLayer(h, allowAll, Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	if sl.Addr().String() != h.ID().String() {
		t.Fatalf("Addr = %q, want %q", sl.Addr(), h.ID())
	}
	for addr, want := range map[raft.ServerAddress]string{
		"127.0.0.1:7000":                    "not a libp2p peer ID",
		raft.ServerAddress(h.ID().String()): "this host itself",
	} {
		if _, err := sl.Dial(addr, time.Second); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), string(addr)) {
			t.Errorf("Dial(%q) error = %v, want one naming the address and %q", addr, err, want)
		}
	}
	// A valid peer ID with no known address fails within the timeout.
	other := newHost(t, 8)
	id := other.ID()
	other.Close()
	if _, err := sl.Dial(raft.ServerAddress(id.String()), 2*time.Second); err == nil || !strings.Contains(err.Error(), id.String()) {
		t.Errorf("Dial to unknown peer: err = %v, want one naming %s", err, id)
	}
	if _, err := New(h, allowAll, 0, Limits{}, nil); err == nil {
		t.Error("New with timeout 0 succeeded")
	}
	if _, err := (addrProvider{}).ServerAddr("node-1"); err == nil {
		t.Error("ServerAddr accepted a non-peer-ID server ID")
	}
}

// allowAll admits every peer: these tests exercise the transport itself on
// bare libp2p hosts; the role rule is tested in the replica package.
func allowAll(peer.ID) error { return nil }
