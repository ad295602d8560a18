package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/coordinator"
)

// cluster is a federation with several coordinator replicas (one Raft
// group) and worker processes.
type cluster struct {
	t        testing.TB
	dir      string
	fedFile  string
	observer string
	operator string
	cnames   []string
	ccfg     []string
	cdirs    []string
	coords   []*proc
	wnames   []string
	wpeers   []string
	wcfg     []string
	workers  []*proc
	counter  int
}

type clusterOptions struct {
	coords, workers, rounds int
	model                   string
	// rows, if set, replicates worker i's partition rows[i] times.
	rows  []int
	stage string
	// raftDefaults leaves out the [raft] table, so the replicas run with
	// hashicorp/raft's default timeouts, as in production.
	raftDefaults bool
	// noDP runs rounds without differential privacy (noise 0) and leaves
	// the workers' privacy budget unset, so any number of rounds runs.
	noDP bool
}

// newCluster writes keys, the federation file (every coordinator with a
// loopback address), data partitions and configurations. Raft runs with
// 500 ms timeouts so that a failover takes about a second, unless
// o.raftDefaults is set.
func newCluster(t testing.TB, o clusterOptions) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, fedFile: filepath.Join(dir, "federation.toml"), observer: filepath.Join(dir, "observer.key"), operator: filepath.Join(dir, "operator.key")}
	if o.model == "" {
		o.model = "logreg"
	}
	if o.stage == "" {
		o.stage = "3s"
	}
	var fb strings.Builder
	fb.WriteString("name = \"e2e-ha\"\n")
	ports := make([]int, o.coords)
	for i := range o.coords {
		name := fmt.Sprintf("coord-%d", i)
		id := keygen(t, filepath.Join(dir, name+".key"))
		ports[i] = freePort(t)
		c.cnames = append(c.cnames, name)
		fmt.Fprintf(&fb, "\n[[member]]\nname = %q\npeer_id = %q\nrole = \"coordinator\"\naddrs = [\"/ip4/127.0.0.1/tcp/%d\"]\n", name, id, ports[i])
	}
	obs := keygen(t, c.observer)
	fmt.Fprintf(&fb, "\n[[member]]\nname = \"observer\"\npeer_id = %q\nrole = \"observer\"\n", obs)
	op := keygen(t, c.operator)
	fmt.Fprintf(&fb, "\n[[member]]\nname = \"operator\"\npeer_id = %q\nrole = \"operator\"\n", op)
	for i := range o.workers {
		name := fmt.Sprintf("hospital-%d", i)
		id := keygen(t, filepath.Join(dir, name+".key"))
		c.wnames, c.wpeers = append(c.wnames, name), append(c.wpeers, id)
		fmt.Fprintf(&fb, "\n[[member]]\nname = %q\npeer_id = %q\nrole = \"worker\"\n", name, id)
	}
	write(t, c.fedFile, fb.String())
	writePartitions(t, dir, c.wnames, o.rows)
	raftTable := `
[raft]
heartbeat_timeout = "500ms"
election_timeout = "500ms"
leader_lease_timeout = "500ms"
restart_delay = "200ms"
`
	if o.raftDefaults {
		raftTable = ""
	}
	noise, budget := 0.5, "max_epsilon = 1000.0\n"
	if o.noDP {
		noise, budget = 0, ""
	}
	for i, name := range c.cnames {
		p := filepath.Join(dir, name+".toml")
		c.ccfg = append(c.ccfg, p)
		c.cdirs = append(c.cdirs, filepath.Join(dir, name+"-data"))
		write(t, p, fmt.Sprintf(`name = %q
identity = "%s.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/%d"]
data = "%s-data"

[rounds]
model = %q
input = [1, 1, 64]
classes = 10
rounds = %d
workers_per_round = %d
min_workers = 3
epochs = 1
batch = 16
lr = 0.3
clip = 2.0
noise = %v
delta = 1e-5
max_weight = 1000
stage_timeout = %q
retry_limit = 3
seed = 11
poll_interval = "100ms"
%s`, name, name, ports[i], name, o.model, o.rounds, o.workers, noise, o.stage, raftTable))
	}
	c.wcfg = writeWorkerConfigs(t, dir, c.wnames, budget, o.model)
	c.coords = make([]*proc, o.coords)
	c.workers = make([]*proc, o.workers)
	t.Cleanup(c.stopAll)
	return c
}

func (c *cluster) start(name string, args ...string) *proc {
	f := &fed{t: c.t, dir: c.dir, counter: c.counter}
	p := f.start(name, args...)
	c.counter = f.counter
	return p
}

func (c *cluster) startCoordinator(i int) {
	c.coords[i] = c.start(c.cnames[i], "coordinator", "--config", c.ccfg[i])
}

func (c *cluster) startWorker(i int) {
	c.workers[i] = c.start(c.wnames[i], "worker", "--config", c.wcfg[i])
}

func (c *cluster) stopAll() {
	for _, p := range c.workers {
		if p != nil {
			p.signal(syscall.SIGCONT)
			p.kill()
		}
	}
	for _, p := range c.coords {
		if p != nil {
			p.kill()
		}
	}
	if c.t.Failed() {
		for _, p := range append(slices.Clone(c.coords), c.workers...) {
			if p != nil {
				txt := p.logText()
				if len(txt) > 5000 {
					txt = txt[len(txt)-5000:]
				}
				c.t.Logf("--- log of %s (tail) ---\n%s", p.name, txt)
				if d := os.Getenv("SOVEREIGN_E2E_KEEP_LOGS"); d != "" {
					_ = os.WriteFile(filepath.Join(d, filepath.Base(p.log)), []byte(p.logText()), 0o600)
				}
			}
		}
	}
}

// haStatus is one coordinator's entry of `sovereign status --json` with the
// replica fields.
type haStatus struct {
	status
	Peer     string `json:"peer"`
	Leader   string `json:"leader"`
	Replicas []struct {
		Name         string `json:"name"`
		State        string `json:"state"`
		Leader       string `json:"leader"`
		Term         uint64 `json:"term"`
		CommitIndex  uint64 `json:"commit_index"`
		AppliedIndex uint64 `json:"applied_index"`
		Voters       int    `json:"voters"`
	} `json:"replicas"`
}

// own returns the replica entry the coordinator reports about itself.
func (s haStatus) raftState() string {
	if len(s.Replicas) == 0 || s.Replicas[0].Name != s.Coordinator {
		return ""
	}
	return s.Replicas[0].State
}

func (c *cluster) statusAll() ([]haStatus, error) {
	out, err := run(c.t, "status", "--federation", c.fedFile, "--identity", c.observer, "--json", "--timeout", "5s")
	if out == "" && err != nil {
		return nil, err
	}
	var rs []haStatus
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return nil, fmt.Errorf("status output %q: %v", out, err)
	}
	if len(rs) != len(c.cnames) {
		return nil, fmt.Errorf("status lists %d coordinators, want %d", len(rs), len(c.cnames))
	}
	return rs, nil
}

// waitStatus polls `sovereign status --json` until cond holds.
func (c *cluster) waitStatus(what string, d time.Duration, cond func([]haStatus) bool) []haStatus {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var last []haStatus
	var lastErr error
	for time.Now().Before(deadline) {
		rs, err := c.statusAll()
		if err == nil {
			last = rs
			if cond(rs) {
				return rs
			}
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	text, terr := run(c.t, "status", "--federation", c.fedFile, "--identity", c.observer, "--timeout", "5s")
	c.t.Fatalf("timed out waiting for %s; last status %+v, last error %v\n%s%v", what, last, lastErr, text, terr)
	return nil
}

// waitAnyLog waits until one of ps logs a line holding every one of subs
// and returns its index and the line.
func waitAnyLog(t testing.TB, ps []*proc, d time.Duration, subs ...string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for i, p := range ps {
			if p == nil {
				continue
			}
			if line, ok := findLine(p.logText(), subs...); ok {
				return i, line
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for a log line with %q", subs)
	return -1, ""
}

func findLine(text string, subs ...string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		ok := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok {
			return line, true
		}
	}
	return "", false
}

func hasLine(p *proc, subs ...string) bool {
	_, ok := findLine(p.logText(), subs...)
	return ok
}

// waitOnline waits until the leader sees n workers online.
func (c *cluster) waitOnline(n int) {
	c.t.Helper()
	c.waitStatus(fmt.Sprintf("%d workers online at the leader", n), 60*time.Second, func(rs []haStatus) bool {
		for _, r := range rs {
			if r.Reachable && r.raftState() == "Leader" && len(r.Online) == n {
				return true
			}
		}
		return false
	})
}

// others returns the coordinator indices other than those in skip.
func (c *cluster) others(skip ...int) []int {
	var out []int
	for i := range c.cnames {
		if !slices.Contains(skip, i) {
			out = append(out, i)
		}
	}
	return out
}

// waitCommitted waits until every coordinator in idx reports rounds
// committed with one ledger head and one leader.
func (c *cluster) waitCommitted(rounds int, idx []int, d time.Duration) []haStatus {
	c.t.Helper()
	return c.waitStatus(fmt.Sprintf("%d rounds committed on replicas %v", rounds, idx), d, func(rs []haStatus) bool {
		head, leader := "", ""
		for k, i := range idx {
			r := rs[i]
			if !r.Reachable || r.CommittedRounds != rounds || r.Leader == "" || r.AccuracyRound != uint64(rounds) {
				return false
			}
			if k == 0 {
				head, leader = r.LedgerHead, r.Leader
			} else if r.LedgerHead != head || r.Leader != leader {
				return false
			}
		}
		return true
	})
}

var survivorsRE = regexp.MustCompile(`survivors=(\d+)`)

// verify runs the checks every fault case ends with, once every replica is
// up: rounds models committed once each, the same ledger, model and state
// on every replica, a valid chain everywhere, ledger participants that are
// the survivors the workers unmasked for, and no worker asked to answer two
// survivor sets.
func (c *cluster) verify(rounds int) {
	t := c.t
	t.Helper()
	all := c.others()
	rs := c.waitCommitted(rounds, all, 90*time.Second)
	// Every replica has applied the same entries.
	c.waitStatus("replicas applied the same index", 30*time.Second, func(rs []haStatus) bool {
		var idx uint64
		for i, r := range rs {
			if len(r.Replicas) == 0 {
				return false
			}
			a := r.Replicas[0].AppliedIndex
			if i == 0 {
				idx = a
			} else if a != idx {
				return false
			}
		}
		return true
	})
	// Each replica's exported ledger has the initial model and rounds
	// entries and verifies.
	var ledgers [][]coordinator.LedgerEntry
	for i, dir := range c.cdirs {
		var l []coordinator.LedgerEntry
		deadline := time.Now().Add(10 * time.Second)
		for {
			var err error
			l, err = coordinator.ReadLedgerFile(filepath.Join(dir, coordinator.LedgerFileName))
			if err == nil && len(l) == rounds+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: ledger.json has %d entries (err %v), want %d", c.cnames[i], len(l), err, rounds+1)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := run(t, "ledger", "verify", "--data", dir); err != nil {
			t.Fatalf("%s: ledger verify: %v", c.cnames[i], err)
		}
		if l[len(l)-1].Hash.String() != rs[i].LedgerHead {
			t.Fatalf("%s: ledger.json head %s, status says %s", c.cnames[i], l[len(l)-1].Hash, rs[i].LedgerHead)
		}
		ledgers = append(ledgers, l)
	}
	for i := 1; i < len(ledgers); i++ {
		a, _ := json.Marshal(ledgers[0])
		b, _ := json.Marshal(ledgers[i])
		if !bytes.Equal(a, b) {
			t.Fatalf("ledgers differ between %s and %s:\n%s\n%s", c.cnames[0], c.cnames[i], a, b)
		}
	}
	ledger := ledgers[0]
	seen := map[uint64]bool{}
	for _, e := range ledger[1:] {
		if seen[e.Round] {
			t.Fatalf("round %d committed twice", e.Round)
		}
		seen[e.Round] = true
		// The survivors are the participants: every worker that answered
		// an unmask request for this round was told exactly that many
		// survivors and is one of them; every participant sent a masked
		// input for the round.
		r := fmt.Sprintf("round=%d ", e.Round)
		unmasked := 0
		for w, p := range c.workers {
			id := coordinator.WorkerID(c.wpeers[w])
			in := slices.Contains(e.Participants, id)
			txt := p.logText()
			for _, line := range strings.Split(txt, "\n") {
				if !strings.Contains(line, "unmasked") || !strings.Contains(line, r) {
					continue
				}
				m := survivorsRE.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("%s: unmask line without survivors: %s", c.wnames[w], line)
				}
				if n, _ := strconv.Atoi(m[1]); n != len(e.Participants) || !in {
					t.Fatalf("%s answered unmasking of round %d for %s survivors (participant: %v), ledger has %d participants",
						c.wnames[w], e.Round, m[1], in, len(e.Participants))
				}
				unmasked++
			}
			if in && !hasLine(p, "sent masked input", r) {
				t.Fatalf("%s is a participant of round %d but never sent its masked input", c.wnames[w], e.Round)
			}
			if strings.Contains(txt, "already answered survivor set") {
				t.Fatalf("%s was asked to unmask a second survivor set", c.wnames[w])
			}
		}
		if unmasked < 3 {
			t.Fatalf("round %d: %d unmask answers logged by the workers, want at least the threshold of 3", e.Round, unmasked)
		}
	}
	// Stop the replicas (SIGTERM: each exports its state last) and compare
	// the model bytes by hash and the whole replicated state.
	for i, p := range c.coords {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop on SIGTERM", c.cnames[i])
		}
	}
	head := ledger[len(ledger)-1]
	var model, state []byte
	for i, dir := range c.cdirs {
		reg, err := coordinator.OpenRegistryReadOnly(filepath.Join(dir, "registry"))
		if err != nil {
			t.Fatalf("%s: %v", c.cnames[i], err)
		}
		b, err := reg.GetBytes(head.ModelHash)
		reg.Close()
		if err != nil {
			t.Fatalf("%s: model %s: %v", c.cnames[i], head.ModelHash, err)
		}
		s, err := os.ReadFile(filepath.Join(dir, "state.snapshot"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			model, state = b, s
		} else {
			if !bytes.Equal(b, model) {
				t.Fatalf("%s holds different bytes for model %s", c.cnames[i], head.ModelHash)
			}
			if !bytes.Equal(s, state) {
				t.Fatalf("%s: replicated state differs from %s's", c.cnames[i], c.cnames[0])
			}
		}
	}
}

// TestFailover runs three coordinator replicas and five worker processes
// and SIGKILLs coordinators: the leader in each SecAgg+ stage (Bell et al.
// 2020; the consistency check of Bonawitz et al. 2017 included), a
// follower, two of three, and the leader as the model commits.
// Each case runs on a fresh cluster and ends with cluster.verify.
//
// A stage is held open without any hook in the code under test: a worker
// stopped with SIGSTOP makes the leader wait for it until the stage
// timeout, and the leader is killed while it waits; a worker with a large
// partition keeps the masked-input stage open while it trains.
func TestFailover(t *testing.T) {
	const W = 5
	big := make([]int, W)
	big[4] = 120 // ~43,000 rows: hospital-4 trains for a while
	cases := []struct {
		name string
		opts clusterOptions
		run  func(t *testing.T, c *cluster) int // returns the rounds to verify
	}{
		{"leader killed in advertise-keys", clusterOptions{}, func(t *testing.T, c *cluster) int {
			for i := range 4 {
				c.startWorker(i)
			}
			c.waitOnline(4)
			c.workers[0].signal(syscall.SIGSTOP) // cannot answer the announcement
			c.startWorker(4)
			l, _ := waitAnyLog(t, c.coords, 60*time.Second, "round started", "round=1 ")
			c.coords[l].kill()
			if hasLine(c.coords[l], "stage closed", "round=1 ") {
				t.Fatal("precondition: the leader closed advertise-keys before it was killed")
			}
			c.workers[0].signal(syscall.SIGCONT)
			waitAnyLog(t, c.subset(c.others(l)), 30*time.Second, "resuming", "round=1 ", "advertise-keys(0)")
			c.startCoordinator(l)
			return 1
		}},
		{"leader killed in share-keys", clusterOptions{}, func(t *testing.T, c *cluster) int {
			for i := range 4 {
				c.startWorker(i)
			}
			c.waitOnline(4)
			c.workers[0].signal(syscall.SIGSTOP) // drops out of advertise-keys at its timeout
			c.startWorker(4)
			waitLog(t, c.workers[4], 60*time.Second, 5*time.Millisecond, "advertised keys", "round=1 ")
			c.workers[4].signal(syscall.SIGSTOP) // advertised, cannot share keys
			l, _ := waitAnyLog(t, c.coords, 30*time.Second, "stage closed", "round=1 ", "advertise-keys(0)")
			c.coords[l].kill()
			if hasLine(c.coords[l], "stage closed", "round=1 ", "share-keys(1)") {
				t.Fatal("precondition: the leader closed share-keys before it was killed")
			}
			c.workers[0].signal(syscall.SIGCONT)
			c.workers[4].signal(syscall.SIGCONT)
			waitAnyLog(t, c.subset(c.others(l)), 30*time.Second, "resuming", "round=1 ", "share-keys(1)")
			c.startCoordinator(l)
			return 1
		}},
		{"leader killed in masked-input", clusterOptions{rows: big}, func(t *testing.T, c *cluster) int {
			// hospital-4 is stopped while it trains: the leader waits for it.
			c.startHoldingTrainer(t)
			l, _ := waitAnyLog(t, c.coords, 60*time.Second, "stage closed", "round=1 ", "share-keys(1)")
			c.coords[l].kill()
			if hasLine(c.coords[l], "survivors committed", "round=1 ") {
				t.Fatal("precondition: the masked-input stage ended before the leader was killed")
			}
			c.workers[4].signal(syscall.SIGCONT)
			waitAnyLog(t, c.subset(c.others(l)), 30*time.Second, "resuming", "round=1 ", "masked-input(2)")
			c.startCoordinator(l)
			return 1
		}},
		{"leader killed in consistency-check", clusterOptions{rows: big}, func(t *testing.T, c *cluster) int {
			// hospital-4 is held while it trains, so the masked-input stage
			// stays open until hospital-0 has answered and been stopped.
			c.startHoldingTrainer(t)
			waitLog(t, c.workers[0], 60*time.Second, 5*time.Millisecond, "sent masked input", "round=1 ")
			c.workers[0].signal(syscall.SIGSTOP) // a survivor that cannot sign
			c.workers[4].signal(syscall.SIGCONT)
			l, _ := waitAnyLog(t, c.coords, 60*time.Second, "survivors committed", "round=1 ")
			c.coords[l].kill()
			if hasLine(c.coords[l], "signatures committed", "round=1 ") {
				t.Fatal("precondition: the leader committed the consistency signatures before it was killed")
			}
			c.workers[0].signal(syscall.SIGCONT)
			waitAnyLog(t, c.subset(c.others(l)), 30*time.Second, "resuming", "round=1 ", "consistency-check(5)")
			c.startCoordinator(l)
			return 1
		}},
		{"leader killed in unmask", clusterOptions{rows: big}, func(t *testing.T, c *cluster) int {
			// As above, then hospital-0 is stopped once it has signed the
			// survivor set: the leader waits for its unmask answer.
			c.startHoldingTrainer(t)
			waitLog(t, c.workers[0], 60*time.Second, 5*time.Millisecond, "sent masked input", "round=1 ")
			c.workers[4].signal(syscall.SIGCONT)
			waitLog(t, c.workers[0], 60*time.Second, time.Millisecond, "signed survivors", "round=1 ")
			c.workers[0].signal(syscall.SIGSTOP) // a survivor that signed and cannot unmask
			if hasLine(c.workers[0], "unmasked", "round=1 ") {
				t.Fatal("precondition: hospital-0 answered the unmask request before it was stopped")
			}
			l, _ := waitAnyLog(t, c.coords, 60*time.Second, "signatures committed", "round=1 ")
			c.coords[l].kill()
			if hasLine(c.coords[l], "model committed", "round=1 ") {
				t.Fatal("precondition: the leader committed the model before it was killed")
			}
			c.workers[0].signal(syscall.SIGCONT)
			waitAnyLog(t, c.subset(c.others(l)), 30*time.Second, "resuming", "round=1 ", "unmask(3)")
			c.startCoordinator(l)
			return 1
		}},
		{"follower killed", clusterOptions{}, func(t *testing.T, c *cluster) int {
			for i := range W {
				c.startWorker(i)
			}
			l, _ := waitAnyLog(t, c.coords, 60*time.Second, "round started", "round=1 ")
			f := c.others(l)[0]
			c.coords[f].kill()
			c.waitCommitted(1, c.others(f), 60*time.Second)
			c.startCoordinator(f)
			return 1
		}},
		{"two of three killed", clusterOptions{rounds: 2}, func(t *testing.T, c *cluster) int {
			for i := range W {
				c.startWorker(i)
			}
			l, _ := waitAnyLog(t, c.coords, 60*time.Second, "round started", "round=2 ")
			dead := c.others(l)
			for _, i := range dead {
				c.coords[i].kill()
			}
			// Without a quorum the leader steps down and nothing commits.
			rs := c.waitStatus("the lone replica to step down", 30*time.Second, func(rs []haStatus) bool {
				return rs[l].Reachable && rs[l].raftState() != "" && rs[l].raftState() != "Leader"
			})
			if r := rs[l]; r.CommittedRounds != 1 || r.LedgerLength != 2 {
				t.Fatalf("without a quorum: %d rounds committed, ledger of %d entries; want 1 and 2", r.CommittedRounds, r.LedgerLength)
			}
			if _, err := run(t, "ledger", "verify", "--data", c.cdirs[l]); err != nil {
				t.Fatalf("ledger verify on the lone replica: %v", err)
			}
			c.startCoordinator(dead[0])
			c.waitCommitted(2, []int{l, dead[0]}, 90*time.Second)
			c.startCoordinator(dead[1])
			return 2
		}},
		{"leader killed as the model commits", clusterOptions{}, func(t *testing.T, c *cluster) int {
			for i := range W {
				c.startWorker(i)
			}
			l, line := waitAnyLog(t, c.coords, 60*time.Second, "survivors committed", "round=1 ")
			if !strings.Contains(line, "survivors=5") {
				t.Fatalf("survivors line: %s", line)
			}
			// The leader builds and commits the model as soon as the last
			// unmask answer arrives.
			for i := range W {
				waitLog(t, c.workers[i], 30*time.Second, 2*time.Millisecond, "unmasked", "round=1 ")
			}
			c.coords[l].kill()
			t.Logf("leader killed; it had logged the commit: %v", hasLine(c.coords[l], "model committed", "round=1 "))
			c.startCoordinator(l)
			return 1
		}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			o := tc.opts
			o.coords, o.workers = 3, W
			if o.rounds == 0 {
				o.rounds = 1
			}
			c := newCluster(t, o)
			for i := range c.cnames {
				c.startCoordinator(i)
			}
			rounds := tc.run(t, c)
			c.verify(rounds)
		})
	}
}

// subset returns the processes at idx.
func (c *cluster) subset(idx []int) []*proc {
	out := make([]*proc, len(idx))
	for k, i := range idx {
		out[k] = c.coords[i]
	}
	return out
}

// startHoldingTrainer starts every worker and stops hospital-4 (SIGSTOP)
// once round 1 asked it for its masked input, while it trains, so the
// masked-input stage stays open; the caller resumes it (SIGCONT).
func (c *cluster) startHoldingTrainer(t *testing.T) {
	t.Helper()
	for i := range c.workers {
		c.startWorker(i)
	}
	waitLog(t, c.workers[4], 60*time.Second, 2*time.Millisecond, "masked input requested", "round=1 ")
	c.workers[4].signal(syscall.SIGSTOP)
	if hasLine(c.workers[4], "sent masked input", "round=1 ") {
		t.Fatal("precondition: hospital-4 finished training before it was stopped")
	}
}
