package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// The institutions' own model, not one of Sovereign's: an MLP with a
// LayerNorm in PyTorch (examples/pytorch-mnist/train.py --arch lnmlp). The
// coordinator names it only by its initial weights (model = "external",
// init = the trainer's --write-init file): the layout is the file's tensors,
// three PyTorch workers train it under secure aggregation, a built-in worker
// is named at Hello as unable to take part, the federated accuracy rises,
// and the exported model holds the trainer's tensors.
func TestExternalModelFederation(t *testing.T) {
	needTorch(t)
	const rounds = 3
	root := repoRoot()
	mnist := filepath.Join(root, "data", "mnist")
	script := filepath.Join(root, "examples", "pytorch-mnist", "train.py")
	dir := t.TempDir()
	f := &fed{t: t, dir: dir, fedFile: filepath.Join(dir, "federation.toml")}
	t.Cleanup(f.stopAll)
	if out, err := exec.Command(python, script, "--arch", "lnmlp", "--write-init", filepath.Join(dir, "init.safetensors"), "--seed", "3").CombinedOutput(); err != nil {
		t.Fatalf("--write-init: %v\n%s", err, out)
	}
	names := []string{"hospital-0", "hospital-1", "hospital-2", "hospital-builtin"}
	port := writeFederation(t, f, names)
	f.coordDir = filepath.Join(dir, "coord-data")
	f.coordCfg = filepath.Join(dir, "coordinator.toml")
	write(t, f.coordCfg, fmt.Sprintf(`name = "coord"
identity = "coord.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/%d"]
data = "coord-data"

[rounds]
model = "external"
init = "init.safetensors"
rounds = %d
workers_per_round = 3
min_workers = 3
epochs = 1
batch = 10
lr = 0.1
clip_range = 2.0
max_weight = 1000
stage_timeout = "90s"
retry_limit = 3
seed = 5
poll_interval = "100ms"
`, port, rounds))
	for i, name := range names {
		source := fmt.Sprintf("trainer = [%q, %q, \"--arch\", \"lnmlp\", \"--data\", %q, \"--offset\", \"%d\", \"--limit\", \"600\", \"--test-limit\", \"200\"]\ntrainer_timeout = \"3m\"", python, script, mnist, 600*i)
		if name == "hospital-builtin" {
			source = `dataset = "mnist"`
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
`, name, name, name, source))
		f.wcfg = append(f.wcfg, p)
	}
	f.startCoordinator()
	for i := range names {
		f.startWorker(i)
	}
	waitLog(t, f.coord, 120*time.Second, 100*time.Millisecond, "worker cannot take part in the study", "hospital-builtin", "is an external model")
	f.waitStatus("all rounds committed and evaluated", 300*time.Second, func(s status) bool {
		return s.CommittedRounds == rounds && s.AccuracyRound == uint64(rounds)
	})
	f.stopCoordinator()
	st := f.state()
	first, last := st.Metrics[0].Accuracy, st.Metrics[len(st.Metrics)-1].Accuracy
	t.Logf("federated accuracy of the external model: round 1 %.3f, round %d %.3f", first, rounds, last)
	if !(last >= first) || last < 0.6 {
		t.Fatalf("federated accuracy %.3f → %.3f: want a rise to at least 0.6", first, last)
	}
	for _, e := range st.Ledger[1:] {
		for _, p := range e.Participants {
			if string(p) == f.wpeers[3] {
				t.Fatalf("round %d counts the built-in worker, which has no trainer for the external model", e.Round)
			}
		}
	}
	out := filepath.Join(dir, "model.safetensors")
	if _, err := run(t, "export", "--data", f.coordDir, "--out", out); err != nil {
		t.Fatalf("export: %v", err)
	}
	sf, err := safetensors.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int{}
	for _, ts := range sf.Tensors {
		shapes[ts.Name] = ts.Shape
	}
	if fmt.Sprint(shapes["2.weight"]) != "[64]" || fmt.Sprint(shapes["1.weight"]) != "[64 784]" || len(shapes) != 6 {
		t.Fatalf("exported tensors %v, want the trainer's six (LayerNorm 2.weight [64])", shapes)
	}
	if _, err := run(t, "ledger", "verify", "--data", f.coordDir, "--model", out); err != nil {
		t.Fatalf("ledger verify --model: %v", err)
	}
}
