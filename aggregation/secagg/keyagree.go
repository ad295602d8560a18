package secagg

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
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

// newPrivateKey reads a 32-byte X25519 scalar from r. It does not use
// ecdh.Curve.GenerateKey, which ignores its reader since Go 1.26, so that the
// keys (and everything else) are reproducible from the caller's reader.
func newPrivateKey(r io.Reader) (*ecdh.PrivateKey, [KeySize]byte, error) {
	var seed [KeySize]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return nil, seed, fmt.Errorf("secagg: reading key randomness: %w", err)
	}
	k, err := ecdh.X25519().NewPrivateKey(seed[:])
	return k, seed, err
}

// parsePublicKey checks and parses a 32-byte X25519 public key; field names
// the key in errors.
func parsePublicKey(b []byte, field string) (*ecdh.PublicKey, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("%w: %s has %d bytes, want %d", ErrMalformed, field, len(b), KeySize)
	}
	pk, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, field, err)
	}
	return pk, nil
}

// agreeKey derives the 256-bit key shared by clients a and b for the given
// purpose and round from priv (one side's private key) and pub (the other's
// public key). It is symmetric in a and b.
func agreeKey(priv *ecdh.PrivateKey, pub *ecdh.PublicKey, round uint64, a, b uint32, purpose string) ([KeySize]byte, error) {
	var out [KeySize]byte
	shared, err := priv.ECDH(pub)
	if err != nil {
		return out, fmt.Errorf("%w: key agreement between clients %d and %d: %v", ErrMalformed, a, b, err)
	}
	if a > b {
		a, b = b, a
	}
	var salt [8]byte
	binary.BigEndian.PutUint64(salt[:], round)
	info := make([]byte, 0, len(purpose)+8)
	info = append(info, purpose...)
	info = binary.BigEndian.AppendUint32(info, a)
	info = binary.BigEndian.AppendUint32(info, b)
	k, err := hkdf.Key(sha256.New, shared, salt[:], string(info), KeySize)
	if err != nil {
		return out, fmt.Errorf("secagg: hkdf: %w", err)
	}
	copy(out[:], k)
	return out, nil
}
