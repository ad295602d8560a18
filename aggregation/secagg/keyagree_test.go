package secagg

import (
	"errors"
	"testing"
)

func TestAgreeKeySymmetricAndBound(t *testing.T) {
	r := seeded(1)
	a, _, err := newPrivateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := newPrivateKey(r)
	c, _, _ := newPrivateKey(r)
	kab, err := agreeKey(a, b.PublicKey(), 5, 1, 2, purposeMaskSeed)
	if err != nil {
		t.Fatal(err)
	}
	kba, _ := agreeKey(b, a.PublicKey(), 5, 2, 1, purposeMaskSeed)
	if kab != kba {
		t.Fatal("pairwise key differs between the two sides")
	}
	for name, k := range map[string]func() ([KeySize]byte, error){
		"other round":   func() ([KeySize]byte, error) { return agreeKey(a, b.PublicKey(), 6, 1, 2, purposeMaskSeed) },
		"other purpose": func() ([KeySize]byte, error) { return agreeKey(a, b.PublicKey(), 5, 1, 2, purposeShareKey) },
		"other pair":    func() ([KeySize]byte, error) { return agreeKey(a, b.PublicKey(), 5, 1, 3, purposeMaskSeed) },
		"other peer":    func() ([KeySize]byte, error) { return agreeKey(a, c.PublicKey(), 5, 1, 2, purposeMaskSeed) },
	} {
		got, err := k()
		if err != nil {
			t.Fatal(err)
		}
		if got == kab {
			t.Fatalf("%s gave the same key", name)
		}
	}
	// Keys are reproducible from the reader.
	a2, _, _ := newPrivateKey(seeded(1))
	if string(a2.PublicKey().Bytes()) != string(a.PublicKey().Bytes()) {
		t.Fatal("same reader gave a different key")
	}
}

func TestAgreeKeyRejectsBadPoints(t *testing.T) {
	a, _, _ := newPrivateKey(seeded(2))
	if _, err := parsePublicKey(make([]byte, 31), "k"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short key: %v", err)
	}
	zero, err := parsePublicKey(make([]byte, 32), "k") // low-order point
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agreeKey(a, zero, 1, 1, 2, purposeMaskSeed); !errors.Is(err, ErrMalformed) {
		t.Fatalf("low-order point: err = %v, want ErrMalformed", err)
	}
}
