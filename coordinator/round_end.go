package coordinator

// Ending a round: the failures (RoundFailed, with the missing workers or
// the named culprits), the commit of the model (server optimizer, privacy
// accounting, ledger entry), and the federated evaluation of each model.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation"
	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/wire"
)

func (d *Driver) fail(ctx context.Context, cur *RoundState, reason string, missing []uint32) error {
	ids := d.workers(cur, missing)
	d.log.Warn("round failed", "round", cur.Round, "stage", cur.Next.String(), "reason", reason, "missing", ids)
	if err := d.commit(ctx, Command{RoundFailed: &RoundFailed{Round: cur.Round, Reason: reason, Missing: ids}}); err != nil {
		return err
	}
	return &RoundFailedError{Round: cur.Round, Reason: reason, Missing: ids}
}

// ReleaseQ is the sampling rate each released sum is charged at: 1, since
// the coordinator chooses the sample (security review M5; see start).
const ReleaseQ = 1.0

// DefaultExcludeRounds is the default of DriverConfig.ExcludeRounds.
const DefaultExcludeRounds = 10

// failCulprits commits a RoundFailed that names culprits and excludes them
// from sampling until ExcludeRounds rounds later.
func (d *Driver) failCulprits(ctx context.Context, cur *RoundState, reason string, culprits []uint32) error {
	ids := d.workers(cur, culprits)
	n := d.cfg.ExcludeRounds
	if n == 0 {
		n = DefaultExcludeRounds
	}
	until := cur.Round + uint64(n) + 1
	d.log.Warn("round failed: culprits named", "round", cur.Round, "stage", cur.Next.String(), "reason", reason, "culprits", ids, "excluded_until", until)
	if err := d.commit(ctx, Command{RoundFailed: &RoundFailed{Round: cur.Round, Reason: reason, Missing: []WorkerID{}, Culprits: ids, ExcludedUntil: until}}); err != nil {
		return err
	}
	return &RoundFailedError{Round: cur.Round, Reason: reason, Missing: ids}
}

func (d *Driver) workers(cur *RoundState, idx []uint32) []WorkerID {
	ids := make([]WorkerID, 0, len(idx))
	for _, i := range idx {
		if i >= 1 && int(i) <= len(cur.Announce.Sampled) {
			ids = append(ids, cur.Announce.Sampled[i-1])
		}
	}
	slices.Sort(ids)
	return ids
}

// finish applies the server optimizer to sum/totalWeight, stores and
// commits the model, then runs the federated evaluation.
func (d *Driver) finish(ctx context.Context, cur *RoundState, sum []float64, tw float64) error {
	r := cur.Round
	log := d.log.With("round", r, "stage", "commit")
	d.setStage("commit")
	// The noised sum is released from here on: every way out of this
	// function charges the accountant (security review M1).
	var released *dp.Entry
	if cur.Announce.DP.Noise > 0 {
		released = &dp.Entry{Q: ReleaseQ, Sigma: cur.Announce.DP.Noise, Steps: 1}
	}
	failReleased := func(reason string) error {
		d.log.Warn("round failed after its sum was unmasked", "round", r, "reason", reason)
		if err := d.commit(ctx, Command{RoundFailed: &RoundFailed{Round: r, Reason: reason, Missing: []WorkerID{}, DP: released}}); err != nil {
			return err
		}
		return &RoundFailedError{Round: r, Reason: reason}
	}
	// The total weight is one masked word any survivor can bend: it must
	// lie in (0, |U3|·MaxWeight], and be |U3| when DP weights are uniform.
	n := float64(len(cur.Survivors))
	const slack = 1e-3 // far above the quantization error of one word
	if !(tw > 0) || math.IsInf(tw, 0) || tw > n*d.cfg.MaxWeight+slack {
		return failReleased(fmt.Sprintf("total weight %v of the %d survivors is outside (0, %v]", tw, len(cur.Survivors), n*d.cfg.MaxWeight))
	}
	if cur.Announce.DP.Noise > 0 && math.Abs(tw-n) > slack {
		return failReleased(fmt.Sprintf("total weight %v of the %d survivors is not %d: DP weights are 1 each", tw, len(cur.Survivors), len(cur.Survivors)))
	}
	var evalMetrics *MetricsRecorded
	if np := cur.Announce.NumParams; len(sum) == np+wire.EvalWords {
		acc, loss, ok, err := wire.ParseEvalTail(sum[np:])
		if err != nil {
			return d.fail(ctx, cur, "secure evaluation: "+err.Error(), nil)
		}
		if v := cur.Announce.ModelVersion; ok && v > 0 {
			evalMetrics = &MetricsRecorded{Round: v, Accuracy: acc, Loss: loss, Workers: len(cur.Survivors)}
		}
		sum = sum[:np]
	}
	mean := make([]float32, len(sum))
	for i, v := range sum {
		mean[i] = float32(v / tw)
		if math.IsNaN(float64(mean[i])) || math.IsInf(float64(mean[i]), 0) {
			return failReleased(fmt.Sprintf("unmasked mean is not finite at coordinate %d", i))
		}
	}
	st := d.fsm.State()
	params, err := d.reg.Get(Hash(cur.Announce.ModelHash))
	if err != nil {
		return fmt.Errorf("round %d: global model: %w", r, err)
	}
	if len(params) != len(mean) {
		return fmt.Errorf("round %d: global model %s has %d params, sum has %d", r, Hash(cur.Announce.ModelHash), len(params), len(mean))
	}
	strat, _ := d.cfg.strategy()
	opt := strat.Server
	if opt == nil {
		opt = aggregation.NewFedAvg(1)
	}
	if sf, ok := opt.(aggregation.Stateful); ok && !st.Optimizer.State.IsZero() {
		b, err := d.reg.GetBytes(st.Optimizer.State)
		if err != nil {
			return fmt.Errorf("round %d: optimizer state: %w", r, err)
		}
		var os aggregation.OptimizerState
		if err := json.Unmarshal(b, &os); err != nil {
			return fmt.Errorf("round %d: optimizer state %s: %w", r, st.Optimizer.State, err)
		}
		if err := sf.SetState(os); err != nil {
			return fmt.Errorf("round %d: optimizer state %s: %w", r, st.Optimizer.State, err)
		}
	}
	// Server step of Reddi et al. 2021 (FedAvg of McMahan et al. 2017 when
	// the optimizer is fedavg with η = 1) on the mean delta.
	if err := opt.Step(params, mean); err != nil {
		return failReleased("server optimizer: " + err.Error())
	}
	h, err := d.reg.Put(params)
	if err != nil {
		return fmt.Errorf("round %d: %w", r, err)
	}
	ref := OptimizerRef{Name: opt.Name()}
	if sf, ok := opt.(aggregation.Stateful); ok {
		os := sf.State()
		ref.Steps = os.Steps
		b, err := json.Marshal(os)
		if err != nil {
			return fmt.Errorf("round %d: optimizer state: %w", r, err)
		}
		if ref.State, err = d.reg.PutBytes(b); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
	}
	mc := &ModelCommitted{
		Round: r, ModelHash: h, Participants: d.workers(cur, cur.Survivors),
		Epsilon: cur.Announce.Epsilon, Optimizer: ref,
	}
	if head := st.Head(); head != nil {
		mc.Prev = head.Hash
	}
	if evalMetrics != nil {
		// The announced model's secure evaluation, recorded while it is
		// still the latest model (a resumed round records it once).
		if n := len(st.Metrics); n == 0 || st.Metrics[n-1].Round < evalMetrics.Round {
			if err := d.commit(ctx, Command{MetricsRecorded: evalMetrics}); err != nil {
				return err
			}
			log.Info("metrics recorded", "model_round", evalMetrics.Round, "accuracy", evalMetrics.Accuracy, "loss", evalMetrics.Loss, "workers", evalMetrics.Workers, "secure", true)
		}
	}
	mc.DP = released
	if err := d.commit(ctx, Command{ModelCommitted: mc}); err != nil {
		return err
	}
	log.Info("model committed", "model", h, "participants", len(mc.Participants), "epsilon", mc.Epsilon)
	d.mu.Lock()
	d.commits = append(d.commits, time.Now())
	d.mu.Unlock()
	if d.LedgerPath != "" {
		if err := WriteLedgerFileEnd(d.LedgerPath, d.fsm.Ledger(), d.fsm.State().Ended); err != nil {
			log.Warn("ledger export", "err", err)
		}
	}
	if !d.cfg.SecureEvaluation {
		d.evaluate(ctx, r, h, mc.Participants)
	}
	return nil
}

// evaluateUnrecorded evaluates the newest committed model if no metrics
// were recorded for it: a leader that died between ModelCommitted and
// MetricsRecorded leaves that step to its successor.
// It reports whether the newest model's metrics are recorded (or there is
// nothing to evaluate); Run tries again, up to RetryLimit times, while its
// workers are still redialling a new leader.
func (d *Driver) evaluateUnrecorded(ctx context.Context) bool {
	if d.cfg.SecureEvaluation {
		return true
	}
	recorded := func() bool {
		st := d.fsm.State()
		head := st.Head()
		if st.Current != nil || head == nil || head.Round == 0 {
			return true
		}
		n := len(st.Metrics)
		return n > 0 && st.Metrics[n-1].Round >= head.Round
	}
	if recorded() {
		return true
	}
	st := d.fsm.State()
	head := st.Head()
	d.log.Info("resuming", "round", head.Round, "stage", "evaluate")
	d.awaitOnline(ctx, head.Participants)
	d.evaluate(ctx, head.Round, head.ModelHash, head.Participants)
	return recorded()
}

// awaitOnline waits until every one of workers is online, at most two
// stage timeouts (or until ctx ends), checking the cohort every 50 ms. It
// returns either way: the stage that follows deals with whoever is missing.
func (d *Driver) awaitOnline(ctx context.Context, workers []WorkerID) {
	const poll = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, 2*d.cfg.StageTimeout)
	defer cancel()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		online := d.cohort.Online()
		missing := 0
		for _, w := range workers {
			if _, ok := slices.BinarySearch(online, w); !ok {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		select {
		case <-ctx.Done():
			d.log.Info("workers still offline", "stage", "resume", "missing", missing, "of", len(workers))
			return
		case <-t.C:
		}
	}
}

// evaluate asks the participants to evaluate the committed model and
// records the example-weighted accuracy. Failures are logged, not fatal:
// the model is already committed.
func (d *Driver) evaluate(ctx context.Context, r uint64, h Hash, workers []WorkerID) {
	log := d.log.With("round", r, "stage", "evaluate")
	d.setStage("evaluate")
	idx := make([]uint32, len(workers))
	for i := range idx {
		idx[i] = uint32(i)
	}
	replies := callAll(ctx, d.cfg.StageTimeout, idx, func(c context.Context, i uint32) (Metrics, error) {
		return d.cohort.Evaluate(c, workers[i], r, h)
	})
	var acc, loss float64
	var n, k int
	var bin *wire.BinaryReport
	binary := true
	for i, rp := range replies {
		m := rp.v
		if rp.err == nil && (m.Examples <= 0 || !(m.Accuracy >= 0 && m.Accuracy <= 1) || math.IsNaN(m.Loss) || math.IsInf(m.Loss, 0)) {
			rp.err = fmt.Errorf("metrics out of range: examples %d, accuracy %v, loss %v", m.Examples, m.Accuracy, m.Loss)
		}
		if rp.err != nil {
			log.Warn("no metrics", "worker", workers[i], "err", rp.err)
			continue
		}
		acc += m.Accuracy * float64(m.Examples)
		loss += m.Loss * float64(m.Examples)
		n += m.Examples
		k++
		// The confusion matrix and AUC only if every reporting worker sent
		// its counts (a partial sum would misstate them).
		if m.Binary == nil {
			binary = false
		} else if binary {
			if bin == nil {
				bin = &wire.BinaryReport{}
			}
			bin.Add(m.Binary)
		}
	}
	if n == 0 {
		log.Warn("no worker reported metrics")
		return
	}
	mr := &MetricsRecorded{Round: r, Accuracy: acc / float64(n), Loss: loss / float64(n), Examples: n, Workers: k}
	if binary && bin != nil {
		auc := bin.AUC()
		if math.IsNaN(auc) {
			auc = -1
		}
		mr.Binary = &BinaryMetrics{TP: bin.TP, FP: bin.FP, TN: bin.TN, FN: bin.FN, AUC: auc}
	}
	if err := d.commit(ctx, Command{MetricsRecorded: mr}); err != nil {
		log.Warn("recording metrics", "err", err)
		return
	}
	if b := mr.Binary; b != nil {
		log.Info("metrics recorded", "accuracy", mr.Accuracy, "loss", mr.Loss, "examples", n, "workers", k, "auc", b.AUC, "tp", b.TP, "fp", b.FP, "tn", b.TN, "fn", b.FN)
	} else {
		log.Info("metrics recorded", "accuracy", mr.Accuracy, "loss", mr.Loss, "examples", n, "workers", k)
	}
}

// appendRefused adds err to rs if it is a worker's refusal of round r, with
// the reason cut to MaxRefusalReason bytes (the text is the worker's own).
func appendRefused(rs []RefusalRecord, r uint64, w WorkerID, err error) []RefusalRecord {
	var re *RefusalError
	if !errors.As(err, &re) {
		return rs
	}
	reason := re.Reason
	if len(reason) > MaxRefusalReason {
		reason = strings.ToValidUTF8(reason[:MaxRefusalReason], "")
	}
	return append(rs, RefusalRecord{Round: r, Worker: w, Reason: reason, AtMs: time.Now().UnixMilli()})
}
