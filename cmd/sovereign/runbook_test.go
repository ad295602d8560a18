package main

import (
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/coordinator/service"
	"github.com/sovereign-fl/sovereign/worker"
)

// firstTOML returns the first toml code block after heading in the runbook.
func firstTOML(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading)
	if i < 0 {
		t.Fatalf("docs/runbook.md has no heading %q", heading)
	}
	rest := doc[i:]
	k := strings.Index(rest, "```toml\n")
	if k < 0 {
		t.Fatalf("no toml block under %q", heading)
	}
	rest = rest[k+len("```toml\n"):]
	return rest[:strings.Index(rest, "\n```")+1]
}

// TestRunbookWorkerAndCoordinatorAgree: the worker of the runbook's
// section 3 accepts every round the coordinator of section 4 would run —
// model, input shape and classes, cohort, differential privacy and the
// whole study's ε — checked on the files as the runbook prints them.
func TestRunbookWorkerAndCoordinatorAgree(t *testing.T) {
	b, err := os.ReadFile("../../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	wsrc := firstTOML(t, doc, "## 3. ")
	w, err := worker.ParseConfig("worker.toml", []byte(wsrc), t.TempDir())
	if err != nil {
		t.Fatalf("section 3's worker.toml: %v", err)
	}
	c, err := service.Parse("coordinator.toml", []byte(firstTOML(t, doc, "## 4. ")), t.TempDir())
	if err != nil {
		t.Fatalf("section 4's coordinator.toml: %v", err)
	}
	r := c.Config
	if len(w.Policy.AcceptedModels) > 0 && !slices.Contains(w.Policy.AcceptedModels, r.Model) {
		t.Errorf("coordinator model %q is not in the worker's accepted_models %v", r.Model, w.Policy.AcceptedModels)
	}
	// The worker's data: the classes option of its CSV and the feature
	// count the runbook states beside it.
	_, query, _ := strings.Cut(w.Dataset, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	if classes, _ := strconv.Atoi(q.Get("classes")); classes != r.Classes {
		t.Errorf("worker data has classes=%s, coordinator classes = %d", q.Get("classes"), r.Classes)
	}
	m := regexp.MustCompile(`dataset\s*=.*# (\d+) feature columns`).FindStringSubmatch(wsrc)
	if m == nil {
		t.Fatal("section 3 does not say how many feature columns the CSV has")
	}
	if f, _ := strconv.Atoi(m[1]); f != r.InC*r.InH*r.InW {
		t.Errorf("worker CSV has %d features, coordinator input %dx%dx%d", f, r.InC, r.InH, r.InW)
	}
	if r.WorkersPerRound < w.Policy.MinCohort || r.MinWorkers < 2 {
		t.Errorf("coordinator samples %d (min %d), worker's min_cohort %d", r.WorkersPerRound, r.MinWorkers, w.Policy.MinCohort)
	}
	if !math.IsInf(w.Policy.MaxEpsilon, 1) {
		if r.DP.Noise <= 0 {
			t.Fatalf("worker has a budget (max_epsilon %v) but the coordinator runs without DP", w.Policy.MaxEpsilon)
		}
		// The worst case for the worker: sampled in every round (q = 1).
		var a dp.Accountant
		if err := a.Step(1, r.DP.Noise, r.Rounds); err != nil {
			t.Fatal(err)
		}
		eps, _, err := a.Epsilon(r.Delta, nil)
		if err != nil {
			t.Fatal(err)
		}
		if eps > w.Policy.MaxEpsilon {
			t.Errorf("after %d rounds at noise %v the worker would have spent ε = %.2f > max_epsilon %v", r.Rounds, r.DP.Noise, eps, w.Policy.MaxEpsilon)
		}
		if s := strconv.FormatFloat(eps, 'f', 2, 64); !strings.Contains(doc, "end at ε = "+s) {
			t.Errorf("section 4 does not state the ε the study ends at (%s)", s)
		}
	}
}
