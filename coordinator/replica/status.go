package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sovereign-fl/sovereign/p2p"
)

// StatusProtocolID is the status companion protocol of the replicated
// coordinator: any enrolled member (the `sovereign status` command runs
// as an observer) sends an empty frame and gets a BytesValue with the JSON
// of []WireStats, this replica's view of every replica of its Raft
// configuration (its own first; unreachable ones with State "Unreachable").
const StatusProtocolID = "/sovereign/replica-status/1.0.0"

// replicaStatsTimeout bounds how long a replica waits for each of the others.
const replicaStatsTimeout = 2 * time.Second

// ServeStatus registers StatusProtocolID on the replica's host.
func (n *Node) ServeStatus() error {
	return n.cfg.Host.Handle(p2p.ProtocolSpec{ID: StatusProtocolID, Roles: p2p.AllRoles(), Timeout: 10 * time.Second, MaxFrame: 1024}, func(ctx context.Context, s *p2p.Stream) error {
		var req wrapperspb.BytesValue
		if err := s.ReadMsg(&req); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		stats := n.ClusterStats(ctx)
		out := make([]WireStats, len(stats))
		for i, st := range stats {
			out[i] = st.Wire()
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		return s.WriteMsg(wrapperspb.Bytes(b))
	})
}

// WireStats is the wire form of Stats on StatusProtocolID, with
// peer IDs as strings ("" when unknown).
type WireStats struct {
	ID                string   `json:"id"`
	State             string   `json:"state"`
	Leader            string   `json:"leader"`
	Term              uint64   `json:"term"`
	CommitIndex       uint64   `json:"commit_index"`
	AppliedIndex      uint64   `json:"applied_index"`
	LastIndex         uint64   `json:"last_index"`
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	Voters            []string `json:"voters"`
	Err               string   `json:"err,omitempty"`
}

// Wire returns s in its wire form.
func (s Stats) Wire() WireStats {
	r := WireStats{ID: s.ID.String(), State: s.State, Term: s.Term, CommitIndex: s.CommitIndex,
		AppliedIndex: s.AppliedIndex, LastIndex: s.LastIndex, LastSnapshotIndex: s.LastSnapshotIndex, Err: s.Err, Voters: []string{}}
	if s.Leader != "" {
		r.Leader = s.Leader.String()
	}
	for _, sv := range s.Servers {
		if sv.Voter {
			r.Voters = append(r.Voters, sv.ID.String())
		}
	}
	return r
}

// ClusterStats asks every server of this replica's Raft configuration for
// its Stats in parallel, each within replicaStatsTimeout; its own entry
// comes first, and a replica that does not answer gets an entry with State
// "Unreachable" and Err set.
func (n *Node) ClusterStats(ctx context.Context) []Stats {
	own := n.Stats()
	out := []Stats{own}
	var others []peer.ID
	for _, sv := range own.Servers {
		if sv.ID != own.ID {
			others = append(others, sv.ID)
		}
	}
	res := make([]Stats, len(others))
	var wg sync.WaitGroup
	for i, id := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, replicaStatsTimeout)
			defer cancel()
			st, err := n.PeerStats(c, id)
			if err != nil {
				st = Stats{ID: id, State: "Unreachable", Err: err.Error()}
			}
			res[i] = st
		}()
	}
	wg.Wait()
	return append(out, res...)
}

// askReplicas sends req to the coordinators of fed other than the host
// itself until one accepts it, following not-the-leader redirects; it
// retries for as long as ctx allows (a cluster may be electing a leader).
// It is the client side of ProtocolID for the join and leave commands,
// which talk to replicas from a process that is not (yet) one of them.
func askReplicas(ctx context.Context, h *p2p.Host, fed *p2p.Federation, req adminRequest, log *slog.Logger) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var lastErr error
	try := func(id peer.ID) (redirect peer.ID, ok bool) {
		m, known := fed.Lookup(id)
		if !known || m.Role != p2p.RoleCoordinator || id == h.ID() {
			return "", false
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := h.Connect(c, m.AddrInfo()); err != nil {
			lastErr = fmt.Errorf("coordinator %s: %w", m.Name, err)
			return "", false
		}
		var out wrapperspb.BytesValue
		if err := p2p.NewClient(h).Request(c, id, ProtocolID, wrapperspb.Bytes(body), &out); err != nil {
			lastErr = fmt.Errorf("coordinator %s: %w", m.Name, err)
			return "", false
		}
		var resp adminResponse
		if err := json.Unmarshal(out.Value, &resp); err != nil {
			lastErr = fmt.Errorf("coordinator %s: malformed answer: %w", m.Name, err)
			return "", false
		}
		if resp.Err == "" {
			log.Info("replica "+string(req.Op)+" accepted", "by", m.Name, "peer", req.Peer)
			return "", true
		}
		lastErr = fmt.Errorf("coordinator %s: %s", m.Name, resp.Err)
		if l, err := peer.Decode(resp.Leader); err == nil && l != id {
			return l, false
		}
		return "", false
	}
	backoff := 200 * time.Millisecond
	for {
		for _, m := range fed.Coordinators() {
			redirect, ok := try(m.ID)
			if ok {
				return nil
			}
			if redirect != "" {
				if _, ok := try(redirect); ok {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = errors.New("no other coordinator in the federation file")
			}
			return fmt.Errorf("replica %s of %s: %w (last error: %v)", req.Op, req.Peer, ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// RequestJoin asks the running replicas to add h (a coordinator starting
// with `sovereign coordinator join`) as a voter.
func RequestJoin(ctx context.Context, h *p2p.Host, fed *p2p.Federation, log *slog.Logger) error {
	c, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return askReplicas(c, h, fed, adminRequest{Op: opJoin, Peer: h.ID().String(), Addrs: h.Addrs()}, log)
}

// RequestLeave asks the running replicas (every coordinator of fed but h)
// to remove target from the Raft group.
func RequestLeave(ctx context.Context, h *p2p.Host, fed *p2p.Federation, target peer.ID, log *slog.Logger) error {
	return askReplicas(ctx, h, fed, adminRequest{Op: opLeave, Peer: target.String()}, log)
}

// Server is one member of the Raft configuration.
type Server struct {
	ID    peer.ID `json:"id"`
	Voter bool    `json:"voter"`
}

// UnmarshalJSON decodes a Server; an invalid peer ID is reported as the
// server's id.
func (s *Server) UnmarshalJSON(b []byte) error {
	var w struct {
		ID    string `json:"id"`
		Voter bool   `json:"voter"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	id, err := peer.Decode(w.ID)
	if err != nil {
		return fmt.Errorf("server id: %q is not a peer ID: %w", w.ID, err)
	}
	*s = Server{ID: id, Voter: w.Voter}
	return nil
}

// Stats is one replica's view of the cluster, what `sovereign status` shows
// per replica.
type Stats struct {
	// ID is the replica; State is "Leader", "Follower", "Candidate" or
	// "Shutdown".
	ID    peer.ID `json:"id"`
	State string  `json:"state"`
	// Leader is the leader this replica knows ("" when none): followers
	// answer status queries with it so that clients can redirect.
	Leader peer.ID `json:"leader"`
	Term   uint64  `json:"term"`
	// CommitIndex is the highest log index known committed; AppliedIndex
	// the highest applied to the FSM; LastIndex the last in the log.
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastIndex         uint64 `json:"last_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	// LastContact is when this replica last heard from the leader (zero on
	// the leader itself and before any contact).
	LastContact time.Time `json:"last_contact"`
	// Servers is the Raft configuration as this replica knows it.
	Servers []Server `json:"servers"`
	// Err is the storage error that stopped this replica's FSM, if any.
	Err string `json:"err,omitempty"`
}

// UnmarshalJSON decodes Stats as encoding/json writes them. The peer IDs are
// read as strings first: an empty one (no leader known, or an entry for a
// replica that could not be named) decodes to "", which peer.ID's own
// UnmarshalJSON refuses; any other string must be a valid peer ID, and an
// invalid one is reported with its field.
func (s *Stats) UnmarshalJSON(b []byte) error {
	// plain has Stats' fields without its methods; the string fields of
	// the outer struct shadow its peer-ID fields of the same JSON names.
	type plain Stats
	var w struct {
		plain
		ID     string `json:"id"`
		Leader string `json:"leader"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("replica stats: %w", err)
	}
	id, err := decodeOptionalPeer(w.ID)
	if err != nil {
		return fmt.Errorf("replica stats: id: %w", err)
	}
	leader, err := decodeOptionalPeer(w.Leader)
	if err != nil {
		return fmt.Errorf("replica stats of %s: leader: %w", w.ID, err)
	}
	*s = Stats(w.plain)
	s.ID, s.Leader = id, leader
	return nil
}

// decodeOptionalPeer decodes a peer ID, "" meaning none.
func decodeOptionalPeer(s string) (peer.ID, error) {
	if s == "" {
		return "", nil
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a peer ID: %w", s, err)
	}
	return id, nil
}

// Stats reports this replica's view.
func (n *Node) Stats() Stats {
	s := Stats{ID: n.id, State: n.raft.State().String(), Leader: n.Leader(), Term: n.raft.CurrentTerm(),
		CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex(), LastIndex: n.raft.LastIndex()}
	if n.raft.State() != raft.Leader {
		s.LastContact = n.raft.LastContact()
	}
	if v, err := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64); err == nil {
		s.LastSnapshotIndex = v
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, sv := range f.Configuration().Servers {
			p, err := peer.Decode(string(sv.ID))
			if err != nil {
				continue
			}
			s.Servers = append(s.Servers, Server{ID: p, Voter: sv.Suffrage == raft.Voter})
		}
	}
	if err := n.fsm.Err(); err != nil {
		s.Err = err.Error()
	}
	return s
}
