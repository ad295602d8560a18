package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
)

// repoRoot is the repository's top folder.
func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(self))
}

// TestTrainerFederation: one coordinator and five worker processes: four
// whose training is the institution's own code speaking the trainer
// protocol — three run examples/pytorch-mnist/train.py (the FedAvg CNN in
// PyTorch, 600 MNIST images each), one a trainer whose every model holds a
// NaN — and one built-in worker training the same CNN in Go on 600 other
// images (a mixed federation), for four secure rounds with distributed DP. The model is named by the
// trainer's own --write-init file. In the round after the first commit,
// one PyTorch trainer is SIGKILLed while it trains: its worker refuses that
// round naming the trainer, the trainer is restarted, and the worker is a
// participant of a later round. The NaN trainer's worker is refused in the
// coordinator's replicated refusals, named, with the tensor. Accuracy
// rises.
func TestTrainerFederation(t *testing.T) {
	needTorch(t)
	const rounds = 4
	root := repoRoot()
	mnist := filepath.Join(root, "data", "mnist")
	script := filepath.Join(root, "examples", "pytorch-mnist", "train.py")
	dir := t.TempDir()
	f := &fed{t: t, dir: dir, fedFile: filepath.Join(dir, "federation.toml")}
	t.Cleanup(f.stopAll)

	// The federation's initial model, written by the trainer itself.
	if out, err := exec.Command(python, script, "--write-init", filepath.Join(dir, "init.safetensors"), "--seed", "3").CombinedOutput(); err != nil {
		t.Fatalf("--write-init: %v\n%s", err, out)
	}

	names := []string{"hospital-0", "hospital-1", "hospital-2", "hospital-nan", "hospital-builtin"}
	// The built-in worker's data: 600 other training images as IDX files.
	builtinData := filepath.Join(dir, "builtin-mnist")
	if out, err := exec.Command(python, script, "--data", mnist, "--offset", "1800", "--limit", "600", "--test-limit", "200", "--write-subset", builtinData).CombinedOutput(); err != nil {
		t.Fatalf("--write-subset: %v\n%s", err, out)
	}
	port := writeFederation(t, f, names)
	f.coordDir = filepath.Join(dir, "coord-data")
	f.coordCfg = filepath.Join(dir, "coordinator.toml")
	// DP with σ = 0.001: every worker clips to C = 3 and adds noise, but a
	// 1.66M-parameter CNN over three institutions learns only under tiny
	// noise, so the ε reached is huge; this checks the code path, not a
	// useful privacy level (docs/trainer-protocol.md).
	write(t, f.coordCfg, fmt.Sprintf(`name = "coord"
identity = "coord.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/%d"]
data = "coord-data"

[rounds]
model = "cnn"
input = [1, 28, 28]
classes = 10
init = "init.safetensors"
rounds = %d
workers_per_round = 5
min_workers = 2
epochs = 1
batch = 10
lr = 0.05
clip = 3.0
noise = 0.001
delta = 1e-5
clip_range = 3.0
max_weight = 10
stage_timeout = "90s"
retry_limit = 3
seed = 5
poll_interval = "100ms"
`, port, rounds))
	for i, name := range names {
		cmd := fmt.Sprintf("[%q, %q, \"--data\", %q, \"--offset\", \"%d\", \"--limit\", \"600\", \"--test-limit\", \"200\"]", python, script, mnist, 600*i)
		source := "trainer = " + cmd + "\ntrainer_timeout = \"3m\""
		switch name {
		case "hospital-nan":
			source = fmt.Sprintf("trainer = [%q, %q]", python, filepath.Join(root, "e2e", "testdata", "nan_trainer.py"))
		case "hospital-builtin":
			source = fmt.Sprintf("dataset = %q", "idx:"+builtinData)
		}
		p := filepath.Join(dir, name+".toml")
		write(t, p, fmt.Sprintf(`name = %q
identity = "%s.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/0"]
store = "%s-store"
%s

[policy]
min_cohort = 3
accepted_models = ["cnn"]
`, name, name, name, source))
		f.wcfg = append(f.wcfg, p)
	}

	f.startCoordinator()
	for i := range names {
		f.startWorker(i)
	}
	f.waitStatus("five workers online", 120*time.Second, func(s status) bool { return len(s.Online) == 5 })

	// Kill hospital-1's trainer while it trains in the round after the
	// first commit: the trainer prints "round R: training on 600
	// examples" to stderr (the worker logs it) when it starts a local
	// training, and a CNN epoch on 600 images takes seconds.
	w1 := f.workers[1]
	pid := trainerPID(t, w1, 1)
	f.waitStatus("round 1 committed", 180*time.Second, func(s status) bool { return s.CommittedRounds >= 1 })
	const training = "training on 600 examples"
	before := strings.Count(w1.logText(), training)
	deadline := time.Now().Add(120 * time.Second)
	for strings.Count(w1.logText(), training) == before {
		if time.Now().After(deadline) || w1.exited() {
			t.Fatal("hospital-1's trainer started no training after round 1")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill trainer %d: %v", pid, err)
	}
	line := waitLog(t, w1, 60*time.Second, 50*time.Millisecond, "round refused", `trainer \"python3 train.py\": train: exited during the request`)
	killRound := roundOf(t, line)
	t.Logf("hospital-1 refused round %d: %s", killRound, line)
	trainerPID(t, w1, 2) // restarted

	f.waitStatus("all rounds committed and evaluated", 300*time.Second, func(s status) bool {
		r, n := lastRound(f)
		return s.CommittedRounds == rounds && n == rounds+1 && s.AccuracyRound == r
	})
	f.stopCoordinator()

	if _, err := run(t, "ledger", "verify", "--data", f.coordDir); err != nil {
		t.Fatalf("ledger verify: %v", err)
	}
	ledger, err := coordinator.ReadLedgerFile(filepath.Join(f.coordDir, coordinator.LedgerFileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(ledger) != rounds+1 {
		t.Fatalf("ledger has %d entries, want %d", len(ledger), rounds+1)
	}
	back, mixed := false, 0
	for _, e := range ledger[1:] {
		var got []string
		for _, p := range e.Participants {
			got = append(got, string(p))
		}
		if slices.Contains(got, f.wpeers[3]) {
			t.Fatalf("round %d counts the NaN trainer's worker as a participant", e.Round)
		}
		if e.Round == killRound && slices.Contains(got, f.wpeers[1]) {
			t.Fatalf("round %d counts hospital-1, whose trainer was killed in it", e.Round)
		}
		if e.Round > killRound && slices.Contains(got, f.wpeers[1]) {
			back = true
		}
		if slices.Contains(got, f.wpeers[4]) && slices.Contains(got, f.wpeers[0]) {
			mixed++
		}
		if !(e.Epsilon > 0) {
			t.Fatalf("round %d: epsilon %v with DP on", e.Round, e.Epsilon)
		}
	}
	if mixed != rounds {
		t.Fatalf("the built-in worker and a PyTorch one trained together in %d of %d rounds, want all", mixed, rounds)
	}
	if !back {
		t.Fatalf("hospital-1 took part in no round after round %d, where its trainer was killed", killRound)
	}
	state := f.state()
	named := false
	for _, r := range state.Refusals {
		if string(r.Worker) == f.wpeers[3] && strings.Contains(r.Reason, `trainer "python3 nan_trainer.py": train: model: tensor "0.weight" element 0 is NaN`) {
			named = true
		}
	}
	if !named {
		t.Fatalf("no replicated refusal names the NaN trainer's worker %s with the tensor; refusals: %+v", f.wpeers[3], state.Refusals)
	}
	for _, w := range f.workers[:4] {
		if !strings.Contains(w.logText(), "trainer stderr") {
			t.Fatalf("%s logged none of its trainer's stderr", w.name)
		}
	}
	if strings.Contains(f.coord.logText(), "pytorch-mnist trainer:") {
		t.Fatal("a trainer's stderr reached the coordinator's log")
	}
	first, last := state.Metrics[0].Accuracy, state.Metrics[len(state.Metrics)-1].Accuracy
	t.Logf("federated accuracy: round %d %.3f, round %d %.3f", state.Metrics[0].Round, first, state.Metrics[len(state.Metrics)-1].Round, last)
	if !(last > first) {
		t.Fatalf("federated accuracy %.3f → %.3f: not rising", first, last)
	}
	// The final model, as the coordinator committed it, on 1,000 MNIST
	// test images with the built-in CNN (the same layout and function).
	reg, err := coordinator.OpenRegistryReadOnly(filepath.Join(f.coordDir, "registry"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	final, err := reg.Get(ledger[len(ledger)-1].ModelHash)
	if err != nil {
		t.Fatal(err)
	}
	initial, err := reg.Get(ledger[0].ModelHash)
	if err != nil {
		t.Fatal(err)
	}
	a0, a1 := mnistAccuracy(t, initial), mnistAccuracy(t, final)
	t.Logf("MNIST test accuracy (1,000 images): initial %.3f, final %.3f", a0, a1)
	if !(a1 > a0+0.3) {
		t.Fatalf("MNIST test accuracy %.3f → %.3f: the federation did not learn", a0, a1)
	}
}

var pidRE = regexp.MustCompile(`msg="trainer started".* pid=(\d+) .*start=(\d+)`)

// trainerPID waits for the worker's log line of its trainer's start-th
// start and returns the trainer's PID.
func trainerPID(t *testing.T, p *proc, start int) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range pidRE.FindAllStringSubmatch(p.logText(), -1) {
			if m[2] == strconv.Itoa(start) {
				pid, _ := strconv.Atoi(m[1])
				return pid
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: no log of trainer start %d", p.name, start)
	return 0
}

var roundRE = regexp.MustCompile(` round=(\d+) `)

func roundOf(t *testing.T, line string) uint64 {
	t.Helper()
	m := roundRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no round in %q", line)
	}
	r, _ := strconv.ParseUint(m[1], 10, 64)
	return r
}

// lastRound is the round of the newest entry of the coordinator's ledger
// file (rounds may skip numbers when one is retried) and the number of
// entries.
func lastRound(f *fed) (uint64, int) {
	l, err := coordinator.ReadLedgerFile(filepath.Join(f.coordDir, coordinator.LedgerFileName))
	if err != nil || len(l) == 0 {
		return 0, 0
	}
	return l[len(l)-1].Round, len(l)
}

// mnistAccuracy evaluates params as the built-in cnn on the first 1,000
// MNIST test images.
func mnistAccuracy(t *testing.T, params []float32) float64 {
	t.Helper()
	_, test, err := data.MNIST()
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, 1000)
	for i := range idx {
		idx[i] = i
	}
	sub, err := test.Subset("mnist-test-1k", idx)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := model.ParseSpec("cnn", 1, 28, 28, 10)
	if err != nil {
		t.Fatal(err)
	}
	net, err := model.New(sp)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.SetParams(params); err != nil {
		t.Fatal(err)
	}
	_, acc, err := net.EvaluateChecked(sub.X, sub.Y, sub.N)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}
