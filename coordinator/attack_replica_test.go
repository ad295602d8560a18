package coordinator_test

// Security review L4: one rogue coordinator replica is not a malicious
// server. It drives a round of its own (its own log, not the Raft one),
// or asks for a survivor set the others did not commit; every worker asks
// each replica what its replicated state holds, and trains and sends its
// masked input only for an announcement a majority committed, and signs or
// unmasks only a survivor set a majority confirms. Real libp2p hosts (three
// coordinator replicas, four workers with identities), real stores.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/p2p"
)

// refusalLog records the refusals the driver's stage calls got.
type refusalLog struct {
	coordinator.Cohort
	mu  sync.Mutex
	got []string
}

func (r *refusalLog) note(err error) {
	var rf *coordinator.RefusalError
	if errors.As(err, &rf) {
		r.mu.Lock()
		r.got = append(r.got, rf.Reason)
		r.mu.Unlock()
	}
}

func (r *refusalLog) MaskedInput(ctx context.Context, w coordinator.WorkerID, sb secagg.ShareBundle, dim int) (secagg.MaskedInput, error) {
	v, err := r.Cohort.MaskedInput(ctx, w, sb, dim)
	r.note(err)
	return v, err
}

func (r *refusalLog) ConsistencyCheck(ctx context.Context, w coordinator.WorkerID, req secagg.ConsistencyRequest) (secagg.ConsistencyResponse, error) {
	v, err := r.Cohort.ConsistencyCheck(ctx, w, req)
	r.note(err)
	return v, err
}

func (r *refusalLog) Unmask(ctx context.Context, w coordinator.WorkerID, req secagg.UnmaskRequest) (secagg.UnmaskResponse, error) {
	v, err := r.Cohort.Unmask(ctx, w, req)
	r.note(err)
	return v, err
}

func TestAttackRogueReplicaSurvivorSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		// others is what replicas 1 and 2 hold, given the rogue's state.
		others func(rogue coordinator.State) coordinator.State
		commit bool
		// refused is what the workers refuse when the round must not
		// commit: the announcement (before they train and spend budget)
		// or the survivor set.
		refused string
	}{
		{"replicas agree", func(s coordinator.State) coordinator.State { return s }, true, ""},
		{"rogue's own round", func(coordinator.State) coordinator.State { return coordinator.NewFSM().State() }, false, "announcement"},
		{"others committed another set", func(s coordinator.State) coordinator.State {
			if c := s.Current; c != nil && len(c.Survivors) > 2 {
				c.Survivors = c.Survivors[:len(c.Survivors)-1]
			}
			return s
		}, false, "survivor set"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			f := newNetFedOpts(t, 4, 6, netFedOptions{auth: true, coords: 3})
			fsm := coordinator.NewFSM()
			reg := coordinator.NewMemRegistry()
			if err := f.coordHost.ServeBlobs(reg, p2p.RoleWorker); err != nil {
				t.Fatal(err)
			}
			if err := coordinator.ServeSurvivors(f.coordHosts[0], fsm.StateOfRound); err != nil {
				t.Fatal(err)
			}
			for _, h := range f.coordHosts[1:] {
				if err := coordinator.ServeSurvivors(h, func(r uint64) coordinator.State { return tc.others(fsm.StateOfRound(r)) }); err != nil {
					t.Fatal(err)
				}
			}
			cfg := netConfig()
			cfg.Rounds, cfg.RetryLimit = 1, 0
			cfg.Federation = "test"
			cfg.StageTimeout = 20 * time.Second
			rl := &refusalLog{Cohort: f.cohort}
			d, err := coordinator.NewDriver(cfg, fsm, coordinator.NewLocal(fsm), reg, rl, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			runErr := d.Run(ctx)
			st := fsm.State()
			if tc.commit {
				if runErr != nil || st.CommittedRounds() != 1 || len(rl.got) != 0 {
					t.Fatalf("replicas that agree: %v, %d rounds committed, refusals %q", runErr, st.CommittedRounds(), rl.got)
				}
				return
			}
			if st.CommittedRounds() != 0 {
				t.Fatalf("a survivor set only the rogue replica holds was unmasked: %d rounds committed", st.CommittedRounds())
			}
			if len(rl.got) != 4 {
				t.Fatalf("%d refusals %q, want one per worker", len(rl.got), rl.got)
			}
			// The worker stops asking once a majority is out of reach, so
			// it may not have heard the rogue's own confirmation.
			for _, r := range rl.got {
				if !strings.Contains(r, tc.refused+" asked by coord is confirmed by") ||
					!strings.Contains(r, "confirmed by 1 of 3 coordinator replicas, need 2") && !strings.Contains(r, "confirmed by 0 of 3 coordinator replicas, need 2") {
					t.Fatalf("refusal %q does not say the %s lacks a replica majority", r, tc.refused)
				}
			}
			if tc.refused == "announcement" {
				// Refused before training: no privacy spent on the rogue's round.
				for i, n := range f.nodes {
					if e, err := n.OwnEpsilon(); err != nil || e != 0 {
						t.Fatalf("worker %d spent ε %v (%v) on a round only the rogue replica holds", i, e, err)
					}
				}
			}
			t.Logf("run: %v; refusal: %s", runErr, rl.got[0])
		})
	}
}
