package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
)

// seedStats is the purpose of the federated-statistics round's seeds (after
// the iota list in sim.go, whose values must not be renumbered).
const seedStats uint64 = 0x5354_4154 // "STAT"

// FederatedStats computes the federation-wide feature statistics of a
// schema (count, mean and variance of each numeric column, frequencies of
// each category) before the first round, as one SecAgg+ round (Bell et al.
// 2020 over the stages of Bonawitz et al. 2017) whose input vectors are the
// clients' sufficient statistics (n, Σx, Σx² per numeric column and value
// counts per categorical column, data.Sums over each client's training
// rows). Each client divides its sums by the public per-coordinate ranges
// of data.SumScales (maxRows bounds any client's rows), so they fit the
// fixed-point encoding's [-1, 1]; only the masked vectors and the unmasked
// total reach the server. The mean and variance then follow from the sums
// (Chan, Golub & LeVeque 1983: the pooled moments are sums of the parts'),
// exact up to the quantization error, which errBound returns per
// coordinate of the rescaled sums.
//
// With a single client (a centralised run) the statistics are its own,
// computed in the clear. observe, if not nil, sees every message a client sends (see
// secagg.SimulateObserved).
func FederatedStats(s *data.Schema, raw *data.Dataset, clients []data.Client, maxRows int, seed int64, observe func(any)) (st *data.Stats, errBound []float64, err error) {
	if len(clients) == 1 {
		// One site (the centralised baseline): nothing to hide it among.
		sums, err := data.Sums(s, raw, clients[0].Train)
		if err != nil {
			return nil, nil, err
		}
		st, err := data.StatsFromSums(s, sums)
		return st, make([]float64, len(sums)), err
	}
	if len(clients) < 1 {
		return nil, nil, fmt.Errorf("federated statistics: no clients")
	}
	scales, err := data.SumScales(s, maxRows)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]uint32, len(clients))
	inputs := map[uint32][]float32{}
	weights := map[uint32]float64{}
	for i, c := range clients {
		if len(c.Train) > maxRows {
			return nil, nil, fmt.Errorf("federated statistics: client %d has %d rows, more than the bound %d", c.ID, len(c.Train), maxRows)
		}
		v, err := data.ScaledSums(s, raw, c.Train, maxRows)
		if err != nil {
			return nil, nil, fmt.Errorf("client %d: %w", c.ID, err)
		}
		id := uint32(i + 1) // Shamir points are non-zero
		ids[i] = id
		inputs[id] = v
		weights[id] = 1
	}
	sc := secagg.Config{
		Round:     0,
		Clients:   ids,
		Bits:      secagg.DefaultBits,
		ClipRange: 1,
		MaxWeight: 1,
		Dim:       data.SumsLen(s),
		GraphSeed: seedBytes(seed, seedStats, 1),
	}
	sc = sc.WithDefaults()
	out, err := secagg.SimulateObserved(sc, inputs, weights, nil, rand.NewChaCha8(seedBytes(seed, seedStats, 2)), time.Unix(0, 0), observe)
	if err != nil {
		return nil, nil, fmt.Errorf("federated statistics: %w", err)
	}
	if len(out.Survivors) != len(ids) {
		return nil, nil, fmt.Errorf("federated statistics: %d of %d clients in the sum", len(out.Survivors), len(ids))
	}
	q, err := secagg.NewQuantizer(sc.Bits, sc.ClipRange, sc.MaxWeight, len(ids))
	if err != nil {
		return nil, nil, err
	}
	per, _ := q.ErrorBound(len(ids))
	sums := make([]float64, len(out.Sum))
	errBound = make([]float64, len(out.Sum))
	// Besides quantization, each client's input was rounded to float32
	// (relative error 2^-24 of a value in [-1, 1]).
	per += float64(len(ids)) * 0x1p-24
	counts := data.SumIsCount(s)
	for j, v := range out.Sum {
		sums[j] = v * scales[j]
		errBound[j] = per * scales[j]
		if counts[j] && errBound[j] < 0.5 {
			// Counts are integers: rounding makes them exact.
			sums[j] = math.Round(sums[j])
			errBound[j] = 0
		}
	}
	st, err = data.StatsFromSums(s, sums)
	return st, errBound, err
}

// LoadWithSchema reads cfg.Dataset ("csv:FILE[?test=FRAC&seed=N]") against
// the schema cfg.Schema, splits it with data.SplitSeed (or seed), partitions
// the training split as the simulation will (same seed), computes the
// federation's statistics with FederatedStats over the virtual clients and
// encodes both splits with them (imputation, one-hot, standardisation with
// the federation's mean and deviation).
func LoadWithSchema(cfg Config) (train, test *data.Dataset, st *data.Stats, err error) {
	s, err := data.LoadSchema(cfg.Schema)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--schema: %w", err)
	}
	path, testFrac, splitSeed, err := data.ParseSchemaCSV(cfg.Dataset)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--dataset %q: %w", cfg.Dataset, err)
	}
	raw, err := data.LoadTable(path, s)
	if err != nil {
		return nil, nil, nil, err
	}
	rawTrain, rawTest, err := data.SplitTable(raw, testFrac, splitSeed)
	if err != nil {
		return nil, nil, nil, err
	}
	// Partition looks at labels only, but checks that features are finite:
	// hand it the labels with zero features (the encoded set newFederation
	// partitions has the same rows and labels, so the same clients).
	shadow := *rawTrain
	shadow.X = make([]float32, len(rawTrain.X))
	clients, err := data.Partition(&shadow, cfg.Clients, cfg.Partition, cfg.TestFraction, seedFor(cfg.Seed, seedPartition))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--partition: %w", err)
	}
	st, _, err = FederatedStats(s, rawTrain, clients, rawTrain.N, cfg.Seed, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if train, err = data.Encode(s, rawTrain, st, s.Standardizes()); err != nil {
		return nil, nil, nil, err
	}
	if test, err = data.Encode(s, rawTest, st, s.Standardizes()); err != nil {
		return nil, nil, nil, err
	}
	return train, test, st, nil
}
