package worker

// Security review H1 and H2, ported: a coordinator substitutes the keys of
// the victim's neighbours with keys of clients it runs itself, or names
// phantom workers, or announces a low threshold. The worker must refuse.

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/wire"
)

// pki is a test federation of n workers with Ed25519 identities.
type pki struct {
	keys    map[peer.ID]crypto.PrivKey
	members map[peer.ID]p2p.Member
	ids     []peer.ID // sorted by string form, as Announce.Sampled
}

func newPKI(t *testing.T, n int, seed uint64) *pki {
	t.Helper()
	p := &pki{keys: map[peer.ID]crypto.PrivKey{}, members: map[peer.ID]p2p.Member{}}
	r := seeded(seed)
	for i := range n {
		sk, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(sk)
		p.keys[id] = sk
		p.members[id] = p2p.Member{Name: workerID(i), ID: id, Role: p2p.RoleWorker}
		p.ids = append(p.ids, id)
	}
	slices.SortFunc(p.ids, func(a, b peer.ID) int {
		if a.String() < b.String() {
			return -1
		}
		return 1
	})
	return p
}

func (p *pki) lookup(id peer.ID) (p2p.Member, bool) { m, ok := p.members[id]; return m, ok }

// authNode is a worker node with identity key sk in federation p.
func authNode(t *testing.T, p *pki, id peer.ID, mutate func(c *Config)) *Node {
	t.Helper()
	cfg := testConfig("victim")
	cfg.Policy.MaxEpsilon = math.Inf(1)
	if mutate != nil {
		mutate(cfg)
	}
	st, err := OpenStore(t.TempDir(), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	train, test := shard(t, 0, 1)
	n, err := NewNode(cfg, st, train, test, nil, WithIdentity(p.keys[id], "fed-test", p.lookup), WithRand(seeded(7)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func authAnnounce(t *testing.T, p *pki, dim int, global []float32) Announce {
	n := len(p.ids)
	ids := make([]uint32, n)
	sampled := make([]string, n)
	for i, id := range p.ids {
		ids[i], sampled[i] = uint32(i+1), id.String()
	}
	h := ModelHash(global)
	return Announce{
		Round: 1, ModelHash: h, ModelSpec: testSpec, NumParams: dim,
		Train: TrainParams{Epochs: 1, Batch: 32, LR: 0.1},
		SecAgg: secagg.Config{Round: 1, Clients: ids, ClipRange: 1, MaxWeight: maxExamples, Dim: dim, ConsistencyCheck: true,
			GraphSeed: wire.GraphSeed("fed-test", 1, h, sampled)},
		Sampled: sampled,
	}
}

// testAuth signs as index me with key sk for the test PKI's ids.
func puppetAuth(p *pki, me uint32, sk crypto.PrivKey) *roundAuth {
	self, _ := peer.IDFromPrivateKey(sk)
	return &roundAuth{sk: sk, self: self, federation: "fed-test", sampled: p.ids}
}

// H1: the review's key substitution. The puppets' keys are signed with the
// coordinator's own key (or not at all): the victim refuses at stage 1,
// before it sends a single share.
func TestAttackKeySubstitution(t *testing.T) {
	cl := newCluster(t, 1, nil)
	p := newPKI(t, 5, 11)
	victimPeer := p.ids[2]
	victim := authNode(t, p, victimPeer, func(c *Config) { c.Policy.MinCohort = 5 })
	a := authAnnounce(t, p, len(cl.global), cl.global)
	vidx := a.NodeIndex(victim.ID())
	ads, err := victim.Advertise(a)
	if err != nil {
		t.Fatalf("victim refused an honest announcement: %v", err)
	}
	if len(ads.Signature) == 0 {
		t.Fatal("the victim's advertisement is not signed")
	}
	rogue, _, _ := crypto.GenerateEd25519Key(seeded(99))
	for _, mode := range []string{"coordinator-signed", "unsigned"} {
		var keys []secagg.AdvertiseKeys
		for i := range p.ids {
			idx := uint32(i + 1)
			if idx == vidx {
				continue
			}
			c, err := secagg.NewClient(a.SecAgg, idx, seeded(uint64(100+i)))
			if err != nil {
				t.Fatal(err)
			}
			if mode == "coordinator-signed" {
				c.SetAuthenticator(puppetAuth(p, idx, rogue))
			}
			ad, _ := c.Advertise()
			keys = append(keys, ad)
		}
		_, err := victim.ShareKeys(secagg.KeyBroadcast{Round: 1, To: vidx, Keys: keys})
		if !errors.Is(err, secagg.ErrBadSignature) {
			t.Fatalf("%s puppet keys: err = %v, want ErrBadSignature", mode, err)
		}
		t.Logf("%s: refused: %v", mode, err)
	}
	// The honest neighbours' keys, signed with their own identities, pass.
	var keys []secagg.AdvertiseKeys
	for i, id := range p.ids {
		idx := uint32(i + 1)
		if idx == vidx {
			continue
		}
		c, _ := secagg.NewClient(a.SecAgg, idx, seeded(uint64(200+i)))
		c.SetAuthenticator(puppetAuth(p, idx, p.keys[id]))
		ad, _ := c.Advertise()
		keys = append(keys, ad)
	}
	if _, err := victim.ShareKeys(secagg.KeyBroadcast{Round: 1, To: vidx, Keys: keys}); err != nil {
		t.Fatalf("honest neighbours' keys refused: %v", err)
	}
}

// H1: an announcement that samples a phantom (not enrolled) or a
// non-worker peer is refused at stage 0.
func TestAttackPhantomSampledWorkers(t *testing.T) {
	cl := newCluster(t, 1, nil)
	p := newPKI(t, 5, 12)
	victim := authNode(t, p, p.ids[0], func(c *Config) { c.Policy.MinCohort = 5 })
	phantom := p.ids[4]
	delete(p.members, phantom)
	a := authAnnounce(t, p, len(cl.global), cl.global)
	if _, err := victim.Advertise(a); err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Fatalf("phantom sampled worker: err = %v, want a refusal naming it as not enrolled", err)
	}
	p.members[phantom] = p2p.Member{Name: "obs", ID: phantom, Role: p2p.RoleObserver}
	if _, err := victim.Advertise(a); err == nil || !strings.Contains(err.Error(), "not worker") {
		t.Fatalf("observer sampled as a worker: err = %v", err)
	}
}

// H2: the review's low-threshold attack starts with the coordinator
// announcing t below a strict majority; with policy.colluding_neighbours =
// c the worker also refuses t < SafeThreshold(k, c).
func TestAttackLowThresholdRefused(t *testing.T) {
	cl := newCluster(t, 1, nil)
	p := newPKI(t, 9, 13)
	for _, tc := range []struct {
		c, t  int
		allow bool
	}{{0, 4, false}, {0, 5, true}, {2, 5, false}, {2, 6, true}} {
		victim := authNode(t, p, p.ids[0], func(c *Config) { c.Policy.MinCohort = 5; c.Policy.ColludingNeighbours = tc.c })
		a := authAnnounce(t, p, len(cl.global), cl.global)
		a.SecAgg.Degree, a.SecAgg.Threshold = 8, tc.t
		_, err := victim.Advertise(a)
		var r *Refusal
		// Below a strict majority the announcement is invalid for any
		// policy (secagg.Config.Validate); above it the policy's c rules.
		invalid := err != nil && strings.Contains(err.Error(), "strict majority")
		if tc.allow != (err == nil) || (err != nil && !errors.As(err, &r) && !invalid) || (tc.c == 0 && !tc.allow && !invalid) {
			t.Fatalf("c=%d t=%d k=8: err = %v, want allowed=%v", tc.c, tc.t, err, tc.allow)
		}
	}
}

// H2: a coordinator that switches the consistency check off (so that the
// unmask requests carry no signatures to check) is refused at stage 0.
func TestAttackRoundWithoutConsistencyCheckRefused(t *testing.T) {
	cl := newCluster(t, 1, nil)
	p := newPKI(t, 5, 14)
	victim := authNode(t, p, p.ids[1], func(c *Config) { c.Policy.MinCohort = 5 })
	a := authAnnounce(t, p, len(cl.global), cl.global)
	a.SecAgg.ConsistencyCheck = false
	_, err := victim.Advertise(a)
	var r *Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Reason, "consistency check") {
		t.Fatalf("round without the consistency check: err = %v, want a refusal naming it", err)
	}
	a.SecAgg.ConsistencyCheck = true
	if _, err := victim.Advertise(a); err != nil {
		t.Fatalf("the same round with the check: %v", err)
	}
}

// M7: a coordinator that picks the neighbour graph itself (to put the
// victim among its puppets) announces a seed other than the one the
// announcement determines; the worker refuses it. So does an announcement
// whose sample or model was changed after the seed was derived.
func TestAttackChosenGraphSeedRefused(t *testing.T) {
	cl := newCluster(t, 1, nil)
	p := newPKI(t, 5, 15)
	victim := authNode(t, p, p.ids[3], func(c *Config) { c.Policy.MinCohort = 5 })
	honest := authAnnounce(t, p, len(cl.global), cl.global)
	for name, lie := range map[string]func(a *Announce){
		"chosen seed":      func(a *Announce) { a.SecAgg.GraphSeed[0] ^= 1 },
		"other federation": func(a *Announce) { a.SecAgg.GraphSeed = wire.GraphSeed("other", 1, a.ModelHash, a.Sampled) },
		"other round":      func(a *Announce) { a.SecAgg.GraphSeed = wire.GraphSeed("fed-test", 2, a.ModelHash, a.Sampled) },
		"other model":      func(a *Announce) { a.ModelHash[0] ^= 1 },
	} {
		a := honest
		a.Sampled = slices.Clone(honest.Sampled)
		a.SecAgg.Clients = slices.Clone(honest.SecAgg.Clients)
		lie(&a)
		_, err := victim.Advertise(a)
		var r *Refusal
		if !errors.As(err, &r) || !strings.Contains(r.Reason, "graph seed") {
			t.Fatalf("%s: err = %v, want a refusal naming the graph seed", name, err)
		}
	}
	if _, err := victim.Advertise(honest); err != nil {
		t.Fatalf("the derived seed: %v", err)
	}
}

// M7: with policy.colluding_fraction γ the worker sizes c itself from the
// announced n and k (secagg.ColludersFor) and refuses a threshold that a
// γ-fraction of colluders could beat; colluding_neighbours still applies
// when it is the larger.
func TestAttackThresholdBelowColludingFraction(t *testing.T) {
	cl := newCluster(t, 1, nil)
	p := newPKI(t, 9, 16)
	const k, n = 8, 9
	cg := secagg.ColludersFor(k, n, 0.001, 40)
	if cg < 1 || cg >= k {
		t.Fatalf("ColludersFor(%d, %d, 0.001) = %d: the test needs 1 ≤ c < k", k, n, cg)
	}
	for _, tc := range []struct {
		gamma float64
		c, t  int
		allow bool
	}{
		{0.001, 0, secagg.SafeThreshold(k, cg) - 1, false},
		{0.001, 0, secagg.SafeThreshold(k, cg), true},
		{0.001, cg + 1, secagg.SafeThreshold(k, cg), false}, // colluding_neighbours is larger
		{0.5, 0, k + 1, false},                              // no threshold protects: degree too small
	} {
		victim := authNode(t, p, p.ids[0], func(c *Config) {
			c.Policy.MinCohort, c.Policy.ColludingFraction, c.Policy.ColludingNeighbours = 5, tc.gamma, tc.c
		})
		a := authAnnounce(t, p, len(cl.global), cl.global)
		a.SecAgg.Degree, a.SecAgg.Threshold = k, tc.t
		_, err := victim.Advertise(a)
		var r *Refusal
		if tc.allow != (err == nil) || (err != nil && !errors.As(err, &r)) {
			t.Fatalf("γ=%v c=%d t=%d k=%d: err = %v, want allowed=%v", tc.gamma, tc.c, tc.t, k, err, tc.allow)
		}
		if err != nil {
			t.Logf("γ=%v c=%d t=%d: %s", tc.gamma, tc.c, tc.t, r.Reason)
		}
	}
}

// H2 with identities: the victim's consistency signature verifies under
// its peer ID, and after a restart on the same store (a new leader asking
// again) it returns the very same signature and refuses another set.
func TestConsistencySignatureSurvivesRestartWithIdentity(t *testing.T) {
	cl := newCluster(t, 1, nil)
	p := newPKI(t, 5, 17)
	victimPeer := p.ids[1]
	dir := t.TempDir()
	open := func() (*Node, *Store) {
		cfg := testConfig("victim")
		cfg.Policy.MaxEpsilon, cfg.Policy.MinCohort = math.Inf(1), 5
		st, err := OpenStore(dir, StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		train, test := shard(t, 0, 1)
		n, err := NewNode(cfg, st, train, test, nil, WithIdentity(p.keys[victimPeer], "fed-test", p.lookup), WithRand(seeded(7)))
		if err != nil {
			t.Fatal(err)
		}
		return n, st
	}
	victim, st := open()
	a := authAnnounce(t, p, len(cl.global), cl.global)
	vidx := a.NodeIndex(victim.ID())
	srv, err := secagg.NewServer(a.SecAgg)
	if err != nil {
		t.Fatal(err)
	}
	verifier := &wire.SecAggVerifier{Federation: "fed-test", Sampled: p.ids}
	srv.SetAuthenticator(verifier)
	peers := map[uint32]*secagg.Client{}
	now := time.Unix(0, 0)
	for i, id := range p.ids {
		idx := uint32(i + 1)
		var ad secagg.AdvertiseKeys
		if idx == vidx {
			ad, err = victim.Advertise(a)
		} else {
			c, _ := secagg.NewClient(a.SecAgg, idx, seeded(uint64(300+i)))
			c.SetAuthenticator(puppetAuth(p, idx, p.keys[id]))
			peers[idx] = c
			ad, err = c.Advertise()
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Receive(ad, now); err != nil {
			t.Fatal(err)
		}
	}
	var signed secagg.ConsistencyResponse
	var req secagg.ConsistencyRequest
	for srv.Stage() != secagg.StageUnmask {
		out, _, err := srv.Advance(now)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			var reply any
			c := peers[o.To]
			switch m := o.Msg.(type) {
			case secagg.KeyBroadcast:
				if o.To == vidx {
					reply, err = victim.ShareKeys(m)
				} else {
					reply, err = c.ShareKeys(m.Keys)
				}
			case secagg.ShareBundle:
				if o.To == vidx {
					reply, err = victim.MaskedInput(m, cl.global)
				} else {
					reply, err = c.MaskedInput(m.Shares, make([]float32, len(cl.global)), 1)
				}
			case secagg.ConsistencyRequest:
				if o.To == vidx {
					req = m
					signed, err = victim.ConsistencyCheck(m)
					reply = signed
				} else {
					reply, err = c.ConsistencyCheck(m)
				}
			default:
				continue // the unmask requests: not needed here
			}
			if err != nil {
				t.Fatalf("node %d: %v", o.To, err)
			}
			if err := srv.Receive(reply, now); err != nil {
				t.Fatalf("server refused node %d: %v", o.To, err)
			}
		}
	}
	if len(signed.Signature) == 0 {
		t.Fatal("the victim's consistency response is not signed")
	}
	if err := verifier.Verify(vidx, secagg.ConsistencyMessage(1, vidx, req.Survivors), signed.Signature); err != nil {
		t.Fatalf("the victim's signature does not verify under its peer ID: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	victim, st = open()
	t.Cleanup(func() { st.Close() })
	again, err := victim.ConsistencyCheck(req)
	if err != nil || !slices.Equal(again.Signature, signed.Signature) {
		t.Fatalf("after a restart: %v (same signature: %v)", err, slices.Equal(again.Signature, signed.Signature))
	}
	other := req
	other.Survivors = slices.DeleteFunc(slices.Clone(req.Survivors), func(x uint32) bool { return x != vidx && x == req.Survivors[len(req.Survivors)-1] })
	var r *Refusal
	if _, err := victim.ConsistencyCheck(other); !errors.As(err, &r) || !strings.Contains(r.Reason, "already signed") {
		t.Fatalf("another set after a restart: err = %v, want a refusal", err)
	}
}
