package secagg

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
)

// Graph is the SecAgg+ communication graph (Bell et al. 2020, §3): a Harary
// graph H(k, n) — the clients placed on a ring, each joined to the k/2
// nearest on either side — under a uniformly random relabelling drawn from a
// public seed, so every client has exactly k neighbours and the server cannot
// choose who neighbours whom. k = n-1 gives the complete graph of classic
// SecAgg (Bonawitz et al. 2017).
type Graph struct {
	ids  []uint32
	idx  map[uint32]int
	nbrs [][]uint32 // sorted neighbour lists, by client position in ids
	npos [][]int32  // the same lists as positions in ids

	// The last set components was asked about and its answer: in a
	// simulated round every client shares one Graph and checks the same
	// survivor set.
	memoMu    sync.Mutex
	memoSet   []uint32
	memoComps [][]uint32
}

// NewGraph builds the degree-k graph over the sorted, distinct client
// indices, deterministically from seed.
func NewGraph(clients []uint32, k int, seed [32]byte) (*Graph, error) {
	n := len(clients)
	if n < 2 {
		return nil, fmt.Errorf("secagg: graph needs at least 2 clients, got %d", n)
	}
	if k < 1 || k > n-1 || (k != n-1 && k%2 != 0) {
		return nil, fmt.Errorf("secagg: graph degree %d must be even in 1..%d or exactly %d", k, n-1, n-1)
	}
	g := &Graph{ids: slices.Clone(clients), idx: make(map[uint32]int, n), nbrs: make([][]uint32, n)}
	for i, id := range clients {
		if _, dup := g.idx[id]; dup {
			return nil, fmt.Errorf("secagg: graph: duplicate client %d", id)
		}
		g.idx[id] = i
	}
	if k == n-1 {
		for i := range clients {
			l := make([]uint32, 0, n-1)
			l = append(l, clients[:i]...)
			l = append(l, clients[i+1:]...)
			g.nbrs[i] = l
		}
		g.positions()
		return g, nil
	}
	perm := rand.New(rand.NewChaCha8(seed)).Perm(n) // ring position → client position
	for p, ci := range perm {
		l := make([]uint32, 0, k)
		for j := 1; j <= k/2; j++ {
			l = append(l, clients[perm[(p+j)%n]], clients[perm[(p-j+n)%n]])
		}
		slices.Sort(l)
		g.nbrs[ci] = l
	}
	g.positions()
	return g, nil
}

// positions fills npos from nbrs.
func (g *Graph) positions() {
	g.npos = make([][]int32, len(g.nbrs))
	for i, l := range g.nbrs {
		p := make([]int32, len(l))
		for j, v := range l {
			p[j] = int32(g.idx[v])
		}
		g.npos[i] = p
	}
}

// Clients returns the graph's client indices (sorted). Do not modify.
func (g *Graph) Clients() []uint32 { return g.ids }

// Contains reports whether id is a client of the graph.
func (g *Graph) Contains(id uint32) bool { _, ok := g.idx[id]; return ok }

// Neighbours returns the sorted neighbours of id (nil if id is unknown).
// Do not modify the returned slice.
func (g *Graph) Neighbours(id uint32) []uint32 {
	i, ok := g.idx[id]
	if !ok {
		return nil
	}
	return g.nbrs[i]
}

// AreNeighbours reports whether a and b are joined by an edge.
func (g *Graph) AreNeighbours(a, b uint32) bool {
	_, found := slices.BinarySearch(g.Neighbours(a), b)
	return found
}

// components splits the sorted set of clients into the connected
// components of the graph induced on it, largest first (ties: smallest
// member first). Security review M6: a survivor set whose induced graph
// falls apart lets the server unmask each component's sum on its own. The
// result is shared with later calls: callers must not modify it.
func (g *Graph) components(set []uint32) [][]uint32 {
	g.memoMu.Lock()
	if g.memoSet != nil && slices.Equal(g.memoSet, set) {
		comps := g.memoComps
		g.memoMu.Unlock()
		return comps
	}
	g.memoMu.Unlock()
	comps := g.componentsOf(set)
	g.memoMu.Lock()
	g.memoSet, g.memoComps = slices.Clone(set), comps
	g.memoMu.Unlock()
	return comps
}

// componentsOf is components without the memo.
func (g *Graph) componentsOf(set []uint32) [][]uint32 {
	// Per client position: 1 = in set, 2 = reached. Positions instead of
	// maps: every client of a round checks this over the whole survivor set.
	mark := make([]uint8, len(g.ids))
	for _, v := range set {
		if i, ok := g.idx[v]; ok {
			mark[i] = 1
		}
	}
	var comps [][]uint32
	var queue []int
	for _, s := range set {
		si, ok := g.idx[s]
		if !ok || mark[si] != 1 {
			continue
		}
		comp := []uint32{s}
		mark[si] = 2
		queue = append(queue[:0], si)
		for len(queue) > 0 {
			ci := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			for _, wi := range g.npos[ci] {
				if mark[wi] == 1 {
					mark[wi] = 2
					comp = append(comp, g.ids[wi])
					queue = append(queue, int(wi))
				}
			}
		}
		slices.Sort(comp)
		comps = append(comps, comp)
	}
	slices.SortStableFunc(comps, func(a, b []uint32) int { return len(b) - len(a) })
	return comps
}
