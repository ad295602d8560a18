package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInterruptedRunSaysSo: a run whose context ends after round 2 returns
// the two rounds, Summary.Interrupted and the wall time it ran, and
// summary.json records both.
func TestInterruptedRunSaysSo(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.Rounds = 50
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := RunOn(ctx, cfg, train, test, func(m RoundMetrics, _, _ time.Duration) {
		if m.Round == 2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if res == nil || !res.Summary.Interrupted || res.Summary.RoundsRun != 2 || len(res.Rounds) != 2 {
		t.Fatalf("summary %+v, want interrupted after 2 rounds", res.Summary)
	}
	if !(res.Summary.WallSeconds > 0) {
		t.Fatalf("wall_seconds %v, want the time run", res.Summary.WallSeconds)
	}
	dir := t.TempDir()
	if err := WriteOutputs(dir, res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s["interrupted"] != true || !(s["wall_seconds"].(float64) > 0) {
		t.Fatalf("summary.json %s", b)
	}
	// A run that completes says interrupted: false.
	cfg.Rounds = 1
	full, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil || full.Summary.Interrupted {
		t.Fatalf("complete run: err %v, interrupted %v", err, full.Summary.Interrupted)
	}
}

// TestPrepareChecksInputs: a missing data set or initial model file is an
// error of Prepare, before any round.
func TestPrepareChecksInputs(t *testing.T) {
	cfg := small()
	cfg.Dataset = "csv:" + filepath.Join(t.TempDir(), "absent.csv")
	if _, err := Prepare(cfg); err == nil {
		t.Fatal("Prepare accepted a missing data set")
	}
	cfg = small()
	cfg.Init = filepath.Join(t.TempDir(), "absent.safetensors")
	if _, err := Prepare(cfg); err == nil {
		t.Fatal("Prepare accepted a missing --init file")
	}
}

// TestPrepareRefusesNoHeldOutSplit: a csv with test=0 has nothing to
// evaluate the global model on; Prepare says so (it used to fail in round
// 1 with "batch=0").
func TestPrepareRefusesNoHeldOutSplit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.csv")
	var b strings.Builder
	b.WriteString("a,b,label\n")
	for i := range 40 {
		fmt.Fprintf(&b, "%d,%d,%d\n", i, 40-i, i%2)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := small()
	cfg.Model = "logreg"
	cfg.Dataset = "csv:" + p + "?label=label&test=0"
	_, err := Prepare(cfg)
	if err == nil || !strings.Contains(err.Error(), "no held-out test examples") || !strings.Contains(err.Error(), "test=0") {
		t.Fatalf("Prepare with test=0: %v", err)
	}
	cfg.Dataset = "csv:" + p + "?label=label&test=0.25"
	if _, err := Prepare(cfg); err != nil {
		t.Fatalf("Prepare with test=0.25: %v", err)
	}
}
