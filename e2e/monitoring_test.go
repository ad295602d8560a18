package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/p2p"
)

// scrape fetches http://addr/metrics and parses the text format.
func scrape(addr string) (map[string]*dto.MetricFamily, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}

// metricValue returns the value of the sample of name whose labels include
// labels (pairs); for a histogram its sample count. ok is false if absent.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// mustValue is metricValue that fails the test when the sample is absent.
func mustValue(t *testing.T, who string, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metricValue(fams, name, labels...)
	if !ok {
		t.Fatalf("%s: metric %s%v missing", who, name, labels)
	}
	return v
}

// prepend writes line at the top of the TOML file path (top-level keys
// must precede its tables).
func prepend(t testing.TB, path, line string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, line+"\n"+string(b))
}

// TestMetricsScrapedDuringFederation runs a coordinator and five workers
// with metrics_listen set, debug-level JSON logs, and one worker whose
// policy refuses every round (min_cohort 6 for a cohort of 5). It scrapes
// both endpoints while the rounds run and checks the values against what
// happened: the ledger, the recorded evaluation, the refusals; then it
// checks that every log line is JSON with round/stage/peer where they
// apply, and that no key or share bytes were logged.
func TestMetricsScrapedDuringFederation(t *testing.T) {
	const rounds = 3
	f := newFed(t, fedOptions{workers: 5, rounds: rounds, noise: 0.5, minWorkers: 3})
	coordAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	prepend(t, f.coordCfg, fmt.Sprintf("metrics_listen = %q\nlog_level = \"debug\"", coordAddr))
	waddr := make([]string, len(f.wcfg))
	for i, p := range f.wcfg {
		waddr[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		prepend(t, p, fmt.Sprintf("metrics_listen = %q\nlog_level = \"debug\"", waddr[i]))
	}
	const refuser = 4
	patch(t, f.wcfg[refuser], "min_cohort = 3", "min_cohort = 6")

	f.coord = f.start("coord", "coordinator", "--config", f.coordCfg, "--log-format", "json")
	for i := range f.wcfg {
		f.workers = append(f.workers, f.start(f.wnames[i], "worker", "--config", f.wcfg[i], "--log-format", "json"))
	}

	// While the rounds run: scrape both sides; counters never go down.
	prev := map[string]float64{}
	sawInFlight := false
	deadline := time.Now().Add(150 * time.Second)
	var cm map[string]*dto.MetricFamily
	for {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: last coordinator scrape committed=%v", prev["committed"])
		}
		if f.coord.exited() {
			t.Fatalf("coordinator exited: %v", f.coord.err)
		}
		var err error
		cm, err = scrape(coordAddr)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		committed, _ := metricValue(cm, "sovereign_rounds_committed_total")
		started, _ := metricValue(cm, "sovereign_rounds_started_total")
		if v, _ := metricValue(cm, "sovereign_round_in_flight"); v == 1 {
			sawInFlight = true
		}
		for k, v := range map[string]float64{"committed": committed, "started": started} {
			if v < prev[k] {
				t.Fatalf("sovereign_rounds_%s_total went down: %v → %v", k, prev[k], v)
			}
			prev[k] = v
		}
		for i, a := range waddr {
			wm, err := scrape(a)
			if err != nil {
				continue
			}
			j, _ := metricValue(wm, "sovereign_worker_rounds_joined_total")
			k := fmt.Sprintf("joined%d", i)
			if j < prev[k] {
				t.Fatalf("worker %d: sovereign_worker_rounds_joined_total went down: %v → %v", i, prev[k], j)
			}
			prev[k] = j
		}
		evaluated, _ := metricValue(cm, "sovereign_federated_evaluated_round")
		if committed == rounds && evaluated >= float64(started) && started >= rounds {
			break
		}
		time.Sleep(150 * time.Millisecond)
	}
	if !sawInFlight {
		t.Log("no scrape fell inside a round in flight (rounds were fast)")
	}

	// The coordinator's values against its state. The process keeps
	// serving, so the last scrape and a snapshot taken after SIGTERM agree.
	cm, err := scrape(coordAddr)
	if err != nil {
		t.Fatal(err)
	}
	wms := make([]map[string]*dto.MetricFamily, len(waddr))
	for i, a := range waddr {
		if wms[i], err = scrape(a); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	f.stopCoordinator()
	st := f.state()
	head := st.Head()
	c := func(name string, labels ...string) float64 { return mustValue(t, "coordinator", cm, name, labels...) }
	eq := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	eq("sovereign_rounds_committed_total", c("sovereign_rounds_committed_total"), float64(len(st.Ledger)-1))
	eq("sovereign_rounds_started_total", c("sovereign_rounds_started_total"), float64(st.Round))
	eq("sovereign_rounds_failed_total", c("sovereign_rounds_failed_total"), float64(int(st.Round)-(len(st.Ledger)-1)))
	eq("sovereign_ledger_entries", c("sovereign_ledger_entries"), float64(len(st.Ledger)))
	eq("sovereign_epsilon_spent", c("sovereign_epsilon_spent"), head.Epsilon)
	last := st.Metrics[len(st.Metrics)-1]
	eq("sovereign_federated_accuracy_ratio", c("sovereign_federated_accuracy_ratio"), last.Accuracy)
	eq("sovereign_federated_loss", c("sovereign_federated_loss"), last.Loss)
	eq("sovereign_raft_state{Leader}", c("sovereign_raft_state", "state", "Leader"), 1)
	if c("sovereign_raft_term") < 1 || c("sovereign_raft_commit_index") < float64(len(st.Ledger)) || c("sovereign_raft_applied_index") < float64(len(st.Ledger)) {
		t.Errorf("raft term %v, commit %v, applied %v: want ≥ 1 and ≥ the %d ledger commits", c("sovereign_raft_term"),
			c("sovereign_raft_commit_index"), c("sovereign_raft_applied_index"), len(st.Ledger))
	}
	eq("sovereign_raft_leader_changes_total", c("sovereign_raft_leader_changes_total"), 1)
	eq("sovereign_workers_online", c("sovereign_workers_online"), 5)
	// One leader drove every round: each stage closed once per round that
	// reached it, and every committed round was evaluated.
	eq("stage_duration_seconds{unmask} count", c("sovereign_stage_duration_seconds", "stage", "unmask"), float64(len(st.Ledger)-1))
	eq("stage_duration_seconds{evaluate} count", c("sovereign_stage_duration_seconds", "stage", "evaluate"), float64(len(st.Metrics)))
	if c("sovereign_stage_duration_seconds", "stage", "advertise") < float64(len(st.Ledger)-1) {
		t.Errorf("advertise stage observed %v times for %d committed rounds", c("sovereign_stage_duration_seconds", "stage", "advertise"), len(st.Ledger)-1)
	}
	// Every round samples all five workers; the refuser refuses each one.
	eq("sovereign_refusals_total{min_cohort}", c("sovereign_refusals_total", "reason", "min_cohort"), float64(st.Round))
	eq("sovereign_round_workers{sampled}", c("sovereign_round_workers", "set", "sampled"), 5)
	eq("sovereign_round_workers{survived}", c("sovereign_round_workers", "set", "survived"), 4)
	eq("sovereign_round_workers{dropped}", c("sovereign_round_workers", "set", "dropped"), 1)
	if c("sovereign_p2p_received_bytes_total") <= 0 || c("sovereign_p2p_sent_bytes_total") <= 0 {
		t.Errorf("coordinator p2p bytes received %v, sent %v", c("sovereign_p2p_received_bytes_total"), c("sovereign_p2p_sent_bytes_total"))
	}

	// The workers' values against the ledger.
	for i, wm := range wms {
		w := func(name string, labels ...string) float64 { return mustValue(t, f.wnames[i], wm, name, labels...) }
		joined := 0
		for _, e := range st.Ledger[1:] {
			if slices.Contains(e.Participants, coordinator.WorkerID(f.wpeers[i])) {
				joined++
			}
		}
		if i == refuser {
			eq(f.wnames[i]+" joined", w("sovereign_worker_rounds_joined_total"), 0)
			eq(f.wnames[i]+" refused{min_cohort}", w("sovereign_worker_rounds_refused_total", "reason", "min_cohort"), float64(st.Round))
			eq(f.wnames[i]+" epsilon spent", w("sovereign_worker_epsilon_spent"), 0)
			continue
		}
		eq(f.wnames[i]+" joined", w("sovereign_worker_rounds_joined_total"), float64(joined))
		eq(f.wnames[i]+" trainings", w("sovereign_worker_training_seconds"), float64(joined))
		eq(f.wnames[i]+" epsilon spent", w("sovereign_worker_epsilon_spent"), head.Epsilon)
		eq(f.wnames[i]+" epsilon budget", w("sovereign_worker_epsilon_budget"), 1000)
		eq(f.wnames[i]+" refused (all reasons)", sumFamily(wm, "sovereign_worker_rounds_refused_total"), 0)
		if w("sovereign_worker_store_bytes") <= 0 || w("sovereign_p2p_sent_bytes_total") <= 0 {
			t.Errorf("%s: store bytes %v, p2p bytes sent %v", f.wnames[i], w("sovereign_worker_store_bytes"), w("sovereign_p2p_sent_bytes_total"))
		}
		if joined != rounds {
			t.Errorf("%s joined %d of %d committed rounds", f.wnames[i], joined, rounds)
		}
	}
	for _, w := range f.workers {
		w.kill()
	}
	checkJSONLogs(t, f, append([]*proc{f.coord}, f.workers...))
}

func sumFamily(fams map[string]*dto.MetricFamily, name string) float64 {
	s := 0.0
	for _, m := range fams[name].GetMetric() {
		s += m.GetCounter().GetValue()
	}
	return s
}

// longToken finds base64-alphabet runs of 40+ characters: marshalled key
// or share bytes in a JSON log would be one.
var longToken = regexp.MustCompile(`[A-Za-z0-9+/_=-]{40,}`)
var hexOnly = regexp.MustCompile(`^[0-9a-f]+$`)

// checkJSONLogs checks that every line of every process is a JSON object
// with time, level and msg; that the round and stage lines carry round and
// stage (and the worker's request lines the peer too); and that no identity
// key, in any encoding, nor any long base64 blob appears.
func checkJSONLogs(t *testing.T, f *fed, procs []*proc) {
	t.Helper()
	var secrets []string
	keys, _ := filepath.Glob(filepath.Join(f.dir, "*.key"))
	for _, k := range keys {
		sk, err := p2p.LoadIdentity(k)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := sk.Raw()
		if err != nil {
			t.Fatal(err)
		}
		file, _ := os.ReadFile(k)
		for _, b := range [][]byte{raw, raw[:32], file} {
			secrets = append(secrets, hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b),
				base64.RawStdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b))
		}
	}
	sawDebug := false
	for _, p := range procs {
		fh, err := os.Open(p.log)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		n, withRound, withStage := 0, 0, 0
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				continue
			}
			n++
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%s: log line is not JSON: %q", p.name, line)
			}
			for _, k := range []string{"time", "level", "msg"} {
				if _, ok := m[k]; !ok {
					t.Fatalf("%s: log line without %q: %s", p.name, k, line)
				}
			}
			if m["level"] == "DEBUG" {
				sawDebug = true
			}
			if _, ok := m["round"]; ok {
				withRound++
			}
			if _, ok := m["stage"]; ok {
				withStage++
			}
			switch m["msg"] {
			case "round started", "stage closed", "survivors committed", "model committed":
				if m["round"] == nil || m["stage"] == nil {
					t.Errorf("%s: %q line without round or stage: %s", p.name, m["msg"], line)
				}
			case "advertised keys", "refused", "shared keys", "masked input requested", "sent masked input", "unmasked", "evaluated":
				if m["round"] == nil || m["peer"] == nil || m["stage"] == nil {
					t.Errorf("%s: %q line without round, stage or peer: %s", p.name, m["msg"], line)
				}
			}
			for _, s := range secrets {
				if strings.Contains(line, s) {
					t.Fatalf("%s: an identity key appears in the log: %s", p.name, line)
				}
			}
			for _, tok := range longToken.FindAllString(line, -1) {
				if hexOnly.MatchString(tok) || strings.Contains(tok, "12D3KooW") || strings.Contains(tok, "sovereign") {
					continue // hashes, peer IDs and multiaddrs holding them, protocol IDs
				}
				t.Errorf("%s: a long base64-like token (key or share bytes?) in the log: %q in %s", p.name, tok, line)
			}
		}
		fh.Close()
		if p == procs[0] && (withRound == 0 || withStage == 0) {
			t.Errorf("%s: %d lines, %d with round, %d with stage", p.name, n, withRound, withStage)
		}
	}
	if !sawDebug {
		t.Error("no debug-level line in any log: the secret check did not cover debug output")
	}
}
