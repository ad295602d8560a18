package sim

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/data"
)

func digits(t *testing.T) (*data.Dataset, *data.Dataset) {
	t.Helper()
	train, test, err := data.Digits()
	if err != nil {
		t.Fatal(err)
	}
	return train, test
}

func small() Config {
	c := DefaultConfig()
	c.Rounds = 4
	c.Clients = 10
	c.Fraction = 0.5
	c.Epochs = 1
	c.Model = "mlp:32"
	return c
}

func TestSameSeedSameMetrics(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	a, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Parallel = 1 // scheduling must not matter
	b, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Params, b.Params) {
		t.Fatal("same seed gave different final parameters")
	}
	for i := range a.Rounds {
		if a.Rounds[i].Accuracy != b.Rounds[i].Accuracy || a.Rounds[i].Loss != b.Rounds[i].Loss {
			t.Fatalf("round %d differs: %+v vs %+v", i+1, a.Rounds[i], b.Rounds[i])
		}
	}
	cfg.Seed = 2
	c, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(a.Params, c.Params) {
		t.Fatal("different seeds gave identical parameters")
	}
}

// The README states the default run's held-out accuracy; this holds it to ≥ 90%.
func TestDefaultConfigLearnsDigits(t *testing.T) {
	train, test := digits(t)
	res, err := RunOn(context.Background(), DefaultConfig(), train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.FinalAccuracy < 0.90 {
		t.Fatalf("default run: final held-out accuracy %.4f < 0.90", res.Summary.FinalAccuracy)
	}
	if res.Summary.RoundsRun != DefaultConfig().Rounds {
		t.Fatalf("rounds run %d, want %d", res.Summary.RoundsRun, DefaultConfig().Rounds)
	}
}

func TestEarlyStopAtTarget(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.Rounds = 50
	cfg.Target = 0.8
	res, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	if s.RoundsToTarget == nil || *s.RoundsToTarget != s.RoundsRun || s.RoundsRun >= 50 {
		t.Fatalf("early stop: rounds_to_target %v, rounds_run %d", s.RoundsToTarget, s.RoundsRun)
	}
	if res.Rounds[s.RoundsRun-1].Accuracy < 0.8 {
		t.Fatalf("stopped at accuracy %.4f below target", res.Rounds[s.RoundsRun-1].Accuracy)
	}
	for _, m := range res.Rounds[:s.RoundsRun-1] {
		if m.Accuracy >= 0.8 {
			t.Fatalf("target reached in round %d but run went on", m.Round)
		}
	}
}

func TestDropoutShrinksCohort(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.Dropout = 0.4
	res, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res.Rounds {
		if m.Sampled != 5 || m.Dropped != 2 || m.Clients != 3 {
			t.Fatalf("round %d: sampled %d dropped %d clients %d, want 5, 2, 3", m.Round, m.Sampled, m.Dropped, m.Clients)
		}
	}
}

// A robust rule must beat plain FedAvg when a fifth of the federation
// sends sign-flipped, scaled-up updates.
func TestRobustRuleResistsAttackers(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.Clients = 20
	cfg.Fraction = 1
	cfg.Rounds = 6
	cfg.Epochs = 2
	cfg.LR = 0.1
	cfg.Attackers = "4:signflip:5"
	mean, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Strategy = "median"
	med, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Strategy = "krum:4"
	krum, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, m, k := mean.Summary.FinalAccuracy, med.Summary.FinalAccuracy, krum.Summary.FinalAccuracy
	t.Logf("under attack: fedavg %.3f, median %.3f, krum %.3f", a, m, k)
	if m < 0.7 || k < 0.7 || a > m-0.3 || a > k-0.3 {
		t.Fatalf("robust rules did not resist: fedavg %.3f, median %.3f, krum %.3f", a, m, k)
	}
}

func TestCentralDPReportsEpsilon(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.DPClip, cfg.DPNoise, cfg.DPDelta = 1, 1, 1e-5
	res, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	prev := 0.0
	for _, m := range res.Rounds {
		if math.IsNaN(m.Epsilon) || m.Epsilon <= prev {
			t.Fatalf("round %d: epsilon %v not increasing from %v", m.Round, m.Epsilon, prev)
		}
		prev = m.Epsilon
	}
	if res.Summary.Epsilon == nil || *res.Summary.Epsilon != prev {
		t.Fatalf("summary epsilon %v, last round %v", res.Summary.Epsilon, prev)
	}
}

func TestWriteOutputs(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.Rounds = 2
	res, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteOutputs(dir, res); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || strings.Join(rows[0][:3], ",") != "round,accuracy,loss" || rows[0][5] != "clients" || rows[0][9] != "seconds" || rows[0][10] != "epsilon" {
		t.Fatalf("metrics.csv rows %v", rows)
	}
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"final_accuracy", "best_accuracy", "rounds_run", "rounds_to_target", "wall_seconds", "config", "epsilon"} {
		if _, ok := s[k]; !ok {
			t.Fatalf("summary.json lacks %q: %s", k, b)
		}
	}
	if s["rounds_to_target"] != nil {
		t.Fatalf("rounds_to_target = %v, want null", s["rounds_to_target"])
	}
	png, err := os.ReadFile(filepath.Join(dir, PlotFile))
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("accuracy.png missing or not a PNG: %v", err)
	}
}

func TestValidateNamesFlag(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Config)
		flag string
	}{
		{func(c *Config) { c.Fraction = 0 }, "--fraction"},
		{func(c *Config) { c.Fraction = 1.5 }, "--fraction"},
		{func(c *Config) { c.Clients = 0 }, "--clients"},
		{func(c *Config) { c.LR = -1 }, "--lr"},
		{func(c *Config) { c.Dropout = 1 }, "--dropout"},
		{func(c *Config) { c.Target = 2 }, "--target"},
		{func(c *Config) { c.Strategy = "nope" }, "--strategy"},
		{func(c *Config) { c.Attackers = "x:signflip" }, "--attackers"},
		{func(c *Config) { c.Attackers = "30:signflip" }, "--attackers"},
		{func(c *Config) { c.DPNoise = 1; c.DPClip = 0 }, "--dp-clip"},
		{func(c *Config) { c.Secure = true; c.Strategy = "median" }, "--strategy"},
	} {
		c := DefaultConfig()
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%+v: error %v does not name %s", c, err, tc.flag)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// A secure run differs from the plain one only by SecAgg+'s quantization:
// its final accuracy must be within 0.5 percentage points.
func TestSecureMatchesPlain(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	plain, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Secure = true
	sec, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(plain.Summary.FinalAccuracy - sec.Summary.FinalAccuracy); d > 0.005 {
		t.Fatalf("secure %.4f vs plain %.4f: differ by %.4f > 0.005", sec.Summary.FinalAccuracy, plain.Summary.FinalAccuracy, d)
	}
	var maxDiff float64
	for j := range plain.Params {
		maxDiff = max(maxDiff, math.Abs(float64(plain.Params[j]-sec.Params[j])))
	}
	if maxDiff > 1e-4 {
		t.Fatalf("secure and plain parameters differ by up to %g", maxDiff)
	}
}

func TestSecureWithDropoutAndDP(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.Secure = true
	cfg.Dropout = 0.2
	cfg.DPClip, cfg.DPNoise, cfg.DPDelta = 1, 0.5, 1e-5
	res, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res.Rounds {
		if m.Clients+m.Dropped != m.Sampled || m.Clients < 4 {
			t.Fatalf("round %d: clients %d + dropped %d != sampled %d", m.Round, m.Clients, m.Dropped, m.Sampled)
		}
	}
	if res.Summary.Epsilon == nil || !(*res.Summary.Epsilon > 0) {
		t.Fatalf("epsilon %v", res.Summary.Epsilon)
	}
}

func TestReportHTML(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.Rounds = 3
	cfg.DPNoise, cfg.DPClip = 1.0, 1.0
	cfg.Dropout = 0.2
	res, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteOutputs(dir, res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	want := []string{
		plotTitleHTML(cfg), `id="accuracy"`, `id="loss"`, `id="clients"`, `id="epsilon-chart"`,
		`data-series="held-out" data-points="3"`, `data-series="local (participants)"`, `data-series="dropped"`, `data-series="rejected"`,
		`id="wall"`, `&#34;dataset&#34;: &#34;digits&#34;`,
	}
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("report.html lacks %q", w)
		}
	}
	if got := strings.Count(page, `<tr class="round">`); got != len(res.Rounds) {
		t.Errorf("report.html has %d round rows, want %d", got, len(res.Rounds))
	}
	for _, m := range res.Rounds {
		row := fmt.Sprintf(`<tr class="round"><td>%d</td><td>%.4f</td>`, m.Round, m.Accuracy)
		if !strings.Contains(page, row) {
			t.Errorf("report.html lacks the row of round %d (%s)", m.Round, row)
		}
	}
	if e := res.Summary.Epsilon; e == nil || !strings.Contains(page, fmt.Sprintf(`<td id="epsilon">%.4g</td>`, *e)) {
		t.Errorf("report.html lacks the final ε %v", e)
	}
	for _, ext := range []string{"<script", `src="http`, `href="http`, "<link"} {
		if strings.Contains(page, ext) {
			t.Errorf("report.html is not self-contained: it has %q", ext)
		}
	}
}

// plotTitleHTML is plotTitle as html/template escapes it.
func plotTitleHTML(c Config) string { return template.HTMLEscapeString(plotTitle(c)) }

// heldAndStreamed runs cfg with the streamed path switched off and on
// (*stream) and fails unless both end with the same parameters and the
// same metrics every round; it returns the rounds.
func heldAndStreamed(t *testing.T, what string, cfg Config, train, test *data.Dataset, stream *bool) []RoundMetrics {
	t.Helper()
	run := func(on bool) *Result {
		*stream = on
		defer func() { *stream = true }()
		res, err := RunOn(context.Background(), cfg, train, test, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	held, streamed := run(false), run(true)
	if !slices.Equal(held.Params, streamed.Params) {
		t.Fatalf("%s: streamed and held runs end with different parameters", what)
	}
	for i, h := range held.Rounds {
		s := streamed.Rounds[i]
		h.Seconds, s.Seconds = 0, 0
		if fmt.Sprintf("%+v", h) != fmt.Sprintf("%+v", s) { // NaN metrics compare unequal
			t.Fatalf("%s round %d: held %+v, streamed %+v", what, h.Round, h, s)
		}
	}
	return held.Rounds
}

// Plain rounds streamed into a running sum (plainStreamed) give the same
// run, bit for bit, as holding every update (plainRound): FedAvg and
// FedAdam, with dropouts, attackers and invalid updates, with and without
// DP.
func TestPlainStreamedMatchesHeld(t *testing.T) {
	train, test := digits(t)
	for _, strategy := range []string{"fedavg", "fedadam"} {
		for _, dpOn := range []bool{false, true} {
			cfg := small()
			cfg.Rounds = 3
			cfg.Strategy = strategy
			cfg.Dropout = 0.2
			cfg.Attackers = "3:scale:1e39" // Inf: rejected
			if dpOn {
				cfg.DPClip, cfg.DPNoise, cfg.DPDelta = 1, 0.5, 1e-5
				cfg.Attackers = "1:noise:0.01"
			}
			rounds := heldAndStreamed(t, fmt.Sprintf("%s dp %v", strategy, dpOn), cfg, train, test, &streamPlain)
			rejected := 0
			for _, m := range rounds {
				rejected += m.Rejected
			}
			if !dpOn && rejected == 0 {
				t.Fatalf("%s: the attackers' Inf updates were never rejected; the test does not cover rejections", strategy)
			}
		}
	}
}

// Training streamed into SecAgg+ (secureStreamed) gives the same run, bit
// for bit, as training every client first (secureRound): with dropouts at
// every stage, distributed DP noise and attackers, and without DP.
func TestSecureStreamedMatchesHeld(t *testing.T) {
	train, test := digits(t)
	for _, dpOn := range []bool{false, true} {
		cfg := small()
		cfg.Rounds = 3
		cfg.Secure = true
		cfg.Dropout = 0.2
		cfg.Attackers = "1:noise:0.01"
		if dpOn {
			cfg.DPClip, cfg.DPNoise, cfg.DPDelta = 1, 0.5, 1e-5
		}
		heldAndStreamed(t, fmt.Sprintf("secure dp %v", dpOn), cfg, train, test, &streamSecure)
	}
}

// A client whose training fails ends a streamed plain round with the error
// the held path returns (the first failing client in sample order), and
// the run stops there.
func TestPlainStreamedTrainingError(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.LR = 1e30 // every client's loss turns NaN in its first steps
	var msgs []string
	for _, on := range []bool{false, true} {
		streamPlain = on
		res, err := RunOn(context.Background(), cfg, train, test, nil)
		streamPlain = true
		if err == nil {
			t.Fatalf("stream %v: a diverged training did not fail the run", on)
		}
		if res != nil && len(res.Rounds) != 0 {
			t.Fatalf("stream %v: %d rounds recorded after the failing one", on, len(res.Rounds))
		}
		msgs = append(msgs, err.Error())
	}
	if msgs[0] != msgs[1] || !strings.Contains(msgs[1], "diverged") {
		t.Fatalf("held: %q, streamed: %q", msgs[0], msgs[1])
	}
}
