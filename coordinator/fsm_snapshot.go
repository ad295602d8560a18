package coordinator

// Snapshots of the FSM (every study) and their restore, which verifies
// every study's ledger first.

import (
	"encoding/json"
	"fmt"
	"io"
)

// snapshot is the FSM's snapshot: State is the default study's (the whole
// snapshot of a federation that never created another study, as before
// studies existed), Round the federation's round counter and Studies the
// created studies, sorted by name.
type snapshot struct {
	V       int             `json:"v"`
	State   State           `json:"state"`
	Round   uint64          `json:"round,omitempty"`
	Studies []studySnapshot `json:"studies,omitempty"`
}

// studySnapshot is one created study in a snapshot.
type studySnapshot struct {
	Name  string     `json:"name"`
	Spec  *StudySpec `json:"spec"`
	State State      `json:"state"`
}

// Snapshot writes the whole state (every study); the bytes are identical
// on replicas that applied the same commands.
func (f *FSM) Snapshot(w io.Writer) error {
	f.fed.mu.RLock()
	sn := snapshot{V: CommandVersion, State: f.fed.studies[DefaultStudy].State, Round: f.fed.round}
	for _, name := range f.fed.names() {
		if name == DefaultStudy {
			continue
		}
		st := f.fed.studies[name]
		sn.Studies = append(sn.Studies, studySnapshot{Name: name, Spec: st.Spec, State: st.State})
	}
	b, err := json.Marshal(sn)
	f.fed.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Restore replaces the state with a snapshot. Every study's ledger is
// verified first; on any error the state is unchanged.
func (f *FSM) Restore(r io.Reader) error {
	var sn snapshot
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sn); err != nil {
		return fmt.Errorf("restore: malformed snapshot: %w", err)
	}
	if sn.V != CommandVersion {
		return fmt.Errorf("restore: snapshot version %d, want %d", sn.V, CommandVersion)
	}
	studies := map[string]*study{DefaultStudy: {State: sn.State}}
	round := max(sn.Round, sn.State.Round)
	for i, ss := range sn.Studies {
		if err := checkStudyName(ss.Name); err != nil || ss.Spec == nil {
			return fmt.Errorf("restore: study %d: name %q or spec invalid", i, ss.Name)
		}
		if _, dup := studies[ss.Name]; dup {
			return fmt.Errorf("restore: study %q twice", ss.Name)
		}
		studies[ss.Name] = &study{Spec: ss.Spec, State: ss.State}
		round = max(round, ss.State.Round)
	}
	inFlight := 0
	for name, st := range studies {
		if err := checkRestoredState(&st.State); err != nil {
			return fmt.Errorf("restore: study %s: %w", studyLabel(name), err)
		}
		if st.State.Current != nil {
			inFlight++
		}
	}
	if inFlight > 1 {
		return fmt.Errorf("restore: %d studies have a round in flight, at most 1", inFlight)
	}
	f.fed.mu.Lock()
	f.fed.studies, f.fed.round = studies, round
	f.fed.mu.Unlock()
	return nil
}

// checkRestoredState verifies a snapshot's study: its ledger chain and its
// models against the ledger.
func checkRestoredState(s *State) error {
	if err := VerifyLedger(s.Ledger); err != nil {
		return err
	}
	if len(s.Ledger) != len(s.Models) {
		return fmt.Errorf("%d ledger entries for %d models", len(s.Ledger), len(s.Models))
	}
	for i, m := range s.Models {
		if e := s.Ledger[i]; e.Round != m.Round || e.ModelHash != m.Hash {
			return fmt.Errorf("model %d (round %d) disagrees with its ledger entry", i, m.Round)
		}
	}
	return nil
}

// ReadSnapshotLedger reads the ledger out of a snapshot written by
// FSM.Snapshot, without verifying it.
func ReadSnapshotLedger(r io.Reader) ([]LedgerEntry, error) {
	l, _, err := ReadSnapshotLedgerEnd(r)
	return l, err
}

// ReadSnapshotLedgerEnd is ReadSnapshotLedger plus the study's end, if it
// ended.
func ReadSnapshotLedgerEnd(r io.Reader) ([]LedgerEntry, *StudyEnded, error) {
	var sn snapshot
	if err := json.NewDecoder(r).Decode(&sn); err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	if sn.V != CommandVersion {
		return nil, nil, fmt.Errorf("snapshot: version %d, want %d", sn.V, CommandVersion)
	}
	return sn.State.Ledger, sn.State.Ended, nil
}

// StudyLedger is one study's ledger and end as a snapshot holds them.
type StudyLedger struct {
	Name   string
	Ledger []LedgerEntry
	End    *StudyEnded
}

// ReadSnapshotStudies reads every study's ledger and end out of a snapshot
// written by FSM.Snapshot, without verifying them, the default study
// first.
func ReadSnapshotStudies(r io.Reader) ([]StudyLedger, error) {
	var sn snapshot
	if err := json.NewDecoder(r).Decode(&sn); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if sn.V != CommandVersion {
		return nil, fmt.Errorf("snapshot: version %d, want %d", sn.V, CommandVersion)
	}
	out := []StudyLedger{{Name: DefaultStudy, Ledger: sn.State.Ledger, End: sn.State.Ended}}
	for _, st := range sn.Studies {
		out = append(out, StudyLedger{Name: st.Name, Ledger: st.State.Ledger, End: st.State.Ended})
	}
	return out, nil
}
