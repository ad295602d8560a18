package coordinator_test

// Security review H2 over the network: a coordinator that tells different
// survivors different survivor sets (equivocation), then tries to unmask
// with a set its holders did not sign, with too few signatures, or with
// forged ones. Real libp2p hosts, real worker nodes with Ed25519
// identities, real badger stores; the consistency check of Bonawitz et al.
// 2017 (round 4) must refuse every attempt, and the honest round must
// still commit.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/p2p"
)

// equivocator is the attack: it wraps the honest driver's NetCohort and
// runs its own requests over the real network before the honest ones.
type equivocator struct {
	coordinator.Cohort
	t *testing.T

	mu sync.Mutex
	// sigs[i] is worker i's signature over the reduced set.
	sigs map[uint32]secagg.ConsistencyResponse
	// refusals names each attack step and the refusal it got (nil: the
	// worker went along with it).
	refusals map[string]error
}

func (e *equivocator) record(step string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refusals[step] = err
}

// reduced is the story told to node 1: the last survivor dropped.
func reduced(s []uint32) []uint32 { return slices.Clone(s[:len(s)-1]) }

func (e *equivocator) ConsistencyCheck(ctx context.Context, w coordinator.WorkerID, req secagg.ConsistencyRequest) (secagg.ConsistencyResponse, error) {
	if req.To == 1 {
		// Node 1 is told a survivor set without the last survivor; then
		// the honest request names the real set.
		lie := req
		lie.Survivors = reduced(req.Survivors)
		sig, err := e.Cohort.ConsistencyCheck(ctx, w, lie)
		if err != nil {
			e.t.Errorf("node 1 refused to sign the first set it was told: %v", err)
		} else {
			e.mu.Lock()
			e.sigs[1] = sig
			e.mu.Unlock()
		}
		// Asked the same lie again (a failover leader): the same signature.
		if again, err := e.Cohort.ConsistencyCheck(ctx, w, lie); err != nil || !slices.Equal(again.Signature, sig.Signature) {
			e.t.Errorf("node 1 asked the same set again: %v (signature equal: %v)", err, slices.Equal(again.Signature, sig.Signature))
		}
		resp, err := e.Cohort.ConsistencyCheck(ctx, w, req)
		e.record("sign a second set", err)
		return resp, err
	}
	return e.Cohort.ConsistencyCheck(ctx, w, req)
}

func (e *equivocator) Unmask(ctx context.Context, w coordinator.WorkerID, req secagg.UnmaskRequest) (secagg.UnmaskResponse, error) {
	if req.To == 2 {
		e.mu.Lock()
		sig1 := e.sigs[1]
		e.mu.Unlock()
		// 1. Unmask the reduced set, with node 1's signature over it.
		lie := req
		lie.Survivors = reduced(req.Survivors)
		lie.Dropped = append(slices.Clone(req.Dropped), req.Survivors[len(req.Survivors)-1])
		slices.Sort(lie.Dropped)
		lie.Signatures = []secagg.ConsistencyResponse{sig1}
		_, err := e.Cohort.Unmask(ctx, w, lie)
		e.record("unmask a set this worker did not sign", err)
		// 2. The real set with too few signatures: only node 2's own.
		few := req
		few.Signatures = nil
		for _, sg := range req.Signatures {
			if sg.From == 2 {
				few.Signatures = append(few.Signatures, sg)
			}
		}
		_, err = e.Cohort.Unmask(ctx, w, few)
		e.record("unmask with fewer than t signatures", err)
		// 3. The real set with node 1's signature over the reduced set
		// passed off as one over the real set, and the others' forged.
		forged := req
		forged.Signatures = nil
		for _, sg := range req.Signatures {
			if sg.From != 2 {
				sg.Signature = slices.Clone(sg.Signature)
				if len(sg.Signature) > 0 {
					sg.Signature[0] ^= 1
				}
			}
			forged.Signatures = append(forged.Signatures, sg)
		}
		forged.Signatures = append([]secagg.ConsistencyResponse{sig1}, forged.Signatures...)
		_, err = e.Cohort.Unmask(ctx, w, forged)
		e.record("unmask with forged signatures", err)
	}
	return e.Cohort.Unmask(ctx, w, req)
}

func TestAttackEquivocatingCoordinatorOverNetwork(t *testing.T) {
	f := newNetFedOpts(t, 4, 5, netFedOptions{auth: true})
	fsm := coordinator.NewFSM()
	reg := coordinator.NewMemRegistry()
	if err := f.coordHost.ServeBlobs(reg, p2p.RoleWorker); err != nil {
		t.Fatal(err)
	}
	cfg := netConfig()
	cfg.Rounds = 1
	cfg.Federation = "test"
	ev := &equivocator{Cohort: f.cohort, t: t, sigs: map[uint32]secagg.ConsistencyResponse{}, refusals: map[string]error{}}
	d, err := coordinator.NewDriver(cfg, fsm, coordinator.NewLocal(fsm), reg, ev, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for step, want := range map[string]string{
		"sign a second set":                     "already signed survivor set",
		"unmask a set this worker did not sign": "this client signed",
		"unmask with fewer than t signatures":   "holders of client",
		"unmask with forged signatures":         "consistency signature",
	} {
		err, ok := ev.refusals[step]
		var rf *coordinator.RefusalError
		if !ok || !errors.As(err, &rf) || !strings.Contains(rf.Reason, want) {
			t.Errorf("%s: got %v, want a refusal containing %q", step, err, want)
			continue
		}
		t.Logf("%s: refused: %s", step, rf.Reason)
	}
	// The honest round still commits: node 1 signed another set, so it is
	// not asked to unmask, and the other three signatures reach t = 3.
	st := fsm.State()
	if st.CommittedRounds() != 1 || len(st.Ledger[1].Participants) != 4 {
		t.Fatalf("%d rounds committed (%+v), want 1 with 4 participants", st.CommittedRounds(), st.LastFailure)
	}
}
