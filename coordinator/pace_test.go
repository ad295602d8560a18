package coordinator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	. "github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
)

// TestPaceHoldsRoundInFlight: with Pace the round is committed as started
// and stays in flight with no stage asked of any worker; a new leader
// resuming that round does not wait the pace again and commits it.
func TestPaceHoldsRoundInFlight(t *testing.T) {
	cfg := testConfig()
	cfg.Rounds = 1
	cfg.Pace = time.Hour // never elapses in this test
	f := NewFSM()
	c := coordtest.NewCohort(6, 9)
	reg := NewMemRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- newTestDriver(t, cfg, f, NewLocal(f), reg, c).Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for f.State().Current == nil {
		if time.Now().After(deadline) {
			t.Fatal("no round started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := c.Calls(secagg.StageAdvertise); n != 0 {
		t.Fatalf("%d advertise requests during the pace", n)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("driver stopped with %v, want context.Canceled", err)
	}
	if f.State().Current == nil {
		t.Fatal("the round is no longer in flight after the leader stopped")
	}
	// The next leader resumes the round at once (an hour's pace would time
	// this out) and commits it.
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	if err := newTestDriver(t, cfg, f, NewLocal(f), reg, c).Run(rctx); err != nil {
		t.Fatalf("resuming leader: %v", err)
	}
	if n := len(f.Ledger()); n != 2 {
		t.Fatalf("ledger has %d entries after the resumed round, want 2", n)
	}
}
