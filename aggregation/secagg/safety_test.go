package secagg

import (
	"errors"
	"slices"
	"testing"
)

// harness drives a server and its clients by hand, stage by stage.
type harness struct {
	cfg     Config
	srv     *Server
	clients map[uint32]*Client
	bcast   map[uint32]KeyBroadcast
	bundles map[uint32]ShareBundle
	reqs    map[uint32]UnmaskRequest
	up      map[uint32][]float32
	w       map[uint32]float64
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{cfg: srv.Config(), srv: srv, clients: map[uint32]*Client{}}
	h.up, h.w = testInputs(cfg, 77)
	for i, id := range cfg.Clients {
		c, err := NewClient(cfg, id, seeded(uint64(1000+i)))
		if err != nil {
			t.Fatal(err)
		}
		h.clients[id] = c
	}
	return h
}

func (h *harness) advance(t *testing.T) []Outbound {
	t.Helper()
	out, done, err := h.srv.Advance(t0)
	if err != nil || done || out == nil {
		t.Fatalf("Advance: out=%d done=%v err=%v", len(out), done, err)
	}
	return out
}

// toStage runs all clients until the server waits in stage st.
func (h *harness) toStage(t *testing.T, st Stage) {
	t.Helper()
	for _, id := range h.cfg.Clients {
		ad, _ := h.clients[id].Advertise()
		if err := h.srv.Receive(ad, t0); err != nil {
			t.Fatal(err)
		}
	}
	h.bcast = map[uint32]KeyBroadcast{}
	for _, o := range h.advance(t) {
		h.bcast[o.To] = o.Msg.(KeyBroadcast)
	}
	if st == StageShareKeys {
		return
	}
	for _, id := range h.cfg.Clients {
		sh, err := h.clients[id].ShareKeys(h.bcast[id].Keys)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.srv.Receive(sh, t0); err != nil {
			t.Fatal(err)
		}
	}
	h.bundles = map[uint32]ShareBundle{}
	for _, o := range h.advance(t) {
		h.bundles[o.To] = o.Msg.(ShareBundle)
	}
	if st == StageMaskedInput {
		return
	}
	for _, id := range h.cfg.Clients {
		mi, err := h.clients[id].MaskedInput(h.bundles[id].Shares, h.up[id], h.w[id])
		if err != nil {
			t.Fatal(err)
		}
		if err := h.srv.Receive(mi, t0); err != nil {
			t.Fatal(err)
		}
	}
	h.reqs = map[uint32]UnmaskRequest{}
	for _, o := range h.advance(t) {
		if r, ok := o.Msg.(UnmaskRequest); ok {
			h.reqs[o.To] = r
		}
	}
}

func TestClientRefusesEquivocation(t *testing.T) {
	cfg := testConfig(8, 10)
	h := newHarness(t, cfg)
	h.toStage(t, StageUnmask)
	id := cfg.Clients[0]
	c := h.clients[id]
	req := h.reqs[id]
	r1, err := c.Unmask(req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.AnsweredSurvivors(), req.Survivors) {
		t.Fatalf("AnsweredSurvivors = %v, want %v", c.AnsweredSurvivors(), req.Survivors)
	}
	// The same set again (e.g. from a new leader): same answer.
	r2, err := c.Unmask(req)
	if err != nil || r2.WireSize() != r1.WireSize() || !slices.EqualFunc(r1.SelfMaskShares, r2.SelfMaskShares, shareEq) {
		t.Fatalf("repeat request: err=%v or different answer", err)
	}
	// A different set: one survivor claimed dropped.
	nb := c.graph.Neighbours(id)[0]
	bad := UnmaskRequest{Round: req.Round, To: id, Dropped: []uint32{nb}}
	for _, s := range req.Survivors {
		if s != nb {
			bad.Survivors = append(bad.Survivors, s)
		}
	}
	_, err = c.Unmask(bad)
	var ee *EquivocationError
	if !errors.As(err, &ee) || !errors.Is(err, ErrEquivocation) || ee.Client != id || ee.Round != cfg.Round {
		t.Fatalf("err = %v, want *EquivocationError for client %d", err, id)
	}
	// Restarting does not forget the answered set.
	st, err := c.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := RestoreClient(st, seeded(5))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Unmask(bad); !errors.Is(err, ErrEquivocation) {
		t.Fatalf("restored client: err = %v, want equivocation refusal", err)
	}
	if !slices.Equal(rc.AnsweredSurvivors(), req.Survivors) {
		t.Fatal("restored client lost its answered survivor set")
	}
}

func shareEq(a, b Share) bool { return a.Owner == b.Owner && slices.Equal(a.Value, b.Value) }

func TestClientRefusesBothShares(t *testing.T) {
	cfg := testConfig(8, 10)
	h := newHarness(t, cfg)
	h.toStage(t, StageUnmask)
	id := cfg.Clients[1]
	req := h.reqs[id]
	nb := h.clients[id].graph.Neighbours(id)[1]
	req.Dropped = append(req.Dropped, nb) // nb is also a survivor
	if _, err := h.clients[id].Unmask(req); !errors.Is(err, ErrBothShares) {
		t.Fatalf("err = %v, want ErrBothShares", err)
	}
	// Refusal leaves the client able to answer the honest request.
	if _, err := h.clients[id].Unmask(h.reqs[id]); err != nil {
		t.Fatal(err)
	}
	// The response reveals only self-mask shares (no one dropped).
	r, _ := h.clients[id].Unmask(h.reqs[id])
	if len(r.MaskKeyShares) != 0 {
		t.Fatalf("revealed %d mask-key shares with no dropout", len(r.MaskKeyShares))
	}
}

func TestClientRefusesBadUnmaskRequests(t *testing.T) {
	cfg := testConfig(8, 10)
	h := newHarness(t, cfg)
	h.toStage(t, StageUnmask)
	id := cfg.Clients[2]
	good := h.reqs[id]
	mut := func(f func(*UnmaskRequest)) UnmaskRequest {
		r := good
		r.Survivors = slices.Clone(good.Survivors)
		r.Dropped = slices.Clone(good.Dropped)
		f(&r)
		return r
	}
	cases := []struct {
		name string
		req  UnmaskRequest
		want error
	}{
		{"stale round", mut(func(r *UnmaskRequest) { r.Round++ }), ErrStaleRound},
		{"wrong recipient", mut(func(r *UnmaskRequest) { r.To = cfg.Clients[3] }), ErrMalformed},
		{"unknown survivor", mut(func(r *UnmaskRequest) { r.Survivors = append(r.Survivors, 9999) }), ErrUnknownPeer},
		{"duplicate survivor", mut(func(r *UnmaskRequest) { r.Survivors = append(r.Survivors, r.Survivors[0]) }), ErrDuplicate},
		{"self not survivor", mut(func(r *UnmaskRequest) {
			r.Survivors = slices.DeleteFunc(r.Survivors, func(v uint32) bool { return v == id })
		}), ErrMalformed},
		{"too few survivors", mut(func(r *UnmaskRequest) { r.Survivors = []uint32{id}; r.Dropped = nil }), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.clients[id].Unmask(tc.req)
			if tc.want == nil {
				var ie *InsufficientError
				if !errors.As(err, &ie) {
					t.Fatalf("err = %v, want *InsufficientError", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if h.clients[id].AnsweredSurvivors() != nil {
		t.Fatal("a refused request was recorded as answered")
	}
}

func TestClientRefusesBadKeysAndShares(t *testing.T) {
	cfg := testConfig(12, 10) // k = 8: each client has 3 non-neighbours
	h := newHarness(t, cfg)
	h.toStage(t, StageShareKeys)
	id := cfg.Clients[0]
	c := h.clients[id]
	keys := h.bcast[id].Keys
	var stranger uint32
	for _, v := range cfg.Clients {
		if v != id && !c.graph.AreNeighbours(id, v) {
			stranger = v
			break
		}
	}
	strangerAd, _ := h.clients[stranger].Advertise()
	with := func(f func([]AdvertiseKeys) []AdvertiseKeys) []AdvertiseKeys {
		k := slices.Clone(keys)
		return f(k)
	}
	cases := []struct {
		name string
		ads  []AdvertiseKeys
		want error
	}{
		{"stale round", with(func(k []AdvertiseKeys) []AdvertiseKeys { k[0].Round = 3; return k }), ErrStaleRound},
		{"non-neighbour", with(func(k []AdvertiseKeys) []AdvertiseKeys { return append(k, strangerAd) }), ErrNotNeighbour},
		{"unknown", with(func(k []AdvertiseKeys) []AdvertiseKeys { k[0].From = 4; return k }), ErrUnknownPeer},
		{"duplicate", with(func(k []AdvertiseKeys) []AdvertiseKeys { return append(k, k[1]) }), ErrDuplicate},
		{"short key", with(func(k []AdvertiseKeys) []AdvertiseKeys { k[2].MaskKey = k[2].MaskKey[:31]; return k }), ErrMalformed},
	}
	for _, tc := range cases {
		if _, err := c.ShareKeys(tc.ads); !errors.Is(err, tc.want) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	var ie *InsufficientError
	if _, err := c.ShareKeys(keys[:cfg.WithDefaults().Threshold-2]); !errors.As(err, &ie) {
		t.Fatalf("too few neighbours: err = %v, want *InsufficientError", err)
	}
	if _, err := c.MaskedInput(nil, h.up[id], 1); !errors.Is(err, ErrWrongStage) {
		t.Fatalf("MaskedInput before ShareKeys: err = %v, want ErrWrongStage", err)
	}

	// Stage 2 refusals.
	h2 := newHarness(t, cfg)
	h2.toStage(t, StageMaskedInput)
	c = h2.clients[id]
	sh := h2.bundles[id].Shares
	mutS := func(f func([]EncryptedShare) []EncryptedShare) []EncryptedShare {
		s := slices.Clone(sh)
		for i := range s {
			s[i].Ciphertext = slices.Clone(s[i].Ciphertext)
		}
		return f(s)
	}
	scases := []struct {
		name   string
		shares []EncryptedShare
		want   error
	}{
		{"stale round", mutS(func(s []EncryptedShare) []EncryptedShare { s[0].Round = 8; return s }), ErrStaleRound},
		{"duplicate", mutS(func(s []EncryptedShare) []EncryptedShare { return append(s, s[0]) }), ErrDuplicate},
		{"non-neighbour", mutS(func(s []EncryptedShare) []EncryptedShare { s[0].From = stranger; return s }), ErrNotNeighbour},
		{"misaddressed", mutS(func(s []EncryptedShare) []EncryptedShare { s[0].To = stranger; return s }), ErrMalformed},
	}
	for _, tc := range scases {
		if _, err := c.MaskedInput(tc.shares, h2.up[id], h2.w[id]); !errors.Is(err, tc.want) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	bad := slices.Clone(h2.up[id])
	bad[3] = float32(nan())
	if _, err := c.MaskedInput(sh, bad, 1); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("NaN update: err = %v, want ErrInvalidInput", err)
	}
	if _, err := c.MaskedInput(sh, h2.up[id][:3], 1); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("short update: err = %v, want ErrInvalidInput", err)
	}
	if _, err := c.MaskedInput(sh, h2.up[id], cfg.MaxWeight+1); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("weight above max: err = %v, want ErrInvalidInput", err)
	}
	// After all refusals the honest input still works.
	if _, err := c.MaskedInput(sh, h2.up[id], h2.w[id]); err != nil {
		t.Fatal(err)
	}
}

func TestServerRefusals(t *testing.T) {
	cfg := testConfig(8, 10)
	h := newHarness(t, cfg)
	id := cfg.Clients[0]
	ad, _ := h.clients[id].Advertise()
	stale := ad
	stale.Round = 6
	unknown := ad
	unknown.From = 1000
	short := ad
	short.EncKey = ad.EncKey[:16]
	for _, tc := range []struct {
		name string
		msg  any
		want error
	}{
		{"stale round", stale, ErrStaleRound},
		{"unknown sender", unknown, ErrUnknownPeer},
		{"short key", &short, ErrMalformed},
		{"wrong stage", MaskedInput{Round: cfg.Round, From: id, Vector: make([]uint32, cfg.Dim+1)}, ErrWrongStage},
		{"wrong type", "hello", ErrMalformed},
	} {
		if err := h.srv.Receive(tc.msg, t0); !errors.Is(err, tc.want) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := h.srv.Receive(ad, t0); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Receive(ad, t0); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate: err = %v", err)
	}
	// Everyone but the last client advertises; the stage waits until the deadline.
	for _, v := range cfg.Clients[1 : len(cfg.Clients)-1] {
		a, _ := h.clients[v].Advertise()
		if err := h.srv.Receive(a, t0); err != nil {
			t.Fatal(err)
		}
	}
	if p := h.srv.Pending(); !slices.Equal(p, cfg.Clients[len(cfg.Clients)-1:]) {
		t.Fatalf("pending %v", p)
	}
	if out, done, err := h.srv.Advance(t0.Add(cfg.StageTimeout - 1)); out != nil || done || err != nil {
		t.Fatal("stage closed before its deadline with a client missing")
	}
	out, _, err := h.srv.Advance(t0.Add(cfg.StageTimeout))
	if err != nil || len(out) != len(cfg.Clients)-1 {
		t.Fatalf("closing at deadline: %d messages, err %v", len(out), err)
	}
	late, _ := h.clients[cfg.Clients[len(cfg.Clients)-1]].Advertise()
	if err := h.srv.Receive(late, t0); !errors.Is(err, ErrWrongStage) {
		t.Fatalf("late advertise: err = %v, want ErrWrongStage", err)
	}
	// Stage 1: a batch from the absent client, a malformed batch.
	bc := out[0].Msg.(KeyBroadcast)
	sh, err := h.clients[bc.To].ShareKeys(bc.Keys)
	if err != nil {
		t.Fatal(err)
	}
	lastShares := slices.Clone(sh)
	for i := range lastShares {
		lastShares[i].From = cfg.Clients[len(cfg.Clients)-1]
	}
	if err := h.srv.Receive(lastShares, t0); !errors.Is(err, ErrNotActive) {
		t.Fatalf("batch from inactive client: err = %v, want ErrNotActive", err)
	}
	if err := h.srv.Receive(sh[1:], t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("incomplete batch: err = %v, want ErrMalformed", err)
	}
	short2 := slices.Clone(sh)
	short2[0].Ciphertext = short2[0].Ciphertext[:10]
	if err := h.srv.Receive(short2, t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short ciphertext: err = %v, want ErrMalformed", err)
	}
	if err := h.srv.Receive(sh, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := h.srv.Result(); !errors.Is(err, ErrNotDone) {
		t.Fatalf("Result before end: err = %v", err)
	}
}

func TestServerRefusesWrongDims(t *testing.T) {
	cfg := testConfig(6, 10)
	cfg.Bits = 20
	h := newHarness(t, cfg)
	h.toStage(t, StageMaskedInput)
	id := cfg.Clients[0]
	mi, err := h.clients[id].MaskedInput(h.bundles[id].Shares, h.up[id], h.w[id])
	if err != nil {
		t.Fatal(err)
	}
	short := mi
	short.Vector = mi.Vector[:cfg.Dim]
	if err := h.srv.Receive(short, t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short vector: err = %v", err)
	}
	wide := mi
	wide.Vector = slices.Clone(mi.Vector)
	wide.Vector[2] = 1 << 20
	if err := h.srv.Receive(wide, t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("word ≥ 2^Bits: err = %v", err)
	}
	if err := h.srv.Receive(&mi, t0); err != nil {
		t.Fatal(err)
	}
}

// TestClientRestart: a client restored from its state resends the same
// masked input and completes the round.
func TestClientRestart(t *testing.T) {
	cfg := testConfig(8, 16)
	q := captureQuantized(t)
	h := newHarness(t, cfg)
	h.toStage(t, StageMaskedInput)
	var restarted []uint32
	for i, id := range cfg.Clients {
		c := h.clients[id]
		if i%2 == 0 { // restart before stage 2
			st, err := c.MarshalState()
			if err != nil {
				t.Fatal(err)
			}
			if c, err = RestoreClient(st, seeded(uint64(i))); err != nil {
				t.Fatal(err)
			}
			h.clients[id] = c
		}
		mi, err := c.MaskedInput(h.bundles[id].Shares, h.up[id], h.w[id])
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 { // restart after stage 2: the cached input is resent
			st, _ := c.MarshalState()
			rc, err := RestoreClient(st, seeded(99))
			if err != nil {
				t.Fatal(err)
			}
			again, ok := rc.CachedMaskedInput()
			if !ok || !slices.Equal(again.Vector, mi.Vector) {
				t.Fatal("restored client lost its cached masked input")
			}
			h.clients[id] = rc
			restarted = append(restarted, id)
		}
		if err := h.srv.Receive(mi, t0); err != nil {
			t.Fatal(err)
		}
	}
	out := h.advance(t)
	for _, o := range out {
		r, err := h.clients[o.To].Unmask(o.Msg.(UnmaskRequest))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.srv.Receive(r, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, done, err := h.srv.Advance(t0); !done || err != nil {
		t.Fatalf("done=%v err=%v", done, err)
	}
	sum, tw, surv, err := h.srv.Result()
	if err != nil {
		t.Fatal(err)
	}
	checkExact(t, cfg, &Outcome{Sum: sum, TotalWeight: tw, Survivors: surv}, q, h.up, h.w)
	if _, err := RestoreClient([]byte("garbage"), seeded(1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage state: err = %v", err)
	}
	if len(restarted) == 0 {
		t.Fatal("no client restarted")
	}
}
