package trainer

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/internal/testtool"
)

// python is Debian's interpreter (with python3-numpy).
const python = testtool.Python

// needNumpy skips without python3-numpy (fails under
// SOVEREIGN_REQUIRE_TOOLS, see testtool).
func needNumpy(t *testing.T) { t.Helper(); testtool.NeedPython(t, "numpy") }

// TestPythonHelper runs python/sovereign_trainer.py (through a numpy-only
// softmax-regression trainer) through hello, three trainings and an
// evaluation: the training loss falls, and a stray print() does not break
// the protocol.
func TestPythonHelper(t *testing.T) {
	needNumpy(t)
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(filepath.Dir(self)), "python", "testdata", "numpy_trainer.py")
	logs := &logBuf{}
	p, err := New(Config{Command: []string{python, script}, Dir: t.TempDir(), Timeout: time.Minute, Logger: newLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	h, err := p.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Examples != 30 || h.TestExamples != 10 || len(h.Tensors) != 2 || h.Tensors[0].Name != "0.weight" {
		t.Fatalf("hello %+v", h)
	}
	if p.Name() != "python3 numpy_trainer.py" {
		t.Fatalf("name %q", p.Name())
	}
	w := globalModel()
	var losses []float64
	for r := range 3 {
		res, err := p.Train(ctx, w, TrainRequest{Round: uint64(r + 1), Epochs: 2, Batch: 5, LR: 0.5, Seed: int64(r)})
		if err != nil {
			t.Fatal(err)
		}
		w = res.Tensors
		losses = append(losses, res.Loss)
	}
	if !(losses[2] < losses[0]) {
		t.Fatalf("training losses %v do not fall", losses)
	}
	res, err := p.Train(ctx, w, TrainRequest{Round: 4, Epochs: 1, Batch: 5, LR: 0.5, Indices: []int{0, 1, 2, 3}})
	if err != nil || res.Examples != 4 {
		t.Fatalf("train on indices: %+v, %v", res, err)
	}
	ev, err := p.Evaluate(ctx, w, nil)
	if err != nil || ev.Examples != 10 {
		t.Fatalf("evaluate %+v, %v", ev, err)
	}
	if p.Starts() != 1 {
		t.Fatalf("%d starts", p.Starts())
	}
}
