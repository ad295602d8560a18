package p2p

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestIdentityFileMode0600(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	sk := testKey(t, 1)
	if err := WriteIdentity(path, sk); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Fatalf("mode %04o, want 0600", got)
	}
	loaded, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Equals(sk) {
		t.Fatal("loaded key differs from the written one")
	}
	id, err := PeerIDFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := peer.IDFromPrivateKey(sk)
	if id != want {
		t.Fatalf("PeerIDFromFile = %s, want %s", id, want)
	}
	// No overwrite.
	err = WriteIdentity(path, testKey(t, 2))
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: err = %v, want fs.ErrExist", err)
	}
	again, err := LoadIdentity(path)
	if err != nil || !again.Equals(sk) {
		t.Fatalf("key changed after refused overwrite (err %v)", err)
	}
	// No stray temporary files.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("dir holds %d entries, want 1", len(entries))
	}
}

func TestIdentityRefusesGroupReadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	if err := WriteIdentity(path, testKey(t, 3)); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadIdentity(path)
		if err == nil {
			t.Fatalf("mode %04o: loaded, want refusal", mode)
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, "mode "+modeOctal(mode)) {
			t.Fatalf("mode %04o: error %q does not name the file and its mode", mode, msg)
		}
		if _, err := LoadOrCreateIdentity(path); err == nil {
			t.Fatalf("mode %04o: LoadOrCreateIdentity accepted the file", mode)
		}
	}
}

func modeOctal(m os.FileMode) string {
	const digits = "01234567"
	p := m.Perm()
	return string([]byte{'0', digits[p>>6&7], digits[p>>3&7], digits[p&7]})
}

func TestLoadOrCreateIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub.key")
	a, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equals(b) {
		t.Fatal("second call created a new key instead of loading the first")
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", fi.Mode().Perm())
	}
}

func TestLoadIdentityGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadIdentity(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want an error naming %s", err, path)
	}
}
