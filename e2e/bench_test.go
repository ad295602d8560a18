package e2e

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/data"
)

// benchRounds is the number of rounds each side of the comparison runs.
const benchRounds = 5

// logTime returns the time= of the first log line containing all of subs.
func logTime(b testing.TB, p *proc, subs ...string) time.Time {
	b.Helper()
	line := waitLog(b, p, 10*time.Minute, 20*time.Millisecond, subs...)
	for _, field := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(field, "time="); ok {
			ts, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				b.Fatal(err)
			}
			return ts
		}
	}
	b.Fatalf("no time in %q", line)
	return time.Time{}
}

// roundBench is one configuration of BenchmarkRound: both sides train the
// same model on the same number of clients and examples per client with
// the same E, B and learning rate, every client sampled every round.
type roundBench struct {
	name   string
	model  string
	epochs int
	batch  int
	lr     float64
	// mnistPerWorker, when set, gives each of the ten workers that many
	// MNIST training rows (plus a quarter as many test rows) instead of a
	// shard of the digits set.
	mnistPerWorker int
}

var roundBenches = []roundBench{
	// The configuration: the 2NN (784-200-200-10, 199,210
	// parameters) of McMahan et al. 2017 on MNIST, ten clients of 600
	// examples (the paper's 100-client IID split has 600 per client), E=1,
	// B=10.
	{name: "mnist-2nn", model: "2nn", epochs: 1, batch: 10, lr: 0.05, mnistPerWorker: 600},
	// Small rounds where fixed costs dominate: the 2NN on the 8x8 digits
	// (55,210 parameters), about 180 examples per worker, B=16.
	{name: "digits-2nn", model: "2nn", epochs: 1, batch: 16, lr: 0.05},
}

// BenchmarkRound compares the time per round of a federation of ten
// workers with SecAgg+ (Bell et al. 2020) in both cases, differential
// privacy off: "network" runs a coordinator and ten worker processes over
// libp2p on loopback (from "round started" of round 1 to "metrics recorded"
// of the last round, in the coordinator's log, so evaluation, model fetch
// and every durable write are inside); "sim" runs `sovereign sim --secure`
// on the union of the workers' partitions with the same model, clients,
// examples per client, epochs, batch and learning rate (the mean of
// metrics.csv's per-round seconds). Both report s/round. Benchmarks run
// only with -bench, e.g.
//
//	go test ./e2e -run '^$' -bench BenchmarkRound -benchtime 1x
func BenchmarkRound(b *testing.B) {
	for _, rb := range roundBenches {
		b.Run(rb.name+"/network", func(b *testing.B) {
			var total time.Duration
			var cpu float64
			for range b.N {
				f := newFed(b, fedOptions{workers: 10, rounds: benchRounds, model: rb.model, epochs: rb.epochs, lr: rb.lr, noBudget: true, stage: "120s"})
				rb.prepare(b, f)
				f.startCoordinator()
				for i := range f.wnames {
					f.startWorker(i)
				}
				start := logTime(b, f.coord, "round started", "round=1 ")
				cpu0 := f.cpuSeconds(b)
				end := logTime(b, f.coord, "metrics recorded", fmt.Sprintf("round=%d ", benchRounds))
				cpu += f.cpuSeconds(b) - cpu0
				total += end.Sub(start)
				f.stopAll()
			}
			b.ReportMetric(total.Seconds()/float64(b.N*benchRounds), "s/round")
			// CPU time of the eleven processes over the same span (read
			// from /proc when the log lines are seen, so approximate to a
			// poll interval): compared with s/round × cores it tells
			// whether the round is CPU-bound or waiting.
			b.ReportMetric(cpu/float64(b.N*benchRounds), "cpu-s/round")
		})
		b.Run(rb.name+"/sim", func(b *testing.B) {
			var total, cpu float64
			for range b.N {
				// CPU per round: a run of benchRounds rounds less a run
				// of one round, so that loading the data is not counted.
				c0 := childCPU(b)
				total += rb.sim(b, benchRounds)
				c1 := childCPU(b)
				rb.sim(b, 1)
				cpu += (c1 - c0) - (childCPU(b) - c1)
			}
			b.ReportMetric(total/float64(b.N*benchRounds), "s/round")
			b.ReportMetric(cpu/float64(b.N*(benchRounds-1)), "cpu-s/round")
		})
	}
}

// clockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux platform Go supports).
const clockTicks = 100

// cpuSeconds returns the user plus system CPU time consumed so far by the
// federation's running processes, from /proc/PID/stat.
func (f *fed) cpuSeconds(b testing.TB) float64 {
	b.Helper()
	var ticks uint64
	for _, p := range append([]*proc{f.coord}, f.workers...) {
		if p == nil || p.exited() {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			b.Fatalf("cpu time of %s: %v", p.name, err)
		}
		// Fields after the parenthesised command name: state is field 3,
		// utime and stime are fields 14 and 15.
		_, rest, ok := strings.Cut(string(raw), ") ")
		fields := strings.Fields(rest)
		if !ok || len(fields) < 13 {
			b.Fatalf("cpu time of %s: unparsable /proc stat %q", p.name, raw)
		}
		for _, fld := range fields[11:13] {
			v, err := strconv.ParseUint(fld, 10, 64)
			if err != nil {
				b.Fatalf("cpu time of %s: %v", p.name, err)
			}
			ticks += v
		}
	}
	return float64(ticks) / clockTicks
}

// patch replaces old by new in the file at path, failing if old is absent
// (the harness's config layout changed).
func patch(b testing.TB, path, old, new string) {
	b.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	if !strings.Contains(string(raw), old) {
		b.Fatalf("%s holds no %q to replace", path, old)
	}
	write(b, path, strings.Replace(string(raw), old, new, 1))
}

// prepare adapts the harness's federation to rb: the batch size and, for
// MNIST, the input shape and the workers' partitions.
func (rb roundBench) prepare(b testing.TB, f *fed) {
	b.Helper()
	patch(b, f.coordCfg, "batch = 16\n", fmt.Sprintf("batch = %d\n", rb.batch))
	if rb.mnistPerWorker == 0 {
		return
	}
	patch(b, f.coordCfg, "input = [1, 1, 64]\n", "input = [1, 28, 28]\n")
	for w, name := range f.wnames {
		write(b, filepath.Join(f.dir, name+".csv"), mnistCSV(b, w*rb.rows(), (w+1)*rb.rows()))
	}
}

// rows is the number of rows of one worker's MNIST partition: a worker's
// CSV is split 80/20 into train and test (data.Load), so 600 training
// examples take 750 rows.
func (rb roundBench) rows() int { return rb.mnistPerWorker * 5 / 4 }

// childCPU returns the user plus system CPU time of this process's
// children that have been waited for.
func childCPU(b testing.TB) float64 {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// sim runs `sovereign sim --secure` for rounds rounds with rb's settings
// and returns the sum of its rounds' seconds.
func (rb roundBench) sim(b testing.TB, rounds int) float64 {
	b.Helper()
	out := b.TempDir()
	args := []string{"sim", "--secure", "--model", rb.model, "--clients", "10", "--fraction", "1",
		"--rounds", strconv.Itoa(rounds), "--epochs", strconv.Itoa(rb.epochs), "--batch", strconv.Itoa(rb.batch),
		"--lr", strconv.FormatFloat(rb.lr, 'g', -1, 64), "--out", out}
	if rb.mnistPerWorker > 0 {
		// The workers' ten partitions in one CSV: data.Load keeps 80% of
		// it (10 × mnistPerWorker rows) for training, and with no local
		// test split each client trains on mnistPerWorker examples.
		all := filepath.Join(out, "mnist.csv")
		write(b, all, mnistCSV(b, 0, 10*rb.rows()))
		args = append(args, "--dataset", "csv:"+all+"?label=label&classes=10", "--test-fraction", "0")
	} else {
		args = append(args, "--dataset", "digits")
	}
	if _, err := run(b, args...); err != nil {
		b.Fatal(err)
	}
	fh, err := os.Open(filepath.Join(out, "metrics.csv"))
	if err != nil {
		b.Fatal(err)
	}
	recs, err := csv.NewReader(fh).ReadAll()
	fh.Close()
	if err != nil || len(recs) != rounds+1 {
		b.Fatalf("metrics.csv: %d records, %v", len(recs), err)
	}
	col := -1
	for i, h := range recs[0] {
		if h == "seconds" {
			col = i
		}
	}
	if col < 0 {
		b.Fatal("metrics.csv has no seconds column")
	}
	var total float64
	for _, r := range recs[1:] {
		s, err := strconv.ParseFloat(r[col], 64)
		if err != nil {
			b.Fatal(err)
		}
		total += s
	}
	return total
}

var (
	mnistOnce  sync.Once
	mnistTrain *data.Dataset
	mnistErr   error
)

// mnistCSV returns rows [lo, hi) of the MNIST training set as CSV with a
// header and a "label" column.
func mnistCSV(b testing.TB, lo, hi int) string {
	b.Helper()
	mnistOnce.Do(func() { mnistTrain, _, mnistErr = data.MNIST() })
	if mnistErr != nil {
		b.Fatal(mnistErr)
	}
	if hi > mnistTrain.N {
		b.Fatalf("MNIST has %d training rows, %d asked for", mnistTrain.N, hi)
	}
	var sb strings.Builder
	for j := range mnistTrain.Dim {
		fmt.Fprintf(&sb, "f%d,", j)
	}
	sb.WriteString("label\n")
	for i := lo; i < hi; i++ {
		for _, v := range mnistTrain.X[i*mnistTrain.Dim : (i+1)*mnistTrain.Dim] {
			sb.WriteString(strconv.FormatFloat(float64(v), 'g', 6, 32))
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, "%d\n", mnistTrain.Y[i])
	}
	return sb.String()
}
