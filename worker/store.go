package worker

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/wire"
)

// Keys of the worker store. Round records live under "r/<round>/" with the
// round as 20 zero-padded digits so that keys sort by round; "m/" holds the
// worker-wide records. Do not rename: they are on disk.
const (
	keyCommitted = "m/committed" // highest committed round (8 bytes)
	keyEpsilon   = "m/epsilon"   // ε spent (float64 bits)
	keyLastSpec  = "m/spec"      // model spec of the latest announcement
	keyEvaluated = "m/evaluated" // the latest evaluation answered (JSON EvalPin)
	keyPrivacy   = "m/privacy"   // the worker's own privacy ledger (JSON []PrivacyStep)
	roundPrefix  = "r/"

	recAnnounce = "announce" // gob Announce (ε may be +Inf, which JSON cannot hold)
	recClient   = "client"   // secagg.Client.MarshalState
	recMasked   = "masked"   // encodeMasked
	recAnswer   = "answer"   // JSON Answer
)

// recordVersion is the first byte of every value; a CRC-32C of the payload
// follows, then the payload.
const recordVersion = 1

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Answer is the survivor set a worker answered in stage 3 of a round.
type Answer struct {
	Survivors []uint32 `json:"survivors"`
	Dropped   []uint32 `json:"dropped"`
}

// CorruptError reports a store record that cannot be decoded.
type CorruptError struct {
	// Key is the badger key of the record.
	Key string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("worker store: record %q is corrupt: %s", e.Key, e.Reason)
}

// Store is a worker's durable state in badger v4: per round the
// announcement, the SecAgg+ client state, the masked input (until the round
// commits) and the answered survivor set; worker-wide the last committed
// round and the ε spent. Every write is synced before the call returns, so
// an answer given after a write survives a crash. Corrupt records give a
// *CorruptError naming the key. Safe for concurrent use.
type Store struct {
	db *badger.DB
	// inMemory is set for the in-memory store, whose records are limited
	// to memValueLimit bytes.
	inMemory bool
	// dir is the store folder ("" in memory), kept at 0700 with 0600 files.
	dir string

	mu     sync.Mutex
	closed bool
}

// StoreOptions tunes a Store. The zero value is the production setting.
type StoreOptions struct {
	// Logger receives badger's warnings and errors; nil means slog.Default().
	Logger *slog.Logger
	// InMemory keeps everything in memory (tests); dir is then ignored.
	InMemory bool
}

// memValueLimit is the largest record (payload plus 5-byte header) the
// in-memory store holds: badger's maximum value threshold, 1 MiB.
const memValueLimit = 1 << 20

// OpenStore opens (creating if needed) the worker store in dir.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if !opts.InMemory {
		if dir == "" {
			return nil, errors.New("worker store: folder is empty")
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("worker store: %w", err)
		}
		// The folder holds the round secrets (X25519 private keys, b_u,
		// the peers' shares, masked inputs): 0700 whatever mode an
		// operator or an image created it with (security review L1).
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("worker store: folder %q: %w", dir, err)
		}
	} else {
		dir = ""
	}
	valueThreshold, memTable := int64(1<<10), int64(8<<20)
	if opts.InMemory {
		// In-memory mode has no value log: every value lives in the LSM
		// tree and badger refuses one above the value threshold. Raise it
		// to badger's maximum and size the memtable so that one
		// transaction (a client state and a masked input together) fits
		// in badger's batch limit of 15% of the memtable.
		valueThreshold, memTable = memValueLimit, 64<<20
	}
	bo := badger.DefaultOptions(dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(!opts.InMemory).
		WithLogger(badgerLogger{opts.Logger}).
		WithMemTableSize(memTable).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(2 << 20).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(256 << 20).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("worker store: open badger in %q: %w", dir, err)
	}
	s := &Store{db: db, inMemory: opts.InMemory, dir: dir}
	if err := s.tighten(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// tighten sets every file of the store folder to 0600. Badger creates its
// files with mode 0666 less the umask and has no option for it, so the
// store corrects them after opening and after every write (a write can
// roll a new memtable or value-log file); the worker command also sets a
// 0077 umask so that files are born private.
func (s *Store) tighten() error {
	if s.dir == "" {
		return nil
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("worker store: folder %q: %w", s.dir, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed by badger since ReadDir
			}
			return fmt.Errorf("worker store: %w", err)
		}
		if info.Mode().Perm() == 0o600 {
			continue
		}
		if err := os.Chmod(filepath.Join(s.dir, e.Name()), 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("worker store: %w", err)
		}
	}
	return nil
}

// OpenMemStore returns an in-memory store (tests and the in-process cluster).
func OpenMemStore() (*Store, error) { return OpenStore("", StoreOptions{InMemory: true}) }

// Close closes the store; later calls fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

func roundKey(round uint64, rec string) string {
	return fmt.Sprintf("%s%020d/%s", roundPrefix, round, rec)
}

// parseRoundKey returns the round of a round record key.
func parseRoundKey(k string) (uint64, bool) {
	rest, ok := strings.CutPrefix(k, roundPrefix)
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, false
	}
	r, err := strconv.ParseUint(num, 10, 64)
	return r, err == nil
}

func wrapRecord(payload []byte) []byte {
	out := make([]byte, 5+len(payload))
	out[0] = recordVersion
	binary.BigEndian.PutUint32(out[1:], crc32.Checksum(payload, crcTable))
	copy(out[5:], payload)
	return out
}

func unwrapRecord(key string, v []byte) ([]byte, error) {
	if len(v) < 5 {
		return nil, &CorruptError{Key: key, Reason: fmt.Sprintf("%d bytes, shorter than the 5-byte header", len(v))}
	}
	if v[0] != recordVersion {
		return nil, &CorruptError{Key: key, Reason: fmt.Sprintf("record version %d, want %d", v[0], recordVersion)}
	}
	p := v[5:]
	if got, want := crc32.Checksum(p, crcTable), binary.BigEndian.Uint32(v[1:]); got != want {
		return nil, &CorruptError{Key: key, Reason: fmt.Sprintf("checksum %08x, stored %08x", got, want)}
	}
	return p, nil
}

// get reads and unwraps key; ok is false when it is absent.
func (s *Store) get(key string) (payload []byte, ok bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		if err != nil {
			return err
		}
		payload, err = unwrapRecord(key, v)
		ok = err == nil
		return err
	})
	if err != nil {
		var ce *CorruptError
		if !errors.As(err, &ce) {
			err = fmt.Errorf("worker store: reading %q: %w", key, err)
		}
		return nil, false, err
	}
	return payload, ok, nil
}

// put writes all records in one synced transaction.
func (s *Store) put(kv map[string][]byte) error {
	err := s.db.Update(func(txn *badger.Txn) error {
		for k, v := range kv {
			rec := wrapRecord(v)
			if s.inMemory && len(rec) > memValueLimit {
				return fmt.Errorf("%q: record of %d bytes exceeds the in-memory store's limit of %d bytes", k, len(rec), memValueLimit)
			}
			if err := txn.Set([]byte(k), rec); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("worker store: write: %w", err)
	}
	return s.tighten()
}

// EvalPin is the latest evaluation the worker answered: the one model it
// evaluated for Round, and what it answered. A second model for the same
// round is refused, and a later announcement of version Round must name
// the same hash (security review M4).
type EvalPin struct {
	Round    uint64   `json:"round"`
	Hash     [32]byte `json:"hash"`
	Examples int      `json:"examples"`
	Loss     float64  `json:"loss"`
	Accuracy float64  `json:"accuracy"`
	// Binary is the two-class report of the same evaluation, if any.
	Binary *wire.BinaryReport `json:"binary,omitempty"`
}

// PutEvalPin records p as the latest evaluation answered.
func (s *Store) PutEvalPin(p EvalPin) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("worker store: encoding evaluation of round %d: %w", p.Round, err)
	}
	return s.put(map[string][]byte{keyEvaluated: b})
}

// EvalPin returns the latest evaluation answered.
func (s *Store) EvalPin() (EvalPin, bool, error) {
	b, ok, err := s.get(keyEvaluated)
	if err != nil || !ok {
		return EvalPin{}, false, err
	}
	var p EvalPin
	if err := json.Unmarshal(b, &p); err != nil {
		return EvalPin{}, false, &CorruptError{Key: keyEvaluated, Reason: err.Error()}
	}
	return p, true, nil
}

// PutAnnounce records the announcement of a round.
func (s *Store) PutAnnounce(a *Announce) error {
	b, err := encodeAnnounce(a)
	if err != nil {
		return err
	}
	return s.put(map[string][]byte{roundKey(a.Round, recAnnounce): b})
}

func encodeAnnounce(a *Announce) ([]byte, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(a); err != nil {
		return nil, fmt.Errorf("worker store: encoding announcement of round %d: %w", a.Round, err)
	}
	return b.Bytes(), nil
}

// PutLastSpec records the model spec of the latest announcement, used to
// evaluate models of rounds this worker was not sampled in.
func (s *Store) PutLastSpec(spec string) error {
	return s.put(map[string][]byte{keyLastSpec: []byte(spec)})
}

// LastSpec returns the model spec of the latest announcement.
func (s *Store) LastSpec() (string, bool, error) {
	b, ok, err := s.get(keyLastSpec)
	return string(b), ok, err
}

// Announce returns the recorded announcement of round.
func (s *Store) Announce(round uint64) (*Announce, bool, error) {
	key := roundKey(round, recAnnounce)
	b, ok, err := s.get(key)
	if err != nil || !ok {
		return nil, false, err
	}
	var a Announce
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&a); err != nil {
		return nil, false, &CorruptError{Key: key, Reason: err.Error()}
	}
	if a.Round != round {
		return nil, false, &CorruptError{Key: key, Reason: fmt.Sprintf("holds round %d", a.Round)}
	}
	return &a, true, nil
}

// PutClient records the SecAgg+ client state of round (after stage 0 or 1).
// With a, the announcement it accepted and its model spec (as LastSpec)
// are written in the same synced transaction: a new announcement of a
// round whose client has not masked yet replaces both together.
func (s *Store) PutClient(round uint64, state []byte, a *Announce) error {
	kv := map[string][]byte{roundKey(round, recClient): state}
	if a != nil {
		b, err := encodeAnnounce(a)
		if err != nil {
			return err
		}
		kv[roundKey(round, recAnnounce)] = b
		kv[keyLastSpec] = []byte(a.ModelSpec)
	}
	return s.put(kv)
}

// Client returns the SecAgg+ client state of round.
func (s *Store) Client(round uint64) ([]byte, bool, error) {
	return s.get(roundKey(round, recClient))
}

// PutMasked records, in one transaction, the client state after stage 2 and
// the masked input it produced.
func (s *Store) PutMasked(round uint64, state []byte, mi secagg.MaskedInput) error {
	return s.PutMaskedCharged(round, state, mi, nil)
}

// PrivacyStep is one release the worker charges to its own accountant: a
// round in which it sent a masked input noised with multiplier Sigma.
type PrivacyStep struct {
	Round uint64  `json:"round"`
	Sigma float64 `json:"sigma"`
	// Study is the round's study ("" = the default study).
	Study string `json:"study,omitempty"`
}

// PutMaskedCharged is PutMasked that also appends step (when non-nil) to
// the worker's own privacy ledger, in the same transaction: a masked input
// is never stored, hence never sent, without its charge.
func (s *Store) PutMaskedCharged(round uint64, state []byte, mi secagg.MaskedInput, step *PrivacyStep) error {
	kv := map[string][]byte{
		roundKey(round, recClient): state,
		roundKey(round, recMasked): encodeMasked(mi),
	}
	if step != nil {
		steps, err := s.Privacy()
		if err != nil {
			return err
		}
		for _, p := range steps {
			if p.Round == step.Round {
				return fmt.Errorf("worker store: round %d is already charged to the privacy ledger", step.Round)
			}
		}
		b, err := json.Marshal(append(steps, *step))
		if err != nil {
			return err
		}
		kv[keyPrivacy] = b
	}
	return s.put(kv)
}

// Privacy returns the worker's own privacy ledger, oldest first (it is
// never garbage-collected: it is the worker's budget).
func (s *Store) Privacy() ([]PrivacyStep, error) {
	b, ok, err := s.get(keyPrivacy)
	if err != nil || !ok {
		return nil, err
	}
	var steps []PrivacyStep
	if err := json.Unmarshal(b, &steps); err != nil {
		return nil, &CorruptError{Key: keyPrivacy, Reason: err.Error()}
	}
	for i, p := range steps {
		if !(p.Sigma > 0) || math.IsInf(p.Sigma, 0) {
			return nil, &CorruptError{Key: keyPrivacy, Reason: fmt.Sprintf("step %d (round %d): σ = %v", i, p.Round, p.Sigma)}
		}
	}
	return steps, nil
}

// HasMasked reports whether a masked input is cached for round, without
// reading it.
func (s *Store) HasMasked(round uint64) (bool, error) {
	key := roundKey(round, recMasked)
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(key))
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("worker store: reading %q: %w", key, err)
}

// Masked returns the masked input cached for round.
func (s *Store) Masked(round uint64) (secagg.MaskedInput, bool, error) {
	key := roundKey(round, recMasked)
	b, ok, err := s.get(key)
	if err != nil || !ok {
		return secagg.MaskedInput{}, false, err
	}
	mi, err := decodeMasked(b)
	if err != nil {
		return secagg.MaskedInput{}, false, &CorruptError{Key: key, Reason: err.Error()}
	}
	if mi.Round != round {
		return secagg.MaskedInput{}, false, &CorruptError{Key: key, Reason: fmt.Sprintf("holds round %d", mi.Round)}
	}
	return mi, true, nil
}

// PutAnswer records, in one transaction, the client state after stage 3 and
// the survivor set it answered.
func (s *Store) PutAnswer(round uint64, state []byte, ans Answer) error {
	b, err := json.Marshal(ans)
	if err != nil {
		return fmt.Errorf("worker store: encoding answer of round %d: %w", round, err)
	}
	return s.put(map[string][]byte{roundKey(round, recClient): state, roundKey(round, recAnswer): b})
}

// Answer returns the survivor set answered in round.
func (s *Store) Answer(round uint64) (Answer, bool, error) {
	key := roundKey(round, recAnswer)
	b, ok, err := s.get(key)
	if err != nil || !ok {
		return Answer{}, false, err
	}
	var a Answer
	if err := json.Unmarshal(b, &a); err != nil {
		return Answer{}, false, &CorruptError{Key: key, Reason: err.Error()}
	}
	return a, true, nil
}

// Committed returns the highest round recorded as committed.
func (s *Store) Committed() (round uint64, ok bool, err error) {
	b, ok, err := s.get(keyCommitted)
	if err != nil || !ok {
		return 0, false, err
	}
	if len(b) != 8 {
		return 0, false, &CorruptError{Key: keyCommitted, Reason: fmt.Sprintf("%d bytes, want 8", len(b))}
	}
	return binary.BigEndian.Uint64(b), true, nil
}

// Epsilon returns the ε the default study has spent so far (0 before any
// committed round).
func (s *Store) Epsilon() (float64, error) { return s.EpsilonStudy("") }

// epsilonKey is the key of study's federation ε.
func epsilonKey(study string) string {
	if study == "" {
		return keyEpsilon
	}
	return keyEpsilon + "/" + study
}

// EpsilonStudy returns the ε study has spent so far, as its coordinator
// announced it (0 before any committed round).
func (s *Store) EpsilonStudy(study string) (float64, error) {
	key := epsilonKey(study)
	b, ok, err := s.get(key)
	if err != nil || !ok {
		return 0, err
	}
	if len(b) != 8 {
		return 0, &CorruptError{Key: key, Reason: fmt.Sprintf("%d bytes, want 8", len(b))}
	}
	e := math.Float64frombits(binary.BigEndian.Uint64(b))
	if math.IsNaN(e) || e < 0 {
		return 0, &CorruptError{Key: key, Reason: fmt.Sprintf("ε = %v", e)}
	}
	return e, nil
}

// Commit is CommitStudy of the default study.
func (s *Store) Commit(round uint64, epsilon float64) error { return s.CommitStudy(round, "", epsilon) }

// CommitStudy records that round (of study) committed having spent ε =
// epsilon in that study in total (the largest value seen is kept) and
// deletes the records of every round up to and including it: the cached
// masked input, the secrets of the SecAgg+ client, the answer. Round
// numbers are the federation's, across studies (one round in flight at a
// time), so the mark is one for all studies. Later calls for those rounds
// are refused as stale by the Node, which checks Committed first.
func (s *Store) CommitStudy(round uint64, study string, epsilon float64) error {
	if math.IsNaN(epsilon) || epsilon < 0 {
		return fmt.Errorf("worker store: commit of round %d: ε = %v must be >= 0", round, epsilon)
	}
	prev, ok, err := s.Committed()
	if err != nil {
		return err
	}
	spent, err := s.EpsilonStudy(study)
	if err != nil {
		return err
	}
	kv := map[string][]byte{}
	if !ok || round > prev {
		kv[keyCommitted] = binary.BigEndian.AppendUint64(nil, round)
	}
	if epsilon > spent {
		kv[epsilonKey(study)] = binary.BigEndian.AppendUint64(nil, math.Float64bits(epsilon))
	}
	if len(kv) == 0 {
		_, err = s.GC(round)
		return err
	}
	// The new mark and the deletion of the rounds it covers go in one
	// synced transaction (one fsync instead of two); a round with more
	// records than one transaction holds is left to GC.
	dels, err := s.roundKeys(func(r uint64) bool { return r <= round })
	if err != nil {
		return err
	}
	if len(dels) > maxCommitDeletes {
		if err := s.put(kv); err != nil {
			return err
		}
		_, err = s.GC(round)
		return err
	}
	return s.putDelete(kv, dels)
}

// maxCommitDeletes bounds the deletions Commit folds into its transaction
// (a handful of records per round; far below badger's transaction limit).
const maxCommitDeletes = 256

// putDelete writes kv and deletes dels in one synced transaction.
func (s *Store) putDelete(kv map[string][]byte, dels [][]byte) error {
	err := s.db.Update(func(txn *badger.Txn) error {
		for k, v := range kv {
			if err := txn.Set([]byte(k), wrapRecord(v)); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
		}
		for _, k := range dels {
			if err := txn.Delete(k); err != nil {
				return fmt.Errorf("deleting %q: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("worker store: write: %w", err)
	}
	return s.tighten()
}

// Rounds lists, ascending, the rounds that have records.
func (s *Store) Rounds() ([]uint64, error) {
	var out []uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(roundPrefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			r, ok := parseRoundKey(k)
			if !ok {
				return &CorruptError{Key: k, Reason: "unparsable round key"}
			}
			if len(out) == 0 || out[len(out)-1] != r {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// DropRound deletes every record of one round (an abandoned attempt).
func (s *Store) DropRound(round uint64) error {
	return s.deleteRounds(func(r uint64) bool { return r == round })
}

// GC deletes the records of every round up to and including upTo and
// returns how many rounds it removed.
func (s *Store) GC(upTo uint64) (int, error) {
	rounds, err := s.Rounds()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range rounds {
		if r <= upTo {
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	return n, s.deleteRounds(func(r uint64) bool { return r <= upTo })
}

// roundKeys lists the keys of the round records whose round matches.
func (s *Store) roundKeys(match func(uint64) bool) ([][]byte, error) {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(roundPrefix), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if r, ok := parseRoundKey(string(k)); ok && match(r) {
				keys = append(keys, k)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("worker store: listing rounds: %w", err)
	}
	return keys, nil
}

func (s *Store) deleteRounds(match func(uint64) bool) error {
	keys, err := s.roundKeys(match)
	if err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("worker store: deleting %q: %w", k, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("worker store: deleting round records: %w", err)
	}
	return nil
}

// encodeMasked lays out a masked input as round (8 bytes), from (4), word
// count (4) and the words, all big-endian.
func encodeMasked(mi secagg.MaskedInput) []byte {
	b := make([]byte, 16+4*len(mi.Vector))
	binary.BigEndian.PutUint64(b[0:], mi.Round)
	binary.BigEndian.PutUint32(b[8:], mi.From)
	binary.BigEndian.PutUint32(b[12:], uint32(len(mi.Vector)))
	for i, w := range mi.Vector {
		binary.BigEndian.PutUint32(b[16+4*i:], w)
	}
	return b
}

func decodeMasked(b []byte) (secagg.MaskedInput, error) {
	if len(b) < 16 {
		return secagg.MaskedInput{}, fmt.Errorf("%d bytes, shorter than the 16-byte header", len(b))
	}
	n := binary.BigEndian.Uint32(b[12:])
	if uint64(len(b)-16) != 4*uint64(n) {
		return secagg.MaskedInput{}, fmt.Errorf("header says %d words, body holds %d bytes", n, len(b)-16)
	}
	mi := secagg.MaskedInput{Round: binary.BigEndian.Uint64(b[0:]), From: binary.BigEndian.Uint32(b[8:]), Vector: make([]uint32, n)}
	for i := range mi.Vector {
		mi.Vector[i] = binary.BigEndian.Uint32(b[16+4*i:])
	}
	return mi, nil
}

// badgerLogger routes badger's log lines to slog: errors and warnings at
// their level, the rest at debug level.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimRight(fmt.Sprintf(f, a...), "\n"), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimRight(fmt.Sprintf(f, a...), "\n"), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(strings.TrimRight(fmt.Sprintf(f, a...), "\n"), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug(strings.TrimRight(fmt.Sprintf(f, a...), "\n"), "component", "badger")
}
