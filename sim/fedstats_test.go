package sim

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
)

const cohortSchema = `
delimiter = ";"
[[column]]
name = "id"
type = "ignored"
[[column]]
name = "age"    # years
type = "numeric"
min = 0
max = 120
missing = "mean"
[[column]]
name = "sbp"    # mmHg
type = "numeric"
min = 50
max = 260
missing = "indicator"
[[column]]
name = "sex"
type = "categorical"
values = ["M", "F"]
missing = "mode"
[[column]]
name = "outcome"
type = "label"
classes = ["no", "yes"]
`

// writeCohort writes an Excel-style cohort (BOM, ';', CRLF, decimal commas,
// NA / empty / '?' cells, text categories and labels) whose outcome depends
// on age, blood pressure and sex.
func writeCohort(t *testing.T, rows int, seed uint64) (csvPath, schemaPath string) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(seed, 7))
	var b strings.Builder
	b.WriteString("\ufeffid;age;sbp;sex;outcome\r\n")
	for i := range rows {
		age := 20 + rng.Float64()*70
		sbp := 100 + 0.6*age + rng.NormFloat64()*15
		female := rng.IntN(2) == 1
		score := 0.08*(age-55) + 0.05*(sbp-133) - 1.2*b2f(female) + rng.NormFloat64()*0.5
		ageCell := strings.Replace(strconv.FormatFloat(age, 'f', 1, 64), ".", ",", 1)
		if rng.IntN(12) == 0 {
			ageCell = "NA"
		}
		sbpCell := strconv.FormatFloat(sbp, 'f', 0, 64)
		if rng.IntN(15) == 0 {
			sbpCell = ""
		}
		sex := map[bool]string{false: "M", true: "F"}[female]
		if rng.IntN(20) == 0 {
			sex = "?"
		}
		label := "no"
		if score > -0.6 {
			label = "yes"
		}
		b.WriteString(strconv.Itoa(i) + ";" + ageCell + ";\"" + sbpCell + "\";" + sex + ";" + label + "\r\n")
	}
	csvPath = filepath.Join(dir, "cohort.csv")
	schemaPath = filepath.Join(dir, "schema.toml")
	if err := os.WriteFile(csvPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(schemaPath, []byte(cohortSchema), 0o600); err != nil {
		t.Fatal(err)
	}
	return csvPath, schemaPath
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// The federation's mean and variance, computed under SecAgg+ from the
// clients' masked sufficient statistics, equal the pooled data's to within
// the quantization bound; the server sees each client's statistics only
// masked.
func TestAttackFederatedStatsEqualPooledAndStayMasked(t *testing.T) {
	csvPath, schemaPath := writeCohort(t, 600, 3)
	s, err := data.LoadSchema(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := data.LoadTable(csvPath, s)
	if err != nil {
		t.Fatal(err)
	}
	clients, err := data.Partition(raw, 5, "dirichlet:0.5", 0, 11)
	if err != nil {
		t.Fatal(err)
	}
	var masked []secagg.MaskedInput
	st, bound, err := FederatedStats(s, raw, clients, raw.N, 42, func(m any) {
		if mi, ok := m.(secagg.MaskedInput); ok {
			masked = append(masked, mi)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// Pooled statistics, computed plainly.
	for f, name := range []string{"age", "sbp"} {
		var n, sum, sq float64
		for i := range raw.N {
			v := float64(raw.Row(i)[f])
			if !math.IsNaN(v) {
				n, sum, sq = n+1, sum+v, sq+v*v
			}
		}
		mean := sum / n
		variance := sq/n - mean*mean
		o := 1 + 3*f
		tolMean := bound[o+1]/n + math.Abs(mean)*bound[o]/n
		tolVar := bound[o+2]/n + 2*math.Abs(mean)*tolMean + math.Abs(sq/n)*bound[o]/n
		if math.Abs(st.Count[f]-n) > bound[o] || math.Abs(st.Mean[f]-mean) > tolMean || math.Abs(st.Var[f]-variance) > tolVar {
			t.Errorf("%s: federated n %v mean %v var %v, pooled %v %v %v (tolerances %g %g)",
				name, st.Count[f], st.Mean[f], st.Var[f], n, mean, variance, tolMean, tolVar)
		}
		if tolMean > 1e-3 || tolVar > 1 {
			t.Errorf("%s: quantization tolerance %g / %g too loose to mean anything", name, tolMean, tolVar)
		}
	}
	// Each client's masked vector against its own plain quantized statistics:
	// every coordinate is hidden by the masks.
	if len(masked) != len(clients) {
		t.Fatalf("server saw %d masked inputs, want %d", len(masked), len(clients))
	}
	scales, _ := data.SumScales(s, raw.N)
	q, _ := secagg.NewQuantizer(secagg.DefaultBits, 1, 1, len(clients))
	for _, mi := range masked {
		c := clients[mi.From-1]
		sums, _ := data.Sums(s, raw, c.Train)
		x := make([]float32, len(sums))
		for j := range sums {
			x[j] = float32(sums[j] / scales[j])
		}
		plain := make([]uint32, len(x)+1)
		if err := q.Quantize(plain, x, 1, rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Fatal(err)
		}
		for j := range plain {
			if d := mi.Vector[j] - plain[j]; d <= 1 || d >= math.MaxUint32 {
				t.Errorf("client %d coordinate %d reached the server unmasked (masked %d, plain %d)", mi.From, j, mi.Vector[j], plain[j])
			}
		}
	}
}

// An Excel-written cohort trains in the simulator through the schema, with
// the federation's standardisation, to well above the majority class.
func TestSimTrainsExcelCohortWithSchema(t *testing.T) {
	csvPath, schemaPath := writeCohort(t, 1200, 5)
	cfg := small()
	cfg.Dataset = "csv:" + csvPath
	cfg.Schema = schemaPath
	cfg.Model = "logreg"
	cfg.Rounds = 15
	cfg.Clients = 3
	cfg.Fraction = 1
	cfg.Partition = "dirichlet:0.5"
	cfg.LR = 0.1
	train, test, st, err := LoadWithSchema(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if train.Dim != 5 || test.Dim != 5 {
		t.Fatalf("feature vector of %d/%d, want 5 (age, sbp, sbp_missing, sex=M, sex=F)", train.Dim, test.Dim)
	}
	if math.Abs(st.Mean[0]-55) > 5 {
		t.Fatalf("federated age mean %v, want about 55", st.Mean[0])
	}
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	yes := 0
	for _, y := range test.Y {
		yes += int(y)
	}
	majority := math.Max(float64(yes), float64(len(test.Y)-yes)) / float64(len(test.Y))
	if res.Summary.FinalAccuracy < majority+0.1 {
		t.Fatalf("final accuracy %.3f, majority baseline %.3f", res.Summary.FinalAccuracy, majority)
	}
	last := res.Rounds[len(res.Rounds)-1]
	if last.TP+last.FP+last.TN+last.FN != test.N || last.TP+last.FN != yes || !(last.AUC > 0.9) {
		t.Fatalf("last round: AUC %v, confusion TP %d FP %d TN %d FN %d; want AUC > 0.9 over %d rows, %d positive",
			last.AUC, last.TP, last.FP, last.TN, last.FN, test.N, yes)
	}
	if acc := float64(last.TP+last.TN) / float64(test.N); math.Abs(acc-last.Accuracy) > 1e-9 {
		t.Fatalf("confusion-matrix accuracy %v, reported accuracy %v", acc, last.Accuracy)
	}
	t.Logf("accuracy %.3f (majority %.3f)", res.Summary.FinalAccuracy, majority)
	t.Logf("AUC %.3f", last.AUC)
}

// scikit-learn's breast cancer table (committed with its schema) across
// three hospitals with label-skewed shares: with the federation's
// standardisation a linear model reaches the centralised accuracy.
func TestSimBreastCancerFederatedStandardisation(t *testing.T) {
	cfg := small()
	cfg.Dataset = "csv:../data/testdata/breast_cancer.csv"
	cfg.Schema = "../data/testdata/breast_cancer_schema.toml"
	cfg.Model = "logreg"
	cfg.Clients, cfg.Fraction, cfg.Rounds = 3, 1, 30
	cfg.Partition = "dirichlet:0.3"
	cfg.Seed = 1
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := res.Rounds[len(res.Rounds)-1]
	if last.Accuracy < 0.95 || !(last.AUC > 0.98) {
		t.Fatalf("accuracy %.3f AUC %.3f, want ≥ 0.95 and > 0.98", last.Accuracy, last.AUC)
	}
	if res.Stats == nil || len(res.Stats.Mean) != 30 {
		t.Fatalf("stats %+v, want 30 columns", res.Stats)
	}
}
