package worker

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

// twoNNDim is the parameter count of the 2NN (784-200-200-10) of McMahan et
// al. 2017: 784·200+200 + 200·200+200 + 200·10+10.
const twoNNDim = 784*200 + 200 + 200*200 + 200 + 200*10 + 10

// secaggStates runs a SecAgg+ round (Bell et al. 2020) of n clients over a
// dim-long update up to the masked input of client 1 and returns client
// 1's marshalled state after stages 0, 1 and 2 and its masked input.
func secaggStates(t *testing.T, n, dim int) (states [3][]byte, mi secagg.MaskedInput) {
	t.Helper()
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	cfg := secagg.Config{Round: 7, Clients: ids, ClipRange: 1, MaxWeight: 1000, Dim: dim}.WithDefaults()
	clients := make([]*secagg.Client, n)
	ads := make([]secagg.AdvertiseKeys, n)
	for i, id := range ids {
		c, err := secagg.NewClient(cfg, id, seeded(uint64(100+i)))
		if err != nil {
			t.Fatal(err)
		}
		if ads[i], err = c.Advertise(); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	mark := func(stage int) {
		b, err := clients[0].MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		states[stage] = b
	}
	mark(0)
	graph, err := secagg.NewGraph(ids, cfg.Degree, cfg.GraphSeed)
	if err != nil {
		t.Fatal(err)
	}
	var mine []secagg.EncryptedShare
	for i, c := range clients {
		var theirs []secagg.AdvertiseKeys
		for _, a := range ads {
			if graph.AreNeighbours(c.ID(), a.From) {
				theirs = append(theirs, a)
			}
		}
		sh, err := c.ShareKeys(theirs)
		if err != nil {
			t.Fatalf("client %d share keys: %v", i+1, err)
		}
		for _, s := range sh {
			if s.To == 1 {
				mine = append(mine, s)
			}
		}
	}
	mark(1)
	update := make([]float32, dim)
	r := seeded(9)
	for i := range update {
		update[i] = float32(int64(r.Uint64()%2001)-1000) / 1000
	}
	mi, err = clients[0].MaskedInput(mine, update, 600)
	if err != nil {
		t.Fatal(err)
	}
	mark(2)
	return states, mi
}

// TestMemStoreHoldsRealisticClientState stores the SecAgg+ client state of
// a 10-client round of the 2NN at every stage, and its masked input, in the
// in-memory store (badger's in-memory mode refuses values above its value
// threshold, which once was 1 KiB).
func TestMemStoreHoldsRealisticClientState(t *testing.T) {
	states, mi := secaggStates(t, 10, twoNNDim)
	for i, s := range states {
		t.Logf("client state after stage %d: %d bytes", i, len(s))
	}
	if len(states[0]) <= 1<<10 || len(states[2]) <= 4*twoNNDim {
		t.Fatalf("state sizes %d, %d bytes are not realistic", len(states[0]), len(states[2]))
	}
	s, err := OpenMemStore()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := &Announce{Round: 7, ModelSpec: "2nn", NumParams: twoNNDim, Sampled: []string{"a", "b"}}
	if err := s.PutClient(7, states[0], a); err != nil {
		t.Fatalf("stage 0 state: %v", err)
	}
	if err := s.PutClient(7, states[1], nil); err != nil {
		t.Fatalf("stage 1 state: %v", err)
	}
	if err := s.PutMasked(7, states[2], mi); err != nil {
		t.Fatalf("stage 2 state and masked input: %v", err)
	}
	got, ok, err := s.Client(7)
	if err != nil || !ok || !bytes.Equal(got, states[2]) {
		t.Fatalf("client state: %d bytes, ok %v, err %v; want the %d bytes stored", len(got), ok, err, len(states[2]))
	}
	c, err := secagg.RestoreClient(got, seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	if cached, ok := c.CachedMaskedInput(); !ok || !slices.Equal(cached.Vector, mi.Vector) {
		t.Fatal("restored client lost its masked input")
	}
	m, ok, err := s.Masked(7)
	if err != nil || !ok || m.From != 1 || !slices.Equal(m.Vector, mi.Vector) {
		t.Fatalf("masked input: ok %v err %v", ok, err)
	}
	if err := s.Commit(7, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Client(7); ok || err != nil {
		t.Fatalf("client state after commit: ok %v err %v", ok, err)
	}
}

// TestMemStoreOversizedValueNamed checks that a value beyond what the
// in-memory store can hold is refused with an error naming the key and
// both sizes, not badger's hex dump.
func TestMemStoreOversizedValueNamed(t *testing.T) {
	s, err := OpenMemStore()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := make([]byte, memValueLimit+1)
	err = s.PutClient(3, big, nil)
	if err == nil {
		t.Fatal("oversized value accepted")
	}
	want := fmt.Sprintf("%q", roundKey(3, recClient))
	if msg := err.Error(); !bytes.Contains([]byte(msg), []byte(want)) || !bytes.Contains([]byte(msg), []byte(fmt.Sprint(memValueLimit))) {
		t.Fatalf("error %q does not name the key %s and the limit %d", msg, want, memValueLimit)
	}
}
