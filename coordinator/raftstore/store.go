// Package raftstore keeps the Raft log and Raft's stable state of a
// coordinator replica in a badger v4 database, and its snapshots in a
// raft.FileSnapshotStore beside it.
//
// Raft (Ongaro and Ousterhout, "In Search of an Understandable Consensus
// Algorithm", USENIX ATC 2014, §5.2 and Figure 2) requires that currentTerm,
// votedFor and the log reach stable storage before a server answers an RPC.
// hashicorp/raft asks this of its raft.LogStore and raft.StableStore; Store
// meets it by committing every write with badger's SyncWrites unless
// Options.NoSync is set (tests and benchmarks only).
//
// Keys: log entries live under the prefix "l/" followed by the entry's index
// as a big-endian uint64, so badger's key order is log order; stable values
// live under "s/" followed by the caller's key. Log values use the compact,
// versioned binary encoding of codec.go.
package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/sovereign-fl/sovereign/coordinator/internal/hclogslog"
)

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// ErrKeyNotFound is returned by Get for a key that was never set. Its text is
// exactly "not found" because hashicorp/raft recognises a missing key by
// comparing err.Error() with that string (see raft.HasExistingState and
// raft.InmemStore.Get); do not wrap it.
var ErrKeyNotFound = errors.New("not found")

// ErrClosed is returned by every method of a Store after Close.
var ErrClosed = errors.New("raftstore: store is closed")

var (
	logPrefix    = []byte("l/")
	stablePrefix = []byte("s/")
)

// Options tunes a Store. The zero value is the production setting: synced
// writes and a modest memory budget.
type Options struct {
	// NoSync turns off badger's SyncWrites. A crash may then lose
	// acknowledged entries, which breaks Raft's safety; use it only in
	// tests and benchmarks.
	NoSync bool

	// Logger receives badger's warnings and errors. Nil means slog.Default().
	// Badger's info and debug lines go to Logger at debug level.
	Logger *slog.Logger

	// MemTableSize is badger's memtable size in bytes; 0 means 16 MiB
	// (badger's default is 64 MiB). Several replicas may share one machine,
	// so the default is kept small. It also bounds one badger transaction
	// (15% of it), which is why StoreLogs splits large batches.
	MemTableSize int64

	// GCInterval is how often value-log files emptied by DeleteRange are
	// reclaimed in the background (see RunValueLogGC); 0 means every 5
	// minutes, a negative value turns background collection off.
	GCInterval time.Duration

	// BlockCacheSize is badger's block cache in bytes; 0 means 8 MiB.
	BlockCacheSize int64

	// ValueThreshold is the size from which a value is kept in badger's
	// value log instead of its LSM tree; 0 means 512 bytes. Raft entries
	// are written once and deleted in bulk after a snapshot, so keeping
	// them out of the LSM tree spares compaction (measured in
	// docs/bench-raft.md).
	ValueThreshold int64
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = 16 << 20
	}
	if o.BlockCacheSize <= 0 {
		o.BlockCacheSize = 8 << 20
	}
	if o.GCInterval == 0 {
		o.GCInterval = 5 * time.Minute
	}
	if o.ValueThreshold <= 0 {
		o.ValueThreshold = 512
	}
	return o
}

// Store is a raft.LogStore and raft.StableStore backed by badger v4. It is
// safe for concurrent use; hashicorp/raft reads logs from its replication
// goroutines while its main loop appends.
type Store struct {
	db  *badger.DB
	dir string

	// life guards closed. Every operation holds it shared for its whole
	// run so that Close (which takes it exclusively) never closes badger
	// under a running operation; readers thus never wait for writers.
	life   sync.RWMutex
	closed bool

	// wmu serializes the log writers (StoreLogs, DeleteRange), which
	// raft may call from its main loop and its snapshot goroutine at once.
	wmu sync.Mutex

	// bmu guards first and last, the cached lowest and highest stored log
	// index (0 and 0 when the log is empty), so that FirstIndex and
	// LastIndex do not walk badger's tombstones.
	bmu         sync.RWMutex
	first, last uint64

	stopGC chan struct{}
	gcDone chan struct{}
}

// Open opens (creating if needed) the badger database in dir.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("raftstore: Open: dir is empty")
	}
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raftstore: create dir %q: %w", dir, err)
	}
	bo := badger.DefaultOptions(dir).
		WithSyncWrites(!opts.NoSync).
		WithLogger(slogBadger{opts.Logger}).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithIndexCacheSize(4 << 20).
		WithValueThreshold(opts.ValueThreshold).
		WithValueLogFileSize(256 << 20).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("raftstore: open badger in %q: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, stopGC: make(chan struct{}), gcDone: make(chan struct{})}
	if err := s.db.View(func(txn *badger.Txn) error {
		var err error
		s.first, s.last, err = scanBounds(txn)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("raftstore: read log bounds in %q: %w", dir, err)
	}
	go s.gcLoop(opts.GCInterval, opts.Logger)
	return s, nil
}

// OpenAll opens everything a Raft node keeps on disk under dir: the badger
// Store in dir/badger, serving as both the raft.LogStore and the
// raft.StableStore (logs and stable are the same *Store; Close it once),
// and a raft.FileSnapshotStore in dir/snapshots that retains the two newest
// snapshots.
func OpenAll(dir string, opts Options) (logs, stable *Store, snaps *raft.FileSnapshotStore, err error) {
	if dir == "" {
		return nil, nil, nil, errors.New("raftstore: OpenAll: dir is empty")
	}
	o := opts.withDefaults()
	st, err := Open(filepath.Join(dir, "badger"), opts)
	if err != nil {
		return nil, nil, nil, err
	}
	snaps, err = raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), 2, HCLogger(o.Logger, "raft-snapshots"))
	if err != nil {
		_ = st.Close()
		return nil, nil, nil, fmt.Errorf("raftstore: open snapshot store in %q: %w", filepath.Join(dir, "snapshots"), err)
	}
	return st, st, snaps, nil
}

// Dir returns the directory of the badger database.
func (s *Store) Dir() string { return s.dir }

// gcLoop runs RunValueLogGC every interval until Close.
func (s *Store) gcLoop(interval time.Duration, logger *slog.Logger) {
	defer close(s.gcDone)
	if interval < 0 {
		<-s.stopGC
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			if err := s.RunValueLogGC(0.5); err != nil && !errors.Is(err, ErrClosed) {
				logger.Warn("raft log value GC failed", "dir", s.dir, "err", err)
			}
		}
	}
}

// Close stops background collection and closes the badger database.
// Later calls return ErrClosed.
func (s *Store) Close() error {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.life.Unlock()
	close(s.stopGC)
	<-s.gcDone
	s.life.Lock()
	defer s.life.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("raftstore: close %q: %w", s.dir, err)
	}
	return nil
}

// RunValueLogGC rewrites badger value-log files of which at least
// discardRatio is garbage (entries removed by DeleteRange after a
// snapshot), until none is left. It returns nil when nothing was to do.
func (s *Store) RunValueLogGC(discardRatio float64) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	for {
		err := s.db.RunValueLogGC(discardRatio)
		if errors.Is(err, badger.ErrNoRewrite) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("raftstore: value log GC in %q: %w", s.dir, err)
		}
	}
}

func logKey(index uint64) []byte {
	k := make([]byte, len(logPrefix)+8)
	copy(k, logPrefix)
	binary.BigEndian.PutUint64(k[len(logPrefix):], index)
	return k
}

func stableKey(key []byte) []byte {
	k := make([]byte, 0, len(stablePrefix)+len(key))
	return append(append(k, stablePrefix...), key...)
}

// indexOf parses the index of a log key, reporting malformed keys.
func indexOf(key []byte) (uint64, error) {
	if len(key) != len(logPrefix)+8 || !bytes.HasPrefix(key, logPrefix) {
		return 0, fmt.Errorf("malformed log key %x (want %q + 8-byte index)", key, logPrefix)
	}
	return binary.BigEndian.Uint64(key[len(logPrefix):]), nil
}

// scanBounds finds the lowest and highest stored log index.
func scanBounds(txn *badger.Txn) (first, last uint64, err error) {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: logPrefix})
	it.Seek(logKey(0))
	if !it.Valid() {
		it.Close()
		return 0, 0, nil
	}
	first, err = indexOf(it.Item().Key())
	it.Close()
	if err != nil {
		return 0, 0, err
	}
	rit := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: logPrefix, Reverse: true})
	defer rit.Close()
	rit.Seek(logKey(^uint64(0)))
	if !rit.Valid() {
		return 0, 0, errors.New("log bounds changed during the scan")
	}
	last, err = indexOf(rit.Item().Key())
	return first, last, err
}

// FirstIndex returns the lowest stored log index, or 0 for an empty log.
func (s *Store) FirstIndex() (uint64, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	s.bmu.RLock()
	defer s.bmu.RUnlock()
	return s.first, nil
}

// LastIndex returns the highest stored log index, or 0 for an empty log.
func (s *Store) LastIndex() (uint64, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	s.bmu.RLock()
	defer s.bmu.RUnlock()
	return s.last, nil
}

// GetLog reads the entry at index into log. It returns raft.ErrLogNotFound
// (unwrapped, as raft compares it with ==) when there is none, and an error
// naming the index and key when the stored value cannot be decoded.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	key := logKey(index)
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return raft.ErrLogNotFound
		}
		if err != nil {
			return fmt.Errorf("raftstore: read log index %d (key %x): %w", index, key, err)
		}
		return item.Value(func(val []byte) error {
			if err := decodeLog(val, log); err != nil {
				return fmt.Errorf("raftstore: corrupt log entry at index %d (key %x): %w", index, key, err)
			}
			if log.Index != index {
				return fmt.Errorf("raftstore: corrupt log entry at index %d (key %x): it records index %d", index, key, log.Index)
			}
			return nil
		})
	})
	return err
}

// StoreLog stores one log entry.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores log entries, overwriting any entry of the same index.
// Entries go into one badger transaction as long as it fits badger's
// transaction size limit (a fraction of Options.MemTableSize); a larger batch
// is split across consecutive transactions, each synced. If a later
// transaction fails, earlier ones stay written and the error says how many
// entries were stored; raft treats the whole call as failed and rewrites
// them.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i, l := range logs {
		if l == nil {
			return fmt.Errorf("raftstore: StoreLogs: entry %d of %d is nil", i, len(logs))
		}
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	stored := 0
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	pending := 0
	for i := 0; i < len(logs); {
		l := logs[i]
		val := appendLog(make([]byte, 0, encodedLogSize(l)), l)
		err := txn.SetEntry(badger.NewEntry(logKey(l.Index), val))
		if errors.Is(err, badger.ErrTxnTooBig) && pending > 0 {
			if err := txn.Commit(); err != nil {
				return fmt.Errorf("raftstore: StoreLogs: commit entries %d..%d (indexes %d..%d): %w (%d entries stored before)",
					stored, i-1, logs[stored].Index, logs[i-1].Index, err, stored)
			}
			s.noteStored(logs[stored:i])
			stored, pending = i, 0
			txn = s.db.NewTransaction(true)
			continue // retry entry i in the fresh transaction
		}
		if err != nil {
			return fmt.Errorf("raftstore: StoreLogs: log index %d (%d bytes of data): %w (%d entries stored before)", l.Index, len(l.Data), err, stored)
		}
		pending++
		i++
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("raftstore: StoreLogs: commit entries %d..%d (indexes %d..%d): %w (%d entries stored before)",
			stored, len(logs)-1, logs[stored].Index, logs[len(logs)-1].Index, err, stored)
	}
	s.noteStored(logs[stored:])
	return nil
}

// noteStored widens the cached bounds by committed entries. Callers hold wmu.
func (s *Store) noteStored(logs []*raft.Log) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	for _, l := range logs {
		if s.first == 0 || l.Index < s.first {
			s.first = l.Index
		}
		if l.Index > s.last {
			s.last = l.Index
		}
	}
}

// DeleteRange deletes the log entries with min <= index <= max; indexes
// without an entry are skipped. Deletes go through a badger WriteBatch,
// which splits them into transactions of allowed size.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: logPrefix})
		defer it.Close()
		for it.Seek(logKey(min)); it.Valid(); it.Next() {
			key := it.Item().KeyCopy(nil)
			idx, err := indexOf(key)
			if err != nil {
				return err
			}
			if idx > max {
				break
			}
			if err := wb.Delete(key); err != nil {
				return fmt.Errorf("delete log index %d: %w", idx, err)
			}
		}
		return nil
	})
	if err == nil {
		err = wb.Flush()
	}
	// Rescan the bounds even after a failure: part of the range may be gone.
	if scanErr := s.db.View(func(txn *badger.Txn) error {
		first, last, err := scanBounds(txn)
		if err == nil {
			s.bmu.Lock()
			s.first, s.last = first, last
			s.bmu.Unlock()
		}
		return err
	}); err == nil {
		err = scanErr
	}
	if err != nil {
		return fmt.Errorf("raftstore: DeleteRange(%d, %d): %w", min, max, err)
	}
	return nil
}

// Set stores val under key in the stable store.
func (s *Store) Set(key, val []byte) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	v := append([]byte(nil), val...)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(stableKey(key), v) }); err != nil {
		return fmt.Errorf("raftstore: Set %q: %w", key, err)
	}
	return nil
}

// Get returns the value stored under key, or ErrKeyNotFound.
func (s *Store) Get(key []byte) ([]byte, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(stableKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrKeyNotFound
		}
		if err != nil {
			return fmt.Errorf("raftstore: Get %q: %w", key, err)
		}
		out, err = item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("raftstore: Get %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// SetUint64 stores val under key as 8 big-endian bytes.
func (s *Store) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return s.Set(key, b[:])
}

// GetUint64 returns the value stored under key by SetUint64, or 0 and nil
// when key was never set (raft.StableStore's contract and
// raft.InmemStore's behaviour). A value that is not 8 bytes long gives an
// error naming the key.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	b, err := s.Get(key)
	if errors.Is(err, ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("raftstore: GetUint64 %q: stored value has %d bytes, want 8", key, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// slogBadger routes badger's log lines to slog: errors and warnings at their
// level, info and debug at debug level so a default logger stays quiet.
type slogBadger struct{ l *slog.Logger }

func (b slogBadger) Errorf(f string, a ...any) {
	b.l.Error(trimNL(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b slogBadger) Warningf(f string, a ...any) {
	b.l.Warn(trimNL(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b slogBadger) Infof(f string, a ...any) {
	b.l.Debug(trimNL(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b slogBadger) Debugf(f string, a ...any) {
	b.l.Debug(trimNL(fmt.Sprintf(f, a...)), "component", "badger")
}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}

// HCLogger adapts an slog.Logger to the hclog.Logger that hashicorp/raft's
// components take, passing on warnings and errors only, each as one slog
// record at its own level (hclogslog). A nil l means slog.Default().
func HCLogger(l *slog.Logger, name string) hclog.Logger {
	return hclogslog.New(l, name, hclog.Warn)
}
