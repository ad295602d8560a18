package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/p2p/pb"
	"github.com/sovereign-fl/sovereign/wire"
)

// NetCohortOptions tunes a NetCohort. Zero values take the defaults noted.
type NetCohortOptions struct {
	// Logger receives joins, departures and failed calls (nil: slog.Default()).
	Logger *slog.Logger
	// CallTimeout bounds each stage call when the caller's context has no
	// sooner deadline (default 10 minutes: the masked-input stage trains).
	CallTimeout time.Duration
	// MaxFrame bounds every frame read from a worker (default
	// p2p.DefaultMaxFrame).
	MaxFrame int
	// Info, if set, fills the HelloAck: the current round and model.
	Info func() (round uint64, model Hash)
	// Plan, if set, is the study plan a HelloAck carries (online: the
	// workers online now); each worker answers its PlanCheck (plan.go).
	// While it returns nil (no driver yet) Hellos are refused as "starting"
	// and the workers retry, so none is online unchecked.
	Plan func(online int) *pb.StudyPlan
}

// NetCohort is the libp2p implementation of Cohort. Workers dial the
// coordinator and say Hello (p2p.ProtoHello); while their connection stays
// up they are online. The round driver's calls open one stream per worker
// and stage on that connection (wire.ProtoAdvertise, ProtoShareKeys,
// ProtoMasked, ProtoConsistency, ProtoUnmask, ProtoEvaluate); each call ends at its context's
// deadline, resetting the stream; a worker's refusal comes back as a
// *RefusalError. Masked vectors travel as chunked, SHA-256-checked blobs.
// Safe for concurrent use.
type NetCohort struct {
	h      *p2p.Host
	client *p2p.Client
	log    *slog.Logger
	opts   NetCohortOptions

	mu     sync.Mutex
	hello  map[peer.ID]string // peers that said Hello → member name
	checks map[peer.ID]*pb.PlanCheck
	// studyChecks are the verdicts on created studies' plans, by study
	// (netcohort_studies.go).
	studyChecks map[string]map[peer.ID]*pb.PlanCheck
	// pending are peers whose Hello got a plan and whose check has not
	// arrived yet.
	pending map[peer.ID]string
	notify  *network.NotifyBundle
}

// NewNetCohort registers the Hello handler on h and watches h's connections.
func NewNetCohort(h *p2p.Host, opts NetCohortOptions) (*NetCohort, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 10 * time.Minute
	}
	c := &NetCohort{
		h:       h,
		client:  &p2p.Client{Host: h, Timeout: opts.CallTimeout, MaxFrame: opts.MaxFrame},
		log:     opts.Logger,
		opts:    opts,
		hello:   make(map[peer.ID]string),
		checks:  make(map[peer.ID]*pb.PlanCheck),
		pending: make(map[peer.ID]string),

		studyChecks: make(map[string]map[peer.ID]*pb.PlanCheck),
	}
	c.notify = &network.NotifyBundle{DisconnectedF: func(n network.Network, conn network.Conn) {
		p := conn.RemotePeer()
		if n.Connectedness(p) == network.Connected {
			return
		}
		c.mu.Lock()
		name, ok := c.hello[p]
		delete(c.hello, p)
		delete(c.pending, p)
		for _, m := range c.studyChecks {
			delete(m, p) // asked again when it returns: its policy may have changed
		}
		c.mu.Unlock()
		if ok {
			c.log.Info("worker left", "peer", p.String(), "member", name)
		}
	}}
	h.LibP2P().Network().Notify(c.notify)
	err := h.Handle(p2p.ProtocolSpec{ID: p2p.ProtoHello, Roles: []p2p.Role{p2p.RoleWorker}, Timeout: 30 * time.Second, MaxFrame: 64 << 10}, c.handleHello)
	if err == nil {
		err = h.Handle(p2p.ProtocolSpec{ID: p2p.ProtoPlanCheck, Roles: []p2p.Role{p2p.RoleWorker}, Timeout: 30 * time.Second, MaxFrame: 64 << 10}, c.handlePlanCheck)
	}
	if err != nil {
		h.RemoveHandler(p2p.ProtoHello)
		h.LibP2P().Network().StopNotify(c.notify)
		return nil, err
	}
	return c, nil
}

// Close stops accepting Hellos and watching connections.
func (c *NetCohort) Close() {
	c.h.RemoveHandler(p2p.ProtoHello)
	c.h.RemoveHandler(p2p.ProtoPlanCheck)
	c.h.LibP2P().Network().StopNotify(c.notify)
}

func (c *NetCohort) handleHello(_ context.Context, s *p2p.Stream) error {
	var m pb.Hello
	if err := s.ReadMsg(&m); err != nil {
		return err
	}
	member := s.Remote()
	ack := &pb.HelloAck{Accepted: true}
	if m.Name != member.Name {
		ack = &pb.HelloAck{Accepted: false, Reason: fmt.Sprintf("hello names %q but peer %s is enrolled as %q", m.Name, s.Peer(), member.Name)}
		c.log.Warn("hello refused", "peer", s.Peer().String(), "member", member.Name, "reason", ack.Reason)
	} else {
		if c.opts.Info != nil {
			r, h := c.opts.Info()
			ack.CurrentRound, ack.CurrentModelSha256 = r, h[:]
		}
		if c.opts.Plan != nil {
			if ack.Plan = c.opts.Plan(len(c.Online()) + 1); ack.Plan == nil {
				// The study's driver is not built yet (the replica is
				// starting): a worker let in now would never be checked
				// against the plan and would be sampled for rounds it
				// must refuse. It says Hello again after its backoff.
				c.log.Info("hello deferred: no study plan yet", "peer", s.Peer().String(), "member", member.Name)
				return s.WriteMsg(&pb.HelloAck{Accepted: false, Reason: "the coordinator is starting and has no study plan yet; hello again"})
			}
		}
		c.mu.Lock()
		_, again := c.hello[s.Peer()]
		if ack.Plan != nil {
			// Online once its plan check arrives (handlePlanCheck), so
			// that no round is announced to it before.
			c.pending[s.Peer()] = member.Name
		} else {
			c.hello[s.Peer()] = member.Name
		}
		c.mu.Unlock()
		if !again {
			c.log.Info("worker joined", "peer", s.Peer().String(), "member", member.Name, "version", m.SoftwareVersion)
		}
	}
	return s.WriteMsg(ack)
}

// Online implements Cohort: the workers that said Hello and are connected
// now, sorted.
func (c *NetCohort) Online() []WorkerID {
	netw := c.h.LibP2P().Network()
	c.mu.Lock()
	out := make([]WorkerID, 0, len(c.hello))
	for p := range c.hello {
		if netw.Connectedness(p) == network.Connected {
			out = append(out, WorkerID(p.String()))
		}
	}
	c.mu.Unlock()
	slices.Sort(out)
	return out
}

func (c *NetCohort) peerOf(w WorkerID) (peer.ID, error) {
	p, err := peer.Decode(string(w))
	if err != nil {
		return "", fmt.Errorf("worker %q: not a peer ID: %w", w, err)
	}
	if _, ok := c.h.Federation().Lookup(p); !ok {
		return "", fmt.Errorf("worker %s: %w", w, p2p.ErrNotEnrolled)
	}
	return p, nil
}

// request sends req to w on pid and reads resp; the stream is reset when
// ctx ends first.
func (c *NetCohort) request(ctx context.Context, w WorkerID, pid protocol.ID, req, resp proto.Message) error {
	p, err := c.peerOf(w)
	if err != nil {
		return err
	}
	s, err := c.client.Open(ctx, p, pid)
	if err != nil {
		return fmt.Errorf("worker %s: %w", w, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if err := s.WriteMsg(req); err != nil {
		_ = s.Reset()
		return fmt.Errorf("worker %s: %s: send: %w", w, pid, ctxErr(ctx, err))
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return fmt.Errorf("worker %s: %s: close write: %w", w, pid, ctxErr(ctx, err))
	}
	if err := s.ReadMsg(resp); err != nil {
		_ = s.Reset()
		return fmt.Errorf("worker %s: %s: %w", w, pid, ctxErr(ctx, err))
	}
	return s.Close()
}

// ctxErr prefers the context's error, which says why a stream was reset.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

func refusal(w WorkerID, round uint64, r *pb.Refusal) error {
	reason, ok := wire.RefusalReason(r)
	if !ok {
		return nil
	}
	return &RefusalError{Worker: w, Round: round, Reason: reason}
}

// Advertise implements Cohort (stage 0).
func (c *NetCohort) Advertise(ctx context.Context, w WorkerID, a *Announce) (secagg.AdvertiseKeys, error) {
	req, err := wire.AnnounceToPB(a)
	if err != nil {
		return secagg.AdvertiseKeys{}, fmt.Errorf("round %d: %w", a.Round, err)
	}
	var resp pb.AdvertiseKeys
	if err := c.request(ctx, w, wire.ProtoAdvertise, req, &resp); err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	if err := refusal(w, a.Round, resp.Refusal); err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	k, err := wire.AdvertiseKeysFromPB(&resp, a.Round)
	if err != nil {
		return secagg.AdvertiseKeys{}, fmt.Errorf("worker %s: %w", w, err)
	}
	if want := a.NodeIndex(w); k.From != want {
		return secagg.AdvertiseKeys{}, fmt.Errorf("worker %s: round %d: keys from node %d, the worker is node %d", w, a.Round, k.From, want)
	}
	return k, nil
}

// ShareKeys implements Cohort (stage 1).
func (c *NetCohort) ShareKeys(ctx context.Context, w WorkerID, kb secagg.KeyBroadcast) ([]secagg.EncryptedShare, error) {
	var resp pb.EncryptedShares
	if err := c.request(ctx, w, wire.ProtoShareKeys, wire.KeyBroadcastToPB(kb), &resp); err != nil {
		return nil, err
	}
	if err := refusal(w, kb.Round, resp.Refusal); err != nil {
		return nil, err
	}
	shares, err := wire.SharesFromPB(&resp, kb.Round)
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", w, err)
	}
	for i, s := range shares {
		if s.From != kb.To {
			return nil, fmt.Errorf("worker %s: round %d: share %d claims sender node %d, the worker is node %d", w, kb.Round, i, s.From, kb.To)
		}
	}
	return shares, nil
}

// MaskedInput implements Cohort (stage 2): the shares go out as one frame,
// the masked vector comes back as a header and a chunked blob whose
// SHA-256 must match the header.
func (c *NetCohort) MaskedInput(ctx context.Context, w WorkerID, sb secagg.ShareBundle, dim int) (secagg.MaskedInput, error) {
	fail := func(err error) (secagg.MaskedInput, error) {
		return secagg.MaskedInput{}, fmt.Errorf("worker %s: round %d: masked input: %w", w, sb.Round, err)
	}
	p, err := c.peerOf(w)
	if err != nil {
		return fail(err)
	}
	s, err := c.client.Open(ctx, p, wire.ProtoMasked)
	if err != nil {
		return fail(err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	abort := func(err error) (secagg.MaskedInput, error) {
		_ = s.Reset()
		return fail(ctxErr(ctx, err))
	}
	if err := s.WriteMsg(wire.SharesToPB(sb.Round, sb.To, sb.Shares)); err != nil {
		return abort(err)
	}
	if err := s.CloseWrite(); err != nil {
		return abort(err)
	}
	var hdr pb.MaskedInputHeader
	if err := s.ReadMsg(&hdr); err != nil {
		return abort(err)
	}
	if err := refusal(w, sb.Round, hdr.Refusal); err != nil {
		_ = s.Close()
		return secagg.MaskedInput{}, err
	}
	n, err := wire.CheckMaskedHeader(&hdr, sb.Round, sb.To, dim+1)
	if err != nil {
		return abort(err)
	}
	var buf bytes.Buffer
	_, sum, err := p2p.ReceiveBlob(s, int64(hdr.BlobSize), func(bh *pb.BlobHeader) (io.Writer, error) {
		if bh.Size != hdr.BlobSize {
			return nil, fmt.Errorf("blob of %d bytes, header announced %d", bh.Size, hdr.BlobSize)
		}
		buf.Grow(int(bh.Size))
		return &buf, nil
	})
	if err != nil {
		return abort(err)
	}
	if !bytes.Equal(sum[:], hdr.BlobSha256) {
		return abort(fmt.Errorf("%w: blob hashes to %s, header named %x", p2p.ErrBlobHashMismatch, sum, hdr.BlobSha256))
	}
	v, err := wire.DecodeVector(buf.Bytes(), n, 32)
	if err != nil {
		return abort(err)
	}
	complaints, err := wire.MaskedComplaints(&hdr)
	if err != nil {
		return abort(err)
	}
	_ = s.Close()
	return secagg.MaskedInput{Round: sb.Round, From: sb.To, Vector: v, Complaints: complaints}, nil
}

// ConsistencyCheck implements Cohort (Bonawitz et al. 2017, round 4). The
// signature is returned as sent; the driver's SecAgg+ server verifies it
// under the worker's identity.
func (c *NetCohort) ConsistencyCheck(ctx context.Context, w WorkerID, req secagg.ConsistencyRequest) (secagg.ConsistencyResponse, error) {
	var resp pb.ConsistencyResponse
	if err := c.request(ctx, w, wire.ProtoConsistency, wire.ConsistencyRequestToPB(req), &resp); err != nil {
		return secagg.ConsistencyResponse{}, err
	}
	if err := refusal(w, req.Round, resp.Refusal); err != nil {
		return secagg.ConsistencyResponse{}, err
	}
	r, err := wire.ConsistencyResponseFromPB(&resp, req.Round, req.To)
	if err != nil {
		return secagg.ConsistencyResponse{}, fmt.Errorf("worker %s: %w", w, err)
	}
	return r, nil
}

// Unmask implements Cohort (stage 3).
func (c *NetCohort) Unmask(ctx context.Context, w WorkerID, req secagg.UnmaskRequest) (secagg.UnmaskResponse, error) {
	var resp pb.UnmaskResponse
	if err := c.request(ctx, w, wire.ProtoUnmask, wire.UnmaskRequestToPB(req), &resp); err != nil {
		return secagg.UnmaskResponse{}, err
	}
	if err := refusal(w, req.Round, resp.Refusal); err != nil {
		return secagg.UnmaskResponse{}, err
	}
	r, err := wire.UnmaskResponseFromPB(&resp, req.Round, req.To)
	if err != nil {
		return secagg.UnmaskResponse{}, fmt.Errorf("worker %s: %w", w, err)
	}
	return r, nil
}

// Evaluate implements Cohort: the worker fetches the model by hash from
// this coordinator and reports its metrics.
func (c *NetCohort) Evaluate(ctx context.Context, w WorkerID, round uint64, modelHash [32]byte) (Metrics, error) {
	var resp pb.MetricsReport
	req := &pb.EvaluateRequest{Round: round, ModelSha256: modelHash[:]}
	if err := c.request(ctx, w, wire.ProtoEvaluate, req, &resp); err != nil {
		return Metrics{}, err
	}
	if err := refusal(w, round, resp.Refusal); err != nil {
		return Metrics{}, err
	}
	m, err := wire.MetricsFromPB(&resp, round)
	if err != nil {
		return Metrics{}, fmt.Errorf("worker %s: %w", w, err)
	}
	return Metrics(m), nil
}

// ServeStatus answers p2p.ProtoStatus on h from status, for any enrolled
// member (and for the `sovereign status` command, which runs with a
// member's identity). leader, if set, names the Raft leader this replica
// knows, so that a client can redirect.
func ServeStatus(h *p2p.Host, name string, status func() Status, leader func() peer.ID) error {
	return h.Handle(p2p.ProtocolSpec{ID: p2p.ProtoStatus, Roles: p2p.AllRoles(), Timeout: 10 * time.Second, MaxFrame: 4096}, func(_ context.Context, s *p2p.Stream) error {
		var req pb.StatusRequest
		if err := s.ReadMsg(&req); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		resp := StatusToPB(name, status(), h.Federation(), req.IncludeMembers)
		if leader != nil {
			if l := leader(); l != "" {
				resp.Leader = []byte(l)
			}
		}
		return s.WriteMsg(resp)
	})
}

// StatusToPB encodes a coordinator's status; with members set it lists
// every enrolled member and whether it is online.
// incompatibleToPB maps plan-check verdicts, naming the workers.
func incompatibleToPB(ws []IncompatibleWorker, fed *p2p.Federation) []*pb.IncompatibleWorker {
	var out []*pb.IncompatibleWorker
	for _, iw := range ws {
		if p, err := peer.Decode(string(iw.Worker)); err == nil {
			m := &pb.IncompatibleWorker{PeerId: []byte(p), Reasons: iw.Reasons, Warnings: iw.Warnings}
			if fed != nil {
				if mm, ok := fed.Lookup(p); ok {
					m.Name = mm.Name
				}
			}
			out = append(out, m)
		}
	}
	return out
}

func StatusToPB(name string, st Status, fed *p2p.Federation, members bool) *pb.StatusResponse {
	resp := &pb.StatusResponse{
		Name: name, Role: pb.Role_ROLE_COORDINATOR, Round: st.Round, Stage: st.Stage,
		Accuracy: st.Accuracy, AccuracyRound: st.AccuracyRound,
		LedgerLength: uint64(st.LedgerLength), CommittedRounds: uint64(st.CommittedRounds),
		InFlight: st.InFlight, Failures: uint64(st.Failures), SoftwareVersion: SoftwareVersion,
		StudyState: st.StudyState, EndReason: st.EndReason, RecentFailures: st.RecentFailures,
		PlannedRounds: uint64(max(0, st.PlannedRounds)), EtaSeconds: st.ETA.Seconds(),
	}
	resp.Incompatible = incompatibleToPB(st.Incompatible, fed)
	if !st.LedgerHead.IsZero() {
		resp.LedgerHead = append([]byte(nil), st.LedgerHead[:]...)
	}
	for _, ss := range st.Studies {
		m := &pb.StudyStatus{Name: ss.Study, State: ss.StudyState, EndReason: ss.EndReason, Model: ss.Model,
			CommittedRounds: uint64(ss.CommittedRounds), Attempts: uint64(ss.Attempts), PlannedRounds: uint64(max(0, ss.PlannedRounds)),
			RecentFailures: ss.RecentFailures, Epsilon: ss.Epsilon, Accuracy: ss.Accuracy, EtaSeconds: ss.ETA.Seconds(),
			LedgerLength: uint64(ss.LedgerLength), Incompatible: incompatibleToPB(ss.Incompatible, fed), Stage: ss.Stage}
		if !ss.LedgerHead.IsZero() {
			m.LedgerHead = append([]byte(nil), ss.LedgerHead[:]...)
		}
		resp.Studies = append(resp.Studies, m)
	}
	online := make(map[WorkerID]bool, len(st.Online))
	for _, w := range st.Online {
		online[w] = true
	}
	for _, w := range st.Online {
		if p, err := peer.Decode(string(w)); err == nil {
			m := &pb.MemberStatus{PeerId: []byte(p), Role: pb.Role_ROLE_WORKER, Connected: true}
			if fed != nil {
				if mm, ok := fed.Lookup(p); ok {
					m.Name = mm.Name
				}
			}
			resp.Members = append(resp.Members, m)
		}
	}
	if members && fed != nil {
		for _, mm := range fed.Members() {
			if online[WorkerID(mm.ID.String())] {
				continue
			}
			role := pb.Role_ROLE_WORKER
			switch mm.Role {
			case p2p.RoleCoordinator:
				role = pb.Role_ROLE_COORDINATOR
			case p2p.RoleObserver:
				role = pb.Role_ROLE_OBSERVER
			case p2p.RoleOperator:
				role = pb.Role_ROLE_OPERATOR
			}
			resp.Members = append(resp.Members, &pb.MemberStatus{Name: mm.Name, PeerId: []byte(mm.ID), Role: role})
		}
	}
	return resp
}

// SoftwareVersion is reported in Hello and status answers.
const SoftwareVersion = "sovereign/0.2"

var _ Cohort = (*NetCohort)(nil)

// CommittedSurvivors returns the survivors (worker IDs, sorted) that st
// committed for round, as asker may see them: those of the round in flight
// once its survivors are committed (asker must be sampled in it), or the
// participants of its ledger entry (asker must be one). ok is false when
// st holds none for asker (the round is unknown, failed, not that far yet,
// or not asker's).
func CommittedSurvivors(st *State, round uint64, asker WorkerID) (survivors []WorkerID, ok bool) {
	if c := st.Current; c != nil && c.Round == round {
		if c.Next != secagg.StageConsistency && c.Next != secagg.StageUnmask || c.Announce.NodeIndex(asker) == 0 {
			return nil, false
		}
		out := make([]WorkerID, 0, len(c.Survivors))
		for _, i := range c.Survivors {
			if i >= 1 && int(i) <= len(c.Announce.Sampled) {
				out = append(out, c.Announce.Sampled[i-1])
			}
		}
		slices.Sort(out)
		return out, true
	}
	for _, e := range st.Ledger {
		if e.Round == round && round > 0 && slices.Contains(e.Participants, asker) {
			return slices.Clone(e.Participants), true
		}
	}
	return nil, false
}

// ServeSurvivors answers wire.ProtoSurvivors on h from state, this
// replica's replicated state: the survivor set Raft committed for the
// asked round and, while it is in flight, the digest of its committed
// announcement (wire.AnnounceDigest). Only workers may ask (they confirm an unmask request with a
// majority of the replicas before answering it; security review L4), and
// each learns only the survivors of rounds it was sampled in.
//
// state(round) is the state of the study that round belongs to
// (FSM.StateOfRound).
func ServeSurvivors(h *p2p.Host, state func(round uint64) State) error {
	return h.Handle(p2p.ProtocolSpec{ID: wire.ProtoSurvivors, Roles: []p2p.Role{p2p.RoleWorker}, Timeout: 10 * time.Second, MaxFrame: 64}, func(_ context.Context, s *p2p.Stream) error {
		var q pb.SurvivorQuery
		if err := s.ReadMsg(&q); err != nil {
			return err
		}
		if q.Round == 0 {
			return s.WriteMsg(&pb.SurvivorAnswer{})
		}
		st := state(q.Round)
		surv, ok := CommittedSurvivors(&st, q.Round, WorkerID(s.Peer().String()))
		names := make([]string, len(surv))
		for i, w := range surv {
			names[i] = string(w)
		}
		resp, err := wire.SurvivorAnswerToPB(q.Round, ok, names)
		if err != nil {
			// Worker IDs of a networked federation are peer IDs; answer
			// "unknown" rather than a set the worker cannot read.
			resp = &pb.SurvivorAnswer{Round: q.Round}
		}
		if c := st.Current; c != nil && c.Round == q.Round && c.Announce.NodeIndex(WorkerID(s.Peer().String())) != 0 {
			if d, err := wire.AnnounceDigest(&c.Announce); err == nil {
				resp.AnnounceSha256 = d[:]
			}
		}
		return s.WriteMsg(resp)
	})
}
