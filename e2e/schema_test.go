package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/data"
)

// schemaSites writes the breast-cancer table as three hospitals would: a
// categorical "clinic" column, missing cells ("NA", "", "?"), text labels;
// hospital 0 as Excel writes it (BOM, ';', decimal commas, CRLF), hospital
// 1 tab-separated, hospital 2 plain ','. It returns the schema's path and
// each site's CSV path.
func schemaSites(t *testing.T, dir string, names []string) (string, []string) {
	t.Helper()
	sb, err := os.ReadFile("../data/testdata/breast_cancer_schema.toml")
	if err != nil {
		t.Fatal(err)
	}
	schema := strings.Replace(string(sb), "name = \"radius_mean\"\ntype = \"numeric\"", "name = \"radius_mean\"\ntype = \"numeric\"\nmissing = \"mean\"", 1)
	schema = strings.Replace(schema, "name = \"texture_mean\"\ntype = \"numeric\"", "name = \"texture_mean\"\ntype = \"numeric\"\nmissing = \"indicator\"", 1)
	schema += "\n[[column]]\nname = \"clinic\"\ntype = \"categorical\"\nvalues = [\"north\", \"south\", \"east\"]\nmissing = \"mode\"\n"
	schemaPath := filepath.Join(dir, "schema.toml")
	write(t, schemaPath, schema)
	raw, err := os.ReadFile("../data/testdata/breast_cancer.csv")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	header := strings.Split(lines[0], ",")
	rng := rand.New(rand.NewPCG(5, 9))
	clinics := []string{"north", "south", "east"}
	var paths []string
	for w, name := range names {
		delim, nl, bom := ",", "\n", ""
		switch w {
		case 0:
			delim, nl, bom = ";", "\r\n", "\ufeff"
		case 1:
			delim = "\t"
		}
		var b strings.Builder
		b.WriteString(bom + strings.Join(append(header, "clinic"), delim) + nl)
		rows := lines[1:]
		for i := w * len(rows) / len(names); i < (w+1)*len(rows)/len(names); i++ {
			cells := strings.Split(rows[i], ",")
			for c := range cells {
				switch {
				case c <= 1 && rng.IntN(12) == 0:
					cells[c] = []string{"NA", "", "?"}[rng.IntN(3)]
				case w == 0 && c < len(cells)-1:
					cells[c] = strings.Replace(cells[c], ".", ",", 1)
				}
			}
			clinic := clinics[(i+w)%3]
			if rng.IntN(20) == 0 {
				clinic = "NA"
			}
			b.WriteString(strings.Join(append(cells, clinic), delim) + nl)
		}
		p := filepath.Join(dir, name+".csv")
		write(t, p, b.String())
		paths = append(paths, p)
	}
	return schemaPath, paths
}

// Three real workers with differently written CSVs under one schema and a
// coordinator with [rounds] schema: the federation computes the feature
// statistics in its first (secure) round, they equal the pooled data's,
// every worker encodes its rows with them, and the model rounds train.
func TestFederationStatisticsRound(t *testing.T) {
	const rounds = 4
	f := newFed(t, fedOptions{workers: 3, rounds: rounds, noBudget: true, lr: 0.5, epochs: 2})
	schemaPath, csvs := schemaSites(t, f.dir, f.wnames)
	cb, err := os.ReadFile(f.coordCfg)
	if err != nil {
		t.Fatal(err)
	}
	coordCfg := strings.Replace(string(cb), "input = [1, 1, 64]\nclasses = 10\n", "schema = \"schema.toml\"\n", 1)
	write(t, f.coordCfg, coordCfg)
	for i, p := range f.wcfg {
		wb, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		w := strings.Replace(string(wb), fmt.Sprintf("dataset = \"csv:%s.csv?label=label&classes=10\"", f.wnames[i]),
			fmt.Sprintf("dataset = \"csv:%s\"\nschema = \"schema.toml\"", filepath.Base(csvs[i])), 1)
		write(t, p, w)
	}
	f.startCoordinator()
	for i := range f.wnames {
		f.startWorker(i)
	}
	// Round 1 is the statistics round; models are committed by 2..rounds+1.
	f.waitStatus("all rounds committed and evaluated", 120*time.Second, func(s status) bool {
		return s.CommittedRounds == rounds && s.AccuracyRound == rounds+1
	})
	f.stopCoordinator()
	state := f.state()
	if state.Stats == nil {
		t.Fatal("no federation statistics committed")
	}
	if len(state.Stats.Participants) != 3 {
		t.Fatalf("statistics of %d sites, want 3", len(state.Stats.Participants))
	}
	// The pooled statistics of the three sites' training rows.
	s, err := data.LoadSchema(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var pooled []float64
	for _, p := range csvs {
		train, _, err := data.LoadSchemaTables(p, s, data.DefaultTestFrac, data.SplitSeed)
		if err != nil {
			t.Fatal(err)
		}
		sums, err := data.Sums(s, train, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pooled == nil {
			pooled = make([]float64, len(sums))
		}
		for j, v := range sums {
			pooled[j] += v
		}
	}
	want, err := data.StatsFromSums(s, pooled)
	if err != nil {
		t.Fatal(err)
	}
	var got data.Stats
	if err := json.Unmarshal(state.Stats.Stats, &got); err != nil {
		t.Fatal(err)
	}
	if got.Rows != want.Rows {
		t.Fatalf("federation rows %v, pooled %v", got.Rows, want.Rows)
	}
	for c, k := range s.Features() {
		name := s.Columns[k].Name
		if got.Count[c] != want.Count[c] {
			t.Fatalf("column %s: count %v, pooled %v", name, got.Count[c], want.Count[c])
		}
		// Quantization error of the secure sum, relative to the column's range.
		tol := 1e-5 * math.Max(1, math.Abs(want.Mean[c]))
		if math.Abs(got.Mean[c]-want.Mean[c]) > tol || math.Abs(got.Var[c]-want.Var[c]) > 1e-3*math.Max(1, want.Var[c]) {
			t.Fatalf("column %s: mean %v var %v, pooled %v %v", name, got.Mean[c], got.Var[c], want.Mean[c], want.Var[c])
		}
	}
	for i := range f.wnames {
		if !hasLine(f.workers[i], "data encoded with the federation's statistics") {
			t.Fatalf("%s did not encode its data with the federation's statistics:\n%s", f.wnames[i], f.workers[i].logText())
		}
	}
	last := state.Metrics[len(state.Metrics)-1]
	t.Logf("federated accuracy after %d rounds: %.3f (%d examples); rows %v", rounds, last.Accuracy, last.Examples, got.Rows)
	if last.Accuracy < 0.85 {
		t.Fatalf("federated accuracy %.3f after %d rounds on standardised breast-cancer data, want ≥ 0.85", last.Accuracy, rounds)
	}
	// Two classes: the federated evaluation carries the confusion matrix
	// and the ROC AUC of the workers' summed score histograms.
	b := last.Binary
	if b == nil || b.TP+b.FP+b.TN+b.FN != last.Examples {
		t.Fatalf("federated binary metrics %+v for %d examples", b, last.Examples)
	}
	if acc := float64(b.TP+b.TN) / float64(last.Examples); math.Abs(acc-last.Accuracy) > 1e-9 {
		t.Fatalf("confusion matrix accuracy %v, recorded accuracy %v", acc, last.Accuracy)
	}
	t.Logf("federated ROC AUC %.3f, confusion tp %d fp %d tn %d fn %d", b.AUC, b.TP, b.FP, b.TN, b.FN)
	if b.AUC < 0.9 {
		t.Fatalf("federated ROC AUC %.3f, want ≥ 0.9", b.AUC)
	}
	if _, err := run(t, "ledger", "verify", "--data", f.coordDir); err != nil {
		t.Fatalf("ledger verify: %v", err)
	}
	// The exported model carries the schema and the statistics, so
	// `sovereign evaluate` encodes a raw hospital file as the sites did.
	out := filepath.Join(f.dir, "model.safetensors")
	if _, err := run(t, "export", "--data", f.coordDir, "--out", out); err != nil {
		t.Fatalf("export: %v", err)
	}
	rep, err := run(t, "evaluate", "--model", out, "--dataset", "csv:"+csvs[1], "--split", "all", "--json")
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	var ev struct {
		Accuracy float64 `json:"accuracy"`
		Examples int     `json:"examples"`
	}
	if err := json.Unmarshal([]byte(rep), &ev); err != nil {
		t.Fatalf("evaluate output %q: %v", rep, err)
	}
	t.Logf("exported model on %s: accuracy %.3f over %d rows", filepath.Base(csvs[1]), ev.Accuracy, ev.Examples)
	if ev.Accuracy < 0.85 {
		t.Fatalf("exported model: accuracy %.3f on a site's own raw file, want ≥ 0.85 (schema and statistics in the file)", ev.Accuracy)
	}
}
