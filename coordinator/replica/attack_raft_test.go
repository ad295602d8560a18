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
	trans, err := rafttransport.New(ah.LibP2P(), func(peer.ID) error { return nil }, 5*time.Second, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer trans.(raft.WithClose).Close()

	before := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		before[i] = len(n.FSM().State().Models)
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
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(wid.String()), Addr: []byte(wid.String())}

	for i, n := range c.nodes {
		target := raft.ServerAddress(n.ID().String())
		var probe raft.AppendEntriesResponse
		if err := trans.AppendEntries(raft.ServerID(target), target, &raft.AppendEntriesRequest{RPCHeader: hdr}, &probe); err == nil {
			t.Errorf("replica %d answered a Raft probe from worker %s (term %d)", i, wid, probe.Term)
		}
		term := probe.Term + 100
		req := &raft.AppendEntriesRequest{
			RPCHeader: hdr, Term: term,
			Entries:           []*raft.Log{{Index: probe.LastLog + 1, Term: term, Type: raft.LogCommand, Data: data}},
			LeaderCommitIndex: probe.LastLog + 1,
		}
		var resp raft.AppendEntriesResponse
		if err := trans.AppendEntries(raft.ServerID(target), target, req, &resp); err == nil {
			t.Errorf("replica %d answered a forged AppendEntries from worker %s (success=%v)", i, wid, resp.Success)
		}
	}
	// The cluster still works under its real leader, and commits nothing of the attacker's.
	if got := c.leader(); c.nodes[got].ID().String() != leaderID {
		t.Errorf("leader changed from %s to %s", leaderID, c.nodes[got].ID())
	}
	for i, n := range c.nodes {
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
		if n.Leader() == wid {
			t.Errorf("replica %d follows the worker %s as leader", i, wid)
		}
	}
}
