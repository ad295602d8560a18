package service

// What every replica keeps in its data folder for people and tools:
// ledger.json and ledger-NAME.json (each study's ledger, verifiable with
// `sovereign ledger verify`), state.snapshot and model.json.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sovereign-fl/sovereign/coordinator"
)

// StateFileName is the export of the coordinator FSM's snapshot that every
// replica keeps in its data folder beside ledger.json, for inspection and
// `sovereign ledger verify --snapshot`. The coordinator never reads it: it
// resumes from its Raft log and snapshots (data/raft).
const StateFileName = "state.snapshot"

// exportInterval is how often a replica checks whether its FSM moved and,
// if so, rewrites ledger.json and state.snapshot.
const exportInterval = 250 * time.Millisecond

// ModelInfoFileName is the description of the federation's model that a
// coordinator writes into its data folder when it starts, so that
// `sovereign export --data DIR` knows the architecture without the
// coordinator's configuration.
const ModelInfoFileName = "model.json"

// ModelInfo is the JSON of ModelInfoFileName; `sovereign export` relies on
// its keys.
type ModelInfo struct {
	Model      string  `json:"model"`
	Input      []int   `json:"input"`
	Classes    int     `json:"classes"`
	Federation string  `json:"federation"`
	DP         bool    `json:"dp"`
	Delta      float64 `json:"delta"`
}

// writeModelInfo writes DIR/model.json for the coordinator's configuration.
func writeModelInfo(cfg *Config, federation string) error {
	c := cfg.Config
	b, err := json.MarshalIndent(ModelInfo{Model: c.Model, Input: []int{c.InC, c.InH, c.InW}, Classes: c.Classes,
		Federation: federation, DP: c.DP.Noise > 0, Delta: c.Delta}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(cfg.Data, ModelInfoFileName), append(b, '\n'))
}

// exporter rewrites ledger.json and state.snapshot when the replica's FSM
// has changed, so that `sovereign ledger verify --data DIR` works on every
// replica, not only on the leader. It compares the FSM's snapshot bytes, not
// Raft's applied index, which Raft advances before the FSM has applied.
type exporter struct {
	fsm        *coordinator.FSM
	ledgerPath string
	statePath  string
	log        *slog.Logger

	mu   sync.Mutex
	last [32]byte
	done bool
	// written is, per study, the ledger length and end last written: a
	// study's file is rewritten only when its ledger or end changed.
	written map[string]ledgerMark
}

type ledgerMark struct {
	entries int
	ended   bool
}

func (e *exporter) export() {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Read the state once: the ledgers and the snapshot agree.
	var snap bytes.Buffer
	if err := e.fsm.Snapshot(&snap); err != nil {
		e.log.Warn("state export", "err", err)
		return
	}
	sum := sha256.Sum256(snap.Bytes())
	if e.done && sum == e.last {
		return
	}
	studies, err := coordinator.ReadSnapshotStudies(bytes.NewReader(snap.Bytes()))
	if err != nil {
		e.log.Warn("state export", "err", err)
		return
	}
	if e.written == nil {
		e.written = map[string]ledgerMark{}
	}
	// Each study's ledger: ledger.json (default), ledger-NAME.json.
	for _, st := range studies {
		mark := ledgerMark{entries: len(st.Ledger), ended: st.End != nil}
		if prev, ok := e.written[st.Name]; len(st.Ledger) == 0 || ok && prev == mark {
			continue
		}
		p := filepath.Join(filepath.Dir(e.ledgerPath), coordinator.StudyLedgerFileName(st.Name))
		if err := coordinator.WriteLedgerFileEnd(p, st.Ledger, st.End); err != nil {
			e.log.Warn("ledger export", "path", p, "err", err)
			return
		}
		e.written[st.Name] = mark
	}
	if err := writeFileAtomic(e.statePath, snap.Bytes()); err != nil {
		e.log.Warn("state export", "path", e.statePath, "err", err)
		return
	}
	e.last, e.done = sum, true
}

// writeFileAtomic writes b to a temporary file beside path, syncs it and
// renames it over path.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".export-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
