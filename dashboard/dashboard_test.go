package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/dashboard"
	"github.com/sovereign-fl/sovereign/metrics"
	"github.com/sovereign-fl/sovereign/model/safetensors"
)

func testSource() dashboard.Source {
	st := coordinator.State{
		Round: 3,
		Current: &coordinator.RoundState{Round: 3, Next: secagg.StageShareKeys,
			Announce: coordinator.Announce{Sampled: []coordinator.WorkerID{"w1", "w2", "w3"}, Epsilon: 1.5}, Advertised: []uint32{1, 2, 3}},
		Models: []coordinator.ModelRecord{{Round: 0}, {Round: 1}, {Round: 2}},
		Ledger: []coordinator.LedgerEntry{{Round: 0}, {Round: 1, Participants: []coordinator.WorkerID{"w1", "w2"}, Epsilon: 0.5},
			{Round: 2, Participants: []coordinator.WorkerID{"w1", "w2"}, Epsilon: 1.0}},
		Metrics: []coordinator.MetricsRecorded{{Round: 1, Accuracy: 0.4, Loss: 1.9}, {Round: 2, Accuracy: 0.7, Loss: 1.1}},
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return dashboard.Source{
		Federation: "fed <x>", Self: "c1", Rounds: 5,
		State:  func() coordinator.State { return st },
		Stage:  func() string { return "share-keys(1)" },
		Leader: func() string { return "c2" },
		Replicas: func(context.Context) []dashboard.Replica {
			return []dashboard.Replica{{Name: "c1", State: "Follower", Leader: "c2"}, {Name: "c2", State: "Leader", Leader: "c2"}, {Name: "c3", State: "Unreachable", Err: "timeout"}}
		},
		Workers: func() []dashboard.Worker {
			return []dashboard.Worker{{Name: "st-marys", ID: "w1"}, {Name: "charite", ID: "w2"}, {Name: "karolinska", ID: "w3"}}
		},
		Online: func() []coordinator.WorkerID { return []coordinator.WorkerID{"w1", "w3"} },
		Refusals: func() []metrics.Refusal {
			return []metrics.Refusal{{Worker: "w3", Round: 2, Reason: "cohort of 2 institutions is below policy.min_cohort 3", Label: "min_cohort", Time: now}}
		},
		Name: func(id string) string {
			return map[string]string{"w1": "st-marys", "w2": "charite", "w3": "karolinska"}[id]
		},
		Token: "tok",
		Now:   func() time.Time { return now },
	}
}

func get(t *testing.T, h http.Handler, method, target, auth string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestPageShowsTheFederation(t *testing.T) {
	h := dashboard.New(testSource())
	w := get(t, h, "GET", "/", "Bearer tok")
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	body := w.Body.String()
	for _, want := range []string{
		`<h1 id="federation">fed &lt;x&gt;</h1>`, `<b id="leader">c2</b>`, `<b id="committed">2</b> of 5`,
		`class="replica" data-state="Leader"`, `class="member" data-online="true"><td>st-marys`,
		`class="member" data-online="false"><td>charite`, `class="member" data-online="true"><td>karolinska`,
		`id="accuracy-curve"`, `id="loss-curve"`, `data-points="2"`, `<meta http-equiv="refresh" content="2">`,
		`<td>3</td><td>sharekeys</td><td>3</td><td>3</td><td>0</td>`, "policy.min_cohort 3", "1 (last: min_cohort)",
		"st-marys, charite", `<b id="epsilon">1.0000</b>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Count(body, `class="entry"`) != 3 {
		t.Errorf("want 3 ledger rows")
	}
	if strings.Contains(body, "<script") || strings.Contains(body, `src="http`) || strings.Contains(body, `href="http`) {
		t.Error("page loads external assets or scripts")
	}
}

func TestAttackDashboardWithoutTokenOrWriting(t *testing.T) {
	h := dashboard.New(testSource())
	for _, c := range []struct {
		method, target, auth string
		code                 int
	}{
		{"GET", "/", "", 401}, {"GET", "/", "Bearer nope", 401}, {"GET", "/?token=nope", "", 401},
		{"GET", "/?token=tok", "", 200}, {"GET", "/", "Bearer tok", 200}, {"HEAD", "/", "Bearer tok", 200},
		{"POST", "/", "Bearer tok", 405}, {"GET", "/other", "Bearer tok", 404},
	} {
		if w := get(t, h, c.method, c.target, c.auth); w.Code != c.code {
			t.Errorf("%s %s (auth %q): %d, want %d", c.method, c.target, c.auth, w.Code, c.code)
		}
	}
	src := testSource()
	src.Token = ""
	if w := get(t, dashboard.New(src), "GET", "/", ""); w.Code != 200 {
		t.Errorf("no token configured: %d, want 200", w.Code)
	}
}

// A worker's refusal text is the worker's own words: a liar may put markup
// in it. The page must show it as text.
func TestAttackRefusalMarkupIsEscaped(t *testing.T) {
	src := testSource()
	src.Refusals = func() []metrics.Refusal {
		return []metrics.Refusal{{Worker: "w3", Round: 2, Reason: `<script>alert(1)</script><img src=x onerror=alert(2)>`, Label: "other"}}
	}
	body := get(t, dashboard.New(src), "GET", "/", "Bearer tok").Body.String()
	if strings.Contains(body, "<script>") || strings.Contains(body, "<img src=x") {
		t.Fatal("a worker's refusal text reached the page as markup")
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatal("the refusal text is missing from the page")
	}
}

// Every ledger row links its model as safetensors; the link serves the
// committed model behind the same token, and a round without a model is a
// 404 naming the round.
func TestModelDownload(t *testing.T) {
	src := testSource()
	want := &safetensors.File{Tensors: []safetensors.Tensor{{Name: "0.weight", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}}},
		Metadata: map[string]string{"round": "2"}}
	src.Model = func(round uint64) (*safetensors.File, error) {
		if round != 2 {
			return nil, dashboard.ErrNoModel
		}
		return want, nil
	}
	h := dashboard.New(src)
	page := get(t, h, http.MethodGet, "/?token=tok", "").Body.String()
	if !strings.Contains(page, `href="model/2.safetensors?token=tok"`) {
		t.Fatalf("page has no download link for round 2:\n%s", page)
	}
	if w := get(t, h, http.MethodGet, "/model/2.safetensors", ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("model without the token: %d", w.Code)
	}
	w := get(t, h, http.MethodGet, "/model/2.safetensors", "Bearer tok")
	if w.Code != http.StatusOK || !strings.Contains(w.Header().Get("Content-Disposition"), "model-round-2.safetensors") {
		t.Fatalf("model download: %d %v", w.Code, w.Header())
	}
	got, err := safetensors.Decode(w.Body.Bytes(), "download")
	if err != nil || len(got.Tensors) != 1 || !slices.Equal(got.Tensors[0].Data, want.Tensors[0].Data) || got.Metadata["round"] != "2" {
		t.Fatalf("downloaded file: %v %+v", err, got)
	}
	for _, path := range []string{"/model/9.safetensors", "/model/x.safetensors", "/model/2.bin"} {
		if w := get(t, h, http.MethodGet, path, "Bearer tok"); w.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, w.Code)
		}
	}
	if w := get(t, h, http.MethodGet, "/model/9.safetensors", "Bearer tok"); !strings.Contains(w.Body.String(), "round 9") {
		t.Errorf("404 does not name the round: %q", w.Body.String())
	}
}
