package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxKeyFileSize bounds what LoadIdentity reads: an encoded Ed25519 private key
// is 68 bytes.
const maxKeyFileSize = 4096

// GenerateIdentity returns a fresh Ed25519 private key read from the system's
// secure random source.
func GenerateIdentity() (crypto.PrivKey, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 identity: %w", err)
	}
	return sk, nil
}

// checkPrivateMode refuses a secret file that its group or other users may
// access in any way.
func checkPrivateMode(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (mode %v)", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: mode %04o gives group/other users access to a private key; want 0600 (chmod 600 %s)", path, perm, path)
	}
	return nil
}

// readPrivateFile reads a small secret file after checking its mode.
func readPrivateFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkPrivateMode(path, fi); err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, larger than the %d allowed", path, fi.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than the %d bytes allowed", path, limit)
	}
	return data, nil
}

// LoadIdentity reads an Ed25519 private key written by [WriteIdentity]. It
// refuses a file whose mode lets group or other users access it, naming the
// file and its mode, and a key of any other type.
func LoadIdentity(path string) (crypto.PrivKey, error) {
	data, err := readPrivateFile(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	sk, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("load identity: %s: not a libp2p private key: %w", path, err)
	}
	if sk.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("load identity: %s: key type %v, want Ed25519", path, sk.Type())
	}
	return sk, nil
}

// WriteIdentity writes key to path with mode 0600. It never overwrites an
// existing file (it returns an error wrapping fs.ErrExist): the file appears
// complete or not at all. To replace a key, remove the old file first.
func WriteIdentity(path string, key crypto.PrivKey) error {
	if key == nil {
		return fmt.Errorf("write identity %s: nil key", path)
	}
	if key.Type() != crypto.Ed25519 {
		return fmt.Errorf("write identity %s: key type %v, want Ed25519", path, key.Type())
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return fmt.Errorf("write identity %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".identity-*.tmp")
	if err != nil {
		return fmt.Errorf("write identity %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // after a successful link the name is just an extra link
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write identity %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write identity %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write identity %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write identity %s: %w", path, err)
	}
	// Link fails if path exists, which makes the no-overwrite check atomic.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write identity: %s already exists: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("write identity %s: %w", path, err)
	}
	return nil
}

// LoadOrCreateIdentity loads the key at path, or, if no file exists there,
// generates a new Ed25519 key and writes it with mode 0600.
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	sk, err := LoadIdentity(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return sk, err
	}
	sk, err = GenerateIdentity()
	if err != nil {
		return nil, err
	}
	if err := WriteIdentity(path, sk); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created it first: use theirs.
			return LoadIdentity(path)
		}
		return nil, err
	}
	return sk, nil
}

// PeerIDFromFile returns the peer ID of the key stored at path.
func PeerIDFromFile(path string) (peer.ID, error) {
	sk, err := LoadIdentity(path)
	if err != nil {
		return "", err
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return "", fmt.Errorf("peer id of %s: %w", path, err)
	}
	return id, nil
}
