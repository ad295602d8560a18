package secagg

import (
	"slices"
	"sync"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/internal/vsum"
)

// The server sums masked inputs maskedBatch at a time (vsum.AddU32Many).
// With 21 clients (two full batches and a remainder of five, three
// vanishing before their masked input) and Dim+1 = 301 words (two 128-word
// steps and a tail), the unmasked sum must be exactly the sum of the
// survivors' quantized vectors, on the AVX-512 path and on the forced Go
// path, and both must give the same bits.
func TestBatchedMaskedSumExact(t *testing.T) {
	cfg := testConfig(21, 300)
	drop := dropSet([]uint32{cfg.Clients[2], cfg.Clients[9], cfg.Clients[17]}, StageMaskedInput)
	run := func(forceGo bool) *Outcome {
		if forceGo {
			defer vsum.ForceGo()()
		}
		q := captureQuantized(t)
		up, w := testInputs(cfg, 11)
		out, err := Simulate(cfg, up, w, drop, seeded(12), t0)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Survivors) != 18 {
			t.Fatalf("%d survivors, want 18", len(out.Survivors))
		}
		checkExact(t, cfg, out, q, up, w)
		return out
	}
	fast, slow := run(false), run(true)
	if !slices.Equal(fast.Sum, slow.Sum) || fast.TotalWeight != slow.TotalWeight {
		t.Fatal("AVX-512 and forced Go paths give different sums")
	}
}

// flushMasked folds the pending inputs exactly like one AddU32 per input.
func TestFlushMaskedEqualsOneAtATime(t *testing.T) {
	r := seeded(5)
	const dim = 1000
	s := &Server{sum: make([]uint32, dim)}
	want := make([]uint32, dim)
	for i := range 3*maskedBatch + 3 {
		v := make([]uint32, dim)
		for j := range v {
			v[j] = uint32(r.Uint64())
		}
		vsum.AddU32(want, v)
		s.pending = append(s.pending, v)
		if len(s.pending) == maskedBatch || i%5 == 4 {
			s.flushMasked()
		}
	}
	s.flushMasked()
	if len(s.pending) != 0 || !slices.Equal(s.sum, want) {
		t.Fatal("batched sum differs from the one-at-a-time sum")
	}
}

// A client refusing its update in SimulateInputs is a dropout at stage 2:
// the same outcome, bit for bit, as Simulate with it vanishing there.
func TestSimulateInputsRefusalIsStage2Dropout(t *testing.T) {
	cfg := testConfig(12, 50)
	up, w := testInputs(cfg, 3)
	refuser := cfg.Clients[4]
	want, err := Simulate(cfg, up, w, map[uint32]Stage{refuser: StageMaskedInput}, seeded(4), t0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	asked := map[uint32]int{}
	released := map[*float32]int{}
	got, err := SimulateInputs(cfg, func(id uint32) ([]float32, float64, error) {
		mu.Lock()
		asked[id]++
		mu.Unlock()
		if id == refuser {
			return nil, 0, nil
		}
		return up[id], w[id], nil
	}, func(u []float32) {
		mu.Lock()
		released[&u[0]]++
		mu.Unlock()
	}, nil, seeded(4), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Sum, want.Sum) || got.TotalWeight != want.TotalWeight || !slices.Equal(got.Survivors, want.Survivors) {
		t.Fatal("refusal in SimulateInputs differs from a stage-2 dropout in Simulate")
	}
	for _, id := range cfg.Clients {
		if asked[id] != 1 {
			t.Fatalf("input asked %d times for client %d, want once", asked[id], id)
		}
		if n := released[&up[id][0]]; id != refuser && n != 1 {
			t.Fatalf("client %d's update released %d times, want once after its masked input", id, n)
		}
	}
	if len(released) != len(cfg.Clients)-1 {
		t.Fatalf("%d updates released, want the %d given", len(released), len(cfg.Clients)-1)
	}
}

// An observer may keep the masked inputs it sees: with more clients than
// one summing batch, each kept vector must still be what its client sent
// (vectors are recycled only without an observer).
func TestSimulateObservedKeepsVectors(t *testing.T) {
	cfg := testConfig(20, 40)
	up, w := testInputs(cfg, 8)
	var kept []MaskedInput
	var copies [][]uint32
	_, err := SimulateObserved(cfg, up, w, nil, seeded(9), t0, func(m any) {
		if mi, ok := m.(MaskedInput); ok {
			kept = append(kept, mi)
			copies = append(copies, slices.Clone(mi.Vector))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 20 {
		t.Fatalf("observed %d masked inputs, want 20", len(kept))
	}
	for i, mi := range kept {
		if !slices.Equal(mi.Vector, copies[i]) {
			t.Fatalf("masked input of client %d changed after the observer saw it", mi.From)
		}
	}
}
