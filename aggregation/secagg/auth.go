package secagg

import (
	"crypto/sha256"
	"encoding/binary"
)

// Authenticator binds protocol messages to the clients' long-term
// identities, as the active-adversary variant of Bonawitz et al. 2017 (§4,
// "we assume a PKI") requires: without it a server can substitute the keys
// of clients it runs itself for a victim's neighbours and read the victim's
// input. Sign and Verify see the byte strings built by this package (which
// already carry a domain tag, the round and the client index); an
// implementation adds the federation and the identity it speaks for.
// Implementations must be safe to call from one goroutine at a time.
type Authenticator interface {
	// Sign signs msg as the local client.
	Sign(msg []byte) ([]byte, error)
	// Verify checks that sig is client id's signature of msg. It must fail
	// for any id that is not a sampled, enrolled client of the round.
	Verify(id uint32, msg, sig []byte) error
}

// Domain tags of the signed and committed byte strings.
const (
	tagAdvertise   = "sovereign/secagg/v1/advertise"
	tagConsistency = "sovereign/secagg/v1/consistency"
	tagSeedCommit  = "sovereign/secagg/v1/seed-commit"
)

func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// AdvertiseMessage returns the byte string a client signs for its
// advertisement: tag ‖ round ‖ from ‖ EncKey ‖ MaskKey ‖ SeedCommit.
func AdvertiseMessage(a AdvertiseKeys) []byte {
	b := appendField(nil, []byte(tagAdvertise))
	b = binary.BigEndian.AppendUint64(b, a.Round)
	b = binary.BigEndian.AppendUint32(b, a.From)
	b = appendField(b, a.EncKey)
	b = appendField(b, a.MaskKey)
	return appendField(b, a.SeedCommit)
}

// ConsistencyMessage returns the byte string a survivor signs in the
// consistency check: tag ‖ round ‖ signer ‖ sorted survivors.
func ConsistencyMessage(round uint64, from uint32, survivors []uint32) []byte {
	b := appendField(nil, []byte(tagConsistency))
	b = binary.BigEndian.AppendUint64(b, round)
	b = binary.BigEndian.AppendUint32(b, from)
	b = binary.BigEndian.AppendUint32(b, uint32(len(survivors)))
	for _, v := range survivors {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

// seedCommit is the commitment to a self-mask seed b_u: SHA-256 of tag ‖
// round ‖ owner ‖ b_u. b_u is 256 uniform bits, so the hash hides it.
func seedCommit(round uint64, owner uint32, seed []byte) []byte {
	h := sha256.New()
	h.Write(appendField(nil, []byte(tagSeedCommit)))
	var b [12]byte
	binary.BigEndian.PutUint64(b[:], round)
	binary.BigEndian.PutUint32(b[8:], owner)
	h.Write(b[:])
	h.Write(seed)
	return h.Sum(nil)
}
