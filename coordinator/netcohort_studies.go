package coordinator

// Checks at the start of a created study (studies.go): the leader sends the
// study's plan to every online worker (p2p.ProtoStudyPlan) and the worker
// answers its PlanCheck, as it does for the default study at Hello. A study
// start is refused while an online worker names reasons (Scheduler.start);
// a new leader, or a worker that came online later, is asked before the
// study samples it.

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// studyPlanTimeout bounds one worker's answer to a study plan.
const studyPlanTimeout = 15 * time.Second

// CheckStudyPlan asks every online worker for its verdict on d's study
// plan (fresh answers, replacing cached ones) and returns those with
// reasons or warnings, sorted by worker.
func (c *NetCohort) CheckStudyPlan(ctx context.Context, d *Driver) []IncompatibleWorker {
	c.askStudyPlan(ctx, d, true)
	return c.studyVerdicts(d.fsm.Name(), c.Online())
}

// askStudyPlan asks the online workers (all, or those without a cached
// answer for the study) in parallel.
func (c *NetCohort) askStudyPlan(ctx context.Context, d *Driver, all bool) {
	study := d.fsm.Name()
	online := c.Online()
	var ask []WorkerID
	c.mu.Lock()
	for _, w := range online {
		p, err := peer.Decode(string(w))
		if err != nil {
			continue
		}
		if _, ok := c.studyChecks[study][p]; all || !ok {
			ask = append(ask, w)
		}
	}
	c.mu.Unlock()
	if len(ask) == 0 {
		return
	}
	plan := d.Plan(len(online))
	var wg sync.WaitGroup
	for _, w := range ask {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, studyPlanTimeout)
			defer cancel()
			var resp pb.PlanCheck
			ch := &pb.PlanCheck{Study: study}
			if err := c.request(cctx, w, p2p.ProtoStudyPlan, plan, &resp); err != nil {
				// Not asked again before it reconnects: a worker that
				// does not answer must not delay every round (or status)
				// by the timeout; its round-stage checks still apply.
				c.log.Warn("study plan not answered", "study", studyLabel(study), "peer", string(w), "err", err)
			} else {
				ch = checkPlanAnswer(&resp, study)
			}
			p, _ := peer.Decode(string(w))
			c.mu.Lock()
			if c.studyChecks[study] == nil {
				c.studyChecks[study] = map[peer.ID]*pb.PlanCheck{}
			}
			c.studyChecks[study][p] = ch
			c.mu.Unlock()
			if len(ch.Reasons) > 0 {
				c.log.Warn("worker cannot take part in the study", "study", studyLabel(study), "peer", string(w), "reasons", ch.Reasons)
			}
		}()
	}
	wg.Wait()
}

// checkPlanAnswer bounds a worker's answer: a malformed one becomes a
// reason of its own (a lying worker can only exclude itself).
func checkPlanAnswer(m *pb.PlanCheck, study string) *pb.PlanCheck {
	bad := func(why string) *pb.PlanCheck {
		return &pb.PlanCheck{Study: study, Reasons: []string{"the worker's plan check is malformed: " + why}}
	}
	if m.Study != study {
		return bad("it answers for another study")
	}
	if why := planCheckProblem(m); why != "" {
		return bad(why)
	}
	return &pb.PlanCheck{Study: study, Reasons: slices.Clone(m.Reasons), Warnings: slices.Clone(m.Warnings)}
}

// studyVerdicts returns the cached verdicts with reasons or warnings of
// the workers in ws.
func (c *NetCohort) studyVerdicts(study string, ws []WorkerID) []IncompatibleWorker {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []IncompatibleWorker
	for _, w := range ws {
		p, err := peer.Decode(string(w))
		if err != nil {
			continue
		}
		if ch := c.studyChecks[study][p]; ch != nil && len(ch.Reasons)+len(ch.Warnings) > 0 {
			out = append(out, IncompatibleWorker{Worker: w, Reasons: slices.Clone(ch.Reasons), Warnings: slices.Clone(ch.Warnings)})
		}
	}
	return out
}

// studyTexts returns, per online worker, the cached texts pick takes from
// its verdict on d's study, for those that have any.
func (c *NetCohort) studyTexts(d *Driver, pick func(IncompatibleWorker) []string) map[WorkerID][]string {
	out := map[WorkerID][]string{}
	for _, iw := range c.studyVerdicts(d.fsm.Name(), c.Online()) {
		if v := pick(iw); len(v) > 0 {
			out[iw.Worker] = v
		}
	}
	return out
}

func reasonsOf(iw IncompatibleWorker) []string  { return iw.Reasons }
func warningsOf(iw IncompatibleWorker) []string { return iw.Warnings }

// StudyIncompatible returns, for d's study, the online workers that cannot
// take part, asking those not asked yet first (a created study's
// Driver.Incompatible, used when it samples).
func (c *NetCohort) StudyIncompatible(d *Driver) map[WorkerID][]string {
	c.askStudyPlan(context.Background(), d, false)
	return c.studyTexts(d, reasonsOf)
}

// StudyVerdicts returns the cached reasons of d's study per online worker,
// without asking anyone (for status).
func (c *NetCohort) StudyVerdicts(d *Driver) map[WorkerID][]string { return c.studyTexts(d, reasonsOf) }

// StudyWarnings returns the cached warnings of d's study per online worker.
func (c *NetCohort) StudyWarnings(d *Driver) map[WorkerID][]string {
	return c.studyTexts(d, warningsOf)
}
