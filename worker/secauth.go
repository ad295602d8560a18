package worker

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/p2p"
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

// authDomain separates these signatures from every other use of the key.
const authDomain = "sovereign/secagg-auth/v1"

// signedBytes binds msg to the federation and the signer's peer ID.
func signedBytes(federation string, signer peer.ID, msg []byte) []byte {
	b := make([]byte, 0, len(authDomain)+len(federation)+len(signer)+len(msg)+12)
	for _, f := range [][]byte{[]byte(authDomain), []byte(federation), []byte(signer)} {
		b = append(b, byte(len(f)>>24), byte(len(f)>>16), byte(len(f)>>8), byte(len(f)))
		b = append(b, f...)
	}
	return append(b, msg...)
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
	return a.sk.Sign(signedBytes(a.federation, a.self, msg))
}

func (a *roundAuth) Verify(id uint32, msg, sig []byte) error {
	if id == 0 || int(id) > len(a.sampled) {
		return fmt.Errorf("node index %d is not sampled (%d workers)", id, len(a.sampled))
	}
	p := a.sampled[id-1]
	pub, err := p.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("peer %s (node %d): no public key in its ID: %v", p, id, err)
	}
	ok, err := pub.Verify(signedBytes(a.federation, p, msg), sig)
	if err != nil || !ok {
		return fmt.Errorf("signature of peer %s (node %d) does not verify under its identity key", p, id)
	}
	return nil
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
// worker has an identity, a round without the consistency check is still
// accepted only while coordinators do not run it (see docs/secagg-security.md).
func (n *Node) secAggPolicy(a *Announce) error {
	sc := a.SecAgg.WithDefaults()
	c := n.cfg.Policy.ColludingNeighbours
	if min := secagg.SafeThreshold(sc.Degree, c); sc.Threshold < min {
		return n.refuse(a.Round, nil, "SecAgg+ threshold %d is below %d, the least that tolerates %d colluding neighbours of degree %d (policy.colluding_neighbours)",
			sc.Threshold, min, c, sc.Degree)
	}
	return nil
}
