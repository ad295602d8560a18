package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// replaceAll applies old→new pairs to s, failing the test when an old
// text is not there (the runbook changed under the test).
func replaceAll(t *testing.T, what, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%s: the runbook no longer has %q", what, pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

// TestRunbookSections3And4TrainTogether runs the coordinator of the
// runbook's section 4 with five workers configured by section 3's file —
// as printed, with only names, keys, ports and the CSV path changed — on
// 12-feature, two-class CSVs: every one of the 20 rounds commits, no worker
// refuses a round, and the study ends within the workers' max_epsilon.
func TestRunbookSections3And4TrainTogether(t *testing.T) {
	b, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	block := func(heading string) string {
		i := strings.Index(doc, "\n"+heading)
		rest := doc[i:]
		rest = rest[strings.Index(rest, "```toml\n")+len("```toml\n"):]
		return rest[:strings.Index(rest, "\n```")+1]
	}
	workerTOML, coordTOML := block("## 3. "), block("## 4. ")

	dir := t.TempDir()
	f := &fed{t: t, dir: dir, fedFile: filepath.Join(dir, "federation.toml")}
	t.Cleanup(f.stopAll)
	port := freePort(t)
	var fb strings.Builder
	fmt.Fprintf(&fb, "name = \"runbook-34\"\n\n[[member]]\nname = \"coord-1\"\npeer_id = %q\nrole = \"coordinator\"\naddrs = [\"/ip4/127.0.0.1/tcp/%d\"]\n",
		keygen(t, filepath.Join(dir, "coord-1.key")), port)
	const workers = 5
	rng := rand.New(rand.NewSource(34))
	weights := make([]float64, 12)
	for j := range weights {
		weights[j] = rng.NormFloat64()
	}
	for i := 1; i <= workers; i++ {
		name := fmt.Sprintf("st-marys-%d", i)
		fmt.Fprintf(&fb, "\n[[member]]\nname = %q\npeer_id = %q\nrole = \"worker\"\n", name, keygen(t, filepath.Join(dir, name+".key")))
		// A cohort of 200 patients: 12 numeric features, a binary outcome.
		var csv strings.Builder
		for j := range 12 {
			fmt.Fprintf(&csv, "f%d,", j)
		}
		csv.WriteString("outcome\n")
		for range 200 {
			s := 0.0
			for j := range 12 {
				x := rng.NormFloat64()
				s += weights[j] * x
				fmt.Fprintf(&csv, "%.4f,", x)
			}
			y := 0
			if s+0.5*rng.NormFloat64() > 0 {
				y = 1
			}
			fmt.Fprintf(&csv, "%d\n", y)
		}
		write(t, filepath.Join(dir, name+".csv"), csv.String())
		cfg := replaceAll(t, "section 3", workerTOML,
			`name       = "st-marys"`, fmt.Sprintf("name = %q", name),
			`identity   = "st-marys.key"`, fmt.Sprintf("identity = %q", name+".key"),
			`listen     = ["/ip4/0.0.0.0/tcp/4101"]`, `listen = ["/ip4/127.0.0.1/tcp/0"]`,
			`/data/cohort.csv?`, filepath.Join(dir, name+".csv")+"?",
			`store      = "store"`, fmt.Sprintf("store = %q", name+"-store"),
			`metrics_listen = "127.0.0.1:9465"`, "",
		)
		write(t, filepath.Join(dir, name+".toml"), cfg)
	}
	write(t, f.fedFile, fb.String())
	coordCfg := replaceAll(t, "section 4", coordTOML,
		`listen     = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]`, fmt.Sprintf(`listen = ["/ip4/127.0.0.1/tcp/%d"]`, port),
		`metrics_listen   = "127.0.0.1:9464"`, "",
		`dashboard_listen = "127.0.0.1:8080"`, "",
	)
	write(t, filepath.Join(dir, "coordinator.toml"), coordCfg)
	f.coord = f.start("coord-1", "coordinator", "--config", "coordinator.toml", "--exit-when-done")
	for i := 1; i <= workers; i++ {
		name := fmt.Sprintf("st-marys-%d", i)
		f.workers = append(f.workers, f.start(name, "worker", "--config", name+".toml"))
	}
	select {
	case <-f.coord.done:
	case <-time.After(4 * time.Minute):
		t.Fatal("the coordinator did not finish its 20 rounds in 4 minutes")
	}
	if f.coord.err != nil {
		t.Fatalf("coordinator: %v", f.coord.err)
	}
	var ledger struct {
		Entries []struct {
			Round        uint64   `json:"round"`
			Participants []string `json:"participants"`
			Epsilon      float64  `json:"epsilon"`
		} `json:"entries"`
	}
	lb, err := os.ReadFile(filepath.Join(dir, "coord-data", "ledger.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lb, &ledger); err != nil {
		t.Fatal(err)
	}
	if len(ledger.Entries) != 21 {
		t.Fatalf("ledger has %d entries, want the initial model and 20 rounds", len(ledger.Entries))
	}
	head := ledger.Entries[20]
	if head.Round != 20 || len(head.Participants) != workers {
		t.Errorf("last entry: round %d with %d participants, want round 20 (no failed round) with all %d", head.Round, len(head.Participants), workers)
	}
	if !(head.Epsilon > 0 && head.Epsilon <= 8) || math.Abs(head.Epsilon-7.53) > 0.005 {
		t.Errorf("the study ends at ε = %v; the runbook says 7.53, within max_epsilon = 8", head.Epsilon)
	}
	for _, w := range f.workers {
		if strings.Contains(w.logText(), "round refused") {
			t.Errorf("%s refused a round of section 4's coordinator", w.name)
		}
	}
}
