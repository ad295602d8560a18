package secagg

// Issue item 9's randomized test: honest rounds of the hardened protocol
// (signed keys, seed commitments, consistency check) in which up to a
// fraction γ of the clients are malicious and each sends junk at one
// randomly chosen stage: a forged advertisement signature, garbled
// encrypted shares, a forged consistency signature, or junk Shamir shares
// at unmask. A junk masked input is not in the list: SecAgg cannot tell a
// poisoned input from an honest one (that is robust aggregation's problem;
// docs/threat-model.md). Every round must either release exactly the sum
// of its survivors' inputs or fail naming only malicious clients; every
// junk sender must be refused or named; no wrong sum is ever released.

import (
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// junkStages are the stages a malicious client may lie at.
var junkStages = []Stage{StageAdvertise, StageShareKeys, StageConsistency, StageUnmask}

// runJunkRound drives one round in which client c's message of stage
// lie[c] is garbled by r. Messages the server refuses are dropped and
// their errors returned per client; honest clients must never refuse.
func runJunkRound(t *testing.T, cfg Config, keys map[uint32]ed25519.PrivateKey, up map[uint32][]float32, w map[uint32]float64,
	lie map[uint32]Stage, r *rand.Rand) (srv *Server, refused map[uint32]error, sent map[uint32]bool, err error) {
	t.Helper()
	srv, err = NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg = srv.Config()
	srv.SetAuthenticator(edAuth{0, keys})
	sent = map[uint32]bool{}
	clients := map[uint32]*Client{}
	for i, id := range cfg.Clients {
		c, err := NewClient(cfg, id, seeded(uint64(900+i)))
		if err != nil {
			t.Fatal(err)
		}
		c.SetAuthenticator(edAuth{id, keys})
		clients[id] = c
	}
	refused = map[uint32]error{}
	flip := func(b []byte) []byte {
		b = slices.Clone(b)
		b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		return b
	}
	now := t0
	send := func(from uint32, st Stage, reply any) {
		if s, ok := lie[from]; ok && s == st {
			sent[from] = true
			switch m := reply.(type) {
			case AdvertiseKeys:
				m.Signature = flip(m.Signature)
				reply = m
			case []EncryptedShare:
				m = slices.Clone(m)
				for i := range m {
					m[i].Ciphertext = flip(m[i].Ciphertext)
				}
				reply = m
			case ConsistencyResponse:
				m.Signature = flip(m.Signature)
				reply = m
			case UnmaskResponse:
				m.SelfMaskShares = slices.Clone(m.SelfMaskShares)
				for i := range m.SelfMaskShares {
					v := slices.Clone(m.SelfMaskShares[i].Value)
					v[r.IntN(len(v)/8)*8+7] ^= byte(1 + r.IntN(255))
					m.SelfMaskShares[i].Value = v
				}
				reply = m
			}
		}
		if err := srv.Receive(reply, now); err != nil {
			if _, bad := lie[from]; !bad {
				t.Fatalf("server refused honest client %d at %v: %v", from, st, err)
			}
			refused[from] = err
		}
	}
	for _, id := range cfg.Clients {
		ad, err := clients[id].Advertise()
		if err != nil {
			t.Fatal(err)
		}
		send(id, StageAdvertise, ad)
	}
	for {
		st := srv.Stage()
		out, done, err := srv.Advance(now)
		if done || err != nil {
			return srv, refused, sent, err
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
				st = StageShareKeys
			case ShareBundle:
				reply, err = c.MaskedInput(m.Shares, up[o.To], w[o.To])
				st = StageMaskedInput
			case ConsistencyRequest:
				reply, err = c.ConsistencyCheck(m)
				st = StageConsistency
			case UnmaskRequest:
				reply, err = c.Unmask(m)
				st = StageUnmask
			}
			if err != nil {
				t.Fatalf("client %d refused a request of the honest server: %v", o.To, err)
			}
			send(o.To, st, reply)
		}
	}
}

func TestAttackRandomJunkAtRandomStages(t *testing.T) {
	const gamma = 0.2
	r := rand.New(seeded(4242))
	outcomes := map[string]int{}
	for trial := range 24 {
		n := 10 + r.IntN(10)
		cfg := testConfig(n, 6)
		cfg.ConsistencyCheck = true
		keys := testPKI(cfg.Clients, uint64(trial)+7)
		q := captureQuantized(t)
		up, w := testInputs(cfg, uint64(trial))
		lie := map[uint32]Stage{}
		for _, i := range r.Perm(n)[:1+r.IntN(int(gamma*float64(n)))] {
			lie[cfg.Clients[i]] = junkStages[r.IntN(len(junkStages))]
		}
		srv, refused, sent, err := runJunkRound(t, cfg, keys, up, w, lie, r)
		var ce *CheatingError
		var ie *InsufficientError
		switch {
		case err == nil:
			checkExact(t, cfg, outcomeOf(t, srv), q, up, w)
			outcomes["exact sum"]++
		case errors.As(err, &ce):
			for _, c := range ce.Culprits {
				if _, bad := lie[c]; !bad {
					t.Fatalf("trial %d: honest client %d named in %v", trial, c, err)
				}
			}
			outcomes["failed, culprits named"]++
		case errors.As(err, &ie):
			// Too many junk senders among one client's holders: the
			// round fails without a sum, as it must.
			outcomes["failed, too few holders"]++
		default:
			t.Fatalf("trial %d: %v", trial, err)
		}
		named := map[uint32]bool{}
		for _, c := range append(srv.Culprits(), srv.Accused()...) {
			if _, bad := lie[c]; !bad {
				t.Fatalf("trial %d: honest client %d named (culprits %v, accused %v)", trial, c, srv.Culprits(), srv.Accused())
			}
			named[c] = true
		}
		if ce != nil {
			for _, c := range ce.Culprits {
				named[c] = true
			}
		}
		// Every liar whose lie reached the server is refused or named.
		for c, st := range lie {
			if !sent[c] {
				continue // the round ended (or dropped it) before its stage
			}
			switch {
			case refused[c] != nil:
				if !errors.Is(refused[c], ErrBadSignature) {
					t.Fatalf("trial %d: client %d's junk at %v refused with %v, want ErrBadSignature", trial, c, st, refused[c])
				}
			case named[c]:
			case st == StageShareKeys && ie != nil && ie.Stage == StageMaskedInput:
				// Its garbled shares cost its neighbours' holders at once.
			default:
				t.Fatalf("trial %d: client %d sent junk at %v and was neither refused nor named (err %v, culprits %v, accused %v)",
					trial, c, st, err, srv.Culprits(), srv.Accused())
			}
		}
		t.Logf("trial %d: n=%d liars=%v err=%v", trial, n, lie, err)
	}
	t.Logf("outcomes: %v", outcomes)
	if outcomes["exact sum"] == 0 {
		t.Fatal("no trial released a sum: the test exercises nothing")
	}
}
