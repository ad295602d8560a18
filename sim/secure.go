package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation"
	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

// SecAggClipRange is the coordinate range [-R, R] of secure aggregation's
// fixed-point encoding when differential privacy is off. Model deltas of
// one round are far smaller; a larger value only costs resolution.
const SecAggClipRange = 1.0

// secureRound aggregates the round's updates through the whole SecAgg+
// protocol (Bell et al. 2020 over the stages of Bonawitz et al. 2017) among
// the sampled clients, with the dropped clients vanishing at seeded random
// stages. Only the sum reaches the server optimizer. With differential
// privacy on, each client adds its share N(0, σ²C²/t) of the noise before
// quantization (distributed DP), t being the threshold: the fewest clients
// whose inputs an unmasked sum can contain.
func (f *federation) secureRound(r int, params []float32, updates []aggregation.Update, sampled int, dropped map[int]bool, res *roundResult) error {
	cfg := f.cfg
	// A client whose update is malformed (NaN, wrong size) does not take
	// part: it would be refused by its own worker before masking.
	valid, rejected := aggregation.Validate(updates, len(params))
	res.Rejected = len(rejected)
	ids := make([]uint32, 0, len(valid))
	byID := map[uint32][]float32{}
	weights := map[uint32]float64{}
	maxW := 0.0
	for _, u := range valid {
		id := uint32(clientIndex(u.Client)) + 1 // Shamir points are non-zero
		ids = append(ids, id)
		byID[id] = u.Delta
		weights[id] = u.Weight
		maxW = max(maxW, u.Weight)
	}
	if len(ids) < 2 {
		return fmt.Errorf("secure aggregation needs at least 2 valid updates, have %d", len(ids))
	}
	sc := secagg.Config{
		Round:     uint64(r),
		Clients:   ids,
		Degree:    cfg.SecAggDegree,
		Bits:      secagg.DefaultBits,
		ClipRange: SecAggClipRange,
		MaxWeight: maxW,
		Dim:       len(params),
		// The hardened protocol: consistency check of Bonawitz et al. 2017.
		ConsistencyCheck: true,
	}
	if sc.Degree > len(ids)-1 {
		sc.Degree = len(ids) - 1
	}
	sc.GraphSeed = seedBytes(cfg.Seed, seedSecAgg, uint64(r), 1)
	sc = sc.WithDefaults()
	if f.acct != nil {
		std := dp.DistributedStd(cfg.DPNoise, cfg.DPClip, sc.Threshold)
		sc.ClipRange = cfg.DPClip + 6*std
		for _, id := range ids {
			rng := newRNG(seedFor(cfg.Seed, seedNoise, uint64(r), uint64(id)))
			if err := dp.AddGaussian(byID[id], std, rng); err != nil {
				return fmt.Errorf("client %d: distributed noise: %w", id-1, err)
			}
		}
	}
	// Dropped clients vanish at a seeded random stage of the protocol.
	drop := map[uint32]secagg.Stage{}
	dropRNG := newRNG(seedFor(cfg.Seed, seedDrop, uint64(r), 1))
	for _, id := range ids {
		if dropped[int(id-1)] {
			drop[id] = secagg.Stage(dropRNG.IntN(4))
		}
	}
	out, err := secagg.Simulate(sc, byID, weights, drop, rand.NewChaCha8(seedBytes(cfg.Seed, seedSecAgg, uint64(r), 2)), time.Unix(0, 0))
	if err != nil {
		var ie *secagg.InsufficientError
		if errors.As(err, &ie) {
			return &retryError{err}
		}
		return fmt.Errorf("secure aggregation: %w", err)
	}
	res.Dropped = sampled - len(out.Survivors)
	res.Clients = len(out.Survivors)
	res.participants = nil
	for _, id := range out.Survivors {
		res.participants = append(res.participants, int(id-1))
	}
	if !(out.TotalWeight > 0) {
		return fmt.Errorf("secure aggregation: total weight %v of survivors %v", out.TotalWeight, out.Survivors)
	}
	mean := make([]float32, len(params))
	for j, v := range out.Sum {
		mean[j] = float32(v / out.TotalWeight)
	}
	return f.strategy.Server.Step(params, mean)
}

// retryError marks a round that secure aggregation could not complete
// because too many sampled clients vanished; the round is retried with a
// new sample.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }
