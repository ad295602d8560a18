package coordinator

// Studies (docs/ARCHITECTURE.md, "Studies"): a federation hosts named
// studies besides its default one (the coordinator file's [rounds] table).
// Each has its own model spec and training configuration (StudySpec,
// replicated so that any leader can drive it), its own rounds, privacy
// accountant, ledger chain and committed models, and ends on its own
// (ends.go). Round numbers are the federation's: one counter across all
// studies, and at most one round in flight in the whole federation, so the
// leader's scheduler interleaves the running studies round by round
// (Scheduler). One round at a time keeps every worker-side guarantee keyed
// by round number (answered survivor sets, cached masked inputs, the
// stale-round check) exactly as it was, and a failover resumes the one
// round in flight; the price is that a slow round of one study delays the
// others' next round (see the departures in docs/ARCHITECTURE.md).

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"

	"github.com/sovereign-fl/sovereign/wire"
)

// DefaultStudy is the name of the default study in commands and State;
// it is shown as DefaultStudyLabel.
const (
	DefaultStudy      = ""
	DefaultStudyLabel = wire.DefaultStudyLabel
)

// EndStopped is the end of a study stopped from the command line.
const EndStopped = "stopped"

// MaxStudies bounds the studies a federation holds (ended ones included:
// their ledgers stay).
const MaxStudies = 256

var studyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// checkStudyName checks a created study's name: lower-case letters,
// digits, '-' and '_', at most 63 bytes, not "default".
func checkStudyName(name string) error {
	if name == DefaultStudyLabel || !studyNameRE.MatchString(name) {
		return fmt.Errorf("study name %q: want 1–63 of a-z, 0-9, '-', '_' (starting with a letter or digit), not %q", name, DefaultStudyLabel)
	}
	return nil
}

// CheckStudyName is checkStudyName for the command line.
func CheckStudyName(name string) error { return checkStudyName(name) }

// StudyKey returns the name commands use for a study named on the command
// line ("default" is the default study).
func StudyKey(label string) string {
	if label == DefaultStudyLabel {
		return DefaultStudy
	}
	return label
}

func studyLabel(name string) string { return wire.StudyLabel(name) }

// StudySpec is what every replica needs to drive a created study: its
// [rounds] table (the same keys as the coordinator file's, with the model
// resolved: an external model's layout is written out and init is cleared,
// since the initial model is committed with the study) and the bytes of
// its data schema, if any.
type StudySpec struct {
	Rounds     RoundsTable `json:"rounds"`
	SchemaText []byte      `json:"schema_text,omitempty"`
}

// Config returns the study's driver configuration.
func (s *StudySpec) Config(name string) (Config, error) {
	r := s.Rounds
	r.Init = nil
	text := s.SchemaText
	if r.Schema != nil && *r.Schema != "" && text == nil {
		return Config{}, fmt.Errorf("study %s: rounds.schema: the schema's bytes are missing", studyLabel(name))
	}
	return r.Config("study "+studyLabel(name), "", text)
}

// StudyLedgerFileName is the ledger export of a created study in a
// coordinator's data folder (LedgerFileName is the default study's).
func StudyLedgerFileName(name string) string {
	if name == DefaultStudy {
		return LedgerFileName
	}
	return "ledger-" + name + ".json"
}

// StudyCreated adds the study Name with its spec and its initial model
// (round 0: no participants, no privacy spent), whose bytes travel with
// the command like a ModelCommitted's.
type StudyCreated struct {
	Name    string         `json:"name"`
	Spec    StudySpec      `json:"spec"`
	Initial ModelCommitted `json:"initial"`
}

// StudyPaused pauses a study (no new round starts; a round in flight
// finishes) or, with Stop, asks the scheduler to end it as EndStopped once
// no round of it is in flight. StudyResumed lifts a pause.
type StudyPaused struct {
	Stop   bool   `json:"stop,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// study is one study's replicated data.
type study struct {
	Spec  *StudySpec
	State State
}

// names returns the study names, the default study first, then sorted.
func (fed *federation) names() []string {
	out := make([]string, 0, len(fed.studies))
	for n := range fed.studies {
		out = append(out, n)
	}
	sort.Strings(out) // "" sorts first
	return out
}

// inFlight returns the study with a round in flight.
func (fed *federation) inFlight() (string, bool) {
	for _, n := range fed.names() {
		if fed.studies[n].State.Current != nil {
			return n, true
		}
	}
	return "", false
}

func (f *FSM) applyCreated(c *Command) error {
	m := c.StudyCreated
	if c.Study != m.Name {
		return refuse(c, "command of study %q creates study %q", c.Study, m.Name)
	}
	if err := checkStudyName(m.Name); err != nil {
		return refuse(c, "%v", err)
	}
	if _, ok := f.fed.studies[m.Name]; ok {
		return stale(c, "study %s already exists (names are never reused: its ledger stays)", m.Name)
	}
	if len(f.fed.studies) >= MaxStudies {
		return refuse(c, "the federation holds %d studies, at most %d", len(f.fed.studies), MaxStudies)
	}
	if len(m.Spec.SchemaText) > MaxStatsBytes {
		return refuse(c, "schema of %d bytes, above %d", len(m.Spec.SchemaText), MaxStatsBytes)
	}
	if _, err := m.Spec.Config(m.Name); err != nil {
		return refuse(c, "spec: %v", err)
	}
	in := m.Initial
	if in.Round != 0 || len(in.Participants) != 0 || in.Epsilon != 0 || in.DP != nil || !in.Prev.IsZero() || in.ModelHash.IsZero() {
		return refuse(c, "the initial model is round 0, with a model hash, no participants, no privacy spent and no previous entry")
	}
	spec := m.Spec
	spec.SchemaText = slices.Clone(m.Spec.SchemaText)
	st := &study{Spec: &spec}
	e := NewLedgerEntry(nil, 0, in.ModelHash, []WorkerID{}, 0)
	st.State.Ledger = []LedgerEntry{e}
	st.State.Models = []ModelRecord{{Round: 0, Hash: in.ModelHash}}
	st.State.Optimizer = in.Optimizer
	f.fed.studies[m.Name] = st
	return nil
}

func (f *FSM) applyPaused(c *Command) error {
	s := f.st()
	m := c.StudyPaused
	if s.Ended != nil {
		return stale(c, "study %s already ended (%s)", studyLabel(c.Study), s.Ended.State)
	}
	if len(m.Reason) > MaxRefusalReason {
		return refuse(c, "reason of %d bytes, at most %d", len(m.Reason), MaxRefusalReason)
	}
	if s.Paused != nil && s.Paused.Stop && !m.Stop {
		return stale(c, "study %s is stopping", studyLabel(c.Study))
	}
	p := *m
	s.Paused = &p
	return nil
}

// Study returns a view of the study named name ("" is the default study):
// State, Ledger, LatestModel and the others read that study.
func (f *FSM) Study(name string) *FSM { return &FSM{fed: f.fed, name: name} }

// Name returns the study this view reads.
func (f *FSM) Name() string { return f.name }

// Exists reports whether the view's study exists.
func (f *FSM) Exists() bool {
	f.fed.mu.RLock()
	defer f.fed.mu.RUnlock()
	_, ok := f.fed.studies[f.name]
	return ok
}

// NextRound returns the federation's next round number (rounds are
// numbered across studies).
func (f *FSM) NextRound() uint64 {
	f.fed.mu.RLock()
	defer f.fed.mu.RUnlock()
	return f.fed.round + 1
}

// StudyInfo is one study as StudyList returns it.
type StudyInfo struct {
	Name string
	// Spec is nil for the default study (its configuration is the
	// coordinator file's).
	Spec  *StudySpec
	State State
}

// Studies returns every study, the default one first, then by name; the
// states are deep copies.
func (f *FSM) Studies() []StudyInfo {
	f.fed.mu.RLock()
	b, err := json.Marshal(f.fed.studiesSnapshot())
	f.fed.mu.RUnlock()
	if err != nil {
		panic("coordinator: studies do not encode: " + err.Error()) // plain data
	}
	var ss []studySnapshot
	if err := json.Unmarshal(b, &ss); err != nil {
		panic("coordinator: studies do not decode: " + err.Error())
	}
	out := make([]StudyInfo, len(ss))
	for i, s := range ss {
		out[i] = StudyInfo{Name: s.Name, Spec: s.Spec, State: s.State}
	}
	return out
}

func (fed *federation) studiesSnapshot() []studySnapshot {
	var out []studySnapshot
	for _, n := range fed.names() {
		st := fed.studies[n]
		out = append(out, studySnapshot{Name: n, Spec: st.Spec, State: st.State})
	}
	return out
}

// StateOfRound returns a deep copy of the state of the study that round
// belongs to: the one with it in flight or in its ledger, else the
// default study.
func (f *FSM) StateOfRound(round uint64) State {
	name := DefaultStudy
	f.fed.mu.RLock()
	for _, n := range f.fed.names() {
		st := &f.fed.studies[n].State
		if st.Current != nil && st.Current.Round == round || slices.ContainsFunc(st.Ledger, func(e LedgerEntry) bool { return e.Round == round }) {
			name = n
			break
		}
	}
	f.fed.mu.RUnlock()
	return f.Study(name).State()
}

// Spec returns a copy of the view's study spec (nil for the default study
// or a study that does not exist).
func (f *FSM) Spec() *StudySpec {
	f.fed.mu.RLock()
	defer f.fed.mu.RUnlock()
	st, ok := f.fed.studies[f.name]
	if !ok || st.Spec == nil {
		return nil
	}
	sp := *st.Spec
	sp.SchemaText = slices.Clone(st.Spec.SchemaText)
	return &sp
}

// replaceSpec checks and installs a resumed created study's new spec: it
// must validate, and its model, input shape, classes and schema must be
// those of the study's committed models. The caller holds fed.mu.
func (f *FSM) replaceSpec(name string, spec *StudySpec) error {
	st, ok := f.fed.studies[name]
	if !ok || st.Spec == nil {
		return fmt.Errorf("study %s: only a created study's spec is replaced (the default study's is the coordinator file)", studyLabel(name))
	}
	if len(spec.SchemaText) > MaxStatsBytes {
		return fmt.Errorf("schema of %d bytes, above %d", len(spec.SchemaText), MaxStatsBytes)
	}
	nc, err := spec.Config(name)
	if err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	oc, err := st.Spec.Config(name)
	if err != nil {
		return fmt.Errorf("the study's spec: %w", err)
	}
	if nc.Model != oc.Model || nc.InC != oc.InC || nc.InH != oc.InH || nc.InW != oc.InW || nc.Classes != oc.Classes || nc.SchemaHash != oc.SchemaHash {
		return fmt.Errorf("study %s: the new spec's model %s %v×%d classes (schema %x) is not the committed models' %s %v×%d (schema %x); start a new study",
			name, nc.Model, []int{nc.InC, nc.InH, nc.InW}, nc.Classes, nc.SchemaHash[:4], oc.Model, []int{oc.InC, oc.InH, oc.InW}, oc.Classes, oc.SchemaHash[:4])
	}
	sp := *spec
	sp.SchemaText = slices.Clone(spec.SchemaText)
	st.Spec = &sp
	return nil
}

// studyBrief is what the scheduler needs of a study on every step, read
// without copying the study's state.
type studyBrief struct {
	Name                      string
	InFlight, Ended           bool
	Round                     uint64
	CommittedRounds, Attempts int
	// spec is the replicated spec's identity: a resume with a new spec or
	// a restored snapshot replaces the pointer (read-only).
	spec *StudySpec
}

// briefs returns every study's brief, the default study first.
func (f *FSM) briefs() []studyBrief {
	f.fed.mu.RLock()
	defer f.fed.mu.RUnlock()
	out := make([]studyBrief, 0, len(f.fed.studies))
	for _, n := range f.fed.names() {
		st := f.fed.studies[n]
		out = append(out, studyBrief{Name: n, InFlight: st.State.Current != nil, Ended: st.State.Ended != nil, Round: st.State.Round,
			CommittedRounds: st.State.CommittedRounds(), Attempts: st.State.Attempts, spec: st.Spec})
	}
	return out
}
