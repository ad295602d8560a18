package coordinator

// The federation-statistics round of a data schema (docs/data-schema.md).
//
// Before the first model round of a study whose workers read a CSV under a
// federation-wide schema, the driver runs one SecAgg+ round (Bell et al.
// 2020 over the stages of Bonawitz et al. 2017) whose inputs are not model
// updates but each site's sufficient statistics: rows, and per feature
// column n, Σx, Σx² (numeric) or n and the count of each value
// (categorical), data.Sums over its training rows, each coordinate divided
// by a public range (data.SumScales) so it fits the fixed-point encoding.
// The coordinator learns only the federation-wide sums, from which the
// pooled count, mean and variance follow exactly (Chan, Golub & LeVeque
// 1983); it commits them (StatsCommitted) and every later announcement
// carries them, so every worker imputes and standardises with the same
// values and the exported model records them for `sovereign predict`.
//
// With StatsNoise σ > 0 each worker adds N(0, σ²Δ²/t) to its scaled
// vector, Δ the L2 sensitivity of one row in scaled units, t the fewest
// survivors a released sum holds (distributed Gaussian mechanism, as for
// the model rounds): the released sums are (ε, δ)-DP for each row of every
// site, accounted with RDP (Mironov 2017) at q = 1. This is row-level
// privacy, not the institution-level privacy of DP-FedAvg, so it is
// reported as its own (ε, δ) and not composed into the model rounds' ε.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/wire"
)

// StatsCommitted closes the statistics round with the federation's
// statistics.
type StatsCommitted struct {
	Round      uint64 `json:"round"`
	SchemaHash Hash   `json:"schema_hash"`
	// Stats is the JSON of the data.Stats computed from the unmasked sums.
	Stats json.RawMessage `json:"stats"`
	// Schema is the schema file's text (SHA-256 = SchemaHash).
	Schema string `json:"schema"`
	// Participants are the survivors as worker IDs, sorted.
	Participants []WorkerID `json:"participants"`
	// DP, if non-nil, is the row-level Gaussian release of the sums.
	DP *dp.Entry `json:"dp,omitempty"`
	// Epsilon is the row-level ε of the release at the study's δ (0 without noise).
	Epsilon float64 `json:"epsilon"`
}

// StatsRecord is the committed federation statistics of the schema.
type StatsRecord struct {
	Round        uint64          `json:"round"`
	SchemaHash   Hash            `json:"schema_hash"`
	Schema       string          `json:"schema"`
	Stats        json.RawMessage `json:"stats"`
	Participants []WorkerID      `json:"participants"`
	DP           *dp.Entry       `json:"dp,omitempty"`
	Epsilon      float64         `json:"epsilon"`
}

// MaxStatsBytes bounds a committed statistics record (as on the wire).
const MaxStatsBytes = wire.MaxStatsBytes

// statsPending reports whether the next round must be the statistics round:
// the study has a schema and its statistics are not committed yet.
func (d *Driver) statsPending(st *State) bool {
	return d.cfg.Schema != nil && (st.Stats == nil || st.Stats.SchemaHash != Hash(d.cfg.SchemaHash))
}

// statsDim is the length of the statistics round's vector.
func (d *Driver) statsDim() int { return data.SumsLen(d.cfg.Schema) }

// StatsSensitivity is the L2 norm of the change one row makes to a site's
// scaled statistics vector: 1/maxRows in the row count and, per numeric
// column, in each of n, Σx/B and Σx²/B² (|x| ≤ B), per categorical column
// in n and one value's count.
func StatsSensitivity(s *data.Schema, maxRows int) float64 {
	k := 1.0
	for _, c := range s.Features() {
		if s.Columns[c].Type == data.TypeNumeric {
			k += 3
		} else {
			k += 2
		}
	}
	return math.Sqrt(k) / float64(maxRows)
}

// statsMaxRows is the public bound on a site's rows.
func (c Config) statsMaxRows() int {
	if c.StatsMaxRows > 0 {
		return c.StatsMaxRows
	}
	return int(c.MaxWeight)
}

// shapeStatsAnnounce turns a model round's announcement into the
// statistics round's (pending) or adds the committed statistics to it.
func (d *Driver) shapeStatsAnnounce(a *Announce, st *State) {
	if d.cfg.Schema == nil {
		return
	}
	a.SchemaHash = d.cfg.SchemaHash
	if !d.statsPending(st) {
		a.Stats = slices.Clone(st.Stats.Stats)
		return
	}
	a.Purpose = wire.PurposeStatistics
	a.StatsMaxRows = d.cfg.statsMaxRows()
	a.Epsilon = 0
	sc := &a.SecAgg
	sc.Dim = d.statsDim()
	// Every site weighs 1: the sums are counts, not a weighted mean.
	sc.MaxWeight = 1
	sc.ClipRange = 1
	a.DP = DPParams{}
	if d.cfg.StatsNoise > 0 {
		a.DP = DPParams{Noise: d.cfg.StatsNoise, Clip: StatsSensitivity(d.cfg.Schema, a.StatsMaxRows), MinClients: min(d.cfg.MinWorkers, sc.Threshold)}
		sc.ClipRange = 1 + 6*dp.DistributedStd(a.DP.Noise, a.DP.Clip, a.DP.MinClients)
	}
}

// finishStats turns the unmasked sum of the statistics round into the
// federation's statistics and commits them.
func (d *Driver) finishStats(ctx context.Context, cur *RoundState, sum []float64, tw float64) error {
	r := cur.Round
	a := &cur.Announce
	log := d.log.With("round", r, "stage", "commit")
	d.setStage("commit")
	var released *dp.Entry
	eps := 0.0
	if a.DP.Noise > 0 {
		released = &dp.Entry{Q: 1, Sigma: a.DP.Noise, Steps: 1}
		acc := &dp.Accountant{}
		if err := acc.Step(1, a.DP.Noise, 1); err != nil {
			return fmt.Errorf("round %d: statistics privacy: %w", r, err)
		}
		var err error
		if eps, _, err = acc.Epsilon(d.cfg.Delta, nil); err != nil {
			return fmt.Errorf("round %d: statistics privacy: %w", r, err)
		}
	}
	n := float64(len(cur.Survivors))
	if math.Abs(tw-n) > 1e-3 {
		return d.fail(ctx, cur, fmt.Sprintf("statistics round: total weight %v of the %d survivors is not %d (each site weighs 1)", tw, len(cur.Survivors), len(cur.Survivors)), nil)
	}
	s := d.cfg.Schema
	if len(sum) != data.SumsLen(s) {
		return d.fail(ctx, cur, fmt.Sprintf("statistics round: sum of %d values, the schema has %d", len(sum), data.SumsLen(s)), nil)
	}
	scales, err := data.SumScales(s, a.StatsMaxRows)
	if err != nil {
		return fmt.Errorf("round %d: %w", r, err)
	}
	counts := data.SumIsCount(s)
	sums := make([]float64, len(sum))
	for j, v := range sum {
		sums[j] = v * scales[j]
		if counts[j] && a.DP.Noise == 0 {
			// Counts are integers; the quantization error is far below ½.
			sums[j] = math.Round(sums[j])
		}
	}
	stats, err := data.StatsFromSums(s, sums)
	if err != nil {
		return d.fail(ctx, cur, "statistics round: "+err.Error(), nil)
	}
	b, err := json.Marshal(stats)
	if err != nil {
		return fmt.Errorf("round %d: %w", r, err)
	}
	if len(b) > MaxStatsBytes {
		return d.fail(ctx, cur, fmt.Sprintf("statistics round: %d bytes of statistics, above %d", len(b), MaxStatsBytes), nil)
	}
	sc := &StatsCommitted{Round: r, SchemaHash: Hash(d.cfg.SchemaHash), Schema: string(d.cfg.SchemaText), Stats: b, Participants: d.workers(cur, cur.Survivors), DP: released, Epsilon: eps}
	if err := d.commit(ctx, Command{StatsCommitted: sc}); err != nil {
		return err
	}
	log.Info("statistics committed", "rows", stats.Rows, "sites", len(sc.Participants), "row_epsilon", eps)
	return nil
}

// applyStats applies a StatsCommitted command.
func (f *FSM) applyStats(c *Command) error {
	s := f.st()
	m := c.StatsCommitted
	cur, err := f.current(c, m.Round)
	if err != nil {
		return err
	}
	if cur.Announce.Purpose != wire.PurposeStatistics {
		return refuse(c, "round %d is not a statistics round", m.Round)
	}
	if cur.Next != secagg.StageUnmask {
		return stale(c, "statistics committed before the survivors")
	}
	if m.SchemaHash != Hash(cur.Announce.SchemaHash) {
		return refuse(c, "schema %s is not the announced %s", m.SchemaHash, Hash(cur.Announce.SchemaHash))
	}
	if Hash(sha256.Sum256([]byte(m.Schema))) != m.SchemaHash {
		return refuse(c, "schema text does not hash to %s", m.SchemaHash)
	}
	if len(m.Stats) == 0 || len(m.Stats) > MaxStatsBytes || !json.Valid(m.Stats) {
		return refuse(c, "statistics must be 1..%d bytes of JSON", MaxStatsBytes)
	}
	if m.Epsilon < 0 || math.IsNaN(m.Epsilon) || math.IsInf(m.Epsilon, 0) {
		return refuse(c, "epsilon %v not finite and non-negative", m.Epsilon)
	}
	want := make([]WorkerID, len(cur.Survivors))
	for i, id := range cur.Survivors {
		want[i] = cur.Announce.Sampled[id-1]
	}
	slices.Sort(want)
	if !slices.Equal(want, m.Participants) {
		return refuse(c, "participants %v are not the committed survivors %v", m.Participants, want)
	}
	s.Stats = &StatsRecord{Round: m.Round, SchemaHash: m.SchemaHash, Schema: m.Schema, Stats: slices.Clone(m.Stats), Participants: slices.Clone(m.Participants), DP: m.DP, Epsilon: m.Epsilon}
	s.Current = nil
	s.Failures = 0
	return nil
}
