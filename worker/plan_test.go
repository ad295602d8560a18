package worker

import (
	"strings"
	"testing"
)

// A study plan is checked against the data and the policy before any round:
// rules every round would break are reasons (named without private values),
// rules reached on the way are warnings.
func TestCheckPlan(t *testing.T) {
	cl := newCluster(t, 1, func(_ int, c *Config) { c.Policy.MaxEpsilon = 7.25 }) // min_cohort 2, accepted mlp:16 and 2nn
	n := cl.nodes[0]
	good := StudyPlan{ModelSpec: testSpec, NumParams: len(cl.global), PlannedRounds: 5, PlannedEpsilon: 3, DP: true, Cohort: 5}
	if r, w := n.CheckPlan(good); len(r)+len(w) != 0 {
		t.Fatalf("good plan: reasons %q warnings %q", r, w)
	}
	for _, tc := range []struct {
		name    string
		mutate  func(p *StudyPlan)
		reason  string
		warning string
	}{
		{"model not accepted", func(p *StudyPlan) { p.ModelSpec = "logreg" }, `model "logreg" is not in policy.accepted_models`, ""},
		{"num params", func(p *StudyPlan) { p.NumParams++ }, "planned num_params", ""},
		{"no DP", func(p *StudyPlan) { p.DP = false }, "no differential privacy", ""},
		{"schema", func(p *StudyPlan) { p.SchemaHash[0] = 1 }, "this worker has no schema", ""},
		{"budget", func(p *StudyPlan) { p.PlannedEpsilon = 30 }, "", "above policy.max_epsilon"},
		{"small cohort", func(p *StudyPlan) { p.Cohort = 1 }, "", "below policy.min_cohort"},
	} {
		p := good
		tc.mutate(&p)
		r, w := n.CheckPlan(p)
		got := strings.Join(r, "|")
		if (tc.reason == "") != (len(r) == 0) || !strings.Contains(got, tc.reason) {
			t.Errorf("%s: reasons %q, want one naming %q", tc.name, r, tc.reason)
		}
		if tc.warning != "" && !strings.Contains(strings.Join(w, "|"), tc.warning) {
			t.Errorf("%s: warnings %q, want %q", tc.name, w, tc.warning)
		}
		// Reasons and warnings name rules, not the private budget.
		if strings.Contains(strings.Join(append(r, w...), "|"), "7.25") {
			t.Errorf("%s: %q reveals policy.max_epsilon's value", tc.name, append(r, w...))
		}
	}
}
