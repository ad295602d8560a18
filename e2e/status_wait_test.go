package e2e

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestStatusWaitsForCoordinator: `status` against a coordinator that does
// not listen yet fails; `status --wait` started before the coordinator
// keeps asking and succeeds once it answers.
func TestStatusWaitsForCoordinator(t *testing.T) {
	f := newFed(t, fedOptions{workers: 0, rounds: 1})
	if out, err := run(t, "status", "--federation", f.fedFile, "--identity", f.observer, "--timeout", "2s"); err == nil {
		t.Fatalf("status succeeded with no coordinator running:\n%s", out)
	} else if !strings.Contains(err.Error(), "no coordinator answered") {
		t.Fatalf("status without a coordinator: %v", err)
	}
	cmd := exec.Command(bin, "status", "--federation", f.fedFile, "--identity", f.observer, "--json", "--wait", "60s", "--timeout", "5s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.startCoordinator()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("status --wait: %v\n%s", err, stderr.String())
	}
	var rs []status
	if err := json.Unmarshal(stdout.Bytes(), &rs); err != nil || len(rs) != 1 || !rs[0].Reachable {
		t.Fatalf("status --wait output %q (%v)", stdout.String(), err)
	}
}
