package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"google.golang.org/protobuf/proto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sovereign-fl/sovereign/p2p/pb"
)

var twoNodes = []testNode{{"coord-a", RoleCoordinator, 101}, {"st-marys", RoleWorker, 102}}

// statusHandler answers StatusRequest with the remote's name in Stage, so
// the test can check the handler saw the right member.
func statusHandler(round uint64) Handler {
	return func(ctx context.Context, s *Stream) error {
		var req pb.StatusRequest
		if err := s.ReadMsg(&req); err != nil {
			return err
		}
		return s.WriteMsg(&pb.StatusResponse{Name: "coord-a", Role: pb.Role_ROLE_COORDINATOR, Round: round, Stage: "seen " + s.Remote().Name})
	}
}

func TestTwoEnrolledPeersTalk(t *testing.T) {
	for _, tr := range []string{"tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			fed := testFederation(t, twoNodes)
			hosts := startHosts(t, fed, twoNodes, tr)
			coord, worker := hosts[0], hosts[1]
			for _, a := range coord.Addrs() {
				if !strings.HasSuffix(a, "/p2p/"+coord.ID().String()) || !strings.HasPrefix(a, "/ip4/127.0.0.1/") {
					t.Fatalf("address %q: want loopback ending in /p2p/<id>", a)
				}
			}
			if err := coord.Handle(ProtocolSpec{ID: ProtoStatus, Roles: AllRoles()}, statusHandler(7)); err != nil {
				t.Fatal(err)
			}
			var resp pb.StatusResponse
			if err := NewClient(worker).Request(t.Context(), coord.ID(), ProtoStatus, &pb.StatusRequest{}, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Round != 7 || resp.Stage != "seen st-marys" {
				t.Fatalf("response = %v", &resp)
			}
			// Host.Bandwidth counts the stream bytes at once: at least
			// the request and the response went each way.
			_, wOut := worker.Bandwidth()
			wIn, _ := worker.Bandwidth()
			cIn, cOut := coord.Bandwidth()
			if wOut < int64(proto.Size(&pb.StatusRequest{})) || cIn == 0 || cOut < int64(proto.Size(&resp)) || wIn < int64(proto.Size(&resp)) {
				t.Fatalf("bandwidth: worker in %d out %d, coordinator in %d out %d; response is %d bytes", wIn, wOut, cIn, cOut, proto.Size(&resp))
			}
			conns := worker.LibP2P().Network().ConnsToPeer(coord.ID())
			if len(conns) == 0 {
				t.Fatal("no connection")
			}
			proto := conns[0].RemoteMultiaddr().String()
			if tr == "quic" && !strings.Contains(proto, "quic-v1") || tr == "tcp" && !strings.Contains(proto, "/tcp/") {
				t.Fatalf("connection over %s, want %s", proto, tr)
			}
			if tr == "tcp" {
				if sec := conns[0].ConnState().Security; sec != "/noise" {
					t.Fatalf("security %q, want /noise", sec)
				}
			}
		})
	}
}

func TestUnenrolledPeerRefused(t *testing.T) {
	for _, tr := range []string{"tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			fed := testFederation(t, twoNodes)
			hosts := startHosts(t, fed, twoNodes, tr)
			coord := hosts[0]
			refusals := make(chan GateRefusal, 4)
			coord.Gater().OnRefuse(func(r GateRefusal) { refusals <- r })

			// The intruder enrolls the coordinator in its own federation file
			// but is not enrolled in the coordinator's.
			intruderNodes := []testNode{twoNodes[0], {"intruder", RoleWorker, 666}}
			intruder := startHosts(t, testFederation(t, intruderNodes), intruderNodes[1:], tr)[0]
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := intruder.Connect(ctx, coord.AddrInfo())
			r := recv(t, refusals, "gater refusal")
			if r.Peer != intruder.ID() || !strings.Contains(r.Reason, "not enrolled") {
				t.Fatalf("refusal = %+v", r)
			}
			if err == nil {
				// The dialer may see its handshake complete before the
				// coordinator closes the connection; no stream may open.
				var resp pb.StatusResponse
				if err := NewClient(intruder).Request(ctx, coord.ID(), ProtoStatus, &pb.StatusRequest{}, &resp); err == nil {
					t.Fatal("intruder got a response")
				}
			}
			if coord.LibP2P().Network().Connectedness(intruder.ID()) == network.Connected {
				t.Fatal("coordinator is connected to the intruder")
			}
			// Outbound: the coordinator refuses to dial a non-member.
			if err := coord.Connect(ctx, intruder.AddrInfo()); err == nil || !strings.Contains(err.Error(), "not enrolled") {
				t.Fatalf("dial to intruder: err = %v", err)
			}
			if coord.Gater().InterceptPeerDial(intruder.ID()) {
				t.Fatal("gater allows dialling the intruder")
			}
		})
	}
}

func TestRoleRestrictedProtocol(t *testing.T) {
	nodes := []testNode{{"coord-a", RoleCoordinator, 201}, {"lab", RoleWorker, 202}, {"coord-b", RoleCoordinator, 203}}
	fed := testFederation(t, nodes)
	hosts := startHosts(t, fed, nodes, "tcp")
	if err := hosts[0].Handle(ProtocolSpec{ID: "/sovereign/coord-only/1.0.0", Roles: []Role{RoleCoordinator}}, statusHandler(1)); err != nil {
		t.Fatal(err)
	}
	var resp pb.StatusResponse
	err := NewClient(hosts[1]).Request(t.Context(), hosts[0].ID(), "/sovereign/coord-only/1.0.0", &pb.StatusRequest{}, &resp)
	if err == nil {
		t.Fatal("worker was served on a coordinator-only protocol")
	}
	if err := NewClient(hosts[2]).Request(t.Context(), hosts[0].ID(), "/sovereign/coord-only/1.0.0", &pb.StatusRequest{}, &resp); err != nil {
		t.Fatalf("coordinator refused: %v", err)
	}
	if resp.Stage != "seen coord-b" {
		t.Fatalf("stage %q", resp.Stage)
	}
}

// TestBadFramesRefused sends a malformed frame and an oversize frame; the
// handler must see typed errors naming protocol and peer, and the host must
// serve the next stream normally.
func TestBadFramesRefused(t *testing.T) {
	for _, tr := range []string{"tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			fed := testFederation(t, twoNodes)
			hosts := startHosts(t, fed, twoNodes, tr)
			coord, worker := hosts[0], hosts[1]
			const pid protocol.ID = "/sovereign/status/1.0.0"
			errs := make(chan error, 8)
			h := statusHandler(3)
			err := coord.Handle(ProtocolSpec{ID: pid, Roles: AllRoles(), MaxFrame: 1024}, func(ctx context.Context, s *Stream) error {
				err := h(ctx, s)
				errs <- err
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			raw := func(payload []byte) {
				s, err := NewClient(worker).Open(t.Context(), coord.ID(), pid)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Write(payload); err != nil {
					t.Fatal(err)
				}
				_ = s.CloseWrite()
				// The handler resets the stream: reading must fail, not hang.
				if _, err := bufio.NewReader(s).ReadByte(); err == nil {
					t.Fatal("read a byte from a stream the handler should have reset")
				}
				_ = s.Reset()
			}
			// Malformed: a 3-byte frame whose body is an invalid field tag.
			raw([]byte{3, 0xff, 0xff, 0xff})
			err = recv(t, errs, "malformed frame error")
			var mf *MalformedFrameError
			if !errors.As(err, &mf) || !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("err = %v, want *MalformedFrameError", err)
			}
			if mf.Protocol != pid || mf.Peer != worker.ID() || !strings.Contains(err.Error(), worker.ID().String()) {
				t.Fatalf("malformed error does not name protocol and peer: %v", err)
			}
			// Truncated body.
			raw([]byte{10, 1, 2})
			err = recv(t, errs, "truncated frame error")
			if !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("truncated: err = %v", err)
			}
			// Oversize: announce 1 MiB against a 1 KiB limit.
			raw(binary.AppendUvarint(nil, 1<<20))
			err = recv(t, errs, "oversize frame error")
			var tl *FrameTooLargeError
			if !errors.As(err, &tl) || !errors.Is(err, ErrFrameTooLarge) || tl.Size != 1<<20 || tl.Max != 1024 || tl.Peer != worker.ID() {
				t.Fatalf("err = %v, want *FrameTooLargeError{1MiB, 1024, worker}", err)
			}
			// And the host keeps serving.
			var resp pb.StatusResponse
			if err := NewClient(worker).Request(t.Context(), coord.ID(), pid, &pb.StatusRequest{}, &resp); err != nil {
				t.Fatalf("next stream: %v", err)
			}
			if resp.Round != 3 {
				t.Fatalf("resp %v", &resp)
			}
			if err := recv(t, errs, "good exchange"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHandlerPanicResetsStream(t *testing.T) {
	fed := testFederation(t, twoNodes)
	hosts := startHosts(t, fed, twoNodes, "tcp")
	var once sync.Once
	err := hosts[0].Handle(ProtocolSpec{ID: ProtoStatus, Roles: AllRoles()}, func(ctx context.Context, s *Stream) error {
		panicNow := false
		once.Do(func() { panicNow = true })
		if panicNow {
			panic("boom")
		}
		return statusHandler(9)(ctx, s)
	})
	if err != nil {
		t.Fatal(err)
	}
	var resp pb.StatusResponse
	c := NewClient(hosts[1])
	if err := c.Request(t.Context(), hosts[0].ID(), ProtoStatus, &pb.StatusRequest{}, &resp); err == nil {
		t.Fatal("panicking handler answered")
	}
	if err := c.Request(t.Context(), hosts[0].ID(), ProtoStatus, &pb.StatusRequest{}, &resp); err != nil || resp.Round != 9 {
		t.Fatalf("after panic: %v %v", err, &resp)
	}
}

func TestSetFederationDropsRemovedMember(t *testing.T) {
	fed := testFederation(t, twoNodes)
	hosts := startHosts(t, fed, twoNodes, "tcp")
	coord, worker := hosts[0], hosts[1]
	if err := coord.Handle(ProtocolSpec{ID: ProtoStatus, Roles: AllRoles()}, statusHandler(1)); err != nil {
		t.Fatal(err)
	}
	onlyCoord := testFederation(t, twoNodes[:1])
	if err := coord.SetFederation(onlyCoord); err != nil {
		t.Fatal(err)
	}
	if _, ok := coord.Gater().Lookup(worker.ID()); ok {
		t.Fatal("worker still enrolled")
	}
	var resp pb.StatusResponse
	if err := NewClient(worker).Request(t.Context(), coord.ID(), ProtoStatus, &pb.StatusRequest{}, &resp); err == nil {
		t.Fatal("removed member was served")
	}
	// Enrolling it again lets it back in.
	if err := coord.SetFederation(fed); err != nil {
		t.Fatal(err)
	}
	connect(t, worker, coord)
	if err := NewClient(worker).Request(t.Context(), coord.ID(), ProtoStatus, &pb.StatusRequest{}, &resp); err != nil {
		t.Fatalf("re-enrolled member refused: %v", err)
	}
}

func TestHostConfigValidation(t *testing.T) {
	fed := testFederation(t, twoNodes)
	key := testKey(t, 101)
	cases := []struct {
		cfg  HostConfig
		opts []Option
		want string
	}{
		{HostConfig{Federation: fed}, nil, "HostConfig.Identity"},
		{HostConfig{Identity: key}, nil, "HostConfig.Federation"},
		{HostConfig{Identity: key, Federation: fed, ListenAddrs: []string{"nonsense"}}, nil, "ListenAddrs[0]"},
		{HostConfig{Identity: key, Federation: fed, ListenAddrs: []string{"/ip4/127.0.0.1/udp/0"}}, nil, "neither TCP nor QUIC"},
		{HostConfig{Identity: key, Federation: fed, AnnounceAddrs: []string{"x"}}, nil, "AnnounceAddrs[0]"},
		{HostConfig{Identity: key, Federation: fed}, []Option{WithStreamTimeout(-time.Second)}, "WithStreamTimeout"},
		{HostConfig{Identity: key}, []Option{WithFederation(nil)}, "WithFederation"},
	}
	for i, tc := range cases {
		_, err := NewHost(t.Context(), tc.cfg, tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: err = %v, want %q", i, err, tc.want)
		}
	}
	h, err := NewHost(t.Context(), HostConfig{}, WithIdentity(key), WithFederation(fed),
		WithListenAddrs("/ip4/127.0.0.1/tcp/0"), WithAnnounceAddrs("/ip4/192.0.2.1/tcp/4001"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := h.Addrs(); len(got) != 1 || got[0] != "/ip4/192.0.2.1/tcp/4001/p2p/"+h.ID().String() {
		t.Fatalf("announced %v", got)
	}
	if h.ID() != peer.ID(fed.Members()[0].ID) {
		t.Fatalf("host ID %s is not the identity's", h.ID())
	}
	if err := h.Handle(ProtocolSpec{ID: "/other/x/1.0.0", Roles: AllRoles()}, statusHandler(0)); err == nil {
		t.Fatal("accepted a protocol ID outside /sovereign/")
	}
}

// TestRegisterWithoutRoleRuleRefused: there is no way to register a
// protocol that any enrolled member may open by omission (security review
// C1: Raft was registered beside Handle and admitted workers).
func TestRegisterWithoutRoleRuleRefused(t *testing.T) {
	fed := testFederation(t, twoNodes)
	h := startHosts(t, fed, twoNodes, "tcp")[0]
	if err := h.Handle(ProtocolSpec{ID: "/sovereign/norule/1.0.0"}, statusHandler(0)); err == nil || !strings.Contains(err.Error(), "Roles") {
		t.Errorf("Handle without roles: err = %v", err)
	}
	if err := h.HandleBlobs(BlobSpec{ID: "/sovereign/norule-blob/1.0.0", MaxSize: 1}, nil); err == nil || !strings.Contains(err.Error(), "Roles") {
		t.Errorf("HandleBlobs without roles: err = %v", err)
	}
	if err := h.ServeBlobs(corruptStore{}); err == nil || !strings.Contains(err.Error(), "Roles") {
		t.Errorf("ServeBlobs without roles: err = %v", err)
	}
	if _, err := h.AdmitStream("/sovereign/raft/1.0.0", h.ID()); err == nil {
		t.Error("AdmitStream without roles admitted a peer")
	}
}
