package replica

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/rafttransport"
	"github.com/sovereign-fl/sovereign/p2p"
)

// TestAttackWorkerInjectsRaftEntries runs security review finding C1: the
// federation's enrolled worker identity opens Raft streams to a 3-replica
// cluster and sends a forged AppendEntries (term+100) carrying a
// ModelCommitted of an attacker's model. Every replica must refuse the
// stream (the RPC fails), and the leader and the ledger stay as they were.
func TestAttackWorkerInjectsRaftEntries(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	leaderID := c.nodes[l].ID().String()

	wsk := testKey(t, 999)
	wid, _ := peer.IDFromPrivateKey(wsk)
	fed := c.hosts[0].Federation()
	if m, ok := fed.Lookup(wid); !ok || m.Role != p2p.RoleWorker {
		t.Fatalf("attacker is not an enrolled worker: %+v", m)
	}
	ah, err := p2p.NewHost(context.Background(), p2p.HostConfig{Identity: wsk, Federation: fed, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer ah.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range c.hosts {
		if err := ah.Connect(ctx, h.AddrInfo()); err != nil {
			t.Fatal(err)
		}
	}
	// The attacker runs the transport with no rule of its own.
	trans, err := rafttransport.New(ah.LibP2P(), func(peer.ID) error { return nil }, 5*time.Second, rafttransport.Limits{}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer trans.(raft.WithClose).Close()

	forgeModelEntries(t, c, trans, wid, leaderID)
}

// forgeModelEntries sends, from the transport trans of the identity aid, a
// probe and a forged AppendEntries (term+100, a ModelCommitted of an
// attacker's model) to every running replica of c, and asserts that every
// RPC failed and that the cluster still follows leaderID with none of the
// attacker's model.
func forgeModelEntries(t *testing.T, c *cluster, trans raft.Transport, aid peer.ID, leaderID string) {
	t.Helper()
	before := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		if n != nil {
			before[i] = len(n.FSM().State().Models)
		}
	}

	params := make([]byte, 40)
	for i := 0; i < 10; i++ {
		binary.LittleEndian.PutUint32(params[4*i:], math.Float32bits(1e9))
	}
	h := coordinator.Hash(sha256.Sum256(params))
	cmd, err := coordinator.EncodeCommand(coordinator.Command{ModelCommitted: &coordinator.ModelCommitted{
		Round: 0, ModelHash: h, Participants: []coordinator.WorkerID{}, Optimizer: coordinator.OptimizerRef{Name: "fedavg"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	data := EncodeEntry(Entry{Command: cmd, Blobs: [][]byte{params}})
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(aid.String()), Addr: []byte(aid.String())}

	for i, n := range c.nodes {
		if n == nil {
			continue
		}
		target := raft.ServerAddress(n.ID().String())
		var probe raft.AppendEntriesResponse
		if err := trans.AppendEntries(raft.ServerID(target), target, &raft.AppendEntriesRequest{RPCHeader: hdr}, &probe); err == nil {
			t.Errorf("replica %d answered a Raft probe from %s (term %d)", i, aid, probe.Term)
		}
		term := probe.Term + 100
		req := &raft.AppendEntriesRequest{
			RPCHeader: hdr, Term: term,
			Entries:           []*raft.Log{{Index: probe.LastLog + 1, Term: term, Type: raft.LogCommand, Data: data}},
			LeaderCommitIndex: probe.LastLog + 1,
		}
		var resp raft.AppendEntriesResponse
		if err := trans.AppendEntries(raft.ServerID(target), target, req, &resp); err == nil {
			t.Errorf("replica %d answered a forged AppendEntries from %s (success=%v)", i, aid, resp.Success)
		}
	}
	// The cluster still works under its real leader, and commits nothing of the attacker's.
	if got := c.leader(); c.nodes[got].ID().String() != leaderID {
		t.Errorf("leader changed from %s to %s", leaderID, c.nodes[got].ID())
	}
	for i, n := range c.nodes {
		if n == nil {
			continue
		}
		st := n.FSM().State()
		if len(st.Models) != before[i] {
			t.Errorf("replica %d: %d models, was %d", i, len(st.Models), before[i])
		}
		for _, m := range st.Models {
			if m.Hash == h {
				t.Errorf("replica %d committed the attacker's model %s", i, h)
			}
		}
		if b, err := n.Registry().GetBytes(h); err == nil {
			t.Errorf("replica %d registry serves the attacker's model (%d bytes)", i, len(b))
		}
		if n.Leader() == aid {
			t.Errorf("replica %d follows the attacker %s as leader", i, aid)
		}
	}
}

// TestAttackCoordinatorOutsideRaftConfigInjectsEntries: an identity
// enrolled as a coordinator in the federation file, but not a member of
// the Raft configuration (never added through the admin join path), sends
// the same forged AppendEntries. The role rule alone would admit it; the
// configuration rule must refuse it on every replica (review finding C1).
func TestAttackCoordinatorOutsideRaftConfigInjectsEntries(t *testing.T) {
	c := newCluster(t, 4, func(c *cluster, i int, cfg *Config) {
		for j := range 3 {
			cfg.Coordinators = append(cfg.Coordinators, c.hosts[j].ID())
		}
	})
	c.stop(3) // replica 3 never joined; its host becomes the attacker's
	l := c.leader()
	leaderID := c.nodes[l].ID().String()
	ah := c.hosts[3]
	if m, ok := ah.Federation().Lookup(ah.ID()); !ok || m.Role != p2p.RoleCoordinator {
		t.Fatalf("attacker is not an enrolled coordinator: %+v", m)
	}
	f := c.nodes[l].raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(ah.ID().String()) {
			t.Fatalf("attacker %s is in the Raft configuration", ah.ID())
		}
	}
	trans, err := rafttransport.New(ah.LibP2P(), func(peer.ID) error { return nil }, 5*time.Second, rafttransport.Limits{}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer trans.(raft.WithClose).Close()
	forgeModelEntries(t, c, trans, ah.ID(), leaderID)
}
