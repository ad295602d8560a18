package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSimInterrupted: Ctrl-C (SIGINT) during `sovereign sim` stops it after
// the round in progress; summary.json then says interrupted: true with the
// rounds run and the wall time actually spent, and the other files are
// written for those rounds.
func TestSimInterrupted(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command(bin, "sim", "--rounds", "1000000", "--out", out)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	rounds := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "round ") {
			if rounds++; rounds == 3 {
				_ = cmd.Process.Signal(syscall.SIGINT)
				break
			}
		}
	}
	done := make(chan error, 1)
	go func() {
		for sc.Scan() {
		}
		done <- cmd.Wait()
	}()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("sim did not stop after SIGINT")
	}
	if err == nil {
		t.Fatal("an interrupted sim exited 0")
	}
	b, rerr := os.ReadFile(filepath.Join(out, "summary.json"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	var s struct {
		Interrupted bool    `json:"interrupted"`
		RoundsRun   int     `json:"rounds_run"`
		WallSeconds float64 `json:"wall_seconds"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if !s.Interrupted || s.RoundsRun < 3 || !(s.WallSeconds > 0) {
		t.Fatalf("summary.json after SIGINT: %s", b)
	}
	for _, f := range []string{"metrics.csv", "model.safetensors", "report.html"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s not written for the rounds run: %v", f, err)
		}
	}
}
