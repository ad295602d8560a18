package coordinator

// What a coordinator reports of a study (`sovereign status`).

import (
	"slices"
	"strings"
	"time"
)

// Status is what `sovereign status` shows of a coordinator.
type Status struct {
	// Study names the study ("default" for the default study); Attempts
	// counts the rounds it started (committed or not).
	Study    string
	Attempts int
	// Model is the study's model spec.
	Model string
	// Epsilon is the ε its ledger head records.
	Epsilon float64
	// Round is the last round started; Stage what the driver is doing.
	Round uint64
	Stage string
	// InFlight is true while a round is open.
	InFlight bool
	// Online are the workers reachable now.
	Online []WorkerID
	// CommittedRounds counts the models committed after the initial one.
	CommittedRounds int
	// Accuracy is the latest recorded accuracy (of AccuracyRound's model).
	Accuracy      float64
	AccuracyRound uint64
	// LedgerHead is the hash of the latest ledger entry; LedgerLength the
	// number of entries.
	LedgerHead   Hash
	LedgerLength int
	// Failures counts the rounds failed since the last commit.
	Failures int
	// StudyState is "running", or how the study ended (EndFinished,
	// EndFailed, EndBudgetExhausted), with EndReason; RecentFailures are
	// the last round-failure reasons.
	StudyState     string
	EndReason      string
	RecentFailures []string
	// PlannedRounds is the study's number of models; ETA the time the rest
	// should take at the pace of the rounds this leader committed (0 if
	// unknown).
	PlannedRounds int
	ETA           time.Duration
	// Incompatible are the workers whose plan check said they cannot take
	// part, with the reasons (sorted by worker).
	Incompatible []IncompatibleWorker
	// Studies, in the federation's status, are every study's status (the
	// default one first); the fields above are the default study's.
	Studies []Status
}

// Status reports the driver's progress.
func (d *Driver) Status() Status {
	st := d.fsm.State()
	d.mu.Lock()
	stage := d.stage
	d.mu.Unlock()
	s := Status{
		Round: st.Round, Stage: stage, InFlight: st.Current != nil, Online: d.cohort.Online(),
		CommittedRounds: st.CommittedRounds(), LedgerLength: len(st.Ledger), Failures: st.Failures,
		StudyState: "running", RecentFailures: st.RecentFailures, PlannedRounds: d.cfg.Rounds,
		Study: studyLabel(d.fsm.Name()), Attempts: st.Attempts, Model: d.cfg.Model,
	}
	if p := st.Paused; p != nil {
		s.StudyState = "paused"
		if p.Stop {
			s.StudyState = "stopping"
		}
	}
	byWorker := map[WorkerID]*IncompatibleWorker{}
	verdicts := d.incompatible
	if d.Verdicts != nil {
		verdicts = d.Verdicts
	}
	for w, rs := range verdicts() {
		byWorker[w] = &IncompatibleWorker{Worker: w, Reasons: rs}
	}
	if d.Warnings != nil {
		for w, ws := range d.Warnings() {
			if byWorker[w] == nil {
				byWorker[w] = &IncompatibleWorker{Worker: w}
			}
			byWorker[w].Warnings = ws
		}
	}
	for _, iw := range byWorker {
		s.Incompatible = append(s.Incompatible, *iw)
	}
	slices.SortFunc(s.Incompatible, func(a, b IncompatibleWorker) int { return strings.Compare(string(a.Worker), string(b.Worker)) })
	if e := st.Ended; e != nil {
		s.StudyState, s.EndReason = e.State, e.Reason
	} else {
		d.mu.Lock()
		if n := len(d.commits); n >= 2 {
			per := d.commits[n-1].Sub(d.commits[0]) / time.Duration(n-1)
			s.ETA = per * time.Duration(max(0, d.cfg.Rounds-st.CommittedRounds()))
		}
		d.mu.Unlock()
	}
	if h := st.Head(); h != nil {
		s.LedgerHead = h.Hash
		s.Epsilon = h.Epsilon
	}
	if n := len(st.Metrics); n > 0 {
		s.Accuracy, s.AccuracyRound = st.Metrics[n-1].Accuracy, st.Metrics[n-1].Round
	}
	return s
}
