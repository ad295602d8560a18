package trainer

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// logBuf collects log records for assertions.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fake returns a Process running this test binary as a fake trainer in
// mode, misbehaving once (the restarted process behaves).
func fake(t *testing.T, mode string, timeout time.Duration) (*Process, *logBuf) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	p, err := New(Config{
		Command: []string{self, "fake-trainer"},
		Name:    "fake",
		Dir:     t.TempDir(),
		Timeout: timeout,
		Logger:  newLogger(logs),
		Env:     []string{"SOVEREIGN_FAKE_TRAINER=" + mode, "SOVEREIGN_FAKE_ONCE=" + filepath.Join(t.TempDir(), "once")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, logs
}

func globalModel() []safetensors.Tensor {
	return []safetensors.Tensor{
		{Name: "0.weight", Shape: []int{3, 4}, Data: make([]float32, 12)},
		{Name: "0.bias", Shape: []int{3}, Data: []float32{1, 2, 3}},
	}
}

func TestTrainRoundTrip(t *testing.T) {
	p, logs := fake(t, "good", time.Minute)
	ctx := context.Background()
	h, err := p.Hello(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Examples != 10 || h.TestExamples != 5 || h.NumParams() != 15 {
		t.Fatalf("hello %+v", h)
	}
	for i := range 3 {
		res, err := p.Train(ctx, globalModel(), TrainRequest{Round: uint64(i + 1), Epochs: 1, Batch: 10, LR: 0.1, Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		if res.Examples != 10 || res.Loss != 0.25 || res.Tensors[1].Data[2] != 3.5 || res.Tensors[0].Name != "0.weight" {
			t.Fatalf("train result %+v", res)
		}
	}
	ev, err := p.Evaluate(ctx, globalModel(), nil)
	if err != nil || ev.Examples != 5 || ev.Accuracy != 0.6 {
		t.Fatalf("evaluate %+v, %v", ev, err)
	}
	if p.Starts() != 1 {
		t.Fatalf("%d starts, want 1: the trainer is kept across requests", p.Starts())
	}
	if !strings.Contains(logs.String(), "fake trainer starting") {
		t.Fatalf("trainer stderr not logged:\n%s", logs)
	}
	fi, err := os.Stat(p.dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("tensor folder %s: %v, %v; want mode 0700", p.dir, fi, err)
	}
	if ents, _ := os.ReadDir(p.dir); len(ents) != 0 {
		t.Fatalf("tensor files left behind: %v", ents)
	}
}

// TestBadAnswers (an attack test as much as a robustness one: the trainer
// is code the worker does not control): every kind of bad trainer is an *Error naming the trainer
// and the field; the trainer is restarted and the next request succeeds.
func TestBadAnswers(t *testing.T) {
	cases := []struct {
		mode    string
		field   string
		want    []string
		timeout time.Duration
	}{
		{"nan", "model", []string{`tensor "0.weight" element 5 is NaN`}, 0},
		{"inf", "model", []string{`tensor "0.bias" element 0 is -Inf`}, 0},
		{"shape", "model", []string{`tensor "0.weight" has shape [4 3]`, "hello says [3 4]"}, 0},
		{"name", "model", []string{`"0.bias" [3] is missing`}, 0},
		{"missing", "model", []string{`"0.bias" [3] is missing`}, 0},
		{"negative", "examples", []string{"-3 is negative"}, 0},
		{"toomany", "examples", []string{"11 is more than the 10 examples"}, 0},
		{"crash", "", []string{"exited during the request (exit status 3)"}, 0},
		{"hang", "", []string{"no answer within 300ms; the trainer was killed"}, 300 * time.Millisecond},
		{"garbage", "", []string{"not the protocol", "does the trainer print to stdout"}, 0},
		{"badjson", "", []string{"not a JSON object"}, 0},
		{"nanloss", "", []string{"NaN and Infinity are not JSON numbers"}, 0},
		{"wrongid", "id", []string{"999, want"}, 0},
		{"error", "", []string{"the trainer answered an error"}, 0},
		{"nofile", "model", []string{"wrote no model file"}, 0},
		{"symlink", "model", []string{"not a regular file"}, 0},
		{"huge", "model", []string{"the model file has 2097152 bytes, more than 1048644 for the hello's 15 parameters"}, 0},
		{"f64", "model", []string{"not a safetensors file of F32 tensors"}, 0},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			to := c.timeout
			if to == 0 {
				to = time.Minute
			}
			p, logs := fake(t, c.mode, to)
			ctx := context.Background()
			_, err := p.Train(ctx, globalModel(), TrainRequest{Round: 1, Epochs: 1, Batch: 1, LR: 0.1})
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want a *trainer.Error", err)
			}
			if te.Trainer != "fake" || te.Op != "train" || te.Field != c.field {
				t.Fatalf("error %q: trainer %q op %q field %q, want fake/train/%q", err, te.Trainer, te.Op, te.Field, c.field)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), `trainer "fake": train: `) {
				t.Fatalf("error %q does not start by naming the trainer and the request", err)
			}
			if strings.Contains(err.Error(), "secret-cohort") {
				t.Fatalf("error %q carries the trainer's own message", err)
			}
			if !strings.Contains(logs.String(), "misbehaving: "+c.mode) {
				t.Fatalf("the trainer's stderr is not in the log:\n%s", logs)
			}
			res, err := p.Train(ctx, globalModel(), TrainRequest{Round: 2, Epochs: 1, Batch: 1, LR: 0.1})
			if err != nil {
				t.Fatalf("after a failure the trainer is restarted, but: %v", err)
			}
			if res.Examples != 10 || p.Starts() != 2 {
				t.Fatalf("second request: %+v after %d starts, want a restarted trainer", res, p.Starts())
			}
		})
	}
}

func TestBadHello(t *testing.T) {
	for _, c := range []struct{ mode, field, want string }{
		{"hello-negative", "examples", "-5 is negative"},
		{"hello-version", "protocol", "7, this worker speaks version 1"},
		{"hello-hang", "", "no answer within"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			p, _ := fake(t, c.mode, 300*time.Millisecond)
			_, err := p.Hello(context.Background())
			var te *Error
			if !errors.As(err, &te) || te.Field != c.field || te.Op != "hello" || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a hello error on field %q containing %q", err, c.field, c.want)
			}
		})
	}
}

func TestEvaluateChecked(t *testing.T) {
	p, _ := fake(t, "eval-accuracy", time.Minute)
	_, err := p.Evaluate(context.Background(), globalModel(), nil)
	var te *Error
	if !errors.As(err, &te) || te.Field != "accuracy" || !strings.Contains(err.Error(), "1.5 out of range [0, 1]") {
		t.Fatalf("got %v", err)
	}
}

// TestRestartAfterIdleCrash: a trainer that died between requests is
// restarted transparently by the next one.
func TestRestartAfterIdleCrash(t *testing.T) {
	p, _ := fake(t, "good", time.Minute)
	ctx := context.Background()
	if _, err := p.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	proc, _ := os.FindProcess(pid)
	proc.Kill()
	c := p.cur
	<-c.done
	if _, err := p.Train(ctx, globalModel(), TrainRequest{Round: 1, Epochs: 1, Batch: 1, LR: 0.1}); err != nil {
		t.Fatal(err)
	}
	if p.Starts() != 2 || p.PID() == pid {
		t.Fatalf("starts %d, pid %d (was %d)", p.Starts(), p.PID(), pid)
	}
}

func TestWrongLayoutSent(t *testing.T) {
	p, _ := fake(t, "good", time.Minute)
	g := globalModel()
	g[0].Shape = []int{12}
	if _, err := p.Train(context.Background(), g, TrainRequest{Round: 1, Epochs: 1, Batch: 1, LR: 0.1}); err == nil ||
		!strings.Contains(err.Error(), `tensor "0.weight" has shape [12], the trainer's hello says [3 4]`) {
		t.Fatalf("got %v", err)
	}
}

func TestStartFailure(t *testing.T) {
	p, err := New(Config{Command: []string{filepath.Join(t.TempDir(), "no-such-trainer")}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Hello(context.Background())
	var te *Error
	if !errors.As(err, &te) || te.Op != "start" {
		t.Fatalf("got %v", err)
	}
}

func TestSpecFor(t *testing.T) {
	for _, c := range []struct {
		spec    string
		c, h, w int
		k       int
	}{
		{"cnn", 1, 28, 28, 10}, {"cnn", 1, 8, 8, 10}, {"2nn", 1, 28, 28, 10}, {"mlp:32,16", 1, 1, 13, 2}, {"logreg", 1, 1, 4, 3}, {"cnn:8,16", 3, 32, 32, 5},
	} {
		sp, err := model.ParseSpec(c.spec, c.c, c.h, c.w, c.k)
		if err != nil {
			t.Fatal(err)
		}
		var ti []TensorInfo
		for _, ts := range sp.Tensors() {
			ti = append(ti, TensorInfo{ts.Name, ts.Shape, "F32"})
		}
		got, err := SpecFor(c.spec, ti)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if got.NumParams() != sp.NumParams() || got.String() != sp.String() {
			t.Fatalf("%s: got %v (%d params), want %v", c.spec, got, got.NumParams(), sp)
		}
		// The flat vector round-trips through the inferred spec.
		params := make([]float32, sp.NumParams())
		for i := range params {
			params[i] = float32(i)
		}
		ts, _ := model.ParamsToTensors(sp, params)
		back, err := model.TensorsToParams(got, ts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range params {
			if back[i] != params[i] {
				t.Fatalf("%s: parameter %d: %v, want %v", c.spec, i, back[i], params[i])
			}
		}
	}
	// A layout that is not the spec's names the tensor and both shapes.
	_, err := SpecFor("mlp:32", []TensorInfo{{"0.weight", []int{64, 13}, "F32"}, {"0.bias", []int{64}, "F32"}, {"2.weight", []int{2, 64}, "F32"}, {"2.bias", []int{2}, "F32"}})
	if err == nil || !strings.Contains(err.Error(), `tensor "0.weight" has shape [64 13] in the trainer's hello, the model needs [32 13]`) {
		t.Fatalf("got %v", err)
	}
}

func newLogger(l *logBuf) *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		`python3 train.py --data /d`:          {"python3", "train.py", "--data", "/d"},
		`  python3   'my train.py' "a \"b\""`: {"python3", "my train.py", `a "b"`},
		`a\ b c''d`:                           {"a b", "cd"},
	} {
		got, err := SplitCommand(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "  ", `a 'b`, `a "b`, `a\`} {
		if _, err := SplitCommand(bad); err == nil {
			t.Errorf("SplitCommand(%q): no error", bad)
		}
	}
}
