package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

// secAggAuthDomain separates SecAgg+ signatures from every other use of an
// identity key.
const secAggAuthDomain = "sovereign/secagg-auth/v1"

// SecAggSigned returns the bytes an identity key signs for a SecAgg+
// message msg (secagg.AdvertiseMessage or secagg.ConsistencyMessage): the
// domain, the federation name and the signer's peer ID, each length-
// prefixed, then msg (security review H1).
func SecAggSigned(federation string, signer peer.ID, msg []byte) []byte {
	b := make([]byte, 0, len(secAggAuthDomain)+len(federation)+len(signer)+len(msg)+12)
	for _, f := range []string{secAggAuthDomain, federation, string(signer)} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return append(b, msg...)
}

// SecAggVerifier verifies SecAgg+ signatures of one round: node index i is
// the peer Sampled[i-1], whose public key its peer ID embeds. It cannot
// sign; the coordinator uses it to refuse a lying worker's advertisement
// before relaying it to honest neighbours.
type SecAggVerifier struct {
	Federation string
	Sampled    []peer.ID
}

var _ secagg.Authenticator = (*SecAggVerifier)(nil)

// NewSecAggVerifier decodes the sampled peer IDs of a round.
func NewSecAggVerifier(federation string, sampled []string) (*SecAggVerifier, error) {
	v := &SecAggVerifier{Federation: federation, Sampled: make([]peer.ID, len(sampled))}
	for i, s := range sampled {
		p, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("sampled[%d] %q: %w", i, s, err)
		}
		v.Sampled[i] = p
	}
	return v, nil
}

// Sign implements secagg.Authenticator; a verifier has no key.
func (v *SecAggVerifier) Sign([]byte) ([]byte, error) {
	return nil, errors.New("wire: SecAggVerifier cannot sign")
}

// Verify implements secagg.Authenticator.
func (v *SecAggVerifier) Verify(id uint32, msg, sig []byte) error {
	if id == 0 || int(id) > len(v.Sampled) {
		return fmt.Errorf("node index %d is not sampled (%d workers)", id, len(v.Sampled))
	}
	p := v.Sampled[id-1]
	pub, err := p.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("peer %s (node %d): no public key in its ID: %v", p, id, err)
	}
	ok, err := pub.Verify(SecAggSigned(v.Federation, p, msg), sig)
	if err != nil || !ok {
		return fmt.Errorf("signature of peer %s (node %d) does not verify under its identity key", p, id)
	}
	return nil
}

// graphSeedDomain separates the graph seed from every other hash.
const graphSeedDomain = "sovereign/secagg-graph-seed/v1"

// GraphSeed is the SecAgg+ neighbour-graph seed of a round (Bell et al.
// 2020, §3: a random k-regular graph, public to all): SHA-256 of the
// domain, the federation name, the round, the announced model's hash and
// the sampled peer IDs in order, each length-prefixed. Every field is in
// the announcement, so each worker recomputes it and refuses a round whose
// announced seed differs (security review M7): the coordinator cannot pick
// the graph freely, only through the sample it announces.
func GraphSeed(federation string, round uint64, modelHash [32]byte, sampled []string) [32]byte {
	h := sha256.New()
	var b []byte
	for _, f := range []string{graphSeedDomain, federation} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint64(b, round)
	b = append(b, modelHash[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(sampled)))
	h.Write(b)
	for _, s := range sampled {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(s)))
		h.Write(l[:])
		h.Write([]byte(s))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
