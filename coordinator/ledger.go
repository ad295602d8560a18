package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// LedgerFileName is the name of the ledger export a coordinator keeps in its
// data folder (see WriteLedgerFile); `sovereign ledger verify --data DIR`
// reads it.
const LedgerFileName = "ledger.json"

// ledgerTag starts the canonical encoding of every entry, so that a ledger
// hash can never be confused with the hash of anything else.
const ledgerTag = "sovereign/ledger/v1\x00"

// LedgerEntry is one committed round of the training ledger. Entries form a
// hash chain: each names the hash of the one before it, and its own Hash is
// SHA-256 over its canonical encoding (see CanonicalBytes), so changing any
// past entry breaks every later link.
type LedgerEntry struct {
	// Round is the round that produced the model (0 = the initial model).
	Round uint64 `json:"round"`
	// ModelHash is the SHA-256 of the model's bytes (little-endian float32).
	ModelHash Hash `json:"model_hash"`
	// Prev is the previous entry's Hash (zero for the first entry).
	Prev Hash `json:"prev"`
	// Participants are the workers whose updates are in the model, sorted.
	Participants []WorkerID `json:"participants"`
	// Epsilon is the total (ε, δ) privacy spent once this round committed;
	// 0 when differential privacy is off (no guarantee is claimed then).
	Epsilon float64 `json:"epsilon"`
	// Hash is SHA-256(CanonicalBytes()).
	Hash Hash `json:"hash"`
}

// Hash is a SHA-256 digest, printed and JSON-encoded as lower-case hex.
type Hash [32]byte

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zeros.
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText implements encoding.TextMarshaler (hex).
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it needs 64 hex digits.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("hash %q: want 64 hex digits, have %d", b, len(b))
	}
	if _, err := hex.Decode(h[:], b); err != nil {
		return fmt.Errorf("hash %q: %w", b, err)
	}
	return nil
}

// ParseHash reads a hash from 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	err := h.UnmarshalText([]byte(s))
	return h, err
}

// CanonicalBytes is the entry's canonical encoding, the input of its hash:
// the tag "sovereign/ledger/v1\0", then big-endian round (8 bytes), model
// hash (32), previous hash (32), participant count (4), each participant as
// length (4) + bytes, and the IEEE-754 bits of epsilon (8). Hash itself is
// not part of it.
func (e *LedgerEntry) CanonicalBytes() []byte {
	var b bytes.Buffer
	b.WriteString(ledgerTag)
	b.Write(binary.BigEndian.AppendUint64(nil, e.Round))
	b.Write(e.ModelHash[:])
	b.Write(e.Prev[:])
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(e.Participants))))
	for _, p := range e.Participants {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		b.WriteString(string(p))
	}
	b.Write(binary.BigEndian.AppendUint64(nil, math.Float64bits(e.Epsilon)))
	return b.Bytes()
}

// ComputeHash returns SHA-256 over the canonical encoding.
func (e *LedgerEntry) ComputeHash() Hash { return sha256.Sum256(e.CanonicalBytes()) }

// LedgerError names the first bad entry of a ledger and why it is bad.
type LedgerError struct {
	// Index is the position of the bad entry (0-based).
	Index int
	// Round is the round the entry claims.
	Round uint64
	// Reason says what is wrong.
	Reason string
}

func (e *LedgerError) Error() string {
	return fmt.Sprintf("ledger entry %d (round %d): %s", e.Index, e.Round, e.Reason)
}

// VerifyLedger walks the chain from the first entry and checks, for every
// entry, that its hash is SHA-256 of its canonical encoding, that it links
// to the previous entry's hash (the first to zero), that rounds strictly
// increase, that participants are sorted and distinct and that epsilon is
// finite, non-negative and never decreases. It returns nil or a
// *LedgerError naming the first bad entry.
func VerifyLedger(entries []LedgerEntry) error {
	var prev Hash
	for i := range entries {
		e := &entries[i]
		bad := func(format string, a ...any) error {
			return &LedgerError{Index: i, Round: e.Round, Reason: fmt.Sprintf(format, a...)}
		}
		if e.Prev != prev {
			return bad("previous hash %s, want %s", e.Prev, prev)
		}
		if h := e.ComputeHash(); h != e.Hash {
			return bad("hash %s does not match its contents (%s)", e.Hash, h)
		}
		if i > 0 && e.Round <= entries[i-1].Round {
			return bad("round %d does not follow round %d", e.Round, entries[i-1].Round)
		}
		for j := 1; j < len(e.Participants); j++ {
			if e.Participants[j] <= e.Participants[j-1] {
				return bad("participants not sorted and distinct at %q", e.Participants[j])
			}
		}
		if math.IsNaN(e.Epsilon) || math.IsInf(e.Epsilon, 0) || e.Epsilon < 0 {
			return bad("epsilon %v is not a finite non-negative number", e.Epsilon)
		}
		if i > 0 && e.Epsilon < entries[i-1].Epsilon {
			return bad("epsilon %v is below the previous entry's %v", e.Epsilon, entries[i-1].Epsilon)
		}
		prev = e.Hash
	}
	return nil
}

// NewLedgerEntry builds the entry that follows head (nil for the first
// entry) and computes its hash. Participants are copied and sorted.
func NewLedgerEntry(head *LedgerEntry, round uint64, model Hash, participants []WorkerID, epsilon float64) LedgerEntry {
	e := LedgerEntry{Round: round, ModelHash: model, Participants: slices.Clone(participants), Epsilon: epsilon}
	slices.Sort(e.Participants)
	if e.Participants == nil {
		e.Participants = []WorkerID{}
	}
	if head != nil {
		e.Prev = head.Hash
	}
	e.Hash = e.ComputeHash()
	return e
}

// ledgerFile is the JSON layout of a ledger export.
type ledgerFile struct {
	Version int           `json:"version"`
	Entries []LedgerEntry `json:"entries"`
	// End says how the study ended, once it did (not part of the chain:
	// it records why no entry follows the head).
	End *StudyEnded `json:"end,omitempty"`
}

// WriteLedgerFile writes entries to path as JSON, atomically (a temporary
// file in the same folder renamed over path).
func WriteLedgerFile(path string, entries []LedgerEntry) error {
	return WriteLedgerFileEnd(path, entries, nil)
}

// WriteLedgerFileEnd is WriteLedgerFile with the study's end, if it ended.
func WriteLedgerFileEnd(path string, entries []LedgerEntry, end *StudyEnded) error {
	b, err := json.MarshalIndent(ledgerFile{Version: 1, Entries: entries, End: end}, "", " ")
	if err != nil {
		return fmt.Errorf("ledger file %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ledger-*.tmp")
	if err != nil {
		return fmt.Errorf("ledger file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ledger file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("ledger file %s: %w", path, err)
	}
	return nil
}

// ReadLedgerFile reads a ledger export written by WriteLedgerFile. It does
// not verify the chain (see VerifyLedger).
func ReadLedgerFile(path string) ([]LedgerEntry, error) {
	e, _, err := ReadLedgerFileEnd(path)
	return e, err
}

// ReadLedgerFileEnd is ReadLedgerFile plus the study's end record, if any.
func ReadLedgerFileEnd(path string) ([]LedgerEntry, *StudyEnded, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger file: %w", err)
	}
	var f ledgerFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, nil, fmt.Errorf("ledger file %s: %w", path, err)
	}
	if f.Version != 1 {
		return nil, nil, fmt.Errorf("ledger file %s: version %d, want 1", path, f.Version)
	}
	return f.Entries, f.End, nil
}
