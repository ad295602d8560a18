package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// logTail reads the lines a process appends to its log, from where the
// previous call stopped.
type logTail struct {
	p       *proc
	off     int64
	partial string
}

// next returns the complete lines written since the last call.
func (l *logTail) next() []string {
	f, err := os.Open(l.p.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return nil
	}
	b, err := io.ReadAll(f)
	if err != nil || len(b) == 0 {
		return nil
	}
	l.off += int64(len(b))
	text := l.partial + string(b)
	lines := strings.Split(text, "\n")
	l.partial = lines[len(lines)-1]
	return lines[:len(lines)-1]
}

// driverLine is a progress line of a coordinator's round driver.
type driverLine struct {
	at    time.Time
	raw   string
	msg   string
	round uint64
	stage string
}

var (
	logTimeRE  = regexp.MustCompile(`^time=(\S+)`)
	logMsgRE   = regexp.MustCompile(` msg="?([^"=]+?)"? [a-z_]+=`)
	logRoundRE = regexp.MustCompile(` round=(\d+)`)
	logStageRE = regexp.MustCompile(` stage=(\S+)`)
)

// progressMsgs are the driver's log messages that mark a SecAgg+ stage (or
// the round) moving on, each logged once the step is committed through
// Raft: the round started, advertise-keys and share-keys closed, survivors
// committed (the masked-input stage closed), model committed (unmasking
// done).
var progressMsgs = []string{"round started", "stage closed", "survivors committed", "model committed"}

// parseDriverLine parses a slog text line of the round driver; ok is false
// for any other line.
func parseDriverLine(line string) (driverLine, bool) {
	tm, msg, rd := logTimeRE.FindStringSubmatch(line), logMsgRE.FindStringSubmatch(line), logRoundRE.FindStringSubmatch(line)
	if tm == nil || msg == nil || rd == nil {
		return driverLine{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, tm[1])
	if err != nil {
		return driverLine{}, false
	}
	r, err := strconv.ParseUint(rd[1], 10, 64)
	if err != nil {
		return driverLine{}, false
	}
	d := driverLine{at: at, raw: line, msg: strings.TrimSpace(msg[1]), round: r}
	if s := logStageRE.FindStringSubmatch(line); s != nil {
		d.stage = s[1]
	}
	return d, true
}

func (d driverLine) progress() bool { return slices.Contains(progressMsgs, d.msg) }

// killTriggers are the points at which the leader is killed, in turn: in
// advertise-keys (just after the round started), in share-keys, in
// masked-input, and in unmask (just after the survivors were committed).
var killTriggers = []struct {
	msg, stage string
}{
	{"round started", ""},
	{"stage closed", "advertise-keys(0)"},
	{"stage closed", "share-keys(1)"},
	{"survivors committed", ""},
}

func percentileMS(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1)*p + 0.5)
	return float64(s[i].Microseconds()) / 1000
}

// BenchmarkFailoverProcesses runs three `sovereign coordinator` processes
// (one Raft group with hashicorp/raft's default timeouts, as in production)
// and five worker processes on 127.0.0.1, with the small logreg model, and
// per iteration SIGKILLs the leader in the middle of a round (in turn in
// each of the four SecAgg+ stages of Bell et al. 2020), then restarts it on
// its data folder. The figure is the time from the kill to the next
// progress line of the new leader's round driver (a stage closed, the
// survivors or the model committed, or a round started), read from the
// time stamp of that line in the coordinator's log; the kill time is taken
// just before the SIGKILL on the same clock. The killed replica rejoins and
// catches up before the next kill (not timed).
//
// Baseline in the same run (steady-stage-ms): the median time between
// consecutive progress lines of one round on a leader nobody kills.
// resume-median-ms is the part of the failover until the new leader's
// driver logs "resuming" (Raft's election and the driver's start); the
// figure also reports the rounds that failed (failed-rounds), whose
// progress lines would not be a resumed round's.
//
//	go test ./e2e/ -run XXX -bench FailoverProcesses -benchtime=20x -count=1
func BenchmarkFailoverProcesses(b *testing.B) {
	const W = 5
	c := newCluster(b, clusterOptions{coords: 3, workers: W, rounds: 100000, stage: "5s", raftDefaults: true, noDP: true})
	for i := range c.cnames {
		c.startCoordinator(i)
	}
	for i := range W {
		c.startWorker(i)
	}
	c.waitOnline(W)

	tails := make([]*logTail, len(c.coords))
	for i, p := range c.coords {
		tails[i] = &logTail{p: p}
	}
	// all holds every driver line seen, per coordinator process.
	type seen struct {
		coord int
		line  driverLine
	}
	var all []seen
	poll := func() []seen {
		var out []seen
		for i, t := range tails {
			for _, line := range t.next() {
				if d, ok := parseDriverLine(line); ok {
					out = append(out, seen{i, d})
				}
			}
		}
		all = append(all, out...)
		return out
	}
	var failovers, elections []time.Duration
	var dead []*proc // killed coordinator processes, for their logs
	resumed := map[string]int{}
	killedRounds := map[uint64]bool{}
	var last uint64 // the round of the last failover
	// notBefore drops trigger lines logged while the restarted replica
	// caught up: the leader has moved on since.
	notBefore := time.Now().Truncate(time.Millisecond)
	b.ResetTimer()
	for n := range b.N {
		trig := killTriggers[n%len(killTriggers)]
		// Wait for the trigger in a round after the last failover's.
		leader := -1
		var round uint64
		deadline := time.Now().Add(2 * time.Minute)
		for leader < 0 {
			if time.Now().After(deadline) {
				b.Fatalf("kill %d: no %q %s line after round %d", n, trig.msg, trig.stage, last)
			}
			for _, s := range poll() {
				if s.line.msg == trig.msg && s.line.round > last && (trig.stage == "" || s.line.stage == trig.stage) &&
					!s.line.at.Before(notBefore) {
					leader, round = s.coord, s.line.round
					break
				}
			}
			if leader < 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		killAt := time.Now()
		c.coords[leader].kill()
		dead = append(dead, c.coords[leader])
		killedRounds[round] = true
		// The next progress line of another coordinator, logged after the
		// kill, is the new leader's.
		var got *seen
		stage := "none (round over)"
		var resumeAt time.Time
		deadline = time.Now().Add(2 * time.Minute)
		for got == nil {
			if time.Now().After(deadline) {
				b.Fatalf("kill %d (leader %s, round %d): no progress on another coordinator", n, c.cnames[leader], round)
			}
			for _, s := range poll() {
				if s.coord == leader || s.line.at.Before(killAt.Truncate(time.Millisecond)) {
					continue
				}
				if s.line.msg == "resuming" && s.line.round > last {
					stage, resumeAt = s.line.stage, s.line.at
				}
				if s.line.progress() {
					got = &s
					break
				}
			}
			if got == nil {
				time.Sleep(2 * time.Millisecond)
			}
		}
		d := got.line.at.Sub(killAt)
		failovers = append(failovers, d)
		if !resumeAt.IsZero() {
			elections = append(elections, resumeAt.Sub(killAt))
		}
		resumed[stage]++
		last = got.line.round
		killedRounds[last] = true
		b.Logf("kill %d: %s killed after %q %s of round %d; %s resumed at %s, %q %s of round %d after %v",
			n, c.cnames[leader], trig.msg, trig.stage, round, c.cnames[got.coord], stage, got.line.msg, got.line.stage, got.line.round, d)

		// Restart the killed replica on its data folder and let it catch
		// up with the new leader and be redialled by every worker (not
		// timed).
		b.StopTimer()
		c.startCoordinator(leader)
		tails[leader] = &logTail{p: c.coords[leader]}
		c.waitStatus("the restarted replica to catch up", 2*time.Minute, func(rs []haStatus) bool {
			var l string
			for _, r := range rs {
				// Every worker has redialled the restarted replica: a
				// replica that leads next can reach them all.
				if !r.Reachable || r.Leader == "" || (l != "" && r.Leader != l) || len(r.Online) != W {
					return false
				}
				l = r.Leader
			}
			for _, r := range rs {
				if r.Coordinator == l {
					return rs[leader].raftState() == "Follower" && rs[leader].CommittedRounds == r.CommittedRounds
				}
			}
			return false
		})
		poll()
		notBefore = time.Now().Truncate(time.Millisecond)
		b.StartTimer()
	}
	b.StopTimer()
	poll()

	// Baseline: gaps between consecutive progress lines of one round on a
	// coordinator, in rounds without a kill.
	var steady []time.Duration
	prev := map[int]driverLine{}
	for _, s := range all {
		if !s.line.progress() {
			continue
		}
		p, ok := prev[s.coord]
		if ok && p.round == s.line.round && !killedRounds[s.line.round] {
			steady = append(steady, s.line.at.Sub(p.at))
		}
		prev[s.coord] = s.line
	}
	failed := 0
	for _, s := range all {
		if s.line.msg == "round failed" {
			b.Logf("%s: %s", c.cnames[s.coord], s.line.raw)
			failed++
		}
	}
	for w, p := range c.workers {
		if strings.Contains(p.logText(), "already answered survivor set") {
			b.Errorf("%s was asked to unmask a second survivor set", c.wnames[w])
		}
	}
	if d := os.Getenv("SOVEREIGN_E2E_KEEP_LOGS"); d != "" {
		for _, p := range append(append(dead, c.coords...), c.workers...) {
			_ = os.WriteFile(filepath.Join(d, fmt.Sprintf("N%d-%s", b.N, filepath.Base(p.log))), []byte(p.logText()), 0o600)
		}
	}
	b.ReportMetric(percentileMS(failovers, 0.5), "failover-median-ms")
	b.ReportMetric(percentileMS(failovers, 0.95), "failover-p95-ms")
	b.ReportMetric(slices.Max(failovers).Seconds()*1000, "failover-max-ms")
	if len(elections) > 0 {
		b.ReportMetric(percentileMS(elections, 0.5), "resume-median-ms")
	}
	if len(steady) > 0 {
		b.ReportMetric(percentileMS(steady, 0.5), "steady-stage-ms")
	}
	b.ReportMetric(float64(failed), "failed-rounds")
	var rs []string
	for k, v := range resumed {
		rs = append(rs, fmt.Sprintf("%s×%d", k, v))
	}
	slices.Sort(rs)
	b.Logf("%d kills; resumed at: %s; %d steady gaps; %d rounds failed", len(failovers), strings.Join(rs, ", "), len(steady), failed)
}
