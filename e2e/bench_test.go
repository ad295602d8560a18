package e2e

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchRounds is the number of rounds each side of the comparison runs.
const benchRounds = 5

// logTime returns the time= of the first log line containing all of subs.
func logTime(b testing.TB, p *proc, subs ...string) time.Time {
	b.Helper()
	line := waitLog(b, p, 5*time.Minute, 50*time.Millisecond, subs...)
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

// BenchmarkRound compares the time per round of the 2NN (McMahan et al.
// 2017) on the digits set with ten workers and SecAgg+ in both cases:
// "network" runs a coordinator and ten worker processes over libp2p on
// loopback (from "round started" of round 1 to "metrics recorded" of the
// last round, in the coordinator's log); "sim" runs `sovereign sim
// --secure` with the same model, clients, epochs, batch and learning rate
// (the mean of metrics.csv's per-round seconds). Both report s/round.
// Benchmarks run only with -bench, e.g.
//
//	go test ./e2e -run '^$' -bench BenchmarkRound -benchtime 1x
func BenchmarkRound(b *testing.B) {
	b.Run("network", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			f := newFed(b, fedOptions{workers: 10, rounds: benchRounds, model: "2nn", epochs: 1, lr: 0.05, noBudget: true, stage: "60s"})
			f.startCoordinator()
			for i := range f.wnames {
				f.startWorker(i)
			}
			start := logTime(b, f.coord, "round started", "round=1 ")
			end := logTime(b, f.coord, "metrics recorded", fmt.Sprintf("round=%d ", benchRounds))
			total += end.Sub(start)
			f.stopAll()
		}
		b.ReportMetric(total.Seconds()/float64(b.N*benchRounds), "s/round")
	})
	b.Run("sim", func(b *testing.B) {
		var total float64
		for range b.N {
			out := b.TempDir()
			if _, err := run(b, "sim", "--secure", "--model", "2nn", "--dataset", "digits", "--clients", "10", "--fraction", "1",
				"--rounds", strconv.Itoa(benchRounds), "--epochs", "1", "--batch", "16", "--lr", "0.05", "--out", out); err != nil {
				b.Fatal(err)
			}
			fh, err := os.Open(filepath.Join(out, "metrics.csv"))
			if err != nil {
				b.Fatal(err)
			}
			recs, err := csv.NewReader(fh).ReadAll()
			fh.Close()
			if err != nil || len(recs) != benchRounds+1 {
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
			for _, r := range recs[1:] {
				s, err := strconv.ParseFloat(r[col], 64)
				if err != nil {
					b.Fatal(err)
				}
				total += s
			}
		}
		b.ReportMetric(total/float64(b.N*benchRounds), "s/round")
	})
}
