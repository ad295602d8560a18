package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
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
	sc, std := f.secAggConfig(r, ids, maxW, len(params))
	if f.acct != nil {
		for _, id := range ids {
			rng := newRNG(seedFor(cfg.Seed, seedNoise, uint64(r), uint64(id)))
			if err := dp.AddGaussian(byID[id], std, rng); err != nil {
				return fmt.Errorf("client %d: distributed noise: %w", id-1, err)
			}
		}
	}
	out, err := secagg.Simulate(sc, byID, weights, f.dropStages(r, ids, dropped), rand.NewChaCha8(seedBytes(cfg.Seed, seedSecAgg, uint64(r), 2)), time.Unix(0, 0))
	if err != nil {
		var ie *secagg.InsufficientError
		if errors.As(err, &ie) {
			return &retryError{err}
		}
		return fmt.Errorf("secure aggregation: %w", err)
	}
	return f.applySecure(out, params, sampled, res)
}

// secAggConfig is the round's SecAgg+ configuration among ids, and with
// differential privacy the standard deviation of each client's share of
// the noise.
func (f *federation) secAggConfig(r int, ids []uint32, maxW float64, dim int) (secagg.Config, float64) {
	cfg := f.cfg
	sc := secagg.Config{
		Round:     uint64(r),
		Clients:   ids,
		Degree:    cfg.SecAggDegree,
		Bits:      secagg.DefaultBits,
		ClipRange: SecAggClipRange,
		MaxWeight: maxW,
		Dim:       dim,
		// The hardened protocol: consistency check of Bonawitz et al. 2017.
		ConsistencyCheck: true,
	}
	if sc.Degree > len(ids)-1 {
		sc.Degree = len(ids) - 1
	}
	sc.GraphSeed = seedBytes(cfg.Seed, seedSecAgg, uint64(r), 1)
	sc = sc.WithDefaults()
	std := 0.0
	if f.acct != nil {
		std = dp.DistributedStd(cfg.DPNoise, cfg.DPClip, sc.Threshold)
		sc.ClipRange = cfg.DPClip + 6*std
	}
	return sc, std
}

// dropStages draws the seeded random stage at which each dropped client of
// ids vanishes.
func (f *federation) dropStages(r int, ids []uint32, dropped map[int]bool) map[uint32]secagg.Stage {
	drop := map[uint32]secagg.Stage{}
	dropRNG := newRNG(seedFor(f.cfg.Seed, seedDrop, uint64(r), 1))
	for _, id := range ids {
		if dropped[int(id-1)] {
			drop[id] = secagg.Stage(dropRNG.IntN(4))
		}
	}
	return drop
}

// applySecure records the outcome of the protocol in res and steps the
// server optimizer with the survivors' weighted mean.
func (f *federation) applySecure(out *secagg.Outcome, params []float32, sampled int, res *roundResult) error {
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

// secureStreamed is the secure round with each client trained only when
// the protocol asks for its masked input (secagg.SimulateInputs), on the
// federation's pool of networks: a few updates exist at a time instead of
// every sampled client's (1,000 × 0.8 MB for the 2NN at n = 1,000). The
// configuration, the drop stages, the updates (attacked, clipped, noised
// with the same seeds) and so the result are those of secureRound. A
// client whose update is invalid refuses it at stage 2 (in secureRound it
// is left out of the sample before stage 0). Clients that vanish before
// stage 2 still train afterwards, for the round's training loss.
func (f *federation) secureStreamed(r int, params []float32, sampled []int, dropped map[int]bool, res *roundResult) error {
	cfg := f.cfg
	var ids []uint32
	maxW := 0.0
	pos := map[int]int{}
	for i, id := range sampled {
		pos[id] = i
		if n := len(f.clients[id].Train); n > 0 {
			ids = append(ids, uint32(id)+1) // Shamir points are non-zero
			w := float64(n)
			if f.acct != nil {
				w = 1 // DP-FedAvg weights clients equally (see attempt)
			}
			maxW = max(maxW, w)
		}
	}
	if len(ids) < 2 {
		return fmt.Errorf("secure aggregation needs at least 2 valid updates, have %d", len(ids))
	}
	sc, std := f.secAggConfig(r, ids, maxW, len(params))
	outs := make([]clientOut, len(sampled)) // loss and weight only
	trained := make([]bool, len(sampled))
	var mu sync.Mutex
	rejected := 0
	// Delta buffers are reused: SecAgg+ gives each update back once its
	// masked input is computed (the release of SimulateInputs).
	bufs := &deltaPool{dim: len(params)}
	train := func(id int) clientOut {
		net := <-f.pool
		defer func() { f.pool <- net }()
		o := f.trainClient(net, r, id, params, bufs.get())
		mu.Lock()
		outs[pos[id]], trained[pos[id]] = clientOut{id: id, weight: o.weight, loss: o.loss, err: o.err}, true
		mu.Unlock()
		return o
	}
	input := func(uid uint32) ([]float32, float64, error) {
		id := int(uid - 1)
		o := train(id)
		if o.err != nil {
			bufs.put(o.delta)
			return nil, 0, fmt.Errorf("client %d: %w", id, o.err)
		}
		f.attackUpdate(r, id, o.delta)
		u := aggregation.Update{Client: clientName(id), Delta: o.delta, Weight: o.weight}
		f.clipForDP(&u)
		if _, rej := aggregation.Validate([]aggregation.Update{u}, len(params)); len(rej) > 0 {
			mu.Lock()
			rejected++
			mu.Unlock()
			bufs.put(u.Delta)
			return nil, 0, nil
		}
		if f.acct != nil {
			rng := newRNG(seedFor(cfg.Seed, seedNoise, uint64(r), uint64(uid)))
			if err := dp.AddGaussian(u.Delta, std, rng); err != nil {
				bufs.put(u.Delta)
				return nil, 0, fmt.Errorf("client %d: distributed noise: %w", id, err)
			}
		}
		return u.Delta, u.Weight, nil
	}
	out, err := secagg.SimulateInputs(sc, input, bufs.put, f.dropStages(r, ids, dropped), rand.NewChaCha8(seedBytes(cfg.Seed, seedSecAgg, uint64(r), 2)), time.Unix(0, 0))
	if err != nil {
		var ie *secagg.InsufficientError
		if errors.As(err, &ie) {
			return &retryError{err}
		}
		return fmt.Errorf("secure aggregation: %w", err)
	}
	// The clients that vanished before stage 2 trained too (their losses
	// are part of the round's training loss, as in the plain path).
	var wg sync.WaitGroup
	for _, uid := range ids {
		if id := int(uid - 1); !trained[pos[id]] {
			wg.Go(func() { bufs.put(train(id).delta) })
		}
	}
	wg.Wait()
	var lossSum, wSum float64
	for i, o := range outs {
		if !trained[i] {
			continue
		}
		if o.err != nil {
			return fmt.Errorf("client %d: %w", o.id, o.err)
		}
		lossSum += o.loss * o.weight
		wSum += o.weight
	}
	if wSum > 0 {
		res.TrainLoss = lossSum / wSum
	}
	res.Rejected = rejected
	return f.applySecure(out, params, len(sampled), res)
}

// retryError marks a round that secure aggregation could not complete
// because too many sampled clients vanished; the round is retried with a
// new sample.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }
