package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// python is Debian's interpreter with python3-torch and python3-numpy.
const python = "/usr/bin/python3"

func needTorch(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import torch, numpy").CombinedOutput(); err != nil {
		t.Skipf("needs %s with Debian's python3-torch and python3-numpy (apt-get install python3-torch python3-numpy; .ci/run installs them): %v: %s", python, err, out)
	}
}

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
