package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/internal/testtool"
)

// python is Debian's interpreter with python3-torch and python3-numpy.
const python = testtool.Python

func needTorch(t *testing.T) { t.Helper(); testtool.NeedPython(t, "torch", "numpy") }

// TestPyTorchAgreesWithPredict: the sim's exported 2NN and CNN load into
// the equivalent torch.nn.Sequential with load_state_dict(strict=True), and
// PyTorch's predictions on 1,000 MNIST test images agree with `sovereign
// predict` on every class and on every probability within 1e-4.
func TestPyTorchAgreesWithPredict(t *testing.T) {
	needTorch(t)
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(self))
	script := filepath.Join(root, "e2e", "testdata", "torch_check.py")
	images := filepath.Join(root, "data", "mnist", "t10k-images-idx3-ubyte.gz")
	for _, m := range []string{"2nn", "cnn"} {
		t.Run(m, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			// One short round on a slice of MNIST: the model is trained, not
			// its seeded initialisation.
			if _, err := run(t, "sim", "--dataset", "mnist", "--model", m, "--clients", "600", "--fraction", "0.002",
				"--epochs", "1", "--rounds", "1", "--seed", "3", "--out", out); err != nil {
				t.Fatal(err)
			}
			modelPath := filepath.Join(out, "model.safetensors")
			preds := filepath.Join(dir, "predictions.csv")
			if _, err := run(t, "predict", "--model", modelPath, "--dataset", "mnist", "--out", preds); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(preds)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), "\n"); n != 10001 {
				t.Fatalf("predictions.csv has %d lines, want 10,001 (header + MNIST test set)", n)
			}
			res, err := exec.Command(python, script, modelPath, preds, images, "1000").CombinedOutput()
			if err != nil {
				t.Fatalf("PyTorch check failed: %v\n%s", err, res)
			}
			t.Logf("%s", strings.TrimSpace(string(res)))
		})
	}
}

// TestEvaluateMatchesSim: `sovereign evaluate` on the sim's model.safetensors
// prints the held-out accuracy and loss the sim reported in summary.json.
func TestEvaluateMatchesSim(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if _, err := run(t, "sim", "--out", out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		FinalAccuracy float64 `json:"final_accuracy"`
		FinalLoss     float64 `json:"final_loss"`
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	res, err := run(t, "evaluate", "--model", filepath.Join(out, "model.safetensors"), "--dataset", "digits", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Accuracy  float64 `json:"accuracy"`
		Loss      float64 `json:"loss"`
		Examples  int     `json:"examples"`
		Confusion [][]int `json:"confusion"`
	}
	if err := json.Unmarshal([]byte(res), &rep); err != nil {
		t.Fatalf("%v: %s", err, res)
	}
	if rep.Accuracy != sum.FinalAccuracy || rep.Loss != sum.FinalLoss || rep.Examples != 359 {
		t.Fatalf("evaluate: accuracy %v loss %v on %d examples; sim reported accuracy %v loss %v", rep.Accuracy, rep.Loss, rep.Examples, sum.FinalAccuracy, sum.FinalLoss)
	}
	diag := 0
	for i := range rep.Confusion {
		diag += rep.Confusion[i][i]
	}
	if float64(diag)/359 != rep.Accuracy {
		t.Fatalf("confusion diagonal %d/359 disagrees with accuracy %v", diag, rep.Accuracy)
	}
}

// TestEvaluateAppliesFileStandardization: a model trained on standardised
// CSV features carries the z-score map in its file; evaluating it on the
// raw CSV (no standardize option) applies that map and reproduces the
// sim's held-out accuracy, with a ROC AUC for the two classes.
func TestEvaluateAppliesFileStandardization(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("a,b,label\n")
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 400; i++ {
		c := i % 2
		fmt.Fprintf(&b, "%.4f,%.4f,%d\n", 1000+40*rng.NormFloat64()+120*float64(c), -0.001+0.0005*rng.NormFloat64()-0.0012*float64(c), c)
	}
	csvPath := filepath.Join(dir, "cohort.csv")
	write(t, csvPath, b.String())
	out := filepath.Join(dir, "out")
	if _, err := run(t, "sim", "--dataset", "csv:"+csvPath+"?label=label&standardize=true", "--model", "logreg", "--clients", "4", "--rounds", "5", "--out", out); err != nil {
		t.Fatal(err)
	}
	sb, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		FinalAccuracy float64 `json:"final_accuracy"`
	}
	json.Unmarshal(sb, &sum)
	res, err := run(t, "evaluate", "--model", filepath.Join(out, "model.safetensors"), "--dataset", "csv:"+csvPath+"?label=label", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Accuracy float64  `json:"accuracy"`
		ROCAUC   *float64 `json:"roc_auc"`
	}
	if err := json.Unmarshal([]byte(res), &rep); err != nil {
		t.Fatal(err)
	}
	if math.Abs(rep.Accuracy-sum.FinalAccuracy) > 1e-12 || sum.FinalAccuracy < 0.8 || rep.ROCAUC == nil || *rep.ROCAUC < 0.8 {
		t.Fatalf("evaluate on raw CSV: accuracy %v (sim %v), ROC AUC %v", rep.Accuracy, sum.FinalAccuracy, deref(rep.ROCAUC))
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// missingTool skips a test whose Debian package is absent (fails under
// SOVEREIGN_REQUIRE_TOOLS): testtool.Missing.
func missingTool(t *testing.T, format string, a ...any) {
	t.Helper()
	testtool.Missing(t, format, a...)
}
