package coordinator_test

// Security review H3 and M3, ported: one enrolled worker lies in its
// SecAgg+ shares. The hardened protocol finds the bad shares against the
// owners' commitments, names the culprit, and the federation goes on; no
// committed model is ever anything but the honest participants' mean.

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	. "github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
)

// liar wraps the in-memory cohort; the worker with SecAgg+ index idx (in
// every round) alters its revealed self-mask shares.
type liar struct {
	*coordtest.Cohort
	mode string
	idx  uint32
	mu   sync.Mutex
	hits int
}

func (e *liar) Unmask(ctx context.Context, w WorkerID, req secagg.UnmaskRequest) (secagg.UnmaskResponse, error) {
	resp, err := e.Cohort.Unmask(ctx, w, req)
	if err != nil || req.To != e.idx {
		return resp, err
	}
	out := resp
	out.SelfMaskShares = nil
	for _, s := range resp.SelfMaskShares {
		v := slices.Clone(s.Value)
		if s.Owner != req.To {
			if e.mode == "junk" {
				for l := 0; l < len(v); l += 8 {
					v[l] = 0x0f
					v[l+3] ^= 0x5a
				}
			} else {
				v[7] ^= 0x01 // the review's crafted share: passes the limb check
			}
		}
		out.SelfMaskShares = append(out.SelfMaskShares, secagg.Share{Owner: s.Owner, Value: v})
	}
	e.mu.Lock()
	e.hits++
	e.mu.Unlock()
	return out, nil
}

// TestAttackBadUnmaskShare: the review's junk share (which stalled the
// federation) and crafted share (which silently corrupted the committed
// model). Now every round commits, and each committed model is the plain
// mean of the honest updates.
func TestAttackBadUnmaskShare(t *testing.T) {
	for _, mode := range []string{"junk", "crafted"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig()
			c := coordtest.NewCohort(8, 1)
			e := &liar{Cohort: c, mode: mode, idx: 1}
			f := NewFSM()
			rec := &recorder{fsm: f}
			reg := NewMemRegistry()
			d := newTestDriver(t, cfg, f, rec, reg, e)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := d.Run(ctx); err != nil {
				t.Fatalf("Run: %v", err)
			}
			st := f.State()
			if st.CommittedRounds() != cfg.Rounds || e.hits == 0 {
				t.Fatalf("committed %d rounds (want %d), lying answers %d", st.CommittedRounds(), cfg.Rounds, e.hits)
			}
			for _, le := range st.Ledger {
				if le.Round == 0 {
					continue
				}
				checkPlainMean(t, f, reg, c, announceOf(t, rec, le.Round), le.Round)
			}
		})
	}
}

type garbler struct {
	*coordtest.Cohort
	evil WorkerID
}

func (e *garbler) ShareKeys(ctx context.Context, w WorkerID, kb secagg.KeyBroadcast) ([]secagg.EncryptedShare, error) {
	out, err := e.Cohort.ShareKeys(ctx, w, kb)
	if err == nil && w == e.evil {
		bad := make([]secagg.EncryptedShare, len(out))
		for i, s := range out {
			ct := slices.Clone(s.Ciphertext)
			ct[0] ^= 1 // right size, does not authenticate
			bad[i] = secagg.EncryptedShare{Round: s.Round, From: s.From, To: s.To, Ciphertext: ct}
		}
		out = bad
	}
	return out, err
}

// TestAttackGarbageShares: the review's undecryptable shares (which got
// every honest neighbour blamed and stopped the federation). Now the
// honest neighbours complain, the failed round names only the culprit, the
// culprit is excluded from the next rounds, and the federation commits.
func TestAttackGarbageShares(t *testing.T) {
	cfg := testConfig()
	cfg.WorkersPerRound = 7
	cfg.RetryLimit = 2
	c := coordtest.NewCohort(8, 1)
	e := &garbler{Cohort: c, evil: "w03"}
	f := NewFSM()
	rec := &recorder{fsm: f}
	reg := NewMemRegistry()
	d := newTestDriver(t, cfg, f, rec, reg, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	named := false
	var excludedFrom uint64
	for _, b := range rec.cmds {
		cmd, _ := DecodeCommand(b)
		if rf := cmd.RoundFailed; rf != nil {
			t.Logf("round %d failed: %q culprits %v missing %v", rf.Round, rf.Reason, rf.Culprits, rf.Missing)
			if !slices.Equal(rf.Culprits, []WorkerID{"w03"}) || len(rf.Missing) != 0 {
				t.Fatalf("round %d names culprits %v and missing %v, want only w03", rf.Round, rf.Culprits, rf.Missing)
			}
			named, excludedFrom = true, rf.Round
		}
		if rs := cmd.RoundStarted; rs != nil && named && rs.Round > excludedFrom && slices.Contains(rs.Announce.Sampled, "w03") {
			t.Fatalf("round %d samples the excluded culprit w03", rs.Round)
		}
	}
	if !named {
		t.Fatal("no round named the culprit w03")
	}
	st := f.State()
	if st.CommittedRounds() != cfg.Rounds {
		t.Fatalf("committed %d rounds, want %d", st.CommittedRounds(), cfg.Rounds)
	}
	if st.Excluded["w03"] <= excludedFrom {
		t.Fatalf("w03 excluded until %d", st.Excluded["w03"])
	}
	for _, le := range st.Ledger {
		if le.Round > 0 {
			checkPlainMean(t, f, reg, c, announceOf(t, rec, le.Round), le.Round)
		}
	}
}

// weightLiar adds 2^31 to the weight word of one worker's masked vector.
type weightLiar struct {
	*coordtest.Cohort
	idx uint32
}

func (e *weightLiar) MaskedInput(ctx context.Context, w WorkerID, sb secagg.ShareBundle, dim int) (secagg.MaskedInput, error) {
	mi, err := e.Cohort.MaskedInput(ctx, w, sb, dim)
	if err == nil && sb.To == e.idx {
		v := slices.Clone(mi.Vector)
		v[len(v)-1] += 1 << 31
		mi.Vector = v
	}
	return mi, err
}

// TestAttackNegativeWeightAccounted: the review's weight-word attack made
// every round fail after its noised sum was unmasked, with no privacy
// entry. Now each such round is charged, and the failure says why.
func TestAttackNegativeWeightAccounted(t *testing.T) {
	cfg := testConfig()
	cfg.WorkersPerRound = 8
	cfg.DP = DPParams{Clip: 1, Noise: 1}
	cfg.Delta = 1e-5
	cfg.RetryLimit = 3
	e := &weightLiar{Cohort: coordtest.NewCohort(8, 1), idx: 1}
	f := NewFSM()
	rec := &recorder{fsm: f}
	d := newTestDriver(t, cfg, f, rec, NewMemRegistry(), e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.Run(ctx)
	released := 0
	for _, b := range rec.cmds {
		c, _ := DecodeCommand(b)
		if rf := c.RoundFailed; rf != nil {
			if rf.DP == nil {
				t.Fatalf("round %d failed (%q) without a privacy entry", rf.Round, rf.Reason)
			}
			released++
		}
	}
	steps := 0
	for _, p := range f.State().Privacy {
		steps += p.Steps
	}
	t.Logf("Run: %v; released-then-failed rounds %d; accountant steps %d", err, released, steps)
	if released == 0 || steps != released {
		t.Fatalf("released %d rounds, accountant charged %d steps", released, steps)
	}
}
