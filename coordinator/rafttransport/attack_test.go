package rafttransport

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
)

// rpcTarget is a transport on its own host whose consumer the test drives:
// it answers every AppendEntries that reaches hashicorp/raft's side and
// counts them.
type rpcTarget struct {
	host  host.Host
	trans raft.Transport
	got   chan *raft.AppendEntriesRequest
}

func newRPCTarget(t *testing.T, seed uint64, lim Limits) *rpcTarget {
	t.Helper()
	h := newHost(t, seed)
	t.Cleanup(func() { h.Close() })
	trans, err := New(h, allowAll, 5*time.Second, lim, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trans.(raft.WithClose).Close() })
	r := &rpcTarget{host: h, trans: trans, got: make(chan *raft.AppendEntriesRequest, 16)}
	go func() {
		for rpc := range trans.Consumer() {
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				r.got <- req
			}
			rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
		}
	}()
	return r
}

// attacker returns a transport on a fresh host connected to target.
func attacker(t *testing.T, seed uint64, target host.Host) (host.Host, raft.Transport) {
	t.Helper()
	h := newHost(t, seed)
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, target.Peerstore().PeerInfo(target.ID())); err != nil {
		h.Peerstore().AddAddrs(target.ID(), target.Addrs(), time.Hour)
		if err := h.Connect(ctx, target.Peerstore().PeerInfo(target.ID())); err != nil {
			t.Fatal(err)
		}
	}
	trans, err := New(h, allowAll, 5*time.Second, Limits{}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trans.(raft.WithClose).Close() })
	return h, trans
}

func header(id string) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(id)}
}

// TestAttackRaftHeaderNamesAnotherServer runs the second half of security
// review finding C1 against the transport: a peer that may speak Raft
// sends AppendEntries whose header names another replica (so that
// hashicorp/raft would adopt that replica as leader). The transport must
// close the stream before Raft sees the request; the same peer speaking
// for itself gets through.
func TestAttackRaftHeaderNamesAnotherServer(t *testing.T) {
	target := newRPCTarget(t, 31, Limits{})
	victim := newHost(t, 32) // the replica the attacker impersonates
	defer victim.Close()
	ah, at := attacker(t, 33, target.host)
	addr := raft.ServerAddress(target.host.ID().String())

	forged := []raft.RPCHeader{
		header(victim.ID().String()),
		{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(ah.ID().String()), Addr: []byte(victim.ID().String())},
		{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(victim.ID().String()), Addr: []byte(ah.ID().String())},
		{ProtocolVersion: raft.ProtocolVersionMax},
	}
	for i, h := range forged {
		var resp raft.AppendEntriesResponse
		err := at.AppendEntries(raft.ServerID(addr), addr, &raft.AppendEntriesRequest{RPCHeader: h, Term: 100}, &resp)
		if err == nil {
			t.Errorf("forged header %d (ID %q Addr %q) was answered: success=%v", i, h.ID, h.Addr, resp.Success)
		}
		select {
		case req := <-target.got:
			t.Errorf("forged header %d reached raft: ID %q", i, req.ID)
		default:
		}
	}
	// The deprecated Leader field is checked too.
	var resp raft.AppendEntriesResponse
	if err := at.AppendEntries(raft.ServerID(addr), addr, &raft.AppendEntriesRequest{RPCHeader: header(ah.ID().String()), Leader: []byte(victim.ID().String()), Term: 100}, &resp); err == nil {
		t.Error("AppendEntries naming another leader in the deprecated Leader field was answered")
	}
	// The same peer speaking for itself is served: the check refuses only
	// impersonation.
	if err := at.AppendEntries(raft.ServerID(addr), addr, &raft.AppendEntriesRequest{RPCHeader: header(ah.ID().String()), Term: 100}, &resp); err != nil || !resp.Success {
		t.Fatalf("honest AppendEntries: err %v success %v", err, resp.Success)
	}
	select {
	case req := <-target.got:
		if string(req.ID) != ah.ID().String() {
			t.Errorf("raft saw ID %q, want %s", req.ID, ah.ID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("honest AppendEntries never reached raft")
	}
}

// TestAttackRaftOversizedRPC: one RPC larger than the transport's bound is
// refused while it is read, before it is buffered whole or handed to Raft.
func TestAttackRaftOversizedRPC(t *testing.T) {
	const bound = 1 << 16
	target := newRPCTarget(t, 41, Limits{MaxRPCBytes: bound})
	ah, at := attacker(t, 42, target.host)
	addr := raft.ServerAddress(target.host.ID().String())
	big := &raft.AppendEntriesRequest{RPCHeader: header(ah.ID().String()), Term: 5,
		Entries: []*raft.Log{{Index: 1, Term: 5, Type: raft.LogCommand, Data: make([]byte, 4*bound)}}}
	var resp raft.AppendEntriesResponse
	if err := at.AppendEntries(raft.ServerID(addr), addr, big, &resp); err == nil {
		t.Fatalf("an AppendEntries of %d bytes was answered under a bound of %d", 4*bound, bound)
	}
	select {
	case <-target.got:
		t.Fatal("the oversized AppendEntries reached raft")
	default:
	}
	small := &raft.AppendEntriesRequest{RPCHeader: header(ah.ID().String()), Term: 5,
		Entries: []*raft.Log{{Index: 1, Term: 5, Type: raft.LogCommand, Data: make([]byte, bound/2)}}}
	if err := at.AppendEntries(raft.ServerID(addr), addr, small, &resp); err != nil {
		t.Fatalf("an AppendEntries within the bound: %v", err)
	}
	if got := <-target.got; len(got.Entries) != 1 || len(got.Entries[0].Data) != bound/2 {
		t.Fatalf("raft saw %d entries", len(got.Entries))
	}
}

func TestCheckSenderErrorNamesPeer(t *testing.T) {
	h := newHost(t, 51)
	defer h.Close()
	err := checkSender(rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: header("someone-else")}, h.ID())
	if !errors.Is(err, ErrRPCRefused) {
		t.Fatalf("err = %v, want ErrRPCRefused", err)
	}
	if want := h.ID().String(); !contains(err.Error(), want) || !contains(err.Error(), "someone-else") {
		t.Fatalf("err %q does not name the peer and the claimed server", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
