package wire

import "testing"

// Both budget refusals a worker writes (the announced ε, and its own
// accountant at q = 1) are the "budget" rule, which ends a study
// budget-exhausted; a round without DP under a budget is "no_dp".
func TestRefusalRuleBudget(t *testing.T) {
	for text, want := range map[string]string{
		"worker refuses round 4: announced ε 8.1 after this round is above policy.max_epsilon":                        "budget",
		"worker refuses round 4: this worker's own ε (q = 1) after this round would be above policy.max_epsilon":      "budget",
		"worker refuses round 4: round has no differential privacy (dp.noise = 0) and policy.max_epsilon requires it": "no_dp",
	} {
		if got := RefusalRule(text); got != want {
			t.Errorf("RefusalRule(%q) = %q, want %q", text, got, want)
		}
	}
}
