package trainer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// DefaultTimeout bounds one request (start and hello, train, evaluate)
// when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Minute

// stderrTail is how many of the trainer's last stderr lines are logged
// again when it fails.
const stderrTail = 20

// maxStderrLine bounds one logged stderr line.
const maxStderrLine = 4096

// Config configures a trainer process.
type Config struct {
	// Command is the program and its arguments, e.g.
	// ["python3", "train.py", "--data", "/data/cohort"].
	Command []string
	// WorkDir is the folder the command runs in ("" = the current one).
	WorkDir string
	// Name is the trainer's short name in errors (which may reach a
	// coordinator); "" = the base names of the program and of its first
	// argument when that is not a flag, e.g. "python3 train.py". The full
	// command line appears only in the local log.
	Name string
	// Dir is where the private 0700 tensor folder is created ("" = the
	// system's temporary folder).
	Dir string
	// Timeout bounds each request, the start with its hello included
	// (0 = DefaultTimeout). On expiry the trainer is killed.
	Timeout time.Duration
	// Logger receives the trainer's stderr, line by line, and its
	// failures; nil = slog.Default().
	Logger *slog.Logger
	// Env are extra environment variables (KEY=VALUE) on top of the
	// parent's.
	Env []string
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return errors.New("trainer: empty command")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("trainer: timeout %v is negative", c.Timeout)
	}
	return nil
}

// ShortName is the name errors use for a command (see Config.Name).
func ShortName(cmd []string) string {
	if len(cmd) == 0 {
		return ""
	}
	s := filepath.Base(cmd[0])
	if len(cmd) > 1 && !strings.HasPrefix(cmd[1], "-") {
		s += " " + filepath.Base(cmd[1])
	}
	return s
}

// TrainRequest are the settings of one local training.
type TrainRequest struct {
	// Round is the federation's round (informational).
	Round uint64
	// Epochs, Batch, LR: local epochs E, batch size B, learning rate.
	Epochs int
	Batch  int
	LR     float64
	// ProxMu is FedProx's μ (Li et al. 2020); 0 = FedAvg.
	ProxMu float64
	// Seed seeds the trainer's shuffling (same seed, same training).
	Seed int64
	// Indices, if not nil, are the examples to train on (the simulator's
	// virtual client); nil = all the trainer's examples.
	Indices []int
}

// TrainResult is a validated answer to a TrainRequest.
type TrainResult struct {
	// Tensors are the local model, in the hello's order.
	Tensors []safetensors.Tensor
	// Examples is the number of examples trained on (1 ≤ Examples ≤ the
	// hello's examples, or len(Indices)).
	Examples int
	// Loss is the mean training loss (finite, ≥ 0).
	Loss float64
	// TrainSeconds is the trainer's own report of the time its training
	// took (optional train_seconds; 0 if absent), for benchmarks.
	TrainSeconds float64
}

// EvalResult is a validated answer to an evaluation.
type EvalResult struct {
	Examples int
	Loss     float64
	Accuracy float64
}

// Process is one trainer child process, started on first use, kept across
// requests, and restarted on the request after one that failed (a crash, a
// timeout, a protocol violation or a bad answer: the process is killed
// then, since its state is unknown). Requests are serialised; a Process is
// safe for concurrent use.
type Process struct {
	cfg  Config
	name string
	log  *slog.Logger
	to   time.Duration

	mu     sync.Mutex
	dir    string // private 0700 folder, created on first start
	cur    *child
	pinned *Hello // the first hello: later starts must announce the same layout
	seq    uint64
	starts int
	tail   *tail
	closed bool
}

type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	frames chan frame
	done   chan struct{} // closed once the process has been waited for
	err    error         // Wait's result, set before done closes
	hello  Hello
}

type frame struct {
	b   []byte
	err error
}

// New returns a Process for cfg; nothing is started yet.
func New(cfg Config) (*Process, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Process{cfg: cfg, name: cfg.Name, log: cfg.Logger, to: cfg.Timeout, tail: &tail{}}
	if p.name == "" {
		p.name = ShortName(cfg.Command)
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = p.log.With("trainer", p.name)
	if p.to == 0 {
		p.to = DefaultTimeout
	}
	return p, nil
}

// Name returns the trainer's short name.
func (p *Process) Name() string { return p.name }

// Starts returns how many times the process was started.
func (p *Process) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// PID returns the running process's ID, or 0.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.cur.cmd.Process == nil {
		return 0
	}
	return p.cur.cmd.Process.Pid
}

// Hello starts the trainer if it is not running and returns its hello.
func (p *Process) Hello(ctx context.Context) (Hello, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.ensure(ctx)
	if err != nil {
		return Hello{}, err
	}
	return c.hello, nil
}

// Train sends the global model and the settings and returns the trainer's
// validated local model.
func (p *Process) Train(ctx context.Context, global []safetensors.Tensor, req TrainRequest) (TrainResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.ensure(ctx)
	if err != nil {
		return TrainResult{}, err
	}
	id := p.nextID()
	in, out := p.paths("global", id), p.paths("local", id)
	defer os.Remove(in)
	defer os.Remove(out)
	if err := p.writeModel(c, TypeTrain, in, global, req.Round); err != nil {
		return TrainResult{}, err
	}
	a, err := p.call(ctx, c, TypeTrain, TypeTrainResult, request{
		Type: TypeTrain, ID: id, Model: in, Out: out, Round: req.Round, Epochs: req.Epochs, Batch: req.Batch,
		LR: req.LR, ProxMu: req.ProxMu, Seed: req.Seed, Indices: req.Indices,
	})
	if err != nil {
		return TrainResult{}, err
	}
	limit := c.hello.Examples
	if req.Indices != nil {
		limit = len(req.Indices)
	}
	n, err := checkCount(a.Examples, p.name, TypeTrain, "examples", limit)
	if err == nil && n == 0 {
		err = &Error{Trainer: p.name, Op: TypeTrain, Field: "examples", Reason: "0: trained on no examples"}
	}
	var loss float64
	if err == nil {
		loss, err = checkFloat(a.Loss, p.name, TypeTrain, "loss", 0, maxFloat)
	}
	var secs float64
	if err == nil && a.TrainSeconds != nil {
		secs, err = checkFloat(a.TrainSeconds, p.name, TypeTrain, "train_seconds", 0, maxFloat)
	}
	var ts []safetensors.Tensor
	if err == nil {
		ts, err = p.readModel(c, out)
	}
	if err != nil {
		p.fail(c, err)
		return TrainResult{}, err
	}
	return TrainResult{Tensors: ts, Examples: n, Loss: loss, TrainSeconds: secs}, nil
}

// Evaluate sends a model and returns the trainer's validated evaluation of
// it on its local test examples (or on indices of its data, if not nil).
func (p *Process) Evaluate(ctx context.Context, model []safetensors.Tensor, indices []int) (EvalResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.ensure(ctx)
	if err != nil {
		return EvalResult{}, err
	}
	id := p.nextID()
	in := p.paths("eval", id)
	defer os.Remove(in)
	if err := p.writeModel(c, TypeEvaluate, in, model, 0); err != nil {
		return EvalResult{}, err
	}
	a, err := p.call(ctx, c, TypeEvaluate, TypeEvaluateResult, request{Type: TypeEvaluate, ID: id, Model: in, Indices: indices})
	if err != nil {
		return EvalResult{}, err
	}
	limit := c.hello.TestExamples
	if indices != nil {
		limit = len(indices)
	}
	var r EvalResult
	r.Examples, err = checkCount(a.Examples, p.name, TypeEvaluate, "examples", limit)
	if err == nil {
		r.Loss, err = checkFloat(a.Loss, p.name, TypeEvaluate, "loss", 0, maxFloat)
	}
	if err == nil {
		r.Accuracy, err = checkFloat(a.Accuracy, p.name, TypeEvaluate, "accuracy", 0, 1)
	}
	if err != nil {
		p.fail(c, err)
		return EvalResult{}, err
	}
	return r, nil
}

const maxFloat = 1.7976931348623157e308

// Close ends the trainer: its stdin is closed (a trainer exits on EOF),
// after 5 s it is killed; the private folder is removed.
func (p *Process) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if c := p.cur; c != nil {
		c.stdin.Close()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			killTree(c.cmd)
			<-c.done
		}
		p.cur = nil
	}
	if p.dir != "" {
		err := os.RemoveAll(p.dir)
		p.dir = ""
		return err
	}
	return nil
}

func (p *Process) nextID() uint64 {
	p.seq++
	return p.seq
}

func (p *Process) paths(kind string, id uint64) string {
	return filepath.Join(p.dir, kind+"-"+strconv.FormatUint(id, 10)+".safetensors")
}

// ensure returns the running child, starting one (and checking its hello)
// if there is none or the last one exited.
func (p *Process) ensure(ctx context.Context) (*child, error) {
	if p.closed {
		return nil, &Error{Trainer: p.name, Op: "start", Reason: "the trainer was closed"}
	}
	if c := p.cur; c != nil {
		select {
		case <-c.done:
			p.log.Warn("trainer exited between requests; restarting", "exit", c.err)
			p.cur = nil
		default:
			return c, nil
		}
	}
	if p.dir == "" {
		d, err := os.MkdirTemp(p.cfg.Dir, "sovereign-trainer-")
		if err != nil {
			return nil, &Error{Trainer: p.name, Op: "start", Reason: "cannot create the private tensor folder", Detail: err.Error()}
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, &Error{Trainer: p.name, Op: "start", Reason: "cannot make the tensor folder private", Detail: err.Error()}
		}
		p.dir = d
	}
	cmd := exec.Command(p.cfg.Command[0], p.cfg.Command[1:]...)
	cmd.Dir = p.cfg.WorkDir
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	setProcAttr(cmd)
	stdin, err1 := cmd.StdinPipe()
	stdout, err2 := cmd.StdoutPipe()
	stderr, err3 := cmd.StderrPipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, &Error{Trainer: p.name, Op: "start", Reason: "cannot create pipes", Detail: err.Error()}
	}
	if err := cmd.Start(); err != nil {
		return nil, &Error{Trainer: p.name, Op: "start", Reason: "the command did not start: " + errText(err), Exited: true}
	}
	p.starts++
	p.log.Info("trainer started", "command", strings.Join(p.cfg.Command, " "), "pid", cmd.Process.Pid, "dir", p.dir, "start", p.starts)
	c := &child{cmd: cmd, stdin: stdin, frames: make(chan frame, 1), done: make(chan struct{})}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		p.logStderr(stderr, cmd.Process.Pid)
	}()
	go func() {
		br := bufio.NewReaderSize(stdout, 64<<10)
		for {
			b, err := readFrame(br)
			c.frames <- frame{b, err}
			if err != nil {
				break
			}
		}
		// Drain what the trainer still writes, so it never blocks on a
		// full pipe while it is being killed.
		_, _ = io.Copy(io.Discard, br)
		<-stderrDone
		c.err = cmd.Wait()
		close(c.done)
	}()
	p.cur = c
	id := p.nextID()
	a, err := p.call(ctx, c, TypeHello, TypeHello, request{Type: TypeHello, ID: id, Protocol: Version, Dir: p.dir})
	if err != nil {
		return nil, err
	}
	h, err := checkHello(a, p.name)
	if err == nil && p.pinned != nil {
		err = sameLayout(p.pinned, &h, p.name)
	}
	if err != nil {
		p.fail(c, err)
		return nil, err
	}
	c.hello = h
	if p.pinned == nil {
		hc := h
		hc.Tensors = slices.Clone(h.Tensors)
		p.pinned = &hc
	}
	p.log.Info("trainer ready", "tensors", len(h.Tensors), "parameters", h.NumParams(), "examples", h.Examples, "test_examples", h.TestExamples)
	return c, nil
}

// sameLayout checks that a restarted trainer announces the layout of its
// first hello.
func sameLayout(first, h *Hello, name string) error {
	bad := func(format string, a ...any) error {
		return &Error{Trainer: name, Op: TypeHello, Field: "tensors", Reason: "differs from the trainer's first hello: " + fmt.Sprintf(format, a...)}
	}
	if len(first.Tensors) != len(h.Tensors) {
		return bad("%d tensors, first %d", len(h.Tensors), len(first.Tensors))
	}
	for i, t := range h.Tensors {
		f := first.Tensors[i]
		if t.Name != f.Name || !slices.Equal(t.Shape, f.Shape) {
			return bad("tensor %d is %q %v, first %q %v", i, t.Name, t.Shape, f.Name, f.Shape)
		}
	}
	return nil
}

// call sends req and waits for the answer of type want, with the timeout.
// On any failure the child is killed.
func (p *Process) call(ctx context.Context, c *child, op, want string, req request) (*answer, error) {
	if err := writeFrame(c.stdin, req); err != nil {
		err := p.exitError(c, op, "could not be written to: "+errText(err))
		p.fail(c, err)
		return nil, err
	}
	timer := time.NewTimer(p.to)
	defer timer.Stop()
	var f frame
	select {
	case f = <-c.frames:
	case <-timer.C:
		err := &Error{Trainer: p.name, Op: op, Reason: fmt.Sprintf("no answer within %v; the trainer was killed", p.to), Exited: true}
		p.fail(c, err)
		return nil, err
	case <-ctx.Done():
		err := &Error{Trainer: p.name, Op: op, Reason: "request cancelled (" + ctx.Err().Error() + "); the trainer was killed", Exited: true}
		p.fail(c, err)
		return nil, err
	}
	if f.err != nil {
		var fe *errFrame
		var err error
		if errors.As(f.err, &fe) {
			err = &Error{Trainer: p.name, Op: op, Reason: "output is not the protocol: " + fe.reason}
		} else {
			err = p.exitError(c, op, "closed its stdout")
		}
		p.fail(c, err)
		return nil, err
	}
	a, err := decodeAnswer(f.b, p.name, op, want, req.ID)
	if err != nil {
		p.fail(c, err)
		return nil, err
	}
	return a, nil
}

// exitError describes a child that stopped answering: its exit status if
// it exits within a second.
func (p *Process) exitError(c *child, op, what string) error {
	select {
	case <-c.done:
		return &Error{Trainer: p.name, Op: op, Reason: "exited during the request (" + errText(c.err) + ")", Exited: true}
	case <-time.After(time.Second):
		return &Error{Trainer: p.name, Op: op, Reason: what, Exited: true}
	}
}

func errText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// fail logs err with the trainer's last stderr lines and kills the child;
// the next request starts a new one.
func (p *Process) fail(c *child, err error) {
	args := []any{"err", err}
	var te *Error
	if errors.As(err, &te) && te.Detail != "" {
		args = append(args, "detail", te.Detail)
	}
	args = append(args, "stderr_tail", strings.Join(p.tail.lines(), "\n"))
	p.log.Warn("trainer failed; it will be restarted for the next request", args...)
	killTree(c.cmd)
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		p.log.Error("trainer did not exit after SIGKILL", "pid", c.cmd.Process.Pid)
	}
	if p.cur == c {
		p.cur = nil
	}
}

// writeModel writes the model the trainer reads; its tensors must be the
// hello's layout.
func (p *Process) writeModel(c *child, op, path string, ts []safetensors.Tensor, round uint64) error {
	if err := matchLayout(c.hello.Tensors, ts); err != nil {
		return fmt.Errorf("trainer %q: %s: the model sent does not have the trainer's layout: %w", p.name, op, err)
	}
	md := map[string]string{"format": "pt"}
	if round > 0 {
		md["round"] = strconv.FormatUint(round, 10)
	}
	// Not safetensors.Write: the file lives for one request in the private
	// folder, so it is neither synced nor renamed (a sync of the CNN's
	// 6.6 MB cost ~2% of a round in BenchmarkTrainerOverhead).
	b, err := safetensors.Encode(&safetensors.File{Tensors: ts, Metadata: md}, path)
	if err == nil {
		err = os.WriteFile(path, b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("trainer %q: %s: %w", p.name, op, err)
	}
	return nil
}

// readModel reads and checks the trainer's output model: a regular file of
// plausible size, the hello's tensors with their shapes, finite values.
func (p *Process) readModel(c *child, path string) ([]safetensors.Tensor, error) {
	bad := func(reason string, a ...any) error {
		return &Error{Trainer: p.name, Op: TypeTrain, Field: "model", Reason: fmt.Sprintf(reason, a...)}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, bad("the trainer wrote no model file at the request's out path")
	}
	if !fi.Mode().IsRegular() {
		return nil, bad("the out path is not a regular file (%v)", fi.Mode().Type())
	}
	if limit := int64(4*c.hello.NumParams()) + 1<<20 + 8; fi.Size() > limit {
		return nil, bad("the model file has %d bytes, more than %d for the hello's %d parameters", fi.Size(), limit, c.hello.NumParams())
	}
	f, err := safetensors.Read(path)
	if err != nil {
		var se *safetensors.Error
		if errors.As(err, &se) {
			return nil, bad("not a safetensors file of F32 tensors: tensor %q at byte %d: %s", se.Tensor, se.Offset, se.Reason)
		}
		return nil, bad("not a safetensors file: %v", err)
	}
	if err := matchLayout(c.hello.Tensors, f.Tensors); err != nil {
		return nil, bad("%v", err)
	}
	byName := make(map[string]safetensors.Tensor, len(f.Tensors))
	for _, t := range f.Tensors {
		byName[t.Name] = t
	}
	out := make([]safetensors.Tensor, len(c.hello.Tensors))
	for i, h := range c.hello.Tensors {
		out[i] = byName[h.Name]
	}
	return out, nil
}

// matchLayout checks ts against the hello's tensors: the same names, each
// with the same shape, values finite. Errors name the tensor and both
// shapes.
func matchLayout(want []TensorInfo, ts []safetensors.Tensor) error {
	got := make(map[string]safetensors.Tensor, len(ts))
	for _, t := range ts {
		if _, dup := got[t.Name]; dup {
			return fmt.Errorf("tensor %q appears twice", t.Name)
		}
		got[t.Name] = t
	}
	for _, w := range want {
		t, ok := got[w.Name]
		if !ok {
			return fmt.Errorf("tensor %q %v is missing", w.Name, w.Shape)
		}
		if !slices.Equal(t.Shape, w.Shape) {
			return fmt.Errorf("tensor %q has shape %v, the trainer's hello says %v", w.Name, t.Shape, w.Shape)
		}
		if len(t.Data) != elements(t.Shape) {
			return fmt.Errorf("tensor %q: shape %v but %d values", w.Name, t.Shape, len(t.Data))
		}
		for j, v := range t.Data {
			if v != v || v > maxFloat32 || v < -maxFloat32 {
				return fmt.Errorf("tensor %q element %d is %v", w.Name, j, v)
			}
		}
		delete(got, w.Name)
	}
	for name, t := range got {
		return fmt.Errorf("tensor %q %v is not in the trainer's hello", name, t.Shape)
	}
	return nil
}

const maxFloat32 = 3.40282346638528859811704183484516925440e+38

// logStderr logs each stderr line of the trainer (locally only) and keeps
// the last ones for failure reports.
func (p *Process) logStderr(r io.Reader, pid int) {
	br := bufio.NewReaderSize(r, maxStderrLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			s := strings.TrimRight(string(line), "\r\n")
			p.tail.add(s)
			p.log.Info("trainer stderr", "pid", pid, "line", s)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// tail keeps the last stderrTail lines.
type tail struct {
	mu sync.Mutex
	l  []string
}

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.l) == stderrTail {
		t.l = t.l[1:]
	}
	t.l = append(t.l, s)
}

func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.l)
}
