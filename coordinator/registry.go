package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/sovereign-fl/sovereign/p2p"
)

// ErrCorrupt marks a stored blob whose bytes no longer hash to its key.
var ErrCorrupt = errors.New("corrupt blob")

// blobPrefix keys blobs: "b/" + 32-byte SHA-256.
var blobPrefix = []byte("b/")

func blobKey(h Hash) []byte { return append(bytes.Clone(blobPrefix), h[:]...) }

// Registry stores models (and other blobs such as server optimizer state)
// by SHA-256 in badger. A model is stored as its parameters in
// little-endian float32, the same bytes workers hash and fetch. It
// implements p2p.BlobStore, so p2p.ServeBlobs can serve models to workers.
// Safe for concurrent use.
type Registry struct {
	db  *badger.DB
	dir string
}

var _ p2p.BlobStore = (*Registry)(nil)

// OpenRegistry opens (creating if needed) the registry in folder dir.
func OpenRegistry(dir string) (*Registry, error) {
	return openRegistry(dir, false)
}

// OpenRegistryReadOnly opens an existing registry without writing to it
// (no other process may have it open).
func OpenRegistryReadOnly(dir string) (*Registry, error) {
	return openRegistry(dir, true)
}

func openRegistry(dir string, ro bool) (*Registry, error) {
	bo := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithReadOnly(ro).
		WithSyncWrites(true).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithValueLogFileSize(256 << 20).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("model registry %s: %w", dir, err)
	}
	return &Registry{db: db, dir: dir}, nil
}

// Dir returns the registry's folder.
func (r *Registry) Dir() string { return r.dir }

// Close closes the database.
func (r *Registry) Close() error { return r.db.Close() }

// EncodeParams returns params as little-endian float32 bytes.
func EncodeParams(params []float32) []byte {
	b := make([]byte, 4*len(params))
	for i, v := range params {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// DecodeParams reads little-endian float32 bytes.
func DecodeParams(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("model bytes: length %d is not a multiple of 4", len(b))
	}
	p := make([]float32, len(b)/4)
	for i := range p {
		p[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return p, nil
}

// HashParams returns the SHA-256 of params' little-endian float32 bytes.
func HashParams(params []float32) Hash { return sha256.Sum256(EncodeParams(params)) }

// Put stores a model and returns its hash. Storing the same model twice is
// harmless.
func (r *Registry) Put(params []float32) (Hash, error) {
	return r.PutBytes(EncodeParams(params))
}

// PutBytes stores a blob and returns its hash.
func (r *Registry) PutBytes(b []byte) (Hash, error) {
	h := Hash(sha256.Sum256(b))
	if err := r.db.Update(func(txn *badger.Txn) error {
		return txn.Set(blobKey(h), b)
	}); err != nil {
		return h, fmt.Errorf("model registry: storing %s: %w", h, err)
	}
	return h, nil
}

// GetBytes returns the blob with hash h, checking that its bytes still hash
// to h (an error wrapping ErrCorrupt names the hash otherwise, and one
// wrapping p2p.ErrBlobNotFound when absent).
func (r *Registry) GetBytes(h Hash) ([]byte, error) {
	var b []byte
	err := r.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(blobKey(h))
		if err != nil {
			return err
		}
		b, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("model registry: %w: %s", p2p.ErrBlobNotFound, h)
	}
	if err != nil {
		return nil, fmt.Errorf("model registry: reading %s: %w", h, err)
	}
	if got := Hash(sha256.Sum256(b)); got != h {
		return nil, fmt.Errorf("model registry: %w: %s holds bytes hashing to %s", ErrCorrupt, h, got)
	}
	return b, nil
}

// Get returns the model with hash h.
func (r *Registry) Get(h Hash) ([]float32, error) {
	b, err := r.GetBytes(h)
	if err != nil {
		return nil, err
	}
	p, err := DecodeParams(b)
	if err != nil {
		return nil, fmt.Errorf("model registry: %s: %w", h, err)
	}
	return p, nil
}

// Has reports whether a blob with hash h is stored.
func (r *Registry) Has(h Hash) bool {
	err := r.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(blobKey(h))
		return err
	})
	return err == nil
}

// Open implements p2p.BlobStore. The content is checked against the hash
// before it is handed out.
func (r *Registry) Open(h p2p.Hash) (io.ReadCloser, int64, error) {
	b, err := r.GetBytes(Hash(h))
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// putRaw stores b under h without checking; tests use it to corrupt.
func (r *Registry) putRaw(h Hash, b []byte) error {
	return r.db.Update(func(txn *badger.Txn) error { return txn.Set(blobKey(h), b) })
}

// MemRegistry is the in-memory twin of Registry, for tests.
type MemRegistry struct {
	mu    sync.RWMutex
	blobs map[Hash][]byte
}

// NewMemRegistry returns an empty in-memory registry.
func NewMemRegistry() *MemRegistry { return &MemRegistry{blobs: map[Hash][]byte{}} }

// ModelStore is what the driver needs of a registry: Registry and
// MemRegistry implement it.
type ModelStore interface {
	p2p.BlobStore
	Put(params []float32) (Hash, error)
	Get(h Hash) ([]float32, error)
	PutBytes(b []byte) (Hash, error)
	GetBytes(h Hash) ([]byte, error)
}

var (
	_ ModelStore = (*Registry)(nil)
	_ ModelStore = (*MemRegistry)(nil)
)

// Put implements ModelStore.
func (m *MemRegistry) Put(params []float32) (Hash, error) { return m.PutBytes(EncodeParams(params)) }

// PutBytes implements ModelStore.
func (m *MemRegistry) PutBytes(b []byte) (Hash, error) {
	h := Hash(sha256.Sum256(b))
	m.mu.Lock()
	m.blobs[h] = bytes.Clone(b)
	m.mu.Unlock()
	return h, nil
}

// GetBytes implements ModelStore.
func (m *MemRegistry) GetBytes(h Hash) ([]byte, error) {
	m.mu.RLock()
	b, ok := m.blobs[h]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("model registry: %w: %s", p2p.ErrBlobNotFound, h)
	}
	if got := Hash(sha256.Sum256(b)); got != h {
		return nil, fmt.Errorf("model registry: %w: %s holds bytes hashing to %s", ErrCorrupt, h, got)
	}
	return bytes.Clone(b), nil
}

// Get implements ModelStore.
func (m *MemRegistry) Get(h Hash) ([]float32, error) {
	b, err := m.GetBytes(h)
	if err != nil {
		return nil, err
	}
	return DecodeParams(b)
}

// Open implements p2p.BlobStore.
func (m *MemRegistry) Open(h p2p.Hash) (io.ReadCloser, int64, error) {
	b, err := m.GetBytes(Hash(h))
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}
