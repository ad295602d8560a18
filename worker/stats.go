package worker

// The worker's side of the federation-statistics round of a data schema
// (coordinator/stats.go, docs/data-schema.md): it sums its raw training
// rows (data.Sums), scales them by the announced public ranges, adds the
// round's row-level noise, and masks them like a model update; once the
// federation's statistics are committed, every model round's announcement
// carries them and the worker re-encodes its splits with them before it
// trains or evaluates.

import (
	"crypto/sha256"
	"fmt"
	"io"
	mrand "math/rand/v2"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/wire"
)

// schemaData is a node's data under a schema.
type schemaData struct {
	schema            *data.Schema
	hash              [32]byte
	rawTrain, rawTest *data.Dataset
	standardize       bool
	// ready: the splits are encoded with real statistics (a file or the
	// federation's); digest is the SHA-256 of the federation statistics'
	// JSON in use (zero: the file's or the placeholders).
	ready  bool
	digest [32]byte
}

// WithData gives the node the schema side of its data (Config.LoadData):
// the schema, its hash and the raw tables behind the splits passed to
// NewNode. Without a statistics file the splits hold placeholders until
// the federation's statistics arrive, and no model round is trained before.
func WithData(d *Data) Option {
	return func(n *Node) error {
		if d == nil || d.Schema == nil {
			return nil
		}
		if d.RawTrain == nil || d.RawTest == nil || d.RawTrain.N != n.train.N || d.RawTest.N != n.test.N {
			return fmt.Errorf("worker %s: WithData: raw tables do not match the splits", n.cfg.Name)
		}
		n.sd = &schemaData{schema: d.Schema, hash: d.SchemaHash, rawTrain: d.RawTrain, rawTest: d.RawTest, standardize: d.Standardize, ready: d.Stats != nil}
		return nil
	}
}

// checkSchema checks an announcement against the node's schema and, on a
// model round, brings the splits to the federation's statistics; n.mu is
// held.
func (n *Node) checkSchema(a *Announce) error {
	sd := n.sd
	if sd == nil {
		if a.Purpose == wire.PurposeStatistics {
			return n.refuse(a.Round, nil, "the round computes the statistics of a data schema, and this worker reads its data without one")
		}
		if a.SchemaHash != ([32]byte{}) {
			return n.refuse(a.Round, nil, "the study reads its data under schema %x, and this worker has no schema", a.SchemaHash[:8])
		}
		return nil
	}
	if a.SchemaHash != sd.hash {
		return n.refuseDetail(a.Round, nil, fmt.Sprintf("the announced data schema %x is not this worker's schema %x", a.SchemaHash[:8], sd.hash[:8]),
			fmt.Sprintf("schema file %s", n.cfg.Schema))
	}
	if a.Purpose == wire.PurposeStatistics {
		if want := data.SumsLen(sd.schema); a.SecAgg.Dim != want {
			return fmt.Errorf("worker %s: announce of round %d: secagg.dim: %d, but schema %s has %d statistics", n.cfg.Name, a.Round, a.SecAgg.Dim, sd.schema.Name, want)
		}
		if sd.rawTrain.N > a.StatsMaxRows {
			return n.refuseDetail(a.Round, nil, fmt.Sprintf("this worker has more rows than the announced stats_max_rows %d", a.StatsMaxRows),
				fmt.Sprintf("%d training rows", sd.rawTrain.N))
		}
		return nil
	}
	if len(a.Stats) == 0 {
		if !sd.ready {
			return n.refuse(a.Round, nil, "the round carries no federation statistics and this worker has no stats file: its data cannot be encoded yet")
		}
		return nil
	}
	dig := sha256.Sum256(a.Stats)
	if sd.ready && dig == sd.digest {
		return nil
	}
	st, err := data.ParseStats(a.Stats, fmt.Sprintf("of round %d", a.Round), sd.schema)
	if err != nil {
		return fmt.Errorf("worker %s: announce of round %d: federation_stats: %w", n.cfg.Name, a.Round, err)
	}
	train, err := data.Encode(sd.schema, sd.rawTrain, st, sd.standardize)
	if err != nil {
		return fmt.Errorf("worker %s: round %d: %w", n.cfg.Name, a.Round, err)
	}
	test, err := data.Encode(sd.schema, sd.rawTest, st, sd.standardize)
	if err != nil {
		return fmt.Errorf("worker %s: round %d: %w", n.cfg.Name, a.Round, err)
	}
	// Same shapes, new values: copied in place under both locks, so that
	// an evaluation (evalMu) never reads a half-written split.
	n.evalMu.Lock()
	copy(n.train.X, train.X)
	copy(n.test.X, test.X)
	n.evalMu.Unlock()
	sd.ready, sd.digest = true, dig
	n.log.Info("data encoded with the federation's statistics", "round", a.Round, "rows", st.Rows)
	return nil
}

// statsInput is the statistics round's input: the site's sufficient
// statistics divided by the public ranges, with the round's row-level
// Gaussian noise N(0, σ²Δ²/t) (Δ = dp.clip, t = dp.min_clients).
func (n *Node) statsInput(a *Announce) ([]float32, error) {
	sd := n.sd
	if sd == nil {
		return nil, fmt.Errorf("worker %s: round %d: statistics round without a schema", n.cfg.Name, a.Round)
	}
	v, err := data.ScaledSums(sd.schema, sd.rawTrain, nil, a.StatsMaxRows)
	if err != nil {
		return nil, fmt.Errorf("worker %s: round %d: %w", n.cfg.Name, a.Round, err)
	}
	if a.DP.Noise > 0 {
		var seed [32]byte
		if _, err := io.ReadFull(n.rand, seed[:]); err != nil {
			return nil, fmt.Errorf("worker %s: round %d: noise seed: %w", n.cfg.Name, a.Round, err)
		}
		std := dp.DistributedStd(a.DP.Noise, a.DP.Clip, a.DP.MinClients)
		if err := dp.AddGaussian(v, std, mrand.New(mrand.NewChaCha8(seed))); err != nil {
			return nil, fmt.Errorf("worker %s: round %d: %w", n.cfg.Name, a.Round, err)
		}
	}
	n.log.Info("statistics summed", "round", a.Round, "noise", a.DP.Noise > 0)
	return v, nil
}
