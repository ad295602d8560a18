// Package replica runs the coordinator as one replica of a Raft group
// (Ongaro and Ousterhout, "In Search of an Understandable Consensus
// Algorithm", USENIX ATC 2014) on github.com/hashicorp/raft: the
// coordinator.FSM is the replicated state machine, the Raft log and stable
// state live in badger (coordinator/raftstore), Raft RPCs travel over libp2p
// (coordinator/rafttransport), and the round Driver runs on the leader only.
//
// Model bytes. Every committed model must be byte-identical on every replica,
// and a replica must be able to serve every committed model by hash. The
// model bytes therefore travel through the Raft log with the command that
// commits them: when the leader replicates a ModelCommitted command, Apply
// reads the model (and the server optimizer state it names) from the leader's
// registry and wraps command and blobs in one log entry (see Entry). Every
// replica's FSM stores the blobs in its own registry, checking their SHA-256,
// and only then applies the command, so a replica that has applied a
// ModelCommitted holds its model; the apply is deterministic (it depends only
// on the entry) and does no network I/O. Other commands are small and travel
// alone. Snapshots carry the coordinator FSM's snapshot plus every blob the
// state references (all committed models and the current optimizer state),
// so a replica restored from a snapshot serves the same models.
//
// The alternative, replicating only the hash and letting followers fetch the
// bytes from the leader, would make Apply depend on the network and could
// leave a follower with a committed model it cannot serve once the leader is
// gone; sending the bytes once more through the log costs one model transfer
// per replica and round, which is what serving every model from every
// replica needs anyway.
package replica

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/sovereign-fl/sovereign/coordinator"
)

// Log entry layout (the Data of a raft.Log of type LogCommand):
//
//	magic "SVR" | version (1 byte) | kind (1 byte) | body
//
// kind entryCommand: body is the coordinator command's bytes.
// kind entryCommandBlobs: body is blob count (4, big-endian), then each blob
// as length (8, big-endian) + bytes, then the coordinator command's bytes.
// Values reach the log: do not renumber.
const (
	entryVersion      = 1
	entryCommand      = 1
	entryCommandBlobs = 2
)

var entryMagic = []byte("SVR")

// MaxBlobSize bounds one blob in a log entry or snapshot (4 GiB of
// parameters, the model package's ceiling is far below it).
const MaxBlobSize = 1 << 32

// Entry is a decoded Raft log entry: a coordinator command and the blobs
// (model bytes, optimizer state) it needs every replica to hold.
type Entry struct {
	Command []byte
	Blobs   [][]byte
}

// EncodeEntry encodes e into the Data of a Raft log entry.
func EncodeEntry(e Entry) []byte {
	n := len(entryMagic) + 2 + len(e.Command)
	kind := byte(entryCommand)
	if len(e.Blobs) > 0 {
		kind = entryCommandBlobs
		n += 4
		for _, b := range e.Blobs {
			n += 8 + len(b)
		}
	}
	out := make([]byte, 0, n)
	out = append(out, entryMagic...)
	out = append(out, entryVersion, kind)
	if kind == entryCommandBlobs {
		out = binary.BigEndian.AppendUint32(out, uint32(len(e.Blobs)))
		for _, b := range e.Blobs {
			out = binary.BigEndian.AppendUint64(out, uint64(len(b)))
			out = append(out, b...)
		}
	}
	return append(out, e.Command...)
}

// DecodeEntry decodes the Data of a Raft log entry. The blobs alias data.
func DecodeEntry(data []byte) (Entry, error) {
	if len(data) < len(entryMagic)+2 || !bytes.Equal(data[:len(entryMagic)], entryMagic) {
		return Entry{}, fmt.Errorf("replica log entry: bad magic or %d bytes too short", len(data))
	}
	if v := data[len(entryMagic)]; v != entryVersion {
		return Entry{}, fmt.Errorf("replica log entry: version %d, want %d", v, entryVersion)
	}
	kind, rest := data[len(entryMagic)+1], data[len(entryMagic)+2:]
	var e Entry
	switch kind {
	case entryCommand:
	case entryCommandBlobs:
		if len(rest) < 4 {
			return Entry{}, errors.New("replica log entry: blob count missing")
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if n == 0 {
			return Entry{}, errors.New("replica log entry: blob entry without blobs")
		}
		if uint64(n) > uint64(len(rest))/8 {
			return Entry{}, fmt.Errorf("replica log entry: %d blobs cannot fit in %d bytes", n, len(rest))
		}
		for i := range n {
			if len(rest) < 8 {
				return Entry{}, fmt.Errorf("replica log entry: blob %d: length missing", i)
			}
			l := binary.BigEndian.Uint64(rest)
			rest = rest[8:]
			if l > uint64(len(rest)) {
				return Entry{}, fmt.Errorf("replica log entry: blob %d: length %d beyond the %d bytes left", i, l, len(rest))
			}
			e.Blobs = append(e.Blobs, rest[:l:l])
			rest = rest[l:]
		}
	default:
		return Entry{}, fmt.Errorf("replica log entry: unknown kind %d", kind)
	}
	if len(rest) == 0 {
		return Entry{}, errors.New("replica log entry: command missing")
	}
	e.Command = rest
	return e, nil
}

// BlobStore is what the FSM needs of the model registry: coordinator.Registry
// and coordinator.MemRegistry implement it.
type BlobStore interface {
	PutBytes(b []byte) (coordinator.Hash, error)
	GetBytes(h coordinator.Hash) ([]byte, error)
}

// FSM adapts coordinator.FSM to raft.FSM and keeps the model registry in step
// with it (see the package comment). Apply's response is an error (nil when
// the command was applied): the coordinator FSM's refusal, or a malformed
// entry.
//
// A failure to store a blob locally (a disk error) is not deterministic:
// other replicas applied the entry. The FSM then stops applying (every later
// entry returns the same error, reported by Err) rather than diverge; the
// replica must be repaired and restarted, and it catches up from the log or a
// snapshot.
type FSM struct {
	fsm    *coordinator.FSM
	reg    BlobStore
	logger *slog.Logger

	mu     sync.Mutex
	broken error
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM wraps fsm and reg. logger nil means slog.Default().
func NewFSM(fsm *coordinator.FSM, reg BlobStore, logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	return &FSM{fsm: fsm, reg: reg, logger: logger}
}

// Coordinator returns the wrapped coordinator FSM.
func (f *FSM) Coordinator() *coordinator.FSM { return f.fsm }

// Err returns the local storage error that stopped the FSM, or nil.
func (f *FSM) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.broken
}

func (f *FSM) stop(err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken == nil {
		f.broken = fmt.Errorf("replica FSM stopped: %w", err)
		f.logger.Error("replica FSM stopped applying", "err", err)
	}
	return f.broken
}

// Apply implements raft.FSM. It returns an error or nil.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if err := f.applyData(l.Data); err != nil {
		return fmt.Errorf("raft index %d: %w", l.Index, err)
	}
	return nil
}

func (f *FSM) applyData(data []byte) error {
	if err := f.Err(); err != nil {
		return err
	}
	e, err := DecodeEntry(data)
	if err != nil {
		return err
	}
	if len(e.Blobs) > 0 {
		if err := checkBlobs(e); err != nil {
			return err
		}
		for i, b := range e.Blobs {
			if _, err := f.reg.PutBytes(b); err != nil {
				return f.stop(fmt.Errorf("storing blob %d of the entry: %w", i, err))
			}
		}
	}
	return f.fsm.Apply(e.Command)
}

// checkBlobs checks, deterministically, that an entry with blobs carries a
// ModelCommitted whose model (and optimizer state, if any) are among them.
func checkBlobs(e Entry) error {
	c, err := coordinator.DecodeCommand(e.Command)
	if err != nil {
		return err
	}
	mc := commandModel(&c)
	if mc == nil {
		return fmt.Errorf("round %d: command %v carries blobs; only ModelCommitted and StudyCreated may", c.Round(), c.Kind)
	}
	have := map[coordinator.Hash]bool{}
	for _, b := range e.Blobs {
		have[sha256.Sum256(b)] = true
	}
	for _, h := range neededBlobs(mc) {
		if !have[h] {
			return fmt.Errorf("round %d: ModelCommitted lacks the bytes of blob %s", c.Round(), h)
		}
	}
	return nil
}

// commandModel returns the model commit a command carries: a
// ModelCommitted, or a StudyCreated's initial model; nil if none.
func commandModel(c *coordinator.Command) *coordinator.ModelCommitted {
	switch {
	case c.ModelCommitted != nil:
		return c.ModelCommitted
	case c.StudyCreated != nil:
		return &c.StudyCreated.Initial
	}
	return nil
}

// neededBlobs lists the blobs a ModelCommitted names.
func neededBlobs(m *coordinator.ModelCommitted) []coordinator.Hash {
	hs := []coordinator.Hash{m.ModelHash}
	if !m.Optimizer.State.IsZero() && m.Optimizer.State != m.ModelHash {
		hs = append(hs, m.Optimizer.State)
	}
	return hs
}

// wrap turns a coordinator command into log entry data, attaching from reg
// the blobs a ModelCommitted names.
func wrap(cmd []byte, reg BlobStore) ([]byte, error) {
	c, err := coordinator.DecodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	e := Entry{Command: cmd}
	if mc := commandModel(&c); mc != nil {
		for _, h := range neededBlobs(mc) {
			b, err := reg.GetBytes(h)
			if err != nil {
				return nil, fmt.Errorf("round %d: ModelCommitted: %w", c.Round(), err)
			}
			e.Blobs = append(e.Blobs, b)
		}
	}
	return EncodeEntry(e), nil
}

// Snapshot layout: magic "SVRSNAP" | version (1) | FSM snapshot length (8) |
// FSM snapshot | blob count (4) | each blob: SHA-256 (32) | length (8) | bytes.
var snapMagic = []byte("SVRSNAP")

const snapVersion = 1

// Snapshot implements raft.FSM: the coordinator FSM's snapshot now, and the
// blobs it references, read from the registry when persisted (blobs are
// immutable, so reading them later is safe).
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.Err(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := f.fsm.Snapshot(&buf); err != nil {
		return nil, err
	}
	return &fsmSnapshot{state: buf.Bytes(), blobs: referencedBlobs(f.fsm.Studies()), reg: f.reg}, nil
}

// referencedBlobs lists, without repeats and in state order, the blobs the
// studies need: every committed model and optimizer state of each.
func referencedBlobs(studies []coordinator.StudyInfo) []coordinator.Hash {
	seen := map[coordinator.Hash]bool{}
	var out []coordinator.Hash
	add := func(h coordinator.Hash) {
		if !h.IsZero() && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, st := range studies {
		for _, m := range st.State.Models {
			add(m.Hash)
		}
		add(st.State.Optimizer.State)
	}
	return out
}

type fsmSnapshot struct {
	state []byte
	blobs []coordinator.Hash
	reg   BlobStore
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("replica snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	hdr := append(bytes.Clone(snapMagic), snapVersion)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(len(s.state)))
	if _, err := bw.Write(hdr); err != nil {
		return err
	}
	if _, err := bw.Write(s.state); err != nil {
		return err
	}
	if _, err := bw.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s.blobs)))); err != nil {
		return err
	}
	for _, h := range s.blobs {
		b, err := s.reg.GetBytes(h)
		if err != nil {
			return err
		}
		rec := append(h[:], binary.BigEndian.AppendUint64(nil, uint64(len(b)))...)
		if _, err := bw.Write(rec); err != nil {
			return err
		}
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it checks every blob against its hash, checks
// that every blob the state references is present, stores the blobs and then
// restores the coordinator FSM (which verifies the ledger). On an error in the
// snapshot nothing of the state changes (blobs already stored stay, harmless).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 1<<20)
	hdr := make([]byte, len(snapMagic)+1+8)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return fmt.Errorf("replica snapshot: header: %w", err)
	}
	if !bytes.Equal(hdr[:len(snapMagic)], snapMagic) {
		return errors.New("replica snapshot: bad magic")
	}
	if v := hdr[len(snapMagic)]; v != snapVersion {
		return fmt.Errorf("replica snapshot: version %d, want %d", v, snapVersion)
	}
	n := binary.BigEndian.Uint64(hdr[len(snapMagic)+1:])
	if n > MaxBlobSize {
		return fmt.Errorf("replica snapshot: state of %d bytes exceeds %d", n, uint64(MaxBlobSize))
	}
	state, err := readN(r, n)
	if err != nil {
		return fmt.Errorf("replica snapshot: state: %w", err)
	}
	var cnt [4]byte
	if _, err := io.ReadFull(r, cnt[:]); err != nil {
		return fmt.Errorf("replica snapshot: blob count: %w", err)
	}
	// Check the state before storing anything.
	probe := coordinator.NewFSM()
	if err := probe.Restore(bytes.NewReader(state)); err != nil {
		return fmt.Errorf("replica snapshot: %w", err)
	}
	need := map[coordinator.Hash]bool{}
	for _, h := range referencedBlobs(probe.Studies()) {
		need[h] = true
	}
	for i := range binary.BigEndian.Uint32(cnt[:]) {
		var rec [40]byte
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			return fmt.Errorf("replica snapshot: blob %d header: %w", i, err)
		}
		h := coordinator.Hash(rec[:32])
		l := binary.BigEndian.Uint64(rec[32:])
		if l > MaxBlobSize {
			return fmt.Errorf("replica snapshot: blob %s of %d bytes exceeds %d", h, l, uint64(MaxBlobSize))
		}
		b, err := readN(r, l)
		if err != nil {
			return fmt.Errorf("replica snapshot: blob %s: %w", h, err)
		}
		if got := coordinator.Hash(sha256.Sum256(b)); got != h {
			return fmt.Errorf("replica snapshot: blob %s holds bytes hashing to %s", h, got)
		}
		if _, err := f.reg.PutBytes(b); err != nil {
			return fmt.Errorf("replica snapshot: storing blob %s: %w", h, err)
		}
		delete(need, h)
	}
	for h := range need {
		return fmt.Errorf("replica snapshot: blob %s referenced by the state is missing", h)
	}
	if err := f.fsm.Restore(bytes.NewReader(state)); err != nil {
		return fmt.Errorf("replica snapshot: %w", err)
	}
	f.mu.Lock()
	f.broken = nil
	f.mu.Unlock()
	return nil
}

// readN reads exactly n bytes, growing the buffer as data arrives so that a
// lying length cannot allocate more than the stream holds.
func readN(r io.Reader, n uint64) ([]byte, error) {
	var buf bytes.Buffer
	got, err := io.CopyN(&buf, r, int64(n))
	if err != nil {
		return nil, fmt.Errorf("%d of %d bytes: %w", got, n, err)
	}
	return buf.Bytes(), nil
}
