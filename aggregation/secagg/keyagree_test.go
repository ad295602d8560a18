package secagg

import (
	"crypto/ecdh"
	"errors"
	"strings"
	"testing"
)

// keyPair draws a scalar from r and returns it with its public key.
func keyPair(t *testing.T, r interface{ Read([]byte) (int, error) }) (priv, pub [KeySize]byte) {
	t.Helper()
	priv, err := newScalar(r)
	if err != nil {
		t.Fatal(err)
	}
	return priv, publicKeys(priv)[0]
}

func agree1(t *testing.T, priv, pub [KeySize]byte, round uint64, me, peer uint32, purpose string) [KeySize]byte {
	t.Helper()
	k, err := agreeKeys(&priv, [][KeySize]byte{pub}, round, me, []uint32{peer}, purpose)
	if err != nil {
		t.Fatal(err)
	}
	return k[0]
}

func TestAgreeKeySymmetricAndBound(t *testing.T) {
	r := seeded(1)
	a, aPub := keyPair(t, r)
	b, bPub := keyPair(t, r)
	_, cPub := keyPair(t, r)
	kab := agree1(t, a, bPub, 5, 1, 2, purposeMaskSeed)
	if kba := agree1(t, b, aPub, 5, 2, 1, purposeMaskSeed); kab != kba {
		t.Fatal("pairwise key differs between the two sides")
	}
	for name, k := range map[string][KeySize]byte{
		"other round":   agree1(t, a, bPub, 6, 1, 2, purposeMaskSeed),
		"other purpose": agree1(t, a, bPub, 5, 1, 2, purposeShareKey),
		"other pair":    agree1(t, a, bPub, 5, 1, 3, purposeMaskSeed),
		"other peer":    agree1(t, a, cPub, 5, 1, 2, purposeMaskSeed),
	} {
		if k == kab {
			t.Fatalf("%s gave the same key", name)
		}
	}
	// Keys are reproducible from the reader.
	if _, a2Pub := keyPair(t, seeded(1)); a2Pub != aPub {
		t.Fatal("same reader gave a different key")
	}
	// The public key is crypto/ecdh's, and so is the shared secret under
	// the HKDF (the batch of several peers included).
	ref, _ := ecdh.X25519().NewPrivateKey(a[:])
	if string(ref.PublicKey().Bytes()) != string(aPub[:]) {
		t.Fatal("public key differs from crypto/ecdh's")
	}
	keys, err := agreeKeys(&a, [][KeySize]byte{bPub, cPub, bPub}, 5, 1, []uint32{2, 3, 2}, purposeMaskSeed)
	if err != nil {
		t.Fatal(err)
	}
	if keys[0] != kab || keys[2] != kab || keys[1] != agree1(t, a, cPub, 5, 1, 3, purposeMaskSeed) {
		t.Fatal("a batch of agreements differs from one at a time")
	}
}

func TestAgreeKeyRejectsBadPoints(t *testing.T) {
	if _, err := parsePublicKey(make([]byte, 31), "k"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short key: %v", err)
	}
	a, _ := keyPair(t, seeded(2))
	// Every encoding of a point of small order is refused where keys are
	// parsed, and its agreement would be zero (so agreeKeys refuses it too).
	for _, u := range smallOrderEncodings() {
		if _, err := parsePublicKey(u[:], "MaskKey of client 7"); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "MaskKey of client 7") {
			t.Errorf("point %x: parse err = %v, want ErrMalformed naming the key", u, err)
		}
		if _, err := agreeKeys(&a, [][KeySize]byte{u}, 1, 1, []uint32{2}, purposeMaskSeed); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "client 2") {
			t.Errorf("point %x: agreement err = %v, want ErrMalformed naming client 2", u, err)
		}
	}
	// Honest keys (and their encodings with the ignored top bit set) pass.
	for i := range 50 {
		_, pub := keyPair(t, seeded(uint64(100+i)))
		if _, err := parsePublicKey(pub[:], "k"); err != nil {
			t.Fatalf("honest key %x refused: %v", pub, err)
		}
		pub[31] |= 0x80
		if _, err := parsePublicKey(pub[:], "k"); err != nil {
			t.Fatalf("honest key with the top bit %x refused: %v", pub, err)
		}
	}
}

// smallOrderEncodings are every 32-byte encoding X25519 maps to zero: the
// canonical points of small order, those plus p where that is below 2^255,
// and each with the top bit set; crypto/ecdh confirms each one.
func smallOrderEncodings() [][KeySize]byte {
	var out [][KeySize]byte
	for _, u := range lowOrder {
		out = append(out, u)
		if u[0] <= 1 && u == ([KeySize]byte{u[0]}) { // 0 + p, 1 + p
			plus := [KeySize]byte{0xed + u[0]}
			for i := 1; i < 31; i++ {
				plus[i] = 0xff
			}
			plus[31] = 0x7f
			out = append(out, plus)
		}
	}
	for _, u := range out[:len(out):len(out)] {
		u[31] |= 0x80
		out = append(out, u)
	}
	priv, _ := ecdh.X25519().NewPrivateKey(make([]byte, 32))
	for _, u := range out {
		pub, _ := ecdh.X25519().NewPublicKey(u[:])
		if _, err := priv.ECDH(pub); err == nil {
			panic("not a point of small order")
		}
	}
	return out
}
