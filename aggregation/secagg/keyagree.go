package secagg

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/sovereign-fl/sovereign/aggregation/internal/x25519"
)

// Key agreement (Bonawitz et al. 2017, §3 "Key Agreement"): each client holds
// two X25519 key pairs per round, c for encrypting shares and s for deriving
// pairwise masks; a pairwise 256-bit key is HKDF-SHA256 (RFC 5869) of the
// X25519 shared secret, salted with the round and bound to the purpose and
// the (unordered) pair of client indices.

// KeySize is the size in bytes of X25519 keys and of derived keys and seeds.
const KeySize = 32

// Purposes of derived keys, used as HKDF info prefixes.
const (
	purposeShareKey = "sovereign/secagg/v1/share-encryption"
	purposeMaskSeed = "sovereign/secagg/v1/pairwise-mask"
)

// newScalar reads a 32-byte X25519 private scalar from r (not through
// ecdh.Curve.GenerateKey, which ignores its reader since Go 1.26), so that
// the keys (and everything else) are reproducible from the caller's reader.
func newScalar(r io.Reader) ([KeySize]byte, error) {
	var s [KeySize]byte
	if _, err := io.ReadFull(r, s[:]); err != nil {
		return s, fmt.Errorf("secagg: reading key randomness: %w", err)
	}
	return s, nil
}

// lowOrder are the canonical u-coordinates of the points of small order on
// Curve25519 and its twist (0, 1, p-1 and the two of order 8): X25519 of
// any of them, or of one plus p, is zero whatever the scalar.
var lowOrder = [][KeySize]byte{
	{0},
	{1},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
}

// parsePublicKey checks a 32-byte X25519 public key; field names the key
// in errors. It refuses the points of small order, whose every key
// agreement gives the all-zero secret: a client that advertises one is
// refused at the first stage instead of failing its neighbours' agreement
// later (as a dropout it costs them nothing).
func parsePublicKey(b []byte, field string) ([KeySize]byte, error) {
	var pk [KeySize]byte
	if len(b) != KeySize {
		return pk, fmt.Errorf("%w: %s has %d bytes, want %d", ErrMalformed, field, len(b), KeySize)
	}
	copy(pk[:], b)
	if isLowOrder(&pk) {
		return pk, fmt.Errorf("%w: %s is a point of small order (%x)", ErrMalformed, field, b)
	}
	return pk, nil
}

// peerKeys parses the public keys raw(v) of the clients ids, for
// agreeKeys. They were checked when they arrived; one that fails now (a
// state restored from a damaged store) is named with its client.
func peerKeys(ids []uint32, raw func(v uint32) []byte, what string, round uint64) ([][KeySize]byte, error) {
	pubs := make([][KeySize]byte, len(ids))
	for i, v := range ids {
		var err error
		if pubs[i], err = parsePublicKey(raw(v), fmt.Sprintf("%s of client %d (round %d)", what, v, round)); err != nil {
			return nil, err
		}
	}
	return pubs, nil
}

// isLowOrder reports whether u (top bit ignored, as X25519 does, and
// reduced mod p) is one of lowOrder.
func isLowOrder(u *[KeySize]byte) bool {
	v := *u
	v[31] &= 0x7f
	// v < 2^255 < 2p: v - p when v ≥ p = 2^255 - 19, that is when the top
	// 250 bits are all ones and the low byte is ≥ 0xed.
	ge := v[31] == 0x7f && v[0] >= 0xed
	for i := 1; i < 31; i++ {
		ge = ge && v[i] == 0xff
	}
	if ge {
		v = [KeySize]byte{v[0] - 0xed}
	}
	for _, lo := range lowOrder {
		if v == lo {
			return true
		}
	}
	return false
}

// agreeKeys derives the 256-bit key that client me shares with each client
// peers[i] for the given purpose and round, from me's private scalar priv
// and the peers' public keys pubs: HKDF-SHA256 of the X25519 secret (all of
// them in one batch, x25519.Agree). It is symmetric in me and the peer.
func agreeKeys(priv *[KeySize]byte, pubs [][KeySize]byte, round uint64, me uint32, peers []uint32, purpose string) ([][KeySize]byte, error) {
	shared := make([][KeySize]byte, len(pubs))
	x25519.Agree(shared, priv, pubs)
	defer clear(shared)
	var salt [8]byte
	binary.BigEndian.PutUint64(salt[:], round)
	info := make([]byte, 0, len(purpose)+8)
	keys := make([][KeySize]byte, len(shared))
	for i := range shared {
		if x25519.IsZero(&shared[i]) {
			return nil, fmt.Errorf("%w: key agreement between clients %d and %d: the public key of client %d is a point of small order", ErrMalformed, me, peers[i], peers[i])
		}
		a, b := me, peers[i]
		if a > b {
			a, b = b, a
		}
		info = append(info[:0], purpose...)
		info = binary.BigEndian.AppendUint32(info, a)
		info = binary.BigEndian.AppendUint32(info, b)
		k, err := hkdf.Key(sha256.New, shared[i][:], salt[:], string(info), KeySize)
		if err != nil {
			return nil, fmt.Errorf("secagg: hkdf: %w", err)
		}
		keys[i] = [KeySize]byte(k)
	}
	return keys, nil
}

// publicKeys returns the X25519 public keys of the scalars, in one batch.
func publicKeys(scalars ...[KeySize]byte) [][KeySize]byte {
	pubs := make([][KeySize]byte, len(scalars))
	x25519.PublicKeys(pubs, scalars)
	return pubs
}
