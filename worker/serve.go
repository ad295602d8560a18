package worker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"slices"
	"strings"
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

// SoftwareVersion is what a worker reports in its Hello.
const SoftwareVersion = "sovereign/0.2"

// ServeOptions tunes a Server. Zero values take the defaults noted.
type ServeOptions struct {
	// Logger receives connection and request lines (nil: slog.Default()).
	Logger *slog.Logger
	// Seed drives the jitter of the redial backoff.
	Seed int64
	// MinBackoff and MaxBackoff bound the wait before redialling a
	// coordinator (defaults 200 ms and 2 s); the wait doubles after each
	// failure, with a random part of up to half of it.
	MinBackoff, MaxBackoff time.Duration
	// StageTimeout bounds each request the coordinator sends, training
	// included (default 10 minutes).
	StageTimeout time.Duration
	// MaxFrame bounds every request frame (default p2p.DefaultMaxFrame).
	MaxFrame int
	// ConfirmTimeout bounds the wait for the coordinator replicas to
	// confirm a survivor set (default 10 s; see confirmSurvivors).
	ConfirmTimeout time.Duration
}

// Server exposes a Node on a p2p.Host: it registers the handlers of the
// round's stages (wire.ProtoAdvertise, ProtoShareKeys, ProtoMasked,
// ProtoConsistency, ProtoUnmask, ProtoEvaluate), answerable by
// coordinators only, and, in Run, dials every coordinator of the
// federation and says Hello, redialling with exponential backoff when the
// connection drops. Models are fetched by hash from the coordinator that
// asks (p2p.FetchBlob) and checked against the announced size. Before it
// signs or unmasks a survivor set it confirms the set with a majority of
// the coordinator replicas (confirmSurvivors). A refusal or an invalid
// request is answered with a Refusal naming the reason.
type Server struct {
	h    *p2p.Host
	node *Node
	st   *Store
	log  *slog.Logger
	opts ServeOptions

	mu     sync.Mutex
	rng    *rand.Rand
	models map[[32]byte][]float32 // small cache of fetched models
	order  [][32]byte
	downs  map[peer.ID][]chan struct{}
	notify *network.NotifyBundle
	// confirmed[round] are the keys of what a majority of the coordinator
	// replicas confirmed for round (its announcement, its survivor set).
	confirmed map[uint64][]string
}

// NewServer registers node's stage handlers on h. st must be node's store.
func NewServer(h *p2p.Host, node *Node, st *Store, opts ServeOptions) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(2*time.Second, opts.MinBackoff)
	}
	if opts.StageTimeout <= 0 {
		opts.StageTimeout = 10 * time.Minute
	}
	if opts.ConfirmTimeout <= 0 {
		opts.ConfirmTimeout = defaultConfirmTimeout
	}
	s := &Server{
		h: h, node: node, st: st, log: opts.Logger.With("worker", node.Name()), opts: opts,
		rng:       rand.New(rand.NewSource(opts.Seed)),
		models:    make(map[[32]byte][]float32),
		downs:     make(map[peer.ID][]chan struct{}),
		confirmed: make(map[uint64][]string),
	}
	s.notify = &network.NotifyBundle{DisconnectedF: func(n network.Network, c network.Conn) {
		p := c.RemotePeer()
		if n.Connectedness(p) == network.Connected {
			return
		}
		s.mu.Lock()
		chs := s.downs[p]
		delete(s.downs, p)
		s.mu.Unlock()
		for _, ch := range chs {
			close(ch)
		}
	}}
	h.LibP2P().Network().Notify(s.notify)
	handlers := []struct {
		id protocol.ID
		fn p2p.Handler
	}{
		{wire.ProtoAdvertise, s.handleAdvertise},
		{wire.ProtoShareKeys, s.handleShareKeys},
		{wire.ProtoMasked, s.handleMasked},
		{wire.ProtoConsistency, s.handleConsistency},
		{wire.ProtoUnmask, s.handleUnmask},
		{wire.ProtoEvaluate, s.handleEvaluate},
		{p2p.ProtoStudyPlan, s.handleStudyPlan},
	}
	for _, hd := range handlers {
		spec := p2p.ProtocolSpec{ID: hd.id, Roles: []p2p.Role{p2p.RoleCoordinator}, Timeout: opts.StageTimeout, MaxFrame: opts.MaxFrame}
		if err := h.Handle(spec, hd.fn); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close unregisters the handlers.
func (s *Server) Close() {
	for _, id := range []protocol.ID{wire.ProtoAdvertise, wire.ProtoShareKeys, wire.ProtoMasked, wire.ProtoConsistency, wire.ProtoUnmask, wire.ProtoEvaluate, p2p.ProtoStudyPlan} {
		s.h.RemoveHandler(id)
	}
	s.h.LibP2P().Network().StopNotify(s.notify)
}

// Run keeps a connection to every coordinator of the federation, saying
// Hello on each new one, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	coords := s.h.Federation().Coordinators()
	if len(coords) == 0 {
		return errors.New("worker: the federation file lists no coordinator")
	}
	var wg sync.WaitGroup
	for _, c := range coords {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.keep(ctx, c)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// backoff returns the wait after the n-th failure in a row (n ≥ 1).
func (s *Server) backoff(n int) time.Duration {
	d := s.opts.MinBackoff
	for i := 1; i < n && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.opts.MaxBackoff)
	s.mu.Lock()
	j := time.Duration(s.rng.Int63n(int64(d/2) + 1))
	s.mu.Unlock()
	return d/2 + j
}

// keep dials coordinator c, says Hello, waits for the connection to drop
// and starts again, backing off after failures.
func (s *Server) keep(ctx context.Context, c p2p.Member) {
	log := s.log.With("peer", c.ID.String(), "coordinator", c.Name)
	failures := 0
	for ctx.Err() == nil {
		down := s.watch(c.ID)
		err := s.hello(ctx, c)
		if err == nil {
			if failures > 0 {
				log.Info("reconnected to coordinator", "attempts", failures+1)
			} else {
				log.Info("joined coordinator")
			}
			failures = 0
			select {
			case <-ctx.Done():
				return
			case <-down:
				log.Warn("connection to coordinator lost; redialling")
				s.node.obs.Redialed(c.Name)
				continue
			}
		}
		failures++
		wait := s.backoff(failures)
		log.Warn("cannot reach coordinator", "err", err, "retry_in", wait.String(), "attempt", failures)
		s.node.obs.Redialed(c.Name)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// watch returns a channel closed when the last connection to p drops.
func (s *Server) watch(p peer.ID) <-chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	s.downs[p] = append(s.downs[p], ch)
	s.mu.Unlock()
	return ch
}

func (s *Server) hello(ctx context.Context, c p2p.Member) error {
	// keep already backs off between attempts; libp2p's own dial backoff
	// (seconds after one failed dial) would otherwise refuse the redials to
	// a coordinator that has just restarted, and the worker would miss the
	// round its new leader resumes.
	ctx = network.WithForceDirectDial(ctx, "worker redials a coordinator")
	if err := s.h.Connect(ctx, c.AddrInfo()); err != nil {
		return err
	}
	req := &pb.Hello{Name: s.node.Name(), SoftwareVersion: SoftwareVersion,
		Capabilities: []string{"secagg+", "fedprox", "dp-distributed"}, MinCohort: uint32(s.node.Policy().MinCohort)}
	var ack pb.HelloAck
	cl := &p2p.Client{Host: s.h, Timeout: 30 * time.Second}
	if err := cl.Request(ctx, c.ID, p2p.ProtoHello, req, &ack); err != nil {
		return s.explainRefusal(ctx, c, err)
	}
	if !ack.Accepted {
		return fmt.Errorf("coordinator %s refused hello: %s", c.Name, ack.Reason)
	}
	if p := ack.Plan; p != nil {
		reasons, warnings := s.node.CheckPlan(planFromPB(p))
		var pack pb.Ack
		// The coordinator counts this worker online once the check
		// arrives: a failed delivery is a failed Hello (retried).
		if err := cl.Request(ctx, c.ID, p2p.ProtoPlanCheck, &pb.PlanCheck{Reasons: reasons, Warnings: warnings}, &pack); err != nil {
			return fmt.Errorf("coordinator %s: plan check: %w", c.Name, err)
		}
		if pack.Refusal != nil {
			return fmt.Errorf("coordinator %s refused the plan check: %s", c.Name, pack.Refusal.Reason)
		}
	}
	return nil
}

// planFromPB reads a study plan as the worker checks it.
func planFromPB(p *pb.StudyPlan) StudyPlan {
	plan := StudyPlan{ModelSpec: p.ModelSpec, NumParams: int(min(p.NumParams, 1<<40)), PlannedRounds: int(min(p.PlannedRounds, 1<<30)),
		PlannedEpsilon: p.PlannedEpsilon, DP: p.Dp, Cohort: int(p.Cohort), Study: p.Study}
	if len(p.SchemaSha256) == 32 {
		copy(plan.SchemaHash[:], p.SchemaSha256)
	}
	return plan
}

// handleStudyPlan answers a coordinator's study plan (before a study
// starts, or before a new leader samples for it) with this worker's
// verdict, as at Hello.
func (s *Server) handleStudyPlan(_ context.Context, st *p2p.Stream) error {
	var m pb.StudyPlan
	if err := st.ReadMsg(&m); err != nil {
		return err
	}
	if len(m.Study) > wire.MaxStudyName || len(m.ModelSpec) > 4096 || m.PlannedEpsilon < 0 || m.PlannedEpsilon != m.PlannedEpsilon {
		s.log.Warn("study plan refused: malformed", "peer", st.Peer().String(), "study", len(m.Study), "model_spec", len(m.ModelSpec))
		return st.WriteMsg(&pb.PlanCheck{Study: m.Study, Reasons: []string{"the study plan is malformed (study name, model spec or planned ε out of range)"}})
	}
	reasons, warnings := s.node.CheckPlan(planFromPB(&m))
	return st.WriteMsg(&pb.PlanCheck{Study: m.Study, Reasons: reasons, Warnings: warnings})
}

// ErrNotEnrolled is what hello's error wraps when a coordinator closed the
// connection right after the Noise handshake succeeded: its connection
// gater refuses peers it does not list.
var ErrNotEnrolled = errors.New("not enrolled, or the federation file differs")

// explainRefusal turns the bare error libp2p gives the dialer when the
// coordinator's gater refuses it into one that says so. libp2p runs the
// gater after the handshake, so Connect succeeds (the coordinator's
// identity was proven) and the first stream then fails — "connection
// failed" or a reset — with the connection gone. A refusal by the gater is
// the usual cause; the coordinator's log names the peer it refused.
func (s *Server) explainRefusal(ctx context.Context, c p2p.Member, err error) error {
	if ctx.Err() != nil {
		return err
	}
	// A reset stream may be seen a moment before the swarm drops the
	// closed connection: give it up to half a second.
	for i := 0; s.h.LibP2P().Network().Connectedness(c.ID) == network.Connected; i++ {
		if i == 10 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
	msg := err.Error()
	if !errors.Is(err, network.ErrReset) && !errors.Is(err, io.EOF) && !strings.Contains(msg, "connection failed") &&
		!strings.Contains(msg, "reset") && !strings.Contains(msg, "closed") {
		return err
	}
	return fmt.Errorf("coordinator %s accepted the encrypted handshake, then closed the connection: it does not know this worker's peer ID %s (%w: compare the federation files; the coordinator's log names the refused peer): %v",
		c.Name, s.h.ID(), ErrNotEnrolled, err)
}

// answer decodes one request of type req from st, calls do and writes its
// response. An error from do becomes a Refusal in the response made by
// refuse, so the coordinator learns why.
func answer[Req proto.Message](s *Server, st *p2p.Stream, req Req, do func(Req) (proto.Message, error), refuse func(round uint64, r *pb.Refusal) proto.Message, roundOf func(Req) uint64) error {
	if err := st.ReadMsg(req); err != nil {
		return err
	}
	resp, err := do(req)
	if err != nil {
		round := roundOf(req)
		var rf *Refusal
		if errors.As(err, &rf) {
			s.log.Warn("refused", "round", round, "stage", stageOf(st.Protocol()), "peer", st.Peer().String(), "protocol", string(st.Protocol()), "reason", rf.Reason)
		} else {
			s.log.Warn("request failed", "round", round, "stage", stageOf(st.Protocol()), "peer", st.Peer().String(), "protocol", string(st.Protocol()), "err", err)
		}
		resp = refuse(round, wire.Refusal(round, err.Error()))
	}
	return st.WriteMsg(resp)
}

func (s *Server) handleAdvertise(_ context.Context, st *p2p.Stream) error {
	return answer(s, st, &pb.RoundAnnounce{}, func(m *pb.RoundAnnounce) (proto.Message, error) {
		a, err := wire.AnnounceFromPB(m)
		if err != nil {
			return nil, err
		}
		keys, err := s.node.Advertise(*a)
		if err != nil {
			return nil, err
		}
		s.log.Info("advertised keys", "round", a.Round, "stage", secagg.StageAdvertise.String(), "peer", st.Peer().String(), "node", keys.From)
		return wire.AdvertiseKeysToPB(keys), nil
	}, func(r uint64, rf *pb.Refusal) proto.Message {
		return &pb.AdvertiseKeys{Round: r, Refusal: rf}
	}, func(m *pb.RoundAnnounce) uint64 { return m.Round })
}

func (s *Server) handleShareKeys(_ context.Context, st *p2p.Stream) error {
	return answer(s, st, &pb.KeysBroadcast{}, func(m *pb.KeysBroadcast) (proto.Message, error) {
		kb, err := wire.KeyBroadcastFromPB(m)
		if err != nil {
			return nil, err
		}
		shares, err := s.node.ShareKeys(kb)
		if err != nil {
			return nil, err
		}
		s.log.Info("shared keys", "round", kb.Round, "stage", secagg.StageShareKeys.String(), "peer", st.Peer().String(), "shares", len(shares))
		return wire.SharesToPB(kb.Round, 0, shares), nil
	}, func(r uint64, rf *pb.Refusal) proto.Message {
		return &pb.EncryptedShares{Round: r, Refusal: rf}
	}, func(m *pb.KeysBroadcast) uint64 { return m.Round })
}

func (s *Server) handleMasked(ctx context.Context, st *p2p.Stream) error {
	var m pb.EncryptedShares
	if err := st.ReadMsg(&m); err != nil {
		return err
	}
	refuse := func(err error) error {
		s.log.Warn("masked input refused", "round", m.Round, "stage", secagg.StageMaskedInput.String(), "peer", st.Peer().String(), "err", err)
		return st.WriteMsg(&pb.MaskedInputHeader{Round: m.Round, Refusal: wire.Refusal(m.Round, err.Error())})
	}
	sb, err := wire.ShareBundleFromPB(&m)
	if err != nil {
		return refuse(err)
	}
	s.log.Info("masked input requested", "round", sb.Round, "stage", secagg.StageMaskedInput.String(), "peer", st.Peer().String(), "shares", len(sb.Shares))
	var global []float32
	if cached, err := s.st.HasMasked(sb.Round); err != nil {
		return refuse(err)
	} else if !cached {
		a, ok, err := s.st.Announce(sb.Round)
		if err != nil {
			return refuse(err)
		}
		if !ok {
			return refuse(&Refusal{Round: sb.Round, Reason: fmt.Sprintf("no announcement of round %d was accepted", sb.Round)})
		}
		if err := s.confirmAnnounce(ctx, st.Peer(), a); err != nil {
			return refuse(err)
		}
		if a.Purpose == "" {
			// The statistics round sums the site's data, not a model.
			if global, err = s.model(ctx, st.Peer(), a.ModelHash, a.NumParams); err != nil {
				return refuse(err)
			}
		}
	}
	mi, err := s.node.MaskedInput(sb, global)
	if err != nil {
		return refuse(err)
	}
	bp := blobPool.Get().(*[]byte)
	defer blobPool.Put(bp)
	blob := encodeVector((*bp)[:0], mi.Vector)
	*bp = blob
	hdr := wire.MaskedHeader(mi, blob)
	if err := st.WriteMsg(hdr); err != nil {
		return err
	}
	if _, err := p2p.WriteBlob(st, &pb.BlobHeader{Kind: pb.BlobKind_BLOB_KIND_MASKED_INPUT, Name: "masked-input", Round: mi.Round,
		Size: uint64(len(blob)), Sha256: hdr.BlobSha256}, bytes.NewReader(blob)); err != nil {
		return err
	}
	s.log.Info("sent masked input", "round", mi.Round, "stage", secagg.StageMaskedInput.String(), "peer", st.Peer().String(), "words", len(mi.Vector))
	return nil
}

func (s *Server) handleConsistency(ctx context.Context, st *p2p.Stream) error {
	return answer(s, st, &pb.ConsistencyRequest{}, func(m *pb.ConsistencyRequest) (proto.Message, error) {
		req, err := wire.ConsistencyRequestFromPB(m)
		if err != nil {
			return nil, err
		}
		if err := s.confirmSurvivors(ctx, st.Peer(), req.Round, req.Survivors); err != nil {
			return nil, err
		}
		resp, err := s.node.ConsistencyCheck(req)
		if err != nil {
			return nil, err
		}
		s.log.Info("signed survivors", "round", req.Round, "stage", secagg.StageConsistency.String(), "peer", st.Peer().String(), "survivors", len(req.Survivors))
		return wire.ConsistencyResponseToPB(resp), nil
	}, func(r uint64, rf *pb.Refusal) proto.Message {
		return &pb.ConsistencyResponse{Round: r, Refusal: rf}
	}, func(m *pb.ConsistencyRequest) uint64 { return m.Round })
}

func (s *Server) handleUnmask(ctx context.Context, st *p2p.Stream) error {
	return answer(s, st, &pb.UnmaskRequest{}, func(m *pb.UnmaskRequest) (proto.Message, error) {
		req, err := wire.UnmaskRequestFromPB(m)
		if err != nil {
			return nil, err
		}
		if err := s.confirmSurvivors(ctx, st.Peer(), req.Round, req.Survivors); err != nil {
			return nil, err
		}
		resp, err := s.node.Unmask(req)
		if err != nil {
			return nil, err
		}
		s.log.Info("unmasked", "round", req.Round, "stage", secagg.StageUnmask.String(), "peer", st.Peer().String(), "survivors", len(req.Survivors), "dropped", len(req.Dropped))
		return wire.UnmaskResponseToPB(resp), nil
	}, func(r uint64, rf *pb.Refusal) proto.Message {
		return &pb.UnmaskResponse{Round: r, Refusal: rf}
	}, func(m *pb.UnmaskRequest) uint64 { return m.Round })
}

func (s *Server) handleEvaluate(ctx context.Context, st *p2p.Stream) error {
	return answer(s, st, &pb.EvaluateRequest{}, func(m *pb.EvaluateRequest) (proto.Message, error) {
		round, hash, eps, err := wire.EvaluateFromPB(m)
		if err != nil {
			return nil, err
		}
		pin, err := s.node.EvaluateCommittedReport(round, hash, m.ModelSpec, func(numParams int) ([]float32, error) {
			return s.model(ctx, st.Peer(), hash, numParams)
		})
		if err != nil {
			return nil, err
		}
		n, loss, acc := pin.Examples, pin.Loss, pin.Accuracy
		if eps > 0 {
			if err := s.node.Commit(round, eps); err != nil {
				return nil, err
			}
		}
		s.log.Info("evaluated", "round", round, "stage", "evaluate", "peer", st.Peer().String(), "accuracy", acc, "loss", loss, "examples", n)
		return wire.MetricsToPB(round, wire.Metrics{Examples: n, Loss: loss, Accuracy: acc, Binary: pin.Binary}), nil
	}, func(r uint64, rf *pb.Refusal) proto.Message {
		return &pb.MetricsReport{Round: r, Refusal: rf}
	}, func(m *pb.EvaluateRequest) uint64 { return m.Round })
}

// defaultConfirmTimeout bounds how long a worker waits for the
// coordinator replicas to confirm a survivor set (a follower may apply the
// commit a little after the leader).
const defaultConfirmTimeout = 10 * time.Second

// confirmSurvivors checks, before the worker signs or unmasks the survivor
// set idx (node indices) of round that asker sent, that a majority of the
// federation's coordinator replicas hold that set in their Raft-committed
// state (wire.ProtoSurvivors; security review L4): one rogue replica that
// drives a round of its own, or asks for a set the log does not hold, is
// refused and named in the worker's log. A federation with one
// coordinator has a majority of one, the asker itself: nothing to ask.
func (s *Server) confirmSurvivors(ctx context.Context, asker peer.ID, round uint64, idx []uint32) error {
	if len(s.h.Federation().Coordinators()) <= 1 {
		return nil
	}
	a, ok, err := s.st.Announce(round)
	if err != nil {
		return err
	}
	if !ok {
		return &Refusal{Round: round, Reason: fmt.Sprintf("no announcement of round %d was accepted", round)}
	}
	want := make([]string, 0, len(idx))
	for _, i := range idx {
		if i < 1 || int(i) > len(a.Sampled) {
			return s.node.refuse(round, nil, "survivor set names node %d, which was not sampled", i)
		}
		want = append(want, a.Sampled[i-1])
	}
	slices.Sort(want)
	key := "survivors:" + strings.Join(want, ",")
	return s.confirm(ctx, asker, round, "survivor set", key, func(ans *pb.SurvivorAnswer) (known, agree bool, why string) {
		got, known, err := wire.SurvivorAnswerFromPB(ans, round)
		if err != nil || !known {
			return false, false, "no committed survivors"
		}
		if !slices.Equal(got, want) {
			return true, false, fmt.Sprintf("committed %d other survivors", len(got))
		}
		return true, true, ""
	})
}

// confirmAnnounce checks, before the worker trains and sends its masked
// input for a (the point where its privacy budget is spent), that a
// majority of the coordinator replicas committed this very announcement
// (wire.AnnounceDigest; security review L4), so that a rogue replica
// cannot spend the worker's budget on a round of its own.
func (s *Server) confirmAnnounce(ctx context.Context, asker peer.ID, a *Announce) error {
	if len(s.h.Federation().Coordinators()) <= 1 {
		return nil
	}
	want, err := wire.AnnounceDigest(a)
	if err != nil {
		return err
	}
	return s.confirm(ctx, asker, a.Round, "announcement", fmt.Sprintf("announce:%x", want), func(ans *pb.SurvivorAnswer) (known, agree bool, why string) {
		if _, _, err := wire.SurvivorAnswerFromPB(ans, a.Round); err != nil || len(ans.AnnounceSha256) == 0 {
			return false, false, "no committed announcement"
		}
		if !bytes.Equal(ans.AnnounceSha256, want[:]) {
			return true, false, "committed another announcement"
		}
		return true, true, ""
	})
}

// confirm asks every coordinator replica about round (wire.ProtoSurvivors)
// until a majority agree with what asker sent (match), or a majority is out
// of reach, or s.opts.ConfirmTimeout passes; replicas that do not know yet
// (a follower applies a commit a little after the leader) are asked again.
// key caches a confirmation per round. Without a majority the request is
// refused naming asker, and the replicas that disagreed are logged.
func (s *Server) confirm(ctx context.Context, asker peer.ID, round uint64, what, key string, match func(*pb.SurvivorAnswer) (known, agree bool, why string)) error {
	coords := s.h.Federation().Coordinators()
	s.mu.Lock()
	done := slices.Contains(s.confirmed[round], key)
	s.mu.Unlock()
	if done {
		return nil
	}
	need := len(coords)/2 + 1
	ctx, cancel := context.WithTimeout(ctx, s.opts.ConfirmTimeout)
	defer cancel()
	type verdict struct {
		m     p2p.Member
		agree bool
		why   string
	}
	verdicts := make(chan verdict, len(coords))
	cl := &p2p.Client{Host: s.h, Timeout: s.opts.ConfirmTimeout, MaxFrame: s.opts.MaxFrame}
	for _, c := range coords {
		go func() {
			for {
				var ans pb.SurvivorAnswer
				err := cl.Request(ctx, c.ID, wire.ProtoSurvivors, &pb.SurvivorQuery{Round: round}, &ans)
				why := ""
				if err == nil {
					var known, agree bool
					if known, agree, why = match(&ans); known {
						verdicts <- verdict{c, agree, why}
						return
					}
				} else {
					why = err.Error()
				}
				if ctx.Err() != nil {
					verdicts <- verdict{c, false, why}
					return
				}
				// Not applied yet (or unreachable): ask again shortly.
				t := time.NewTimer(50 * time.Millisecond)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
		}()
	}
	agree, answered := 0, 0
	var against []string
	for agree < need && answered < len(coords) && answered-agree <= len(coords)-need {
		v := <-verdicts
		answered++
		if v.agree {
			agree++
		} else {
			against = append(against, fmt.Sprintf("%s (%s)", v.m.Name, v.why))
		}
	}
	cancel()
	if agree < need {
		asking := asker.String()
		if m, ok := s.h.Federation().Lookup(asker); ok {
			asking = m.Name
		}
		s.log.Warn(what+" not confirmed by the coordinator replicas", "round", round, "asker", asking, "peer", asker.String(),
			"confirmed", agree, "need", need, "against", strings.Join(against, "; "))
		return s.node.refuse(round, nil, "%s asked by %s is confirmed by %d of %d coordinator replicas, need %d", what, asking, agree, len(coords), need)
	}
	s.mu.Lock()
	s.confirmed[round] = append(s.confirmed[round], key)
	for r := range s.confirmed {
		if r+16 < round {
			delete(s.confirmed, r)
		}
	}
	s.mu.Unlock()
	return nil
}

// stageOf names the round stage a stage protocol serves, as the
// coordinator's log lines do.
func stageOf(id protocol.ID) string {
	switch id {
	case wire.ProtoAdvertise:
		return secagg.StageAdvertise.String()
	case wire.ProtoShareKeys:
		return secagg.StageShareKeys.String()
	case wire.ProtoMasked:
		return secagg.StageMaskedInput.String()
	case wire.ProtoConsistency:
		return secagg.StageConsistency.String()
	case wire.ProtoUnmask:
		return secagg.StageUnmask.String()
	case wire.ProtoEvaluate:
		return "evaluate"
	}
	return string(id)
}

// blobPool recycles the byte buffers masked vectors are encoded into, one
// per round (a few hundred kilobytes to megabytes each).
var blobPool = sync.Pool{New: func() any { return new([]byte) }}

// encodeVector appends v to dst as little-endian uint32 words, the layout
// of wire.EncodeVector, and returns the extended slice.
func encodeVector(dst []byte, v []uint32) []byte {
	dst = slices.Grow(dst, 4*len(v))
	for _, x := range v {
		dst = binary.LittleEndian.AppendUint32(dst, x)
	}
	return dst
}

// maxModelParams bounds a model fetched without a known size.
const maxModelParams = 1 << 26

// model returns the model with hash h, from the cache or fetched from p.
// numParams > 0 is the size the announcement promised.
func (s *Server) model(ctx context.Context, p peer.ID, h [32]byte, numParams int) ([]float32, error) {
	s.mu.Lock()
	m, ok := s.models[h]
	s.mu.Unlock()
	if ok {
		if numParams > 0 && len(m) != numParams {
			return nil, fmt.Errorf("model %x has %d parameters, the round announced %d", h[:8], len(m), numParams)
		}
		return m, nil
	}
	limit := int64(maxModelParams) * 4
	if numParams > 0 {
		limit = int64(numParams) * 4
	}
	// Decoded as the chunks arrive, into a vector of the announced size:
	// no intermediate byte buffer. FetchBlob checks the SHA-256 of every
	// byte before it returns, and nothing is kept unless it does.
	dec := &modelDecoder{params: make([]float32, 0, max(numParams, 0))}
	if _, err := p2p.FetchBlob(ctx, s.h, p, p2p.Hash(h), dec, limit); err != nil {
		return nil, err
	}
	params, err := dec.finish()
	if err != nil {
		return nil, fmt.Errorf("model %x from %s: %w", h[:8], p, err)
	}
	if numParams > 0 && len(params) != numParams {
		return nil, fmt.Errorf("model %x from %s has %d parameters, the round announced %d", h[:8], p, len(params), numParams)
	}
	s.mu.Lock()
	if _, ok := s.models[h]; !ok {
		s.models[h] = params
		s.order = append(s.order, h)
		for len(s.order) > 2 {
			delete(s.models, s.order[0])
			s.order = s.order[1:]
		}
	}
	s.mu.Unlock()
	return params, nil
}

// modelDecoder is an io.Writer decoding little-endian float32 parameters as
// they are written, refusing non-finite ones; finish returns them.
type modelDecoder struct {
	params  []float32
	partial [4]byte // the bytes of a parameter split across writes
	npart   int
	err     error
}

// Write implements io.Writer.
func (d *modelDecoder) Write(b []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n := len(b)
	if d.npart > 0 {
		k := copy(d.partial[d.npart:], b)
		d.npart += k
		b = b[k:]
		if d.npart < 4 {
			return n, nil
		}
		d.npart = 0
		if d.err = d.add(d.partial[:]); d.err != nil {
			return 0, d.err
		}
	}
	whole := len(b) &^ 3
	if d.err = d.add(b[:whole]); d.err != nil {
		return 0, d.err
	}
	d.npart = copy(d.partial[:], b[whole:])
	return n, nil
}

// add decodes whole parameters from b (len(b) a multiple of 4).
func (d *modelDecoder) add(b []byte) error {
	start := len(d.params)
	d.params = slices.Grow(d.params, len(b)/4)[:start+len(b)/4]
	out := d.params[start:]
	for i := range out {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("parameter %d is %v", start+i, v)
		}
		out[i] = v
	}
	return nil
}

// finish returns the decoded parameters once the whole model was written.
func (d *modelDecoder) finish() ([]float32, error) {
	if d.err != nil {
		return nil, d.err
	}
	if d.npart != 0 || len(d.params) == 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of float32 parameters", 4*len(d.params)+d.npart)
	}
	return d.params, nil
}
