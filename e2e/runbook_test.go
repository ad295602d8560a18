package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runbookSection returns the sh code blocks of the runbook section whose
// heading is heading, in order, from the Markdown as it is.
func runbookSection(t *testing.T, heading string) (text string, blocks []string) {
	t.Helper()
	b, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("docs/runbook.md has no heading %q", heading)
	}
	sec := doc[i+len(heading)+2:]
	if j := strings.Index(sec, "\n### "); j >= 0 {
		sec = sec[:j]
	}
	if j := strings.Index(sec, "\n## "); j >= 0 {
		sec = sec[:j]
	}
	for rest := sec; ; {
		k := strings.Index(rest, "```sh\n")
		if k < 0 {
			break
		}
		rest = rest[k+len("```sh\n"):]
		end := strings.Index(rest, "\n```")
		if end < 0 {
			t.Fatalf("unterminated sh block in %q", heading)
		}
		blocks = append(blocks, rest[:end+1])
		rest = rest[end+4:]
	}
	return sec, blocks
}

// TestRunbookSection6 runs the sh blocks of docs/runbook.md §6 "On one
// machine, by hand" literally, one after another in one bash, in an empty
// folder with the freshly built sovereign first on the PATH: three
// coordinators and three workers on loopback, the leader killed mid-round,
// the 30 rounds finished by the survivors, the killed replica restarted,
// every ledger verified, the model exported, verified and evaluated. It
// then checks what the section says happened.
func TestRunbookSection6(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the runbook section runs a one-minute federation of six processes")
	}
	text, blocks := runbookSection(t, "### On one machine, by hand")
	if len(blocks) != 3 {
		t.Fatalf("the section has %d sh blocks, want 3 (set up and start, kill the leader, restart and verify)", len(blocks))
	}
	dir := t.TempDir()
	script := "set -e\n" + strings.Join(blocks, "\n")
	if err := os.WriteFile(filepath.Join(dir, "runbook.sh"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "runbook.sh")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	// The script's background coordinators and workers share its process
	// group: whatever the script leaves running is killed with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	logs := func() string {
		var b strings.Builder
		for _, n := range []string{"coord-1", "coord-2", "coord-3", "hospital-1", "hospital-2", "hospital-3"} {
			l, _ := os.ReadFile(filepath.Join(dir, n+".log"))
			ls := strings.Split(strings.TrimSpace(string(l)), "\n")
			fmt.Fprintf(&b, "--- %s.log (last lines)\n%s\n", n, strings.Join(ls[max(0, len(ls)-15):], "\n"))
		}
		return b.String()
	}
	if err != nil {
		t.Fatalf("runbook §6 failed after %v: %v\nstdout:\n%s\nstderr:\n%s\n%s", time.Since(start).Round(time.Second), err, stdout.String(), stderr.String(), logs())
	}
	out := stdout.String()
	t.Logf("runbook §6 ran in %v", time.Since(start).Round(time.Second))
	// The first status (--wait 10s, right after the start) had every
	// coordinator answer.
	first := out[:strings.Index(out+"OK ", "OK ")]
	if strings.Count(first, "coordinator coord-") != 3 || strings.Contains(first, "unreachable") {
		t.Errorf("the first status did not hear from all three coordinators:\n%s", first)
	}
	// Three ledger verify --data and one ledger verify --model, each over
	// the whole chain.
	if n := strings.Count(out, "OK 31 entries, head round "); n != 4 {
		t.Errorf("%d ledger checks found 31 entries, want 4:\n%s", n, out)
	}
	// The leader was killed with a round in flight, and a survivor resumed it.
	resumed := false
	for i := 1; i <= 3; i++ {
		l, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("coord-%d.log", i)))
		if m := regexp.MustCompile(`msg=resuming .*round=\d+ stage=\S+`).Find(l); m != nil {
			resumed = true
			t.Logf("after the kill: %s", m)
		}
	}
	if !resumed {
		t.Errorf("no coordinator resumed a round after the leader was killed\n%s", logs())
	}
	// Log lines name peers by their federation name as well as their ID,
	// and Raft's lines carry one level (no "[WARN]" inside the message).
	for _, n := range []string{"coord-1", "hospital-1"} {
		l, _ := os.ReadFile(filepath.Join(dir, n+".log"))
		if !regexp.MustCompile(`peer=12D3KooW\S+ .*peer_name=(coord|hospital)-\d`).Match(l) {
			t.Errorf("%s.log names no peer by its federation name", n)
		}
	}
	raftLines := 0
	for i := 1; i <= 3; i++ {
		l, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("coord-%d.log", i)))
		for _, line := range strings.Split(string(l), "\n") {
			if !strings.Contains(line, "component=raft") {
				continue
			}
			raftLines++
			if regexp.MustCompile(`\[(WARN|ERROR|ERR|INFO|DEBUG)\]`).MatchString(line) {
				t.Errorf("a Raft line carries two levels: %s", line)
			}
		}
	}
	t.Logf("%d Raft log lines, each with one level", raftLines)
	// The exported model is the ledger head's, and evaluate ran on it.
	var ledger struct {
		Entries []struct {
			Round   uint64  `json:"round"`
			Epsilon float64 `json:"epsilon"`
		} `json:"entries"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "coord-1-data", "ledger.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ledger); err != nil || len(ledger.Entries) != 31 {
		t.Fatalf("ledger.json: %v, %d entries", err, len(ledger.Entries))
	}
	head := ledger.Entries[len(ledger.Entries)-1]
	if !strings.Contains(out, "OK model m.safetensors (sha256 ") || !strings.Contains(out, fmt.Sprintf(") is round %d, ", head.Round)) {
		t.Errorf("ledger verify --model did not find the head (round %d):\n%s", head.Round, out)
	}
	if !regexp.MustCompile(`(?m)^accuracy \d\.\d{4}`).MatchString(out) {
		t.Errorf("evaluate printed no accuracy:\n%s", out)
	}
	// The ε the section states is the one the ledger ends at, and it is
	// within the hospitals' budget.
	eps := strconv.FormatFloat(head.Epsilon, 'f', 2, 64)
	if !strings.Contains(text, "ε = "+eps+" after the 30 rounds") || !strings.Contains(text, `"epsilon": `+eps) ||
		!strings.Contains(text, "prints the same "+eps) {
		t.Errorf("the ledger ends at ε = %v but the section does not state %s", head.Epsilon, eps)
	}
	if !(head.Epsilon > 0 && head.Epsilon <= 10) {
		t.Errorf("final ε %v is not within max_epsilon = 10", head.Epsilon)
	}
	// Each hospital trained on its own shard of the digits data.
	for i := 1; i <= 3; i++ {
		l, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("hospital-%d.log", i)))
		m := regexp.MustCompile(`msg="worker started".* train=(\d+) test=(\d+)`).FindStringSubmatch(string(l))
		if m == nil {
			t.Fatalf("hospital-%d logged no start line\n%s", i, logs())
		}
		if n, _ := strconv.Atoi(m[1]); n < 479 || n > 480 {
			t.Errorf("hospital-%d trains on %s rows, want its third of the 1,438 digits training rows", i, m[1])
		}
	}
}
