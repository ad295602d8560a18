// Package e2e runs the sovereign binary as real processes on 127.0.0.1:
// a coordinator and workers, each with its own keys, data partition and
// store, talking libp2p. TestMain builds the binary once.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/data"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sovereign-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "sovereign")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/sovereign-fl/sovereign/cmd/sovereign").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build sovereign: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs the binary to completion and returns its stdout.
func run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("sovereign %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// freePort returns a TCP port free on 127.0.0.1 at the time of the call.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a running sovereign process whose stderr goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// kill SIGKILLs the process and waits for it.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// fed is one federation under test: its folder, keys and processes.
type fed struct {
	t        testing.TB
	dir      string
	fedFile  string
	observer string
	coord    *proc
	coordCfg string
	coordDir string
	workers  []*proc
	wcfg     []string
	wnames   []string
	wpeers   []string
	counter  int
}

type fedOptions struct {
	workers int
	rounds  int
	model   string
	noise   float64
	// rows, if set, replicates worker i's partition rows[i] times.
	rows       []int
	stage      string
	maxWeight  float64
	minWorkers int
	perRound   int
	epochs     int
	lr         float64
	// noBudget leaves the workers' privacy budget unset (+Inf), so rounds
	// without differential privacy are accepted.
	noBudget bool
}

func keygen(t testing.TB, path string) string {
	t.Helper()
	out, err := run(t, "keygen", "--out", path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// newFed writes keys, the federation file, data partitions and configs.
func newFed(t testing.TB, o fedOptions) *fed {
	t.Helper()
	dir := t.TempDir()
	f := &fed{t: t, dir: dir, fedFile: filepath.Join(dir, "federation.toml")}
	names := make([]string, o.workers)
	for i := range names {
		names[i] = fmt.Sprintf("hospital-%d", i)
	}
	port := writeFederation(t, f, names)
	writePartitions(t, dir, f.wnames, o.rows)
	if o.model == "" {
		o.model = "logreg"
	}
	if o.stage == "" {
		o.stage = "5s"
	}
	if o.maxWeight == 0 {
		o.maxWeight = 1000
	}
	if o.minWorkers == 0 {
		o.minWorkers = 3
	}
	if o.perRound == 0 {
		o.perRound = o.workers
	}
	if o.epochs == 0 {
		o.epochs = 2
	}
	if o.lr == 0 {
		o.lr = 0.3
	}
	f.coordDir = filepath.Join(dir, "coord-data")
	f.coordCfg = filepath.Join(dir, "coordinator.toml")
	write(t, f.coordCfg, fmt.Sprintf(`name = "coord"
identity = "coord.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/%d"]
data = "coord-data"

[rounds]
model = %q
input = [1, 1, 64]
classes = 10
rounds = %d
workers_per_round = %d
min_workers = %d
epochs = %d
batch = 16
lr = %v
clip = 2.0
noise = %v
delta = 1e-5
clip_range = 2.0
max_weight = %v
stage_timeout = %q
retry_limit = 3
seed = 11
poll_interval = "100ms"
`, port, o.model, o.rounds, o.perRound, o.minWorkers, o.epochs, o.lr, o.noise, o.maxWeight, o.stage))
	budget := "max_epsilon = 1000.0\n"
	if o.noBudget {
		budget = ""
	}
	f.wcfg = writeWorkerConfigs(t, dir, f.wnames, budget, o.model)
	t.Cleanup(f.stopAll)
	return f
}

// writeWorkerConfigs writes dir/<name>.toml for each worker name: its key
// and data set named after it, the shared federation.toml, a loopback
// listener, budget (a "max_epsilon = …" line, or "" for none) and the one
// accepted model. It returns the paths in the order of names.
func writeWorkerConfigs(t testing.TB, dir string, names []string, budget, model string) []string {
	t.Helper()
	var paths []string
	for _, name := range names {
		p := filepath.Join(dir, name+".toml")
		write(t, p, fmt.Sprintf(`name = %q
identity = "%s.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/0"]
dataset = "csv:%s.csv?label=label&classes=10"
store = "%s-store"

[policy]
%smin_cohort = 3
accepted_models = [%q]
`, name, name, name, name, budget, model))
		paths = append(paths, p)
	}
	return paths
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writePartitions cuts the embedded digits set (train and test rows
// together) into contiguous shards, one CSV per worker.
func writePartitions(t testing.TB, dir string, names []string, rows []int) {
	t.Helper()
	train, test, err := data.Digits()
	if err != nil {
		t.Fatal(err)
	}
	n := train.N + test.N
	row := func(i int) ([]float32, int32) {
		if i < train.N {
			return train.X[i*train.Dim : (i+1)*train.Dim], train.Y[i]
		}
		i -= train.N
		return test.X[i*test.Dim : (i+1)*test.Dim], test.Y[i]
	}
	for w, name := range names {
		var b strings.Builder
		for j := range train.Dim {
			fmt.Fprintf(&b, "f%d,", j)
		}
		b.WriteString("label\n")
		reps := 1
		if rows != nil && rows[w] > 0 {
			reps = rows[w]
		}
		lo, hi := w*n/len(names), (w+1)*n/len(names)
		for range reps {
			for i := lo; i < hi; i++ {
				x, y := row(i)
				for _, v := range x {
					b.WriteString(strconv.FormatFloat(float64(v), 'g', 6, 32))
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, "%d\n", y)
			}
		}
		write(t, filepath.Join(dir, name+".csv"), b.String())
	}
}

func (f *fed) start(name string, args ...string) *proc {
	f.t.Helper()
	f.counter++
	logPath := filepath.Join(f.dir, fmt.Sprintf("%s.%d.log", name, f.counter))
	lf, err := os.Create(logPath)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = f.dir
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		f.t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		lf.Close()
		close(p.done)
	}()
	return p
}

func (f *fed) startCoordinator() {
	f.coord = f.start("coord", "coordinator", "--config", f.coordCfg)
}

func (f *fed) startWorker(i int) {
	p := f.start(f.wnames[i], "worker", "--config", f.wcfg[i])
	if i < len(f.workers) {
		f.workers[i] = p
	} else {
		f.workers = append(f.workers, p)
	}
}

func (f *fed) stopAll() {
	for _, w := range f.workers {
		if w != nil {
			w.kill()
		}
	}
	if f.coord != nil {
		f.coord.kill()
	}
	if f.t.Failed() {
		for _, p := range append([]*proc{f.coord}, f.workers...) {
			if p != nil {
				txt := p.logText()
				if len(txt) > 6000 {
					txt = txt[len(txt)-6000:]
				}
				f.t.Logf("--- log of %s (tail) ---\n%s", p.name, txt)
			}
		}
	}
}

// status is one coordinator's entry of `sovereign status --json`.
type status struct {
	Coordinator     string  `json:"coordinator"`
	Reachable       bool    `json:"reachable"`
	Round           uint64  `json:"round"`
	Stage           string  `json:"stage"`
	InFlight        bool    `json:"in_flight"`
	CommittedRounds int     `json:"committed_rounds"`
	Accuracy        float64 `json:"accuracy"`
	AccuracyRound   uint64  `json:"accuracy_round"`
	LedgerHead      string  `json:"ledger_head"`
	LedgerLength    int     `json:"ledger_length"`
	StudyState      string  `json:"study_state"`
	EndReason       string  `json:"end_reason"`
	Online          []struct {
		Name string `json:"name"`
	} `json:"online"`
}

func (f *fed) status() (status, error) {
	out, err := run(f.t, "status", "--federation", f.fedFile, "--identity", f.observer, "--json", "--timeout", "5s")
	if err != nil {
		return status{}, err
	}
	var rs []status
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return status{}, fmt.Errorf("status output %q: %v", out, err)
	}
	if len(rs) != 1 || !rs[0].Reachable {
		return status{}, fmt.Errorf("status: %s", out)
	}
	return rs[0], nil
}

// waitStatus polls `sovereign status --json` until cond holds or the
// deadline passes; it fails the test if the coordinator exits.
func (f *fed) waitStatus(what string, d time.Duration, cond func(status) bool) status {
	f.t.Helper()
	deadline := time.Now().Add(d)
	var last status
	var lastErr error
	for time.Now().Before(deadline) {
		if f.coord.exited() {
			f.t.Fatalf("waiting for %s: coordinator exited: %v", what, f.coord.err)
		}
		st, err := f.status()
		if err == nil {
			last = st
			if cond(st) {
				return st
			}
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Fatalf("timed out waiting for %s; last status %+v, last error %v", what, last, lastErr)
	return last
}

// waitLog polls a process's log until it contains every one of subs.
func waitLog(t testing.TB, p *proc, d time.Duration, poll time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.logText(), "\n") {
			ok := true
			for _, s := range subs {
				if !strings.Contains(line, s) {
					ok = false
					break
				}
			}
			if ok {
				return line
			}
		}
		if p.exited() {
			t.Fatalf("%s exited while waiting for a log line with %q", p.name, subs)
		}
		time.Sleep(poll)
	}
	t.Fatalf("timed out waiting for a log line of %s with %q", p.name, subs)
	return ""
}

// writeFederation writes f.dir's federation file for one coordinator (on a
// free loopback port, returned), an observer (f.observer) and a worker per
// name (f.wnames, f.wpeers), with their keys.
func writeFederation(t testing.TB, f *fed, names []string) (port int) {
	t.Helper()
	port = freePort(t)
	coordID := keygen(t, filepath.Join(f.dir, "coord.key"))
	obsID := keygen(t, filepath.Join(f.dir, "observer.key"))
	f.observer = filepath.Join(f.dir, "observer.key")
	var fb strings.Builder
	fmt.Fprintf(&fb, "name = \"e2e\"\n\n[[member]]\nname = \"coord\"\npeer_id = %q\nrole = \"coordinator\"\naddrs = [\"/ip4/127.0.0.1/tcp/%d\"]\n", coordID, port)
	fmt.Fprintf(&fb, "\n[[member]]\nname = \"observer\"\npeer_id = %q\nrole = \"observer\"\n", obsID)
	for _, name := range names {
		id := keygen(t, filepath.Join(f.dir, name+".key"))
		f.wnames, f.wpeers = append(f.wnames, name), append(f.wpeers, id)
		fmt.Fprintf(&fb, "\n[[member]]\nname = %q\npeer_id = %q\nrole = \"worker\"\n", name, id)
	}
	write(t, f.fedFile, fb.String())
	return port
}
