package sim

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The tabular baselines of docs/benchmarks.md: three hospitals with
// label-skewed shares of the breast-cancer table (and of the MASS student
// survey, with native missing cells and six categorical columns), federated (statistics
// under SecAgg+) against each hospital alone and against all rows pooled,
// with and without standardisation. The figures are logged; the test
// checks that every baseline ran its rounds on its own rows.
func TestTabularBaselines(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the baselines are 14 simulations of 30 rounds (two data sets, with and without standardisation)")
	}
	for _, set := range []string{"breast_cancer", "survey"} {
		tabularBaselines(t, set)
	}
}

func tabularBaselines(t *testing.T, set string) {
	base := DefaultConfig()
	base.Dataset = "csv:../data/testdata/" + set + ".csv"
	base.Model, base.Clients, base.Fraction, base.Rounds = "logreg", 3, 1, 30
	base.Partition, base.LR, base.Seed = "dirichlet:0.3", 0.05, 1
	schema := "../data/testdata/" + set + "_schema.toml"
	sb, err := os.ReadFile(schema)
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(t.TempDir(), "raw_schema.toml")
	if err := os.WriteFile(raw, append([]byte("standardize = false\n"), sb...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []struct{ name, schema string }{
		{set + ", federated standardisation", schema},
		{set + ", none", raw},
	} {
		cfg := base
		cfg.Schema = sc.schema
		fed, err := Run(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		locals, err := LocalOnly(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(locals) != 3 {
			t.Fatalf("%d local-only results, want 3", len(locals))
		}
		central := cfg
		central.Clients, central.Partition = 1, "iid"
		cen, err := Run(context.Background(), central, nil)
		if err != nil {
			t.Fatal(err)
		}
		last := func(r *Result) (float64, float64) {
			m := r.Rounds[len(r.Rounds)-1]
			return m.Accuracy, m.AUC
		}
		fa, fu := last(fed)
		ca, cu := last(cen)
		t.Logf("%s: federated acc %.3f auc %.3f; centralised acc %.3f auc %.3f", sc.name, fa, fu, ca, cu)
		total := 0
		for i, l := range locals {
			if l.Summary.RoundsRun != 30 {
				t.Fatalf("hospital %d alone ran %d rounds", i, l.Summary.RoundsRun)
			}
			la, lu := last(l)
			total += l.Summary.TrainExamples
			t.Logf("%s: hospital %d alone (%d rows) acc %.3f auc %.3f", sc.name, i, l.Summary.TrainExamples, la, lu)
			if math.IsNaN(la) {
				t.Fatalf("hospital %d: no accuracy", i)
			}
		}
		if total != fed.Summary.TrainExamples {
			t.Fatalf("local-only runs hold %d rows, the federation %d", total, fed.Summary.TrainExamples)
		}
	}
}
