package secagg

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestGraphDegreeSymmetryDeterminism(t *testing.T) {
	for _, n := range []int{2, 3, 5, 12, 100, 501} {
		ids := make([]uint32, n)
		for i := range ids {
			ids[i] = uint32(i*5 + 1)
		}
		k := DefaultDegree(n)
		var seed [32]byte
		seed[1] = byte(n)
		g, err := NewGraph(ids, k, seed)
		if err != nil {
			t.Fatal(err)
		}
		g2, _ := NewGraph(ids, k, seed)
		seed[2] = 1
		g3, _ := NewGraph(ids, k, seed)
		differs := false
		for _, u := range ids {
			nb := g.Neighbours(u)
			if len(nb) != k {
				t.Fatalf("n=%d: client %d has %d neighbours, want %d", n, u, len(nb), k)
			}
			if slices.Contains(nb, u) || !slices.IsSorted(nb) || len(slices.Compact(slices.Clone(nb))) != k {
				t.Fatalf("n=%d: bad neighbour list %v of %d", n, nb, u)
			}
			for _, v := range nb {
				if !g.AreNeighbours(v, u) {
					t.Fatalf("n=%d: %d→%d not symmetric", n, u, v)
				}
			}
			if !slices.Equal(nb, g2.Neighbours(u)) {
				t.Fatalf("n=%d: same seed gave a different graph", n)
			}
			if !slices.Equal(nb, g3.Neighbours(u)) {
				differs = true
			}
		}
		if k < n-1 && !differs {
			t.Fatalf("n=%d: another seed gave the same graph", n)
		}
	}
}

func TestDefaultDegreeAndThreshold(t *testing.T) {
	for _, tc := range []struct{ n, k, t int }{
		{2, 1, 2}, {3, 2, 2}, {5, 4, 3}, {8, 6, 4}, {12, 8, 5}, {100, 14, 8}, {500, 18, 10}, {1000, 20, 11},
	} {
		if k := DefaultDegree(tc.n); k != tc.k {
			t.Fatalf("DefaultDegree(%d) = %d, want %d", tc.n, k, tc.k)
		}
		if th := DefaultThreshold(tc.k); th != tc.t {
			t.Fatalf("DefaultThreshold(%d) = %d, want %d", tc.k, th, tc.t)
		}
	}
}

func TestGraphRefusesBadDegree(t *testing.T) {
	ids := []uint32{1, 2, 3, 4, 5, 6}
	for _, k := range []int{0, 3, 6, -2} {
		if _, err := NewGraph(ids, k, [32]byte{}); err == nil {
			t.Fatalf("degree %d accepted for n=6", k)
		}
	}
	if _, err := NewGraph(ids, 5, [32]byte{}); err != nil {
		t.Fatalf("k = n-1 (odd) refused: %v", err)
	}
	if g, _ := NewGraph(ids, 2, [32]byte{}); g.Neighbours(99) != nil || g.AreNeighbours(1, 99) {
		t.Fatal("unknown client has neighbours")
	}
}

// components agrees with a naive fixpoint labelling on random subsets, and
// its memo (the last set asked about) answers a repeated set and the set
// before it alike.
func TestComponentsMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	ids := make([]uint32, 60)
	for i := range ids {
		ids[i] = uint32(2*i + 1)
	}
	g, err := NewGraph(ids, 4, [32]byte{3})
	if err != nil {
		t.Fatal(err)
	}
	var prevSet []uint32
	var prevComps [][]uint32
	for range 50 {
		var set []uint32
		for _, v := range ids {
			if r.IntN(3) == 0 {
				set = append(set, v)
			}
		}
		label := map[uint32]uint32{}
		for _, v := range set {
			label[v] = v
		}
		for changed := true; changed; {
			changed = false
			for _, v := range set {
				for _, w := range g.Neighbours(v) {
					if lw, ok := label[w]; ok && lw < label[v] {
						label[v], changed = lw, true
					}
				}
			}
		}
		groups := map[uint32][]uint32{}
		for _, v := range set {
			groups[label[v]] = append(groups[label[v]], v)
		}
		comps := g.components(set)
		if len(comps) != len(groups) {
			t.Fatalf("set %v: %d components, naive %d", set, len(comps), len(groups))
		}
		for i, c := range comps {
			if i > 0 && len(c) > len(comps[i-1]) {
				t.Fatalf("components not largest first: %v", comps)
			}
			if !slices.Equal(c, groups[label[c[0]]]) {
				t.Fatalf("component %v, naive %v", c, groups[label[c[0]]])
			}
		}
		if again := g.components(slices.Clone(set)); !slices.EqualFunc(again, comps, slices.Equal) {
			t.Fatalf("set %v asked twice: %v, then %v", set, comps, again)
		}
		if prevSet != nil {
			if got := g.components(prevSet); !slices.EqualFunc(got, prevComps, slices.Equal) {
				t.Fatalf("set %v asked again after another: %v, first %v", prevSet, got, prevComps)
			}
		}
		prevSet, prevComps = set, comps
	}
}
