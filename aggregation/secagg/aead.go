package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
)

// Authenticated encryption of the Shamir shares (Bonawitz et al. 2017, §3
// "Authenticated Encryption"): AES-256-GCM under the pairwise share key. The
// key is the same in both directions of a pair, so the nonce is
// sender‖recipient‖0 (unique per direction; keys are fresh every round) and
// the associated data binds the round, the sender and the recipient, so a
// ciphertext cannot be replayed into another round or reflected back.

const aeadOverhead = 16

func shareAD(round uint64, from, to uint32) []byte {
	ad := make([]byte, 0, 32)
	ad = append(ad, "sovereign/secagg/v1/share"...)
	ad = binary.BigEndian.AppendUint64(ad, round)
	ad = binary.BigEndian.AppendUint32(ad, from)
	ad = binary.BigEndian.AppendUint32(ad, to)
	return ad
}

func shareNonce(from, to uint32) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint32(n[0:], from)
	binary.BigEndian.PutUint32(n[4:], to)
	return n
}

func newGCM(key [KeySize]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealShare encrypts plaintext from sender to recipient in round.
func sealShare(key [KeySize]byte, round uint64, from, to uint32, plaintext []byte) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return g.Seal(nil, shareNonce(from, to), plaintext, shareAD(round, from, to)), nil
}

// openShare decrypts a ciphertext claimed to go from sender to recipient in
// round; it fails if any of the three, or the key, differ.
func openShare(key [KeySize]byte, round uint64, from, to uint32, ciphertext []byte) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	pt, err := g.Open(nil, shareNonce(from, to), ciphertext, shareAD(round, from, to))
	if err != nil {
		return nil, fmt.Errorf("%w: share from client %d to client %d in round %d does not authenticate", ErrMalformed, from, to, round)
	}
	return pt, nil
}
