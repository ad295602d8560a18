package raftstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// listFSM records every applied command in order.
type listFSM struct {
	mu   sync.Mutex
	cmds [][]byte
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, append([]byte(nil), l.Data...))
	return len(f.cmds)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &listSnap{cmds: append([][]byte(nil), f.cmds...)}, nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	var cmds [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return fmt.Errorf("listFSM: corrupt snapshot")
		}
		cmds = append(cmds, append([]byte(nil), b[k:k+int(n)]...))
		b = b[k+int(n):]
	}
	f.mu.Lock()
	f.cmds = cmds
	f.mu.Unlock()
	return nil
}

func (f *listFSM) list() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.cmds...)
}

type listSnap struct{ cmds [][]byte }

func (s *listSnap) Persist(sink raft.SnapshotSink) error {
	var b []byte
	for _, c := range s.cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	if _, err := sink.Write(b); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *listSnap) Release() {}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}

func fastConfig(id raft.ServerID) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 100 * time.Millisecond
	c.ElectionTimeout = 100 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotThreshold = 40
	c.TrailingLogs = 10
	c.Logger = HCLogger(quietLogger(), string(id))
	return c
}

type node struct {
	id    raft.ServerID
	dir   string
	store *Store
	fsm   *listFSM
	trans *raft.InmemTransport
	raft  *raft.Raft
}

func (n *node) start(t *testing.T) {
	t.Helper()
	logs, stable, snaps, err := OpenAll(n.dir, Options{NoSync: true, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("%s: OpenAll: %v", n.id, err)
	}
	n.store = logs
	n.fsm = &listFSM{}
	r, err := raft.NewRaft(fastConfig(n.id), n.fsm, logs, stable, snaps, n.trans)
	if err != nil {
		t.Fatalf("%s: NewRaft: %v", n.id, err)
	}
	n.raft = r
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	if err := n.raft.Shutdown().Error(); err != nil {
		t.Errorf("%s: shutdown: %v", n.id, err)
	}
	if err := n.store.Close(); err != nil {
		t.Errorf("%s: close store: %v", n.id, err)
	}
}

func leaderOf(nodes []*node) *node {
	for _, n := range nodes {
		if n.raft != nil && n.raft.State() == raft.Leader {
			return n
		}
	}
	return nil
}

func TestRaftClusterOnStore(t *testing.T) {
	base := t.TempDir()
	var nodes []*node
	var servers []raft.Server
	for i := 0; i < 3; i++ {
		id := raft.ServerID(fmt.Sprintf("n%d", i))
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		nodes = append(nodes, &node{id: id, dir: filepath.Join(base, string(id)), trans: trans})
		servers = append(servers, raft.Server{ID: id, Address: addr, Suffrage: raft.Voter})
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
	for _, n := range nodes {
		n.start(t)
	}
	defer func() {
		for _, n := range nodes {
			if n.raft != nil {
				n.stop(t)
			}
		}
	}()
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	var leader *node
	waitFor(t, "a leader", 10*time.Second, func() bool { leader = leaderOf(nodes); return leader != nil })

	apply := func(from, to int) {
		for i := from; i < to; i++ {
			l := leaderOf(nodes)
			if l == nil {
				t.Fatalf("no leader while applying command %d", i)
			}
			if err := l.raft.Apply([]byte(fmt.Sprintf("cmd-%03d", i)), 5*time.Second).Error(); err != nil {
				t.Fatalf("apply command %d on %s: %v", i, l.id, err)
			}
		}
	}
	expect := func(n int) [][]byte {
		var want [][]byte
		for i := 0; i < n; i++ {
			want = append(want, []byte(fmt.Sprintf("cmd-%03d", i)))
		}
		return want
	}
	agree := func(n int) func() bool {
		want := expect(n)
		return func() bool {
			for _, nd := range nodes {
				got := nd.fsm.list()
				if len(got) != len(want) {
					return false
				}
				for i := range got {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("%s applied %q at position %d, want %q", nd.id, got[i], i, want[i])
					}
				}
			}
			return true
		}
	}

	apply(0, 60)
	waitFor(t, "all FSMs to hold 60 commands", 10*time.Second, agree(60))

	// Force a snapshot on every node so that DeleteRange truncates the
	// badger log's prefix, then check the stores report consistent bounds.
	for _, n := range nodes {
		if err := n.raft.Snapshot().Error(); err != nil {
			t.Fatalf("%s: snapshot: %v", n.id, err)
		}
		first, _ := n.store.FirstIndex()
		last, _ := n.store.LastIndex()
		if first <= 1 || last < first {
			t.Fatalf("%s: after snapshot the log bounds are (%d, %d); want a truncated prefix", n.id, first, last)
		}
	}

	// Restart a follower from its store: it must come back with its term
	// and log, and catch up on what it missed.
	var follower *node
	for _, n := range nodes {
		if n != leaderOf(nodes) {
			follower = n
			break
		}
	}
	termBefore, err := follower.store.GetUint64([]byte("CurrentTerm"))
	if err != nil || termBefore == 0 {
		t.Fatalf("%s: CurrentTerm = %d, %v before restart", follower.id, termBefore, err)
	}
	follower.stop(t)
	follower.raft = nil
	apply(60, 80)
	follower.trans.DisconnectAll()
	_, follower.trans = raft.NewInmemTransport(raft.ServerAddress(follower.id))
	for _, n := range nodes {
		if n != follower {
			n.trans.Connect(follower.trans.LocalAddr(), follower.trans)
			follower.trans.Connect(n.trans.LocalAddr(), n.trans)
		}
	}
	follower.start(t)
	if ok, err := raft.HasExistingState(follower.store, follower.store, snapsOf(t, follower.dir)); err != nil || !ok {
		t.Fatalf("%s: HasExistingState after restart = %v, %v", follower.id, ok, err)
	}
	if term, _ := follower.store.GetUint64([]byte("CurrentTerm")); term < termBefore {
		t.Fatalf("%s: CurrentTerm went back from %d to %d across restart", follower.id, termBefore, term)
	}
	apply(80, 90)
	waitFor(t, "all FSMs to hold 90 commands after the restart", 10*time.Second, agree(90))
}

// snapsOf opens the node's snapshot folder read-only for HasExistingState.
func snapsOf(t *testing.T, dir string) raft.SnapshotStore {
	t.Helper()
	s, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), 2, HCLogger(quietLogger(), "snaps"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
