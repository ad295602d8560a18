package worker

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/wire"
)

// Enrolled says whether a peer is enrolled in the federation, and with which
// role. *p2p.Federation's Lookup fits (see WithIdentity).
type Enrolled func(peer.ID) (p2p.Member, bool)

// WithIdentity makes the worker authenticate its SecAgg+ messages (security
// review H1; Bonawitz et al. 2017, §4): it signs its advertised keys and
// its consistency-check response with its libp2p identity key sk, bound to
// the federation name and its own peer ID, and it refuses a round whose
// sampled workers are not all enrolled workers, or whose relayed
// neighbour keys or consistency signatures do not verify under the peer ID
// that Announce.Sampled lists for their index. enrolled looks peers up in
// the federation (e.g. (*p2p.Federation).Lookup).
func WithIdentity(sk crypto.PrivKey, federation string, enrolled Enrolled) Option {
	return func(n *Node) error {
		if sk == nil || enrolled == nil {
			return errors.New("worker: WithIdentity: nil key or federation lookup")
		}
		id, err := peer.IDFromPrivateKey(sk)
		if err != nil {
			return fmt.Errorf("worker: WithIdentity: %w", err)
		}
		if n.id != "" && n.id != id.String() {
			return fmt.Errorf("worker: WithIdentity: key of peer %s, but the worker's ID is %s", id, n.id)
		}
		n.id, n.sk, n.federation, n.enrolled = id.String(), sk, federation, enrolled
		return nil
	}
}

// roundAuth is the secagg.Authenticator of one round: SecAgg+ index i is
// the peer Announce.Sampled[i-1].
type roundAuth struct {
	sk         crypto.PrivKey
	self       peer.ID
	federation string
	sampled    []peer.ID
}

var _ secagg.Authenticator = (*roundAuth)(nil)

func (a *roundAuth) Sign(msg []byte) ([]byte, error) {
	return a.sk.Sign(wire.SecAggSigned(a.federation, a.self, msg))
}

func (a *roundAuth) Verify(id uint32, msg, sig []byte) error {
	return (&wire.SecAggVerifier{Federation: a.federation, Sampled: a.sampled}).Verify(id, msg, sig)
}

// roundAuthFor builds the authenticator of a's round, checking that every
// sampled peer is an enrolled worker. It returns nil, nil when the node has
// no identity (unit tests without a PKI).
func (n *Node) roundAuthFor(a *Announce) (*roundAuth, error) {
	if n.sk == nil {
		return nil, nil
	}
	self, _ := peer.Decode(n.id)
	ra := &roundAuth{sk: n.sk, self: self, federation: n.federation, sampled: make([]peer.ID, len(a.Sampled))}
	for i, s := range a.Sampled {
		p, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("worker %s: announce of round %d: sampled[%d] %q: %v", n.cfg.Name, a.Round, i, s, err)
		}
		m, ok := n.enrolled(p)
		if !ok {
			return nil, fmt.Errorf("worker %s: announce of round %d: sampled[%d] %s is not enrolled in the federation", n.cfg.Name, a.Round, i, p)
		}
		if m.Role != p2p.RoleWorker {
			return nil, fmt.Errorf("worker %s: announce of round %d: sampled[%d] %s (%s) has role %s, not worker", n.cfg.Name, a.Round, i, p, m.Name, m.Role)
		}
		ra.sampled[i] = p
	}
	return ra, nil
}

// secAggPolicy refuses SecAgg+ parameters an active coordinator could use
// against this worker (security review H2, M7): a threshold below
// secagg.SafeThreshold(k, policy.colluding_neighbours), and, when the
// worker has an identity, a round without the consistency check (Bonawitz
// et al. 2017, round 4), since without it an equivocating coordinator is
// held back by the threshold alone.
func (n *Node) secAggPolicy(a *Announce) error {
	sc := a.SecAgg.WithDefaults()
	if n.sk != nil && !sc.ConsistencyCheck {
		return n.refuse(a.Round, nil, "round does not run the SecAgg+ consistency check, which this worker requires")
	}
	if n.sk != nil {
		// The graph seed must be the one the announcement determines
		// (security review M7), not one the coordinator picked.
		if want := wire.GraphSeed(n.federation, a.Round, a.ModelHash, a.Sampled); sc.GraphSeed != want {
			return n.refuseDetail(a.Round, nil, "SecAgg+ graph seed is not the one derived from the announcement (wire.GraphSeed)",
				fmt.Sprintf("announced %x, derived %x", sc.GraphSeed[:8], want[:8]))
		}
	}
	p := n.cfg.Policy
	c, field := p.ColludingNeighbours, "policy.colluding_neighbours"
	if p.ColludingFraction > 0 {
		// γ of the n sampled workers collude: c of the k neighbours, except
		// with probability 2^-40 over the whole cohort (Bell et al. 2020).
		if cg := secagg.ColludersFor(sc.Degree, len(sc.Clients), p.ColludingFraction, 40); cg > c {
			c, field = cg, fmt.Sprintf("policy.colluding_fraction %g", p.ColludingFraction)
		}
		if c >= sc.Degree {
			return n.refuse(a.Round, nil, "SecAgg+ degree %d is too small for %s: up to %d of a worker's neighbours may collude", sc.Degree, field, c)
		}
	}
	if min := secagg.SafeThreshold(sc.Degree, c); sc.Threshold < min {
		return n.refuse(a.Round, nil, "SecAgg+ threshold %d is below %d, the least that tolerates %d colluding neighbours of degree %d (%s)",
			sc.Threshold, min, c, sc.Degree, field)
	}
	return nil
}
