package secagg

// Attacks of the security review (H1, H2, H3, M3), run against the hardened
// protocol: each must now be refused, or its author named while the round
// still yields exactly the honest sum.

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// edAuth is an Authenticator over a test PKI: index → Ed25519 key.
type edAuth struct {
	me   uint32
	keys map[uint32]ed25519.PrivateKey
}

func (a edAuth) Sign(m []byte) ([]byte, error) { return ed25519.Sign(a.keys[a.me], m), nil }

func (a edAuth) Verify(id uint32, m, sig []byte) error {
	k, ok := a.keys[id]
	if !ok {
		return fmt.Errorf("client %d is not enrolled", id)
	}
	if !ed25519.Verify(k.Public().(ed25519.PublicKey), m, sig) {
		return fmt.Errorf("signature of client %d does not verify", id)
	}
	return nil
}

func testPKI(ids []uint32, seed uint64) map[uint32]ed25519.PrivateKey {
	r := seeded(seed)
	keys := map[uint32]ed25519.PrivateKey{}
	for _, id := range ids {
		var s [32]byte
		r.Read(s[:])
		keys[id] = ed25519.NewKeyFromSeed(s[:])
	}
	return keys
}

// roundHook may replace a client's reply before the server sees it.
type roundHook func(to uint32, reply any) any

// mustRefuse is a reply a hook makes that the server must refuse; check
// sees the server's error.
type mustRefuse struct {
	msg   any
	check func(error)
}

// runRound drives one whole round; every client and the server use the
// PKI when keys is non-nil. It returns the server after the round ended.
func runRound(t *testing.T, cfg Config, keys map[uint32]ed25519.PrivateKey, up map[uint32][]float32, w map[uint32]float64, hook roundHook) (*Server, error) {
	t.Helper()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg = srv.Config()
	clients := map[uint32]*Client{}
	for i, id := range cfg.Clients {
		c, err := NewClient(cfg, id, seeded(uint64(500+i)))
		if err != nil {
			t.Fatal(err)
		}
		if keys != nil {
			c.SetAuthenticator(edAuth{id, keys})
		}
		clients[id] = c
	}
	if keys != nil {
		srv.SetAuthenticator(edAuth{0, keys})
	}
	now := t0
	send := func(to uint32, reply any) {
		if hook != nil {
			reply = hook(to, reply)
		}
		if reply == nil { // the client vanishes
			return
		}
		if r, ok := reply.(mustRefuse); ok {
			err := srv.Receive(r.msg, now)
			if err == nil {
				t.Fatalf("server accepted the reply %T of client %d", r.msg, to)
			}
			r.check(err)
			return
		}
		if err := srv.Receive(reply, now); err != nil {
			t.Fatalf("server refused the reply of client %d: %v", to, err)
		}
	}
	for _, id := range cfg.Clients {
		ad, err := clients[id].Advertise()
		if err != nil {
			t.Fatal(err)
		}
		send(id, ad)
	}
	for {
		out, done, err := srv.Advance(now)
		if done || err != nil {
			return srv, err
		}
		if out == nil {
			now = srv.Deadline()
			continue
		}
		for _, o := range out {
			c := clients[o.To]
			var reply any
			var err error
			switch m := o.Msg.(type) {
			case KeyBroadcast:
				reply, err = c.ShareKeys(m.Keys)
			case ShareBundle:
				reply, err = c.MaskedInput(m.Shares, up[o.To], w[o.To])
			case ConsistencyRequest:
				reply, err = c.ConsistencyCheck(m)
			case UnmaskRequest:
				reply, err = c.Unmask(m)
			}
			if err != nil {
				t.Fatalf("honest client %d refused an honest request: %v", o.To, err)
			}
			send(o.To, reply)
		}
	}
}

func outcomeOf(t *testing.T, srv *Server) *Outcome {
	t.Helper()
	sum, tw, surv, err := srv.Result()
	if err != nil {
		t.Fatal(err)
	}
	return &Outcome{Sum: sum, TotalWeight: tw, Survivors: surv}
}

// H1: the server relays keys of clients it runs itself as the victim's
// neighbours. They cannot carry the neighbours' signatures, so the victim
// refuses the round before it shares anything.
func TestAttackKeySubstitutionRefused(t *testing.T) {
	cfg := testConfig(5, 16)
	keys := testPKI(cfg.Clients, 1)
	victimID := cfg.Clients[0]
	victim, err := NewClient(cfg, victimID, seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	victim.SetAuthenticator(edAuth{victimID, keys})
	if _, err := victim.Advertise(); err != nil {
		t.Fatal(err)
	}
	// The coordinator's puppets: its own Ed25519 key, or no signature.
	rogue := map[uint32]ed25519.PrivateKey{}
	for id := range testPKI(cfg.Clients, 99) {
		rogue[id] = testPKI([]uint32{id}, 99+uint64(id))[id]
	}
	for _, signed := range []bool{true, false} {
		var ads []AdvertiseKeys
		for _, id := range cfg.Clients[1:] {
			p, err := NewClient(cfg, id, seeded(uint64(id)))
			if err != nil {
				t.Fatal(err)
			}
			if signed {
				p.SetAuthenticator(edAuth{id, rogue})
			}
			a, _ := p.Advertise()
			ads = append(ads, a)
		}
		_, err := victim.ShareKeys(ads)
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("puppet keys (signed by the coordinator: %v): err = %v, want ErrBadSignature", signed, err)
		}
		t.Logf("refused: %v", err)
	}
	// A relayed key with a valid signature but altered bytes is refused too.
	var ads []AdvertiseKeys
	for _, id := range cfg.Clients[1:] {
		p, _ := NewClient(cfg, id, seeded(uint64(id)))
		p.SetAuthenticator(edAuth{id, keys})
		a, _ := p.Advertise()
		ads = append(ads, a)
	}
	ads[2].MaskKey = slices.Clone(ads[1].MaskKey)
	if _, err := victim.ShareKeys(ads); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered key under a valid signature: err = %v, want ErrBadSignature", err)
	}
	// The honest relay goes through.
	ads[2].MaskKey = nil
	p, _ := NewClient(cfg, ads[2].From, seeded(uint64(ads[2].From)))
	p.SetAuthenticator(edAuth{ads[2].From, keys})
	ads[2], _ = p.Advertise()
	if _, err := victim.ShareKeys(ads); err != nil {
		t.Fatalf("honest relay refused: %v", err)
	}
}

// H2: the review's equivocation attack (one colluding neighbour, survivor
// stories split between the victim's honest neighbours) against a round
// with the consistency check and a threshold sized for one colluder
// (SafeThreshold). Honest clients refuse the requests the split needs, and
// the server never holds Threshold shares of both secrets of the victim.
func TestAttackEquivocationRefused(t *testing.T) {
	cfg := testConfig(20, 64)
	cfg.Degree = DefaultDegree(20)
	cfg.Threshold = SafeThreshold(cfg.Degree, 1)
	cfg.ConsistencyCheck = true
	keys := testPKI(cfg.Clients, 3)
	h := newHarness(t, cfg)
	for id, c := range h.clients {
		c.SetAuthenticator(edAuth{id, keys})
	}
	cfg = h.cfg
	h.toStage(t, StageUnmask) // the server now waits in the consistency check
	tt := cfg.Threshold
	v := cfg.Clients[3]
	nbrs := h.srv.graph.Neighbours(v)
	col := nbrs[0]
	honest := nbrs[1:]
	all := slices.Clone(cfg.Clients)
	withoutV := slices.DeleteFunc(slices.Clone(all), func(x uint32) bool { return x == v })
	sign := func(u uint32, set []uint32) ConsistencyResponse {
		r, err := h.clients[u].ConsistencyCheck(ConsistencyRequest{Round: cfg.Round, To: u, Survivors: set})
		if err != nil {
			t.Fatalf("client %d refused to sign: %v", u, err)
		}
		return r
	}
	// Try every split of the honest neighbours; the colluder signs both
	// stories with its own key.
	for nb := 0; nb <= len(honest); nb++ {
		hh := newHarness(t, cfg)
		for id, c := range hh.clients {
			c.SetAuthenticator(edAuth{id, keys})
		}
		hh.toStage(t, StageUnmask)
		h = hh
		groupB, groupS := honest[:nb], honest[nb:]
		// Stronger than the review: every client that holds no share of
		// v is corrupt too and signs both stories with its own key; only
		// v's honest holders are honest.
		corrupt := func(u uint32) bool { return u == col || (u != v && !slices.Contains(nbrs, u)) }
		forge := func(u uint32, set []uint32) ConsistencyResponse {
			s, _ := edAuth{u, keys}.Sign(ConsistencyMessage(cfg.Round, u, set))
			return ConsistencyResponse{Round: cfg.Round, From: u, Signature: s}
		}
		var sigAll, sigWithout []ConsistencyResponse
		for _, u := range all {
			switch {
			case corrupt(u):
				sigAll = append(sigAll, forge(u, all))
			case !slices.Contains(groupS, u):
				sigAll = append(sigAll, sign(u, all))
			}
		}
		for _, u := range withoutV {
			switch {
			case corrupt(u):
				sigWithout = append(sigWithout, forge(u, withoutV))
			case slices.Contains(groupS, u):
				sigWithout = append(sigWithout, sign(u, withoutV))
			}
		}
		nbShares, nsShares := 1, 1 // the colluder's own shares of b_v and s_v
		refused := 0
		for _, u := range append([]uint32{v}, groupB...) {
			resp, err := h.clients[u].Unmask(UnmaskRequest{Round: cfg.Round, To: u, Survivors: all, Dropped: []uint32{}, Signatures: sigAll})
			if err != nil {
				if !errors.Is(err, ErrInconsistent) {
					t.Fatalf("client %d: err = %v, want ErrInconsistent", u, err)
				}
				refused++
				continue
			}
			for _, s := range resp.SelfMaskShares {
				if s.Owner == v {
					nbShares++
				}
			}
		}
		for _, u := range groupS {
			resp, err := h.clients[u].Unmask(UnmaskRequest{Round: cfg.Round, To: u, Survivors: withoutV, Dropped: []uint32{v}, Signatures: sigWithout})
			if err != nil {
				if !errors.Is(err, ErrInconsistent) {
					t.Fatalf("client %d: err = %v, want ErrInconsistent", u, err)
				}
				refused++
				continue
			}
			for _, s := range resp.MaskKeyShares {
				if s.Owner == v {
					nsShares++
				}
			}
		}
		if nbShares >= tt && nsShares >= tt {
			t.Fatalf("split |B|=%d: server holds %d shares of b_v and %d of s_v (t=%d)", nb, nbShares, nsShares, tt)
		}
		t.Logf("split |B|=%d |S|=%d: %d refusals; server holds %d b_v and %d s_v shares, t=%d", len(groupB), len(groupS), refused, nbShares, nsShares, tt)
	}
}

// H2: an unmask request that does not carry the consistency signatures, or
// names a set other than the one signed, is refused.
func TestAttackUnmaskWithoutConsistencyRefused(t *testing.T) {
	cfg := testConfig(8, 10)
	cfg.ConsistencyCheck = true
	h := newHarness(t, cfg)
	h.toStage(t, StageUnmask)
	id := cfg.Clients[0]
	c := h.clients[id]
	all := slices.Clone(h.srv.Survivors())
	if _, err := c.Unmask(UnmaskRequest{Round: cfg.Round, To: id, Survivors: all}); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("unsigned set: err = %v, want ErrInconsistent", err)
	}
	if _, err := c.ConsistencyCheck(ConsistencyRequest{Round: cfg.Round, To: id, Survivors: all}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConsistencyCheck(ConsistencyRequest{Round: cfg.Round, To: id, Survivors: all[:len(all)-1]}); !errors.Is(err, ErrEquivocation) {
		t.Fatalf("second set to sign: err = %v, want ErrEquivocation", err)
	}
	if _, err := c.Unmask(UnmaskRequest{Round: cfg.Round, To: id, Survivors: all}); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("no signatures: err = %v, want ErrInconsistent", err)
	}
}

// H3: one holder's crafted self-mask share (a small offset that passes the
// limb check) and one holder's junk share: the server finds them against
// the seed commitments, names the holders and still outputs exactly the
// honest sum.
func TestAttackBadSharesNamedRoundCompletes(t *testing.T) {
	for _, mode := range []string{"crafted", "junk", "mask-key"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(12, 20)
			cfg.ConsistencyCheck = true
			keys := testPKI(cfg.Clients, 5)
			q := captureQuantized(t)
			up, w := testInputs(cfg, 9)
			evil := cfg.Clients[4]
			dropper := cfg.Clients[6]
			hook := func(to uint32, reply any) any {
				switch m := reply.(type) {
				case MaskedInput:
					if mode == "mask-key" && to == dropper {
						return nil // replaced below: the dropper vanishes
					}
				case UnmaskResponse:
					if to != evil {
						return reply
					}
					out := m
					out.SelfMaskShares = nil
					for _, s := range m.SelfMaskShares {
						v := slices.Clone(s.Value)
						if s.Owner != to && mode != "mask-key" {
							if mode == "junk" {
								for l := 0; l < len(v); l += 8 {
									v[l] = 0x0f
									v[l+3] ^= 0x5a
								}
							} else {
								v[7] ^= 1
							}
						}
						out.SelfMaskShares = append(out.SelfMaskShares, Share{Owner: s.Owner, Value: v})
					}
					out.MaskKeyShares = nil
					for _, s := range m.MaskKeyShares {
						v := slices.Clone(s.Value)
						v[7] ^= 1
						out.MaskKeyShares = append(out.MaskKeyShares, Share{Owner: s.Owner, Value: v})
					}
					return out
				}
				return reply
			}
			srv, err := runRound(t, cfg, keys, up, w, hook)
			if err != nil {
				t.Fatalf("round failed: %v", err)
			}
			if got := srv.Culprits(); !slices.Equal(got, []uint32{evil}) {
				t.Fatalf("culprits %v, want [%d]", got, evil)
			}
			checkExact(t, cfg, outcomeOf(t, srv), q, up, w)
			t.Logf("culprits %v; round completed with the exact honest sum of %d survivors", srv.Culprits(), len(srv.Survivors()))
		})
	}
}

// H3: when the bad share cannot be outvoted (only Threshold holders
// answer), the round fails with a CheatingError naming the owner whose
// secret did not verify; there is no result to commit.
func TestAttackBadShareWithoutSpareFailsNamed(t *testing.T) {
	cfg := testConfig(4, 8)
	cfg.Degree, cfg.Threshold = 3, 3
	up, w := testInputs(cfg, 2)
	evil, gone := cfg.Clients[1], cfg.Clients[3]
	srv, err := runRound(t, cfg, nil, up, w, func(to uint32, reply any) any {
		if _, ok := reply.(UnmaskResponse); ok && to == gone {
			return nil // only t = 3 holders answer: no spare share
		}
		if m, ok := reply.(UnmaskResponse); ok && to == evil {
			m.SelfMaskShares = slices.Clone(m.SelfMaskShares)
			for i, sh := range m.SelfMaskShares {
				if sh.Owner != to {
					v := slices.Clone(sh.Value)
					v[15] ^= 1
					m.SelfMaskShares[i].Value = v
					break
				}
			}
			return m
		}
		return reply
	})
	var ce *CheatingError
	if !errors.As(err, &ce) || len(ce.Owners) != 1 {
		t.Fatalf("err = %v, want a CheatingError naming one owner", err)
	}
	if _, _, _, err := srv.Result(); err == nil {
		t.Fatal("a result is available after a detected bad share")
	}
	t.Logf("%v", ce)
}

// M3: one client sends right-sized ciphertexts that do not open. Its
// neighbours keep their pairwise masks with it (so nothing else breaks) and
// complain. Nobody holds the culprit's secrets, so its own masked input
// cannot be unmasked: the round fails with a CheatingError naming exactly
// the culprit (not its honest neighbours), and the retry without it
// completes with the exact sum.
func TestAttackGarbageSharesNamedNotFatal(t *testing.T) {
	cfg := testConfig(8, 12)
	q := captureQuantized(t)
	up, w := testInputs(cfg, 4)
	evil := cfg.Clients[3]
	srv, err := runRound(t, cfg, nil, up, w, func(to uint32, reply any) any {
		if b, ok := reply.([]EncryptedShare); ok && to == evil {
			bad := slices.Clone(b)
			for i := range bad {
				bad[i].Ciphertext = slices.Clone(bad[i].Ciphertext)
				bad[i].Ciphertext[0] ^= 1
			}
			return bad
		}
		return reply
	})
	var ce *CheatingError
	if !errors.As(err, &ce) || !slices.Equal(ce.Culprits, []uint32{evil}) {
		t.Fatalf("err = %v, want a CheatingError naming [%d]", err, evil)
	}
	if got := srv.Accused(); !slices.Equal(got, []uint32{evil}) {
		t.Fatalf("accused %v, want [%d]", got, evil)
	}
	t.Logf("round failed: %v; complaints %v", err, srv.Complaints())
	retry := cfg
	retry.Clients = slices.DeleteFunc(slices.Clone(cfg.Clients), func(x uint32) bool { return x == evil })
	srv, err = runRound(t, retry, nil, up, w, nil)
	if err != nil {
		t.Fatalf("retry without the culprit: %v", err)
	}
	checkExact(t, retry, outcomeOf(t, srv), q, up, w)
}

// Randomized honest rounds with malicious holders sending junk shares at
// unmask: every round either yields exactly the honest sum with every
// culprit named, or fails with a CheatingError naming only culprits; never
// a wrong sum.
func TestAttackRandomJunkHolders(t *testing.T) {
	r := rand.New(seeded(2026))
	for trial := range 12 {
		cfg := testConfig(10+r.IntN(8), 6)
		cfg.ConsistencyCheck = true
		keys := testPKI(cfg.Clients, uint64(trial))
		q := captureQuantized(t)
		up, w := testInputs(cfg, uint64(trial))
		bad := map[uint32]bool{}
		for _, id := range cfg.Clients {
			if r.Float64() < 0.1 {
				bad[id] = true
			}
		}
		srv, err := runRound(t, cfg, keys, up, w, func(to uint32, reply any) any {
			if m, ok := reply.(UnmaskResponse); ok && bad[to] {
				m.SelfMaskShares = slices.Clone(m.SelfMaskShares)
				for i := range m.SelfMaskShares {
					v := slices.Clone(m.SelfMaskShares[i].Value)
					v[r.IntN(len(v)/8)*8+7] ^= byte(1 + r.IntN(255))
					m.SelfMaskShares[i].Value = v
				}
				return m
			}
			return reply
		})
		var ce *CheatingError
		switch {
		case err == nil:
			checkExact(t, cfg, outcomeOf(t, srv), q, up, w)
		case errors.As(err, &ce):
		default:
			t.Fatalf("trial %d: %v", trial, err)
		}
		for _, c := range srv.Culprits() {
			if !bad[c] {
				t.Fatalf("trial %d: honest client %d named", trial, c)
			}
		}
		t.Logf("trial %d: n=%d bad=%d named=%v err=%v", trial, len(cfg.Clients), len(bad), srv.Culprits(), err)
	}
}
