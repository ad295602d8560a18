package trainer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/internal/testtool"

	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// needTorch skips without Debian's python3-torch (fails under
// SOVEREIGN_REQUIRE_TOOLS, see testtool).
func needTorch(tb testing.TB) { tb.Helper(); testtool.NeedPython(tb, "torch", "numpy") }

func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(self))
}

// TestPyTorchTabularExample runs examples/pytorch-tabular/train.py on a
// seeded CSV: its hello is the built-in mlp:32 layout, its --write-init
// file loads as that model, and three trainings lower the loss.
func TestPyTorchTabularExample(t *testing.T) {
	needTorch(t)
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "cohort.csv")
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("age,bmi,x3,outcome\n")
	for range 300 {
		x := []float64{rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()}
		y := 0
		if x[0]+0.5*x[1] > 0 {
			y = 1
		}
		fmt.Fprintf(&b, "%.4f,%.4f,%.4f,%d\n", x[0], x[1], x[2], y)
	}
	if err := os.WriteFile(csvPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(repoRoot(), "examples", "pytorch-tabular", "train.py")
	initPath := filepath.Join(dir, "init.safetensors")
	if out, err := exec.Command(python, script, "--features", "3", "--classes", "2", "--hidden", "32", "--write-init", initPath).CombinedOutput(); err != nil {
		t.Fatalf("--write-init: %v\n%s", err, out)
	}
	p, err := New(Config{Command: []string{python, script, "--data", csvPath, "--label", "outcome", "--classes", "2", "--hidden", "32"}, Dir: dir, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	h, err := p.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := SpecFor("mlp:32", h.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	if sp.InputDim() != 3 || sp.Classes != 2 || h.Examples != 270 || h.TestExamples != 30 {
		t.Fatalf("spec %v (input %d, %d classes), hello %+v", sp, sp.InputDim(), sp.Classes, h)
	}
	f, err := readInit(initPath, sp)
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := model.ParamsToTensors(sp, f)
	var losses []float64
	for r := range 3 {
		res, err := p.Train(ctx, ts, TrainRequest{Round: uint64(r + 1), Epochs: 1, Batch: 10, LR: 0.1, Seed: int64(r)})
		if err != nil {
			t.Fatal(err)
		}
		ts, losses = res.Tensors, append(losses, res.Loss)
	}
	if !(losses[2] < losses[0]) {
		t.Fatalf("losses %v do not fall", losses)
	}
	ev, err := p.Evaluate(ctx, ts, nil)
	if err != nil || ev.Examples != 30 || ev.Accuracy < 0.7 {
		t.Fatalf("evaluate %+v, %v", ev, err)
	}
}

func readInit(path string, sp model.Spec) ([]float32, error) {
	ts, err := readTensors(path)
	if err != nil {
		return nil, err
	}
	return model.TensorsToParams(sp, ts)
}

// BenchmarkTrainerOverhead measures the trainer protocol's cost per round
// for the FedAvg CNN in PyTorch (examples/pytorch-mnist/train.py, B=10,
// E=1, 600 MNIST examples, one torch thread), against the same training
// done in-process by the same script, in the same run:
//
//   - round: what a worker pays per round: the flat vector to tensors,
//     the safetensors file written, the request, the trainer's reading,
//     training and writing, the answer, the file read and checked
//     (names, shapes, NaN/Inf), tensors back to the flat vector;
//   - train: the trainer's own time inside its train function for the same
//     requests (train_seconds), the in-process work;
//   - inproc: `train.py --bench 2`, the same train function in a Python
//     process of its own with no protocol at all (a warm-up training, then
//     the timed one), run after each protocol round so that both see the
//     same load.
//
// overhead_% is (Σ round − Σ train)/Σ train over the same requests, and
// vs_inproc_% the median over rounds of round/inproc − 1.
//
//	go test ./trainer -run '^$' -bench TrainerOverhead -benchtime 10x
func BenchmarkTrainerOverhead(b *testing.B) {
	needTorch(b)
	root := repoRoot()
	script := filepath.Join(root, "examples", "pytorch-mnist", "train.py")
	mnist := filepath.Join(root, "data", "mnist")
	p, err := New(Config{Command: []string{python, script, "--data", mnist, "--limit", "600", "--test-limit", "100"}, Dir: b.TempDir(), Timeout: 5 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	h, err := p.Hello(ctx)
	if err != nil {
		b.Fatal(err)
	}
	sp, err := SpecFor("cnn", h.Tensors)
	if err != nil {
		b.Fatal(err)
	}
	net, err := model.New(sp)
	if err != nil {
		b.Fatal(err)
	}
	net.Init(1)
	global := slices.Clone(net.Params())
	round := func(i int) (wall, train time.Duration) {
		t0 := time.Now()
		ts, err := model.ParamsToTensors(sp, global)
		if err != nil {
			b.Fatal(err)
		}
		res, err := p.Train(ctx, ts, TrainRequest{Round: uint64(i + 1), Epochs: 1, Batch: 10, LR: 0.05, Seed: int64(1000 + i)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := model.TensorsToParams(sp, res.Tensors); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0), time.Duration(res.TrainSeconds * float64(time.Second))
	}
	// The in-process baseline: `train.py --bench 2` (a warm-up training
	// and a timed one, the same train function, no protocol) run between
	// the protocol rounds, so both sides see the same machine load.
	inprocRound := func() float64 {
		out, err := exec.Command(python, script, "--data", mnist, "--limit", "600", "--bench", "2").Output()
		if err != nil {
			b.Fatalf("in-process baseline: %v", err)
		}
		f := strings.Fields(string(out))
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			b.Fatalf("in-process baseline output %q: %v", out, err)
		}
		return v
	}
	round(-1) // warm-up: torch's first forward pass allocates
	var walls, trains, inproc, ratios []float64
	b.ResetTimer()
	for i := range b.N {
		w, t := round(i)
		b.StopTimer()
		in := inprocRound()
		b.StartTimer()
		walls, trains, inproc = append(walls, w.Seconds()), append(trains, t.Seconds()), append(inproc, in)
		ratios = append(ratios, w.Seconds()/in)
	}
	b.StopTimer()
	var sw, st float64
	for i := range walls {
		sw, st = sw+walls[i], st+trains[i]
	}
	med := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	b.ReportMetric(1000*med(walls), "round_ms")
	b.ReportMetric(1000*med(trains), "train_ms")
	b.ReportMetric(1000*med(inproc), "inproc_ms")
	b.ReportMetric(100*(sw-st)/st, "overhead_%")
	b.ReportMetric(100*(med(ratios)-1), "vs_inproc_%")
}

func readTensors(path string) ([]safetensors.Tensor, error) {
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, err
	}
	return f.Tensors, nil
}
