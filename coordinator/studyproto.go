package coordinator

// The study protocol (p2p.ProtoStudy): an operator's `sovereign study
// start|pause|resume|stop`, sent with an identity enrolled as role
// "operator" to any replica. A follower forwards it to the leader once
// (Forwarded, a coordinator's request), so the command works against
// whichever replica answers. A forwarded flag from an operator is ignored:
// only a coordinator forwards.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sovereign-fl/sovereign/p2p"
)

// MaxStudyRequest bounds a study request (its initial model included).
const MaxStudyRequest = 256 << 20

// studyTimeout bounds a study request (the start asks every online worker
// for its plan check).
const studyTimeout = 2 * time.Minute

type studyEnvelope struct {
	StudyRequest
	// Forwarded is set by the follower that forwards the request.
	Forwarded bool `json:"forwarded,omitempty"`
}

type studyAnswer struct {
	Message string `json:"message,omitempty"`
	Err     string `json:"err,omitempty"`
	// Leader is set when the replica is not the leader and did not
	// forward.
	Leader string `json:"leader,omitempty"`
}

// ServeStudies registers the study protocol on h: the leader carries the
// request out with sched; a follower forwards it to leader().
func ServeStudies(h *p2p.Host, sched *Scheduler, isLeader func() bool, leader func() peer.ID, log *slog.Logger) error {
	return h.Handle(p2p.ProtocolSpec{ID: p2p.ProtoStudy, Roles: []p2p.Role{p2p.RoleOperator, p2p.RoleCoordinator}, Timeout: studyTimeout, MaxFrame: MaxStudyRequest},
		func(ctx context.Context, s *p2p.Stream) error {
			var in wrapperspb.BytesValue
			if err := s.ReadMsg(&in); err != nil {
				return err
			}
			ans := handleStudy(ctx, h, sched, isLeader, leader, in.Value, s.Remote().Role == p2p.RoleCoordinator)
			if ans.Err != "" {
				log.Warn("study request refused", "peer", s.Peer().String(), "err", ans.Err)
			}
			b, err := json.Marshal(ans)
			if err != nil {
				return err
			}
			return s.WriteMsg(wrapperspb.Bytes(b))
		})
}

func handleStudy(ctx context.Context, h *p2p.Host, sched *Scheduler, isLeader func() bool, leader func() peer.ID, raw []byte, fromCoordinator bool) studyAnswer {
	var req studyEnvelope
	if err := json.Unmarshal(raw, &req); err != nil {
		return studyAnswer{Err: fmt.Sprintf("study request: malformed: %v", err)}
	}
	if !fromCoordinator {
		req.Forwarded = false
	} else if !req.Forwarded {
		return studyAnswer{Err: "study request: a coordinator only forwards study requests"}
	}
	if !isLeader() {
		l := leader()
		if req.Forwarded || l == "" || l == h.ID() {
			return studyAnswer{Err: "study request: this replica is not the leader (and knows no leader yet); try again", Leader: l.String()}
		}
		req.Forwarded = true
		msg, err := sendStudy(ctx, h, l, req)
		var refused *StudyRefusedError
		if errors.As(err, &refused) {
			return studyAnswer{Err: refused.Reason, Leader: refused.Leader}
		}
		if err != nil {
			return studyAnswer{Err: err.Error(), Leader: l.String()}
		}
		return studyAnswer{Message: msg}
	}
	msg, err := sched.Handle(ctx, req.StudyRequest)
	if err != nil {
		return studyAnswer{Err: err.Error()}
	}
	return studyAnswer{Message: msg}
}

// sendStudy sends one study request to p and returns its answer.
func sendStudy(ctx context.Context, h *p2p.Host, p peer.ID, req studyEnvelope) (string, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	c := &p2p.Client{Host: h, Timeout: studyTimeout, MaxFrame: 1 << 20}
	var out wrapperspb.BytesValue
	if err := c.Request(ctx, p, p2p.ProtoStudy, wrapperspb.Bytes(b), &out); err != nil {
		return "", fmt.Errorf("study %s %s: %w", req.Op, req.Name, err)
	}
	var ans studyAnswer
	if err := json.Unmarshal(out.Value, &ans); err != nil {
		return "", fmt.Errorf("study %s %s: malformed answer: %w", req.Op, req.Name, err)
	}
	if ans.Err != "" {
		return "", &StudyRefusedError{Reason: ans.Err, Leader: ans.Leader}
	}
	return ans.Message, nil
}

// StudyRefusedError is a replica's answer refusing a study request.
type StudyRefusedError struct {
	Reason string
	// Leader is set when the replica was not the leader.
	Leader string
}

func (e *StudyRefusedError) Error() string { return e.Reason }

// SendStudyRequest sends req to the federation's coordinators in turn (not
// to h itself) until one answers, and returns the answer's message.
func SendStudyRequest(ctx context.Context, h *p2p.Host, req StudyRequest) (string, error) {
	var errs []error
	for _, m := range h.Federation().Coordinators() {
		if m.ID == h.ID() {
			continue
		}
		msg, err := sendStudy(ctx, h, m.ID, studyEnvelope{StudyRequest: req})
		if err == nil {
			return msg, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
		var refused *StudyRefusedError
		if errors.As(err, &refused) && refused.Leader == "" {
			// The leader answered: its refusal is the answer.
			return "", err
		}
	}
	return "", fmt.Errorf("no coordinator carried out the request: %w", errors.Join(errs...))
}
