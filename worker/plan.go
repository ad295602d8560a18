package worker

import (
	"fmt"
	"math"
	"strings"
)

// StudyPlan is what a study will ask of this worker, as a coordinator's
// HelloAck tells it (coordinator/plan.go).
type StudyPlan struct {
	ModelSpec      string
	NumParams      int
	PlannedRounds  int
	PlannedEpsilon float64
	DP             bool
	Cohort         int
	SchemaHash     [32]byte
	// Study names the study ("" = the federation's default).
	Study string
}

// CheckPlan checks a study plan against the local data and the policy
// before any round: reasons are the rules every round of the study would
// break (the worker cannot take part), warnings those it will reach on the
// way. Both name rules, never private values (security review L2); the
// details go to the worker's own log.
func (n *Node) CheckPlan(p StudyPlan) (reasons, warnings []string) {
	pol := n.cfg.Policy
	n.mu.Lock()
	defer n.mu.Unlock()
	// The same model rules as every round's (Node.policy).
	if reason, detail, _ := n.modelRule(p.ModelSpec, p.NumParams, "planned"); reason != "" {
		reasons = append(reasons, reason)
		if detail != "" {
			n.log.Warn("study plan: "+reason, "model", specLabel(p.ModelSpec), "detail", detail)
		}
	}
	switch {
	case n.sd == nil && p.SchemaHash != [32]byte{}:
		reasons = append(reasons, fmt.Sprintf("the study reads its data under schema %x, and this worker has no schema", p.SchemaHash[:8]))
	case n.sd != nil && p.SchemaHash == [32]byte{}:
		reasons = append(reasons, "this worker reads its data under a schema, and the study has none")
	case n.sd != nil && p.SchemaHash != n.sd.hash:
		reasons = append(reasons, fmt.Sprintf("the study's data schema %x is not this worker's schema %x", p.SchemaHash[:8], n.sd.hash[:8]))
	}
	if !p.DP && !math.IsInf(pol.MaxEpsilon, 1) {
		reasons = append(reasons, "the study has no differential privacy (noise = 0) and policy.max_epsilon requires it")
	}
	if p.DP && p.PlannedEpsilon > pol.MaxEpsilon {
		warnings = append(warnings, fmt.Sprintf("the study plans ε %.3g over %d more rounds, above policy.max_epsilon: this institution will refuse its later rounds", p.PlannedEpsilon, p.PlannedRounds))
	}
	if p.DP && finiteTotal(pol) {
		// The worker's own ε over every study so far, plus this plan's
		// (RDP composes; adding ε values over-states it, a warning only).
		if spent, _, err := n.ownEpsilons(0, p.Study); err == nil && spent+p.PlannedEpsilon > pol.MaxEpsilonTotal {
			warnings = append(warnings, fmt.Sprintf("the study plans ε %.3g, and with the ε already spent in other studies this institution may reach policy.max_epsilon_total before it ends", p.PlannedEpsilon))
		}
	}
	if p.Cohort > 0 && p.Cohort < pol.MinCohort {
		warnings = append(warnings, fmt.Sprintf("the study samples %d institutions per round today, below policy.min_cohort", p.Cohort))
	}
	if p.Cohort > pol.MaxCohort {
		warnings = append(warnings, fmt.Sprintf("the study samples %d institutions per round today, above policy.max_cohort", p.Cohort))
	}
	switch {
	case len(reasons) > 0:
		n.log.Warn("this worker cannot take part in the study", "study", studyName(p.Study), "model", p.ModelSpec, "reasons", strings.Join(reasons, "; "))
	case len(warnings) > 0:
		n.log.Warn("study plan accepted with warnings", "model", p.ModelSpec, "warnings", strings.Join(warnings, "; "), "max_epsilon", pol.MaxEpsilon)
	default:
		n.log.Info("study plan accepted", "model", p.ModelSpec, "planned_rounds", p.PlannedRounds, "planned_epsilon", p.PlannedEpsilon)
	}
	return reasons, warnings
}
