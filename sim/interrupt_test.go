package sim

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
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
