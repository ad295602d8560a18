package wire

import "strings"

// RefusalRule names the rule a worker's refusal text (worker.Refusal.Reason,
// or the coordinator's RefusalError.Reason, which carries it) invokes: a
// short value for metrics labels and for the coordinator's decisions (a
// round refused for "budget" by too many institutions ends the study). The
// phrases matched are those worker.Node.policy and the stage checks write;
// the first match wins.
func RefusalRule(text string) string {
	for _, r := range []struct{ phrase, label string }{
		{"policy.accepted_models", "model"},
		{"does not fit the local data", "model"},
		{"parameters on the local data", "model"},
		{"does not have the announced num_params", "model"},
		{"policy.max_cohort", "work_limit"},
		{"policy.max_secagg_degree", "work_limit"},
		{"policy.evaluation", "evaluation"},
		{"one model per round", "equivocation"},
		{"is not the one this worker evaluated", "equivocation"},
		{"no accepted announcement of round", "stale"},
		{"did not take part in round", "stale"},
		{"policy.min_cohort", "min_cohort"},
		{"has no differential privacy", "no_dp"},
		{"policy.max_epsilon", "budget"},
		{"dp.min_clients", "dp_threshold"},
		{"secagg.max_weight", "weight"},
		{"already answered survivor set", "equivocation"},
		{"masked input was already sent", "equivocation"},
		{"is not after the last committed round", "stale"},
		{"no announcement of round", "stale"},
	} {
		if strings.Contains(text, r.phrase) {
			return r.label
		}
	}
	return "other"
}

// RefusalRules are every value RefusalRule returns.
var RefusalRules = []string{"model", "min_cohort", "work_limit", "no_dp", "budget", "dp_threshold", "weight", "evaluation", "equivocation", "stale", "other"}
