package coordinator

// Checks at the start (docs/ARCHITECTURE.md, "Checks at the start"): a
// worker's Hello is answered with the study's plan (model, parameter count,
// planned rounds and final ε, DP, cohort, data schema); the worker checks
// it against its data and policy and answers a PlanCheck naming every rule
// the plan breaks. The coordinator logs and shows them and does not sample
// a worker that cannot take part, so an incompatible institution is named
// with its reason before any round, instead of refusing round after round.
// The worker's answer names rules, never its private values (security
// review L2); a lying worker can only exclude itself.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// MaxPlanReasons bounds a PlanCheck: reasons and warnings, each at most
// MaxRefusalReason bytes.
const MaxPlanReasons = 16

// Plan is the study plan a HelloAck carries, at online workers online.
func (d *Driver) Plan(online int) *pb.StudyPlan {
	st := d.fsm.State()
	left := max(0, d.cfg.Rounds-st.CommittedRounds())
	p := &pb.StudyPlan{ModelSpec: d.cfg.Model, NumParams: uint64(d.spec.NumParams()), PlannedRounds: uint64(left), Dp: d.cfg.DP.Noise > 0, Study: d.fsm.Name()}
	n := d.sampleSize(max(online, 1))
	p.Cohort = uint32(n)
	if d.cfg.Schema != nil {
		p.SchemaSha256 = append([]byte(nil), d.cfg.SchemaHash[:]...)
	}
	if d.cfg.DP.Noise > 0 {
		a := st.Accountant()
		// Charged as the rounds will be: at q = ReleaseQ.
		if left > 0 && a.Step(ReleaseQ, d.cfg.DP.Noise, left) == nil {
			if e, _, err := a.Epsilon(d.cfg.Delta, nil); err == nil {
				p.PlannedEpsilon = e
			}
		} else if e, _, err := a.Epsilon(d.cfg.Delta, nil); err == nil {
			p.PlannedEpsilon = e
		}
	}
	return p
}

func (c *NetCohort) handlePlanCheck(_ context.Context, s *p2p.Stream) error {
	var m pb.PlanCheck
	if err := s.ReadMsg(&m); err != nil {
		return err
	}
	bad := func(format string, a ...any) error {
		msg := fmt.Sprintf(format, a...)
		c.log.Warn("plan check refused", "peer", s.Peer().String(), "member", s.Remote().Name, "reason", msg)
		return s.WriteMsg(&pb.Ack{Refusal: &pb.Refusal{Reason: msg}})
	}
	if why := planCheckProblem(&m); why != "" {
		return bad("%s", why)
	}
	c.mu.Lock()
	c.checks[s.Peer()] = &pb.PlanCheck{Reasons: slices.Clone(m.Reasons), Warnings: slices.Clone(m.Warnings)}
	if name, ok := c.pending[s.Peer()]; ok {
		delete(c.pending, s.Peer())
		c.hello[s.Peer()] = name
	}
	c.mu.Unlock()
	member := s.Remote().Name
	switch {
	case len(m.Reasons) > 0:
		c.log.Warn("worker cannot take part in the study", "peer", s.Peer().String(), "member", member, "reasons", strings.Join(m.Reasons, "; "))
	case len(m.Warnings) > 0:
		c.log.Info("worker accepts the study plan with warnings", "peer", s.Peer().String(), "member", member, "warnings", strings.Join(m.Warnings, "; "))
	default:
		c.log.Info("worker accepts the study plan", "peer", s.Peer().String(), "member", member)
	}
	return s.WriteMsg(&pb.Ack{})
}

// planCheckProblem says what is out of bounds in a worker's PlanCheck
// ("" if nothing): too many texts, or one too long or not UTF-8.
func planCheckProblem(m *pb.PlanCheck) string {
	if len(m.Reasons)+len(m.Warnings) > MaxPlanReasons {
		return fmt.Sprintf("%d reasons and warnings, at most %d", len(m.Reasons)+len(m.Warnings), MaxPlanReasons)
	}
	for _, r := range append(slices.Clone(m.Reasons), m.Warnings...) {
		if len(r) > MaxRefusalReason || !utf8.ValidString(r) {
			return fmt.Sprintf("a reason of %d bytes (at most %d, UTF-8)", len(r), MaxRefusalReason)
		}
	}
	return ""
}

// Incompatible returns the workers whose PlanCheck named rules the study
// breaks, with the reasons.
func (c *NetCohort) Incompatible() map[WorkerID][]string {
	return c.planChecks(func(ch *pb.PlanCheck) []string { return ch.Reasons })
}

// Warnings returns the workers whose PlanCheck named rules they will reach
// on the way (e.g. their budget ends before the study), with the warnings.
func (c *NetCohort) Warnings() map[WorkerID][]string {
	return c.planChecks(func(ch *pb.PlanCheck) []string { return ch.Warnings })
}

// planChecks returns, per worker whose check has any, the texts field
// picks from its PlanCheck.
func (c *NetCohort) planChecks(field func(*pb.PlanCheck) []string) map[WorkerID][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[WorkerID][]string{}
	for p, ch := range c.checks {
		if v := field(ch); len(v) > 0 {
			out[WorkerID(p.String())] = slices.Clone(v)
		}
	}
	return out
}

// incompatibleCohort is a Cohort that knows which workers cannot take part.
type incompatibleCohort interface {
	Incompatible() map[WorkerID][]string
}

// IncompatibleWorker is a worker that cannot take part, with why.
type IncompatibleWorker struct {
	Worker  WorkerID
	Reasons []string
	// Warnings are the rules the worker will reach on the way (it takes
	// part; Reasons may be empty).
	Warnings []string
}

func (d *Driver) incompatible() map[WorkerID][]string {
	if d.Incompatible != nil {
		return d.Incompatible()
	}
	if ic, ok := d.cohort.(incompatibleCohort); ok {
		return ic.Incompatible()
	}
	return nil
}
