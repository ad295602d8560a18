package secagg

import (
	"bytes"
	"errors"
	"testing"
)

func TestShareAEADBindsRoundAndPair(t *testing.T) {
	var key [KeySize]byte
	key[3] = 9
	pt := []byte("shares of b and s")
	ct, err := sealShare(key, 4, 10, 20, pt)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != len(pt)+aeadOverhead {
		t.Fatalf("ciphertext %d bytes, want %d", len(ct), len(pt)+aeadOverhead)
	}
	got, err := openShare(key, 4, 10, 20, ct)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	other := key
	other[0] = 1
	for name, open := range map[string]func() ([]byte, error){
		"round":     func() ([]byte, error) { return openShare(key, 5, 10, 20, ct) },
		"sender":    func() ([]byte, error) { return openShare(key, 4, 11, 20, ct) },
		"recipient": func() ([]byte, error) { return openShare(key, 4, 10, 21, ct) },
		"reflected": func() ([]byte, error) { return openShare(key, 4, 20, 10, ct) },
		"key":       func() ([]byte, error) { return openShare(other, 4, 10, 20, ct) },
		"tampered": func() ([]byte, error) {
			c := bytes.Clone(ct)
			c[0] ^= 0x80
			return openShare(key, 4, 10, 20, c)
		},
	} {
		if _, err := open(); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s changed: err = %v, want ErrMalformed", name, err)
		}
	}
}
