package p2p

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
)

// Protocol IDs of the p2p layer and of the roles' joining and status, one
// stream handler each (the round stages' IDs are in package wire; every ID
// and the package that serves it is in docs/ARCHITECTURE.md), following the
// go-libp2p convention "/<app>/<name>/<semver>". A new incompatible version
// gets a new ID; old IDs are never reused for other messages. The message
// flow on each stream is given as request → response (messages of package pb).
const (
	// ProtoHello: a worker joins: Hello → HelloAck. Worker to coordinator.
	ProtoHello protocol.ID = "/sovereign/hello/1.0.0"
	// ProtoPlanCheck: a worker's verdict on the study plan of a HelloAck:
	// PlanCheck → Ack. Worker to coordinator.
	ProtoPlanCheck protocol.ID = "/sovereign/plan-check/1.0.0"
	// ProtoStudyPlan: a study's plan before it starts (or before a new
	// leader samples for it): StudyPlan → PlanCheck. Coordinator to worker
	// (coordinator/netcohort_studies.go, worker/serve.go).
	ProtoStudyPlan protocol.ID = "/sovereign/study-plan/1.0.0"
	// ProtoStudy: an operator's study request (start, pause, resume,
	// stop): JSON of coordinator.StudyRequest in a BytesValue → BytesValue
	// (JSON answer). Operator (role "operator") to coordinator; a follower
	// forwards it to the leader (coordinator/studyproto.go).
	ProtoStudy protocol.ID = "/sovereign/study/1.0.0"
	// ProtoSecAggMasked: SecAgg+ round 2: MaskedInputHeader, then a blob
	// (BlobHeader, BlobChunk..., BlobTrailer) → BlobReceipt. Worker to coordinator.
	ProtoSecAggMasked protocol.ID = "/sovereign/secagg-masked/1.0.0"
	// ProtoStatus: StatusRequest → StatusResponse. Any member to any member.
	ProtoStatus protocol.ID = "/sovereign/status/1.0.0"
	// ProtoBlob: fetch by hash: BlobRequest → BlobFetchResponse, then (when
	// it carries a header) BlobChunk... and BlobTrailer. Served by
	// coordinators, used by workers to fetch models.
	ProtoBlob protocol.ID = "/sovereign/blob/1.0.0"
)

var protocolIDRE = regexp.MustCompile(`^/sovereign/[a-z0-9][a-z0-9-]*/[0-9]+\.[0-9]+\.[0-9]+$`)

// ProtocolSpec says how streams of one protocol are served.
type ProtocolSpec struct {
	// ID must look like /sovereign/<name>/<major>.<minor>.<patch>.
	ID protocol.ID
	// Roles the remote member must hold; required (AllRoles admits any
	// enrolled member), so that no protocol is registered without a rule.
	Roles []Role
	// Timeout is the deadline of the whole stream (default: the host's
	// StreamTimeout).
	Timeout time.Duration
	// MaxFrame bounds every frame read from the stream (default DefaultMaxFrame).
	MaxFrame int
}

func (s ProtocolSpec) validate() error {
	if !protocolIDRE.MatchString(string(s.ID)) {
		return fmt.Errorf("p2p: ProtocolSpec.ID: %q does not match /sovereign/<name>/<major>.<minor>.<patch>", s.ID)
	}
	if len(s.Roles) == 0 {
		return fmt.Errorf("p2p: ProtocolSpec.Roles of %s is empty: every protocol names the roles that may open it (AllRoles for status-like protocols)", s.ID)
	}
	for i, r := range s.Roles {
		if !r.Valid() {
			return fmt.Errorf("p2p: ProtocolSpec.Roles[%d] of %s: unknown role %q", i, s.ID, r)
		}
	}
	if s.Timeout < 0 {
		return fmt.Errorf("p2p: ProtocolSpec.Timeout of %s: %v is negative", s.ID, s.Timeout)
	}
	if s.MaxFrame < 0 {
		return fmt.Errorf("p2p: ProtocolSpec.MaxFrame of %s: %d is negative", s.ID, s.MaxFrame)
	}
	return nil
}

// Stream is one libp2p stream with framed protobuf reads and writes. Reads
// are buffered: once ReadMsg has been used, read only through the Stream.
// A Stream is not safe for concurrent use.
type Stream struct {
	s        network.Stream
	r        *frameReader
	maxFrame int
	remote   Member
}

func newStream(s network.Stream, m Member, maxFrame int) *Stream {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Stream{s: s, r: newFrameReader(s, 64<<10), maxFrame: maxFrame, remote: m}
}

// ReadMsg reads one frame into m, bounded by the stream's frame limit; see
// the package-level [ReadMsg] for its errors, which name protocol and peer.
func (s *Stream) ReadMsg(m proto.Message) error { return ReadMsg(s.r, m, s.maxFrame) }

// WriteMsg writes m as one frame.
func (s *Stream) WriteMsg(m proto.Message) error { return WriteMsg(s, m) }

// Write writes raw bytes to the stream.
func (s *Stream) Write(b []byte) (int, error) { return s.s.Write(b) }

// Read reads raw bytes, after any buffered ones.
func (s *Stream) Read(b []byte) (int, error) { return s.r.Read(b) }

// Remote returns the enrolled member at the other end.
func (s *Stream) Remote() Member { return s.remote }

// Peer returns the remote peer ID.
func (s *Stream) Peer() peer.ID { return s.s.Conn().RemotePeer() }

// Protocol returns the stream's protocol ID.
func (s *Stream) Protocol() protocol.ID { return s.s.Protocol() }

// SetDeadline sets the read and write deadline of the stream.
func (s *Stream) SetDeadline(t time.Time) error { return s.s.SetDeadline(t) }

// CloseWrite tells the remote end that nothing more will be written.
func (s *Stream) CloseWrite() error { return s.s.CloseWrite() }

// Close closes the stream gracefully.
func (s *Stream) Close() error { return s.s.Close() }

// Reset aborts the stream in both directions.
func (s *Stream) Reset() error { return s.s.Reset() }

// Handler serves one incoming stream. It returns nil after a complete
// exchange, or an error, in which case the stream is reset. ctx is cancelled
// at the stream's deadline and when the host closes.
type Handler func(ctx context.Context, s *Stream) error

// ErrNotEnrolled is matched by errors about a peer missing from the federation.
var ErrNotEnrolled = errors.New("peer not enrolled in the federation")

// ErrRoleRefused is matched by errors about a member whose role may not use a protocol.
var ErrRoleRefused = errors.New("role not allowed on this protocol")

// admit checks the remote peer of a stream against the federation and roles.
func (h *Host) admit(pid protocol.ID, p peer.ID, roles []Role) (Member, error) {
	m, ok := h.gater.Lookup(p)
	if !ok {
		return Member{}, fmt.Errorf("%s: peer %s: %w", pid, p, ErrNotEnrolled)
	}
	if !slices.Contains(roles, m.Role) {
		return Member{}, fmt.Errorf("%s: peer %s (%q) has role %q, protocol requires %v: %w", pid, p, m.Name, m.Role, roles, ErrRoleRefused)
	}
	return m, nil
}

// track registers a running handler unless the host is closing.
func (h *Host) track() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

// Handle registers fn as the only handler of spec.ID. Every stream gets the
// spec's deadline and frame limit; its remote peer must be enrolled (and
// hold one of spec.Roles); the stream is reset when fn returns an
// error or panics, and closed otherwise. Errors are logged with the
// protocol and the peer.
func (h *Host) Handle(spec ProtocolSpec, fn Handler) error {
	if err := spec.validate(); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("p2p: Handle %s: nil handler", spec.ID)
	}
	timeout := spec.Timeout
	if timeout == 0 {
		timeout = h.cfg.StreamTimeout
	}
	h.h.SetStreamHandler(spec.ID, func(ns network.Stream) {
		if !h.track() {
			_ = ns.Reset()
			return
		}
		defer h.wg.Done()
		deadline := time.Now().Add(timeout)
		_ = ns.SetDeadline(deadline)
		remote := ns.Conn().RemotePeer()
		m, err := h.admit(spec.ID, remote, spec.Roles)
		if err != nil {
			h.logger.Warn("p2p: stream refused", "protocol", string(spec.ID), "peer", remote.String(), "err", err)
			_ = ns.Reset()
			return
		}
		ctx, cancel := context.WithDeadline(h.ctx, deadline)
		defer cancel()
		s := newStream(ns, m, spec.MaxFrame)
		if err := runHandler(ctx, s, fn); err != nil {
			h.logger.Warn("p2p: stream failed", "protocol", string(spec.ID), "peer", remote.String(), "member", m.Name, "err", err)
			_ = ns.Reset()
			return
		}
		_ = ns.Close()
	})
	return nil
}

// runHandler calls fn, turning a panic into an error so one bad stream
// cannot stop the host.
func runHandler(ctx context.Context, s *Stream, fn Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(ctx, s)
}

// RemoveHandler unregisters the handler of pid.
func (h *Host) RemoveHandler(pid protocol.ID) { h.h.RemoveStreamHandler(pid) }

// AdmitStream applies the same enrolment and role rule as Handle to the
// remote peer p of a stream of protocol pid that a library registers on
// the underlying libp2p host itself (Raft's gostream listener). It is the
// only sanctioned way to accept such a stream: a protocol registered
// outside Handle must call it for every stream (security review C1).
func (h *Host) AdmitStream(pid protocol.ID, p peer.ID, roles ...Role) (Member, error) {
	if len(roles) == 0 {
		return Member{}, fmt.Errorf("%s: no role rule given: every protocol must name the roles it admits", pid)
	}
	return h.admit(pid, p, roles)
}
