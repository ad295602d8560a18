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

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/p2p"
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
	return Announce{
		Round: 1, ModelHash: ModelHash(global), ModelSpec: testSpec, NumParams: dim,
		Train:   TrainParams{Epochs: 1, Batch: 32, LR: 0.1},
		SecAgg:  secagg.Config{Round: 1, Clients: ids, ClipRange: 1, MaxWeight: maxExamples, Dim: dim},
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
		if tc.allow != (err == nil) || (err != nil && !errors.As(err, &r)) {
			t.Fatalf("c=%d t=%d k=8: err = %v, want allowed=%v", tc.c, tc.t, err, tc.allow)
		}
	}
}
