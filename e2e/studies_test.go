package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// studyState is one study of `sovereign study list --json`.
type studyState struct {
	Name            string  `json:"name"`
	State           string  `json:"state"`
	EndReason       string  `json:"end_reason"`
	Model           string  `json:"model"`
	CommittedRounds int     `json:"committed_rounds"`
	Attempts        int     `json:"attempts"`
	Epsilon         float64 `json:"epsilon"`
	LedgerLength    int     `json:"ledger_length"`
}

func (c *cluster) studies() (map[string]studyState, error) {
	out, err := run(c.t, "study", "list", "--federation", c.fedFile, "--identity", c.observer, "--json", "--timeout", "5s")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var ss []studyState
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		return nil, fmt.Errorf("study list: %v: %s", err, out)
	}
	m := map[string]studyState{}
	for _, s := range ss {
		m[s.Name] = s
	}
	return m, nil
}

func (c *cluster) waitStudies(what string, d time.Duration, cond func(map[string]studyState) bool) map[string]studyState {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var last map[string]studyState
	var lastErr error
	for time.Now().Before(deadline) {
		ss, err := c.studies()
		if err == nil && cond(ss) {
			return ss
		}
		last, lastErr = ss, err
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("timed out waiting for %s: last %+v (%v)\ncoordinator logs:\n%s", what, last, lastErr, c.coords[0].logText())
	return nil
}

func (c *cluster) writeStudy(name, body string) string {
	p := filepath.Join(c.dir, name+".study.toml")
	write(c.t, p, body)
	return p
}

func (c *cluster) studyCmd(args ...string) (string, error) {
	return run(c.t, append(append([]string{"study"}, args...), "--federation", c.fedFile, "--identity", c.operator)...)
}

// TestStudies runs, on one federation of three coordinators and three
// workers: the default study to completion; then study b with another
// model while the default study's ledger stays verifiable; then two
// studies at once; a study no worker can take part in is refused at start
// with the workers and the reason named. Each worker's ε is tracked per
// study and in total.
func TestStudies(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the studies federation (3 coordinators, 3 workers, 4 studies)")
	}
	c := newCluster(t, clusterOptions{coords: 3, workers: 3, rounds: 2})
	for _, w := range c.wcfg {
		patch(t, w, `accepted_models = ["logreg"]`, "accepted_models = [\"logreg\", \"mlp:16\"]\nmax_epsilon_total = 5000.0")
	}
	for i := range c.cnames {
		c.startCoordinator(i)
	}
	for i := range c.wnames {
		c.startWorker(i)
	}
	// Study A: the coordinator file's own.
	c.waitStudies("the default study to finish", 120*time.Second, func(ss map[string]studyState) bool {
		return ss["default"].State == "finished" && ss["default"].CommittedRounds == 2
	})
	ledgerA := filepath.Join(c.cdirs[0], "ledger.json")
	var before []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, err := os.ReadFile(ledgerA)
		if err == nil && strings.Contains(string(b), `"finished"`) {
			before = b
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not record the default study's end (%v):\n%s", ledgerA, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A study no worker may train: refused at start, each worker named.
	bad := c.writeStudy("x", "name = \"x\"\n\n[rounds]\nmodel = \"mlp:8\"\ninput = [1, 1, 64]\nclasses = 10\nrounds = 2\nworkers_per_round = 3\nmin_workers = 3\nclip = 2.0\nnoise = 0.5\nmax_weight = 1000\nstage_timeout = \"3s\"\npoll_interval = \"100ms\"\n")
	// study plan asks the workers about it without starting it.
	plan, err := run(t, "study", "plan", "--config", bad, "--federation", c.fedFile, "--identity", c.operator)
	if err != nil || !strings.Contains(plan, `cannot take part: hospital-1: model "mlp:8" is not in policy.accepted_models`) {
		t.Fatalf("study plan of x does not name the workers that would refuse it (%v):\n%s", err, plan)
	}
	out, err := c.studyCmd("start", "--config", bad)
	if err != nil {
		out += err.Error()
	}
	if err == nil || !strings.Contains(out, "refused at start") || !strings.Contains(out, "hospital-0") || !strings.Contains(out, "policy.accepted_models") {
		t.Fatalf("a study no worker accepts started, or its refusal does not name the workers and the rule (%v):\n%s", err, out)
	}

	// Study B: another model, after A.
	study := func(name, model string, rounds int) string {
		return c.writeStudy(name, fmt.Sprintf("name = %q\n\n[rounds]\nmodel = %q\ninput = [1, 1, 64]\nclasses = 10\nrounds = %d\nworkers_per_round = 3\nmin_workers = 3\nepochs = 1\nbatch = 16\nlr = 0.3\nclip = 2.0\nnoise = 0.5\nmax_weight = 1000\nstage_timeout = \"3s\"\nseed = 5\npoll_interval = \"100ms\"\n", name, model, rounds))
	}
	if out, err := c.studyCmd("start", "--config", study("b", "mlp:16", 2)); err != nil || !strings.Contains(out, "study b started") {
		t.Fatalf("study b did not start (%v):\n%s", err, out)
	}
	c.waitStudies("study b to finish", 120*time.Second, func(ss map[string]studyState) bool {
		return ss["b"].State == "finished" && ss["b"].CommittedRounds == 2
	})
	after, err := os.ReadFile(ledgerA)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatal("study b changed the default study's ledger")
	}
	for _, f := range []string{ledgerA, filepath.Join(c.cdirs[1], "ledger-b.json")} {
		if out, err := run(t, "ledger", "verify", "--file", f); err != nil {
			t.Fatalf("ledger %s does not verify (%v):\n%s", f, err, out)
		}
	}

	// Two studies at once: their rounds interleave.
	for _, s := range []struct {
		name, model string
	}{{"c1", "logreg"}, {"c2", "mlp:16"}} {
		if out, err := c.studyCmd("start", "--config", study(s.name, s.model, 3)); err != nil {
			t.Fatalf("study %s did not start (%v):\n%s", s.name, err, out)
		}
	}
	ss := c.waitStudies("studies c1 and c2 to finish", 180*time.Second, func(ss map[string]studyState) bool {
		return ss["c1"].State == "finished" && ss["c2"].State == "finished"
	})
	for _, n := range []string{"default", "b", "c1", "c2"} {
		if ss[n].Epsilon <= 0 {
			t.Fatalf("study %s reports ε %v", n, ss[n].Epsilon)
		}
	}
	// The rounds of c1 and c2 interleaved (one federation-wide round
	// counter): each study has a round between two of the other's.
	w := c.workers[0].logText()
	rounds := map[string][]int{}
	var lastOwn, lastStudy float64
	for _, line := range strings.Split(w, "\n") {
		if !strings.Contains(line, `msg="round committed"`) {
			continue
		}
		var r int
		var st string
		for _, f := range strings.Fields(line) {
			switch {
			case strings.HasPrefix(f, "round="):
				fmt.Sscan(strings.TrimPrefix(f, "round="), &r)
			case strings.HasPrefix(f, "study="):
				st = strings.TrimPrefix(f, "study=")
			case strings.HasPrefix(f, "own_epsilon="):
				fmt.Sscan(strings.TrimPrefix(f, "own_epsilon="), &lastOwn)
			case strings.HasPrefix(f, "own_epsilon_study="):
				fmt.Sscan(strings.TrimPrefix(f, "own_epsilon_study="), &lastStudy)
			}
		}
		rounds[st] = append(rounds[st], r)
	}
	c1, c2 := rounds["c1"], rounds["c2"]
	if len(c1) != 3 || len(c2) != 3 || !(c1[0] < c2[len(c2)-1] && c2[0] < c1[len(c1)-1]) {
		t.Fatalf("hospital-0's rounds of c1 %v and c2 %v do not interleave (all: %v)", c1, c2, rounds)
	}
	// The last commit's total ε (every study's rounds composed) is above
	// its study's own.
	if !(lastOwn > lastStudy && lastStudy > 0) {
		t.Fatalf("hospital-0's own ε over all studies %v is not above its ε in the last study %v", lastOwn, lastStudy)
	}
	for _, f := range []string{"ledger-c1.json", "ledger-c2.json"} {
		if out, err := run(t, "ledger", "verify", "--file", filepath.Join(c.cdirs[2], f)); err != nil {
			t.Fatalf("ledger %s does not verify (%v):\n%s", f, err, out)
		}
	}
	// Each worker tracked its ε per study and in total.
	for _, n := range []string{"default", "b", "c1", "c2"} {
		if _, ok := findLine(w, "round committed", "study="+n, "own_epsilon_study="); !ok {
			t.Fatalf("hospital-0 did not log its ε of study %s:\n%s", n, w)
		}
	}
	t.Logf("studies: %+v", ss)
}

// TestStudyFailover: the leader is killed while a round of a created
// study is in flight; the new leader rebuilds the study's driver from the
// replicated spec, resumes the round and finishes the study, and the
// surviving replicas' ledgers of it agree and verify.
func TestStudyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the created study's failover (3 coordinators, 3 workers)")
	}
	c := newCluster(t, clusterOptions{coords: 3, workers: 3, rounds: 1})
	for _, w := range c.wcfg {
		patch(t, w, `accepted_models = ["logreg"]`, `accepted_models = ["logreg", "mlp:16"]`)
	}
	for i := range c.cnames {
		c.startCoordinator(i)
	}
	for i := range c.wnames {
		c.startWorker(i)
	}
	c.waitStudies("the default study to finish", 120*time.Second, func(ss map[string]studyState) bool {
		return ss["default"].State == "finished"
	})
	// pace keeps each round in flight for a while before its first stage.
	f := c.writeStudy("f", "name = \"f\"\n\n[rounds]\nmodel = \"mlp:16\"\ninput = [1, 1, 64]\nclasses = 10\nrounds = 3\nworkers_per_round = 3\nmin_workers = 3\nepochs = 1\nbatch = 16\nlr = 0.3\nclip = 2.0\nnoise = 0.5\nmax_weight = 1000\nstage_timeout = \"3s\"\nseed = 5\npoll_interval = \"100ms\"\npace = \"1500ms\"\n")
	if out, err := c.studyCmd("start", "--config", f); err != nil {
		t.Fatalf("study f did not start (%v):\n%s", err, out)
	}
	// Kill the leader once study f's second round is in flight.
	rs := c.waitStatus("study f's second round in flight", 60*time.Second, func(rs []haStatus) bool {
		ss, err := c.studies()
		return err == nil && ss["f"].Attempts == 2 && ss["f"].CommittedRounds == 1
	})
	leader := -1
	for i, r := range rs {
		if r.raftState() == "Leader" {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	c.coords[leader].kill()
	ss := c.waitStudies("study f to finish after the failover", 120*time.Second, func(ss map[string]studyState) bool {
		return ss["f"].State == "finished"
	})
	if ss["f"].CommittedRounds != 3 {
		t.Fatalf("study f: %+v", ss["f"])
	}
	var ledgers []string
	for i, dir := range c.cdirs {
		if i == leader {
			continue
		}
		p := filepath.Join(dir, "ledger-f.json")
		var b []byte
		for deadline := time.Now().Add(30 * time.Second); ; {
			var err error
			b, err = os.ReadFile(p)
			if err == nil && strings.Contains(string(b), `"finished"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not record study f's end (%v)", p, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if out, err := run(t, "ledger", "verify", "--file", p); err != nil {
			t.Fatalf("%s does not verify (%v):\n%s", p, err, out)
		}
		ledgers = append(ledgers, string(b))
	}
	if ledgers[0] != ledgers[1] {
		t.Fatal("the surviving replicas' ledgers of study f differ")
	}
	// The round in flight at the kill was resumed by the new leader, not
	// started again under a new number: f took three rounds for three
	// models, and a survivor logged the resume.
	if ss["f"].Attempts != 3 {
		t.Fatalf("study f took %d rounds for 3 models: the round in flight was not resumed", ss["f"].Attempts)
	}
	resumed := false
	for i, p := range c.coords {
		if i != leader && strings.Contains(p.logText(), `msg=resuming`) && strings.Contains(p.logText(), "study=f") {
			resumed = true
		}
	}
	if !resumed {
		t.Fatal("no surviving coordinator logged resuming study f's round")
	}
}
