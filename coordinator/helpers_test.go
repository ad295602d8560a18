package coordinator_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	. "github.com/sovereign-fl/sovereign/coordinator"
)

// testConfig is a small logreg federation: 10 parameters.
func testConfig() Config {
	c := DefaultConfig()
	c.Model, c.InC, c.InH, c.InW, c.Classes = "logreg", 1, 1, 4, 2
	c.Rounds = 2
	c.WorkersPerRound = 5
	c.MinWorkers = 3
	c.MaxWeight = 100
	c.Seed = 7
	return c
}

// recorder is a Replicator that applies to an FSM, keeps every committed
// command, and "crashes" (returns errCrash after applying) when crashAfter
// says so.
type recorder struct {
	fsm        *FSM
	mu         sync.Mutex
	cmds       [][]byte
	crashAfter func(Command) bool
}

var errCrash = errors.New("leader crashed")

func (r *recorder) Apply(ctx context.Context, b []byte) error {
	if err := r.fsm.Apply(b); err != nil {
		return err
	}
	r.mu.Lock()
	r.cmds = append(r.cmds, slices.Clone(b))
	r.mu.Unlock()
	c, _ := DecodeCommand(b)
	if r.crashAfter != nil && r.crashAfter(c) {
		r.crashAfter = nil
		return errCrash
	}
	return nil
}

func (r *recorder) IsLeader() bool { return true }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestDriver(t *testing.T, cfg Config, fsm *FSM, repl Replicator, reg ModelStore, c Cohort) *Driver {
	t.Helper()
	d, err := NewDriver(cfg, fsm, repl, reg, c, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
