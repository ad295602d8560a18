package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sovereign-fl/sovereign/p2p"
)

// ProtocolID is the replica protocol between coordinators: a follower
// forwards Join and Leave to the leader over it, and any coordinator asks a
// replica for its Stats. One request, one response per stream, each a
// length-prefixed protobuf BytesValue holding the JSON of adminRequest and
// adminResponse.
const ProtocolID = "/sovereign/replica/1.0.0"

const maxAdminFrame = 1 << 20

type adminOp string

// Operations of the replica protocol; the strings reach the wire.
const (
	opJoin  adminOp = "join"
	opLeave adminOp = "leave"
	opStats adminOp = "stats"
)

type adminRequest struct {
	Op    adminOp  `json:"op"`
	Peer  string   `json:"peer,omitempty"`
	Addrs []string `json:"addrs,omitempty"`
}

type adminResponse struct {
	Err string `json:"err,omitempty"`
	// Leader is set with a not-the-leader error, for a redirect.
	Leader string `json:"leader,omitempty"`
	Stats  *Stats `json:"stats,omitempty"`
}

func (n *Node) serve() error {
	return n.cfg.Host.Handle(p2p.ProtocolSpec{ID: ProtocolID, Roles: []p2p.Role{p2p.RoleCoordinator}, MaxFrame: maxAdminFrame},
		func(ctx context.Context, s *p2p.Stream) error {
			var in wrapperspb.BytesValue
			if err := s.ReadMsg(&in); err != nil {
				return err
			}
			var req adminRequest
			resp := n.handle(ctx, s.Peer(), in.Value, &req)
			b, err := json.Marshal(resp)
			if err != nil {
				return err
			}
			return s.WriteMsg(wrapperspb.Bytes(b))
		})
}

func (n *Node) handle(ctx context.Context, from peer.ID, raw []byte, req *adminRequest) adminResponse {
	if err := json.Unmarshal(raw, req); err != nil {
		return adminResponse{Err: fmt.Sprintf("replica request from %s: malformed: %v", from, err)}
	}
	var err error
	switch req.Op {
	case opStats:
		st := n.Stats()
		return adminResponse{Stats: &st}
	case opJoin, opLeave:
		id, perr := peer.Decode(req.Peer)
		if perr != nil {
			return adminResponse{Err: fmt.Sprintf("replica %s request from %s: peer %q: %v", req.Op, from, req.Peer, perr)}
		}
		if !n.IsLeader() {
			err = &NotLeaderError{Leader: n.Leader()}
		} else if req.Op == opJoin {
			err = n.join(ctx, id, req.Addrs)
		} else {
			err = n.leave(ctx, id)
		}
	default:
		err = fmt.Errorf("replica request from %s: unknown operation %q", from, req.Op)
	}
	if err == nil {
		return adminResponse{}
	}
	var nl *NotLeaderError
	if errors.As(err, &nl) {
		return adminResponse{Err: err.Error(), Leader: nl.Leader.String()}
	}
	return adminResponse{Err: err.Error()}
}

// request sends one replica-protocol request to p.
func (n *Node) request(ctx context.Context, p peer.ID, req adminRequest) (adminResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return adminResponse{}, err
	}
	c := p2p.NewClient(n.cfg.Host)
	c.MaxFrame = maxAdminFrame
	if dl, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(dl)
	}
	var out wrapperspb.BytesValue
	if err := c.Request(ctx, p, ProtocolID, wrapperspb.Bytes(b), &out); err != nil {
		return adminResponse{}, fmt.Errorf("replica %s request to %s: %w", req.Op, p, err)
	}
	var resp adminResponse
	if err := json.Unmarshal(out.Value, &resp); err != nil {
		return adminResponse{}, fmt.Errorf("replica %s response from %s: malformed: %w", req.Op, p, err)
	}
	return resp, nil
}

// forward sends req to the leader and returns its outcome.
func (n *Node) forward(ctx context.Context, req adminRequest) error {
	leader := n.Leader()
	if leader == "" || leader == n.id {
		return &NotLeaderError{}
	}
	resp, err := n.request(ctx, leader, req)
	if err != nil {
		return err
	}
	if resp.Err != "" {
		if resp.Leader != "" {
			l, _ := peer.Decode(resp.Leader)
			return fmt.Errorf("replica %s forwarded to %s: %s: %w", req.Op, leader, resp.Err, &NotLeaderError{Leader: l})
		}
		return fmt.Errorf("replica %s forwarded to %s: %s", req.Op, leader, resp.Err)
	}
	return nil
}

// PeerStats asks the replica p for its Stats (this replica's own when p is
// this one).
func (n *Node) PeerStats(ctx context.Context, p peer.ID) (Stats, error) {
	if p == n.id {
		return n.Stats(), nil
	}
	resp, err := n.request(ctx, p, adminRequest{Op: opStats})
	if err != nil {
		return Stats{}, err
	}
	if resp.Err != "" || resp.Stats == nil {
		return Stats{}, fmt.Errorf("replica stats from %s: %s", p, resp.Err)
	}
	return *resp.Stats, nil
}

// addAddrs records a joining replica's addresses in the host's peerstore.
func addAddrs(h *p2p.Host, id peer.ID, addrs []string) error {
	mas := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return fmt.Errorf("address %q: %w", a, err)
		}
		mas = append(mas, m)
	}
	if len(mas) > 0 {
		h.LibP2P().Peerstore().AddAddrs(id, mas, peerstore.PermanentAddrTTL)
	}
	return nil
}
