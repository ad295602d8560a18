package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/model/modelfile"
)

// TestExportFromReplicas: after a three-coordinator federation committed
// its rounds, `sovereign export --data` on each replica's folder — running,
// and again once stopped — gives the same model, whose hash `ledger verify
// --data <another replica> --model` finds in the ledger; a model that is
// not in the ledger is refused.
func TestExportFromReplicas(t *testing.T) {
	const rounds = 2
	c := newCluster(t, clusterOptions{coords: 3, workers: 3, rounds: rounds})
	for i := range 3 {
		c.startCoordinator(i)
	}
	for i := range 3 {
		c.startWorker(i)
	}
	c.waitCommitted(rounds, c.others(), 120*time.Second)
	export := func(i int, name string) *modelfile.Model {
		out := filepath.Join(c.dir, name)
		msg, err := run(t, "export", "--data", c.cdirs[i], "--out", out)
		if err != nil {
			t.Fatal(err)
		}
		// A running replica holds its registry's lock, and a killed one left
		// its memtable untruncated: the export reads a copy. A cleanly
		// stopped one's registry opens read-only.
		if clean := strings.HasPrefix(name, "stopped-"); clean == strings.Contains(msg, "read from a copy") {
			t.Fatalf("replica %d (%s): %s", i, name, msg)
		}
		m, err := modelfile.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	var hash string
	for i := range 3 {
		// A running replica rewrites its state.snapshot, which export
		// reads, every exportInterval after its FSM changed: wait for it.
		// Until then export says "no model committed yet" or exports an
		// older round.
		name := "running-" + c.cnames[i] + ".safetensors"
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			out, err := run(t, "export", "--data", c.cdirs[i], "--out", filepath.Join(c.dir, name))
			if err == nil && strings.Contains(out, fmt.Sprintf("round %d,", rounds)) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		m := export(i, name)
		if m.Provenance.Round != rounds || m.Provenance.Source != "coordinator" || m.Provenance.Federation != "e2e-ha" || m.Provenance.Institutions < 3 || m.Provenance.LedgerEntry == "" {
			t.Fatalf("replica %d: provenance %+v", i, m.Provenance)
		}
		if i == 0 {
			hash = m.Hash
		} else if m.Hash != hash {
			t.Fatalf("replica %d exports model %s, replica 0 %s", i, m.Hash, hash)
		}
	}
	out, err := run(t, "ledger", "verify", "--data", c.cdirs[0], "--model", filepath.Join(c.dir, "running-coord-1.safetensors"))
	if err != nil || !strings.Contains(out, "OK model") || !strings.Contains(out, hash) {
		t.Fatalf("ledger verify --model: %v\n%s", err, out)
	}
	// An older round, and a model the ledger does not hold.
	r1 := filepath.Join(c.dir, "round1.safetensors")
	if _, err := run(t, "export", "--data", c.cdirs[2], "--round", "1", "--out", r1); err != nil {
		t.Fatal(err)
	}
	if m, err := modelfile.Load(r1); err != nil || m.Provenance.Round != 1 || m.Hash == hash {
		t.Fatalf("round 1 export: %v %+v", err, m)
	}
	if _, err := run(t, "sim", "--rounds", "1", "--model", "logreg", "--out", filepath.Join(c.dir, "sim")); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "ledger", "verify", "--data", c.cdirs[0], "--model", filepath.Join(c.dir, "sim", "model.safetensors")); err == nil || !strings.Contains(err.Error(), "not in the ledger") {
		t.Fatalf("a sim model passed ledger verify: %v", err)
	}
	for _, w := range c.workers {
		w.kill()
	}
	c.coords[2].kill() // SIGKILL: a crashed replica
	for _, i := range []int{0, 1} {
		c.coords[i].signal(syscall.SIGTERM)
		select {
		case <-c.coords[i].done:
		case <-time.After(30 * time.Second):
			t.Fatalf("coordinator %d did not stop on SIGTERM", i)
		}
	}
	for i := range 3 {
		name := "stopped-" + c.cnames[i] + ".safetensors"
		if i == 2 {
			name = "killed-" + c.cnames[i] + ".safetensors"
		}
		if m := export(i, name); m.Hash != hash {
			t.Fatalf("stopped replica %d exports %s, want %s", i, m.Hash, hash)
		}
	}
}

// TestSimModelSeedsFederation: a model trained in the simulator becomes a
// real federation's initial model through [rounds] init; the ledger's
// round 0 is that model, and `ledger verify --model` finds it there.
func TestSimModelSeedsFederation(t *testing.T) {
	f := newFed(t, fedOptions{workers: 3, rounds: 1, noBudget: true})
	simOut := filepath.Join(f.dir, "sim")
	if _, err := run(t, "sim", "--model", "logreg", "--rounds", "5", "--out", simOut); err != nil {
		t.Fatal(err)
	}
	simModel := filepath.Join(simOut, "model.safetensors")
	cfg, err := os.ReadFile(f.coordCfg)
	if err != nil {
		t.Fatal(err)
	}
	write(t, f.coordCfg, string(cfg)+fmt.Sprintf("init = %q\n", simModel)) // [rounds] is the file's last table
	f.startCoordinator()
	for i := range f.wnames {
		f.startWorker(i)
	}
	f.waitStatus("one round committed and evaluated", 120*time.Second, func(s status) bool {
		return s.CommittedRounds == 1 && s.AccuracyRound == 1
	})
	f.stopCoordinator()
	out, err := run(t, "ledger", "verify", "--data", f.coordDir, "--model", simModel)
	if err != nil || !strings.Contains(out, "is round 0,") {
		t.Fatalf("the sim's model is not the federation's round 0: %v\n%s", err, out)
	}
	r0 := filepath.Join(f.dir, "round0.safetensors")
	if _, err := run(t, "export", "--data", f.coordDir, "--round", "0", "--out", r0); err != nil {
		t.Fatal(err)
	}
	a, err1 := modelfile.Load(simModel)
	b, err2 := modelfile.Load(r0)
	if err1 != nil || err2 != nil || a.Hash != b.Hash {
		t.Fatalf("round 0 export %v %v: hash %v, sim model %v", err1, err2, b, a)
	}
}

// TestBadModelFilesGiveClearErrors: the commands refuse a truncated file,
// one whose header claims more than the file holds and one of another
// architecture with errors naming the file, tensor and byte offset or
// shapes, and exit non-zero.
func TestBadModelFilesGiveClearErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if _, err := run(t, "sim", "--rounds", "1", "--out", out); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "truncated.safetensors")
	write(t, trunc, string(good[:len(good)-100]))
	if _, err := run(t, "model", "info", trunc); err == nil || !strings.Contains(err.Error(), trunc) || !strings.Contains(err.Error(), `tensor "4.weight"`) || !strings.Contains(err.Error(), "(byte ") {
		t.Fatalf("truncated file: %v", err)
	}
	long := []byte(string(good))
	long[0], long[1], long[2] = 0xff, 0xff, 0x0f // header length ≈ 1 MB, beyond the file
	longPath := filepath.Join(dir, "long.safetensors")
	write(t, longPath, string(long))
	if _, err := run(t, "evaluate", "--model", longPath); err == nil || !strings.Contains(err.Error(), longPath) || !strings.Contains(err.Error(), "longer than the") {
		t.Fatalf("header longer than the file: %v", err)
	}
	if _, err := run(t, "sim", "--rounds", "1", "--model", "mlp:50", "--init", filepath.Join(out, "model.safetensors"), "--out", filepath.Join(dir, "o2")); err == nil ||
		!strings.Contains(err.Error(), `"0.weight"`) || !strings.Contains(err.Error(), "[200 64]") || !strings.Contains(err.Error(), "[50 64]") {
		t.Fatalf("--init of another architecture: %v", err)
	}
	if _, err := run(t, "predict", "--model", filepath.Join(out, "model.safetensors"), "--dataset", "mnist"); err == nil || !strings.Contains(err.Error(), "784 features") {
		t.Fatalf("predict on data of another shape: %v", err)
	}
}
