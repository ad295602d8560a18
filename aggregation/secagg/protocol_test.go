package secagg

import (
	"errors"
	"slices"
	"testing"
)

func TestSimulateDropouts(t *testing.T) {
	cfg := testConfig(12, 40) // k = 8, t = 5
	ids := cfg.Clients
	cases := []struct {
		name string
		drop map[uint32]Stage
		// wantStage ≥ 0 means an *InsufficientError at that stage.
		wantStage Stage
	}{
		{"none", nil, -1},
		{"one at stage 0", map[uint32]Stage{ids[3]: StageAdvertise}, -1},
		{"two at stage 1", map[uint32]Stage{ids[0]: StageShareKeys, ids[7]: StageShareKeys}, -1},
		{"three at stage 2", map[uint32]Stage{ids[1]: StageMaskedInput, ids[5]: StageMaskedInput, ids[11]: StageMaskedInput}, -1},
		{"two at stage 3", map[uint32]Stage{ids[2]: StageUnmask, ids[9]: StageUnmask}, -1},
		{"one at every stage", map[uint32]Stage{ids[0]: StageAdvertise, ids[4]: StageShareKeys, ids[8]: StageMaskedInput, ids[10]: StageUnmask}, -1},
		{"never is -1", map[uint32]Stage{ids[0]: NeverDrop}, -1},
		{"eight at stage 0", dropSet(ids[:8], StageAdvertise), StageAdvertise},
		{"eight at stage 1", dropSet(ids[4:], StageShareKeys), StageShareKeys},
		{"eight at stage 2", dropSet(ids[2:10], StageMaskedInput), StageMaskedInput},
		{"nine at stage 3", dropSet(ids[3:], StageUnmask), StageUnmask},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := captureQuantized(t)
			up, w := testInputs(cfg, uint64(i))
			out, err := Simulate(cfg, up, w, tc.drop, seeded(uint64(100+i)), t0)
			if tc.wantStage >= 0 {
				var ie *InsufficientError
				if !errors.As(err, &ie) {
					t.Fatalf("err = %v, want *InsufficientError", err)
				}
				var missing []uint32
				for id, st := range tc.drop {
					if st >= 0 && st <= tc.wantStage {
						missing = append(missing, id)
					}
				}
				slices.Sort(missing)
				if ie.Stage != tc.wantStage || ie.Round != cfg.Round || !slices.Equal(ie.Missing, missing) {
					t.Fatalf("got %+v, want stage %v, missing %v", ie, tc.wantStage, missing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var surv []uint32
			for _, id := range ids {
				if st, ok := tc.drop[id]; !ok || st < 0 || st >= StageUnmask {
					surv = append(surv, id)
				}
			}
			if !slices.Equal(out.Survivors, surv) {
				t.Fatalf("survivors %v, want %v", out.Survivors, surv)
			}
			checkExact(t, cfg, out, q, up, w)
		})
	}
}

func dropSet(ids []uint32, st Stage) map[uint32]Stage {
	m := map[uint32]Stage{}
	for _, id := range ids {
		m[id] = st
	}
	return m
}

// TestClassicSecAgg runs k = n-1 (Bonawitz et al. 2017): every pair shares a
// mask and the threshold is a majority of all clients.
func TestClassicSecAgg(t *testing.T) {
	cfg := testConfig(7, 30)
	cfg.Degree = 6
	g, err := NewGraph(cfg.Clients, 6, cfg.GraphSeed)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range cfg.Clients {
		if len(g.Neighbours(id)) != 6 || slices.Contains(g.Neighbours(id), id) {
			t.Fatalf("client %d neighbours %v: want all 6 others", id, g.Neighbours(id))
		}
	}
	if th := cfg.WithDefaults().Threshold; th != 4 {
		t.Fatalf("default threshold %d for k=6, want 4", th)
	}
	ids := cfg.Clients
	for i, drop := range []map[uint32]Stage{
		nil,
		{ids[0]: StageMaskedInput, ids[3]: StageMaskedInput},
		{ids[1]: StageShareKeys, ids[6]: StageUnmask},
	} {
		q := captureQuantized(t)
		up, w := testInputs(cfg, uint64(10+i))
		out, err := Simulate(cfg, up, w, drop, seeded(uint64(i)), t0)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		checkExact(t, cfg, out, q, up, w)
	}
	// 4 of 7 dropping after sharing leaves 3 < t survivors.
	up, w := testInputs(cfg, 1)
	_, err = Simulate(cfg, up, w, dropSet(ids[:4], StageMaskedInput), seeded(1), t0)
	var ie *InsufficientError
	if !errors.As(err, &ie) || ie.Stage != StageMaskedInput || !slices.Equal(ie.Missing, ids[:4]) {
		t.Fatalf("err = %v, want insufficient at stage 2 missing %v", err, ids[:4])
	}
}

// TestSimulateSmallBits checks the wrap-around arithmetic in Z_(2^b), b < 32.
func TestSimulateSmallBits(t *testing.T) {
	cfg := testConfig(6, 25)
	cfg.Bits = 16
	cfg.MaxWeight = 3
	q := captureQuantized(t)
	up, w := testInputs(cfg, 3)
	out, err := Simulate(cfg, up, w, map[uint32]Stage{cfg.Clients[2]: StageMaskedInput}, seeded(3), t0)
	if err != nil {
		t.Fatal(err)
	}
	checkExact(t, cfg, out, q, up, w)
}

// TestSimulateDeterministic: the same seeds give the same outcome.
func TestSimulateDeterministic(t *testing.T) {
	cfg := testConfig(9, 20)
	up, w := testInputs(cfg, 5)
	drop := map[uint32]Stage{cfg.Clients[4]: StageMaskedInput}
	a, err := Simulate(cfg, up, w, drop, seeded(9), t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Simulate(cfg, up, w, drop, seeded(9), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Sum, b.Sum) || a.TotalWeight != b.TotalWeight || !a.End.Equal(b.End) {
		t.Fatal("same seeds gave different outcomes")
	}
	if !a.End.After(t0) {
		t.Fatal("a dropout should have made the round wait for a deadline")
	}
}

// A client whose active neighbours after stage 0 are fewer than t cannot
// share its mask key (it has only its neighbours as holders): the server
// drops it at once, and the round fails cleanly when that leaves fewer than
// t clients, instead of sending key broadcasts that clients cannot answer.
func TestAdvertiseCloseNeedsThresholdNeighbours(t *testing.T) {
	cfg := testConfig(5, 4)
	cfg.Degree = 4 // every client neighbours every other; t = 3
	up, w := testInputs(cfg, 1)
	gone := map[uint32]bool{cfg.Clients[0]: true, cfg.Clients[1]: true}
	_, err := runRound(t, cfg, nil, up, w, func(to uint32, reply any) any {
		if _, ok := reply.(AdvertiseKeys); ok && gone[to] {
			return nil
		}
		return reply
	})
	var ie *InsufficientError
	if !errors.As(err, &ie) || ie.Stage != StageAdvertise {
		t.Fatalf("two of five gone at stage 0 with t = 3: err = %v, want an InsufficientError at advertise", err)
	}
	// One gone: every other client keeps three neighbours and the round
	// completes.
	delete(gone, cfg.Clients[1])
	if _, err := runRound(t, cfg, nil, up, w, func(to uint32, reply any) any {
		if _, ok := reply.(AdvertiseKeys); ok && gone[to] {
			return nil
		}
		return reply
	}); err != nil {
		t.Fatalf("one of five gone: %v", err)
	}
}
