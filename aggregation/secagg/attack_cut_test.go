package secagg

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// M6, ported: the server withholds the masked inputs of a vertex cut of the
// SecAgg+ graph so that a t-client arc is a component of its own. The
// honest server now fails the round naming the cut-off survivors, and a
// malicious server's unmask request for that survivor set is refused by
// every survivor.
func TestAttackVertexCutRefused(t *testing.T) {
	cfg := testConfig(50, 32).WithDefaults()
	n, k, tt := len(cfg.Clients), cfg.Degree, cfg.Threshold
	perm := rand.New(rand.NewChaCha8(cfg.GraphSeed)).Perm(n)
	ring := make([]uint32, n)
	for p, ci := range perm {
		ring[p] = cfg.Clients[ci]
	}
	var cut []uint32
	cut = append(cut, ring[tt:tt+k/2]...)
	cut = append(cut, ring[n-k/2:]...)
	h := newHarness(t, cfg)
	h.toStage(t, StageMaskedInput)
	var surv []uint32
	for _, id := range cfg.Clients {
		mi, err := h.clients[id].MaskedInput(h.bundles[id].Shares, h.up[id], h.w[id])
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(cut, id) {
			continue
		}
		surv = append(surv, id)
		if err := h.srv.Receive(mi, t0); err != nil {
			t.Fatal(err)
		}
	}
	if comps := h.srv.graph.components(surv); len(comps) < 2 {
		t.Fatalf("the cut did not split the survivors: %d component", len(comps))
	}
	_, done, err := h.srv.Advance(t0.Add(time.Hour))
	var ie *InsufficientError
	if !done || !errors.As(err, &ie) {
		t.Fatalf("honest server closed the cut survivor set: done=%v err=%v", done, err)
	}
	t.Logf("server: %v", err)
	// A malicious server asks anyway.
	for _, id := range surv {
		_, err := h.clients[id].Unmask(UnmaskRequest{Round: cfg.Round, To: id, Survivors: surv, Dropped: cut})
		if !errors.Is(err, ErrDisconnected) {
			t.Fatalf("client %d: err = %v, want ErrDisconnected", id, err)
		}
	}
}
