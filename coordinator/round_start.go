package coordinator

// Starting a round: sampling the online workers (culprits and workers
// that cannot take part left out), the announcement, its ε, and the
// RoundStarted that commits both before any worker hears of the round.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/wire"
)

// seed32 derives a 32-byte public seed for round r and a purpose label.
func (d *Driver) seed32(label string, r uint64) [32]byte {
	var b [8 + 8]byte
	binary.BigEndian.PutUint64(b[:], uint64(d.cfg.Seed))
	binary.BigEndian.PutUint64(b[8:], r)
	return sha256.Sum256(append([]byte("sovereign/"+label+"\x00"), b[:]...))
}

// sampleSize returns how many of online workers a round samples.
func (d *Driver) sampleSize(online int) int {
	if d.cfg.WorkersPerRound > 0 {
		return d.cfg.WorkersPerRound
	}
	return max(d.cfg.MinWorkers, int(math.Ceil(d.cfg.Fraction*float64(online))))
}

func (d *Driver) start(ctx context.Context, r uint64, st *State) (*RoundState, error) {
	log := d.log.With("round", r, "stage", "sample")
	online := slices.Clone(d.cohort.Online())
	slices.Sort(online)
	online = slices.Compact(online)
	// Culprits of recent rounds are not sampled (security review H3, M3),
	// nor workers whose plan check said they cannot take part (plan.go).
	online = slices.DeleteFunc(online, func(w WorkerID) bool { return st.Excluded[w] > r })
	if inc := d.incompatible(); len(inc) > 0 {
		online = slices.DeleteFunc(online, func(w WorkerID) bool { _, bad := inc[w]; return bad })
	}
	if !slices.Equal(online, st.Members) && !(len(online) == 0 && len(st.Members) == 0) {
		if online == nil {
			online = []WorkerID{}
		}
		if err := d.commit(ctx, Command{MembersSeen: &MembersSeen{Round: r, Members: online}}); err != nil {
			return nil, err
		}
	}
	n := d.sampleSize(len(online))
	if d.statsPending(st) {
		// The statistics cover every site online (at most MaxClients).
		n = max(n, min(len(online), secagg.MaxClients))
	}
	if len(online) < n {
		if inc := d.incompatible(); len(inc) > 0 {
			var names []string
			for w, rs := range inc {
				names = append(names, fmt.Sprintf("%s (%s)", w, strings.Join(rs, "; ")))
			}
			slices.Sort(names)
			return nil, fmt.Errorf("round %d: %w: %d online and able to take part, need %d; cannot take part: %s", r, ErrNotEnoughOnline, len(online), n, strings.Join(names, ", "))
		}
		return nil, fmt.Errorf("round %d: %w: %d online, need %d", r, ErrNotEnoughOnline, len(online), n)
	}
	seed := d.seed32("sample", r)
	rng := rand.New(rand.NewChaCha8(seed))
	perm := rng.Perm(len(online))[:n]
	sampled := make([]WorkerID, n)
	for i, j := range perm {
		sampled[i] = online[j]
	}
	slices.Sort(sampled)
	head, _ := d.fsm.LatestModel()
	names := make([]string, n)
	for i, w := range sampled {
		names[i] = string(w)
	}
	clients := make([]uint32, n)
	for i := range clients {
		clients[i] = uint32(i + 1)
	}
	sc := secagg.Config{
		Round: r, Clients: clients, Degree: d.cfg.SecAggDegree, ClipRange: d.cfg.ClipRange,
		// The graph seed is derived from the announcement itself, so
		// workers check it (security review M7).
		MaxWeight: d.cfg.MaxWeight, Dim: d.spec.NumParams(), GraphSeed: wire.GraphSeed(d.cfg.Federation, r, head.Hash, names),
		StageTimeout: d.cfg.StageTimeout,
		// Bonawitz et al. 2017, round 4: every survivor signs the survivor
		// set before any unmasking (security review H2).
		ConsistencyCheck: true,
	}
	if d.cfg.SecureEvaluation {
		sc.Dim += wire.EvalWords
	}
	if sc.Degree > n-1 {
		sc.Degree = n - 1
	}
	sc = sc.WithDefaults()
	dpp := d.cfg.DP
	// The noise share assumes the fewest clients a released sum can hold:
	// the driver releases no sum of fewer than MinWorkers survivors, but
	// SecAgg+ itself can unmask any t = Threshold of them, and a worker
	// refuses a round whose noise would not cover that case.
	dpp.MinClients = min(d.cfg.MinWorkers, sc.Threshold)
	eps := 0.0
	if dpp.Noise > 0 && d.cfg.MaxEpsilon > 0 && !d.statsPending(st) {
		a := st.Accountant()
		if err := a.Step(float64(n)/float64(len(online)), dpp.Noise, 1); err == nil {
			if e, _, err := a.Epsilon(d.cfg.Delta, nil); err == nil && e > d.cfg.MaxEpsilon {
				return nil, &budgetError{Round: r, Epsilon: e, Max: d.cfg.MaxEpsilon}
			}
		}
	}
	if dpp.Noise > 0 {
		// Distributed DP: each worker adds N(0, σ²C²/t); a released sum of
		// at least t = MinClients survivors carries noise σC (Truex et
		// al. 2019; Kairouz, Liu, Steinke 2021), accounted with RDP
		// (Mironov 2017) at sampling rate q = 1: the coordinator picks and
		// knows the sample, and the announcement names it to every sampled
		// worker, so amplification by sampling (q = n/online) does not
		// hold against the coordinator nor against the workers (security
		// review M5). Each worker keeps its own q = 1 accountant too.
		sc.ClipRange = dpp.Clip + 6*dp.DistributedStd(dpp.Noise, dpp.Clip, dpp.MinClients)
		a := st.Accountant()
		if err := a.Step(ReleaseQ, dpp.Noise, 1); err != nil {
			return nil, fmt.Errorf("round %d: privacy accounting: %w", r, err)
		}
		var err error
		if eps, _, err = a.Epsilon(d.cfg.Delta, nil); err != nil {
			return nil, fmt.Errorf("round %d: privacy accounting: %w", r, err)
		}
	}
	strat, _ := d.cfg.strategy()
	train := d.cfg.Train
	if strat.ProxMu > 0 {
		train.ProxMu = float64(strat.ProxMu)
	}
	a := Announce{
		Round: r, ModelHash: head.Hash, ModelVersion: head.Round, ModelSpec: d.cfg.Model,
		NumParams: d.spec.NumParams(), Train: train, DP: dpp, SecAgg: sc, Sampled: sampled, Epsilon: eps,
		Study: d.fsm.Name(),
	}
	d.shapeStatsAnnounce(&a, st)
	if a.Purpose == wire.PurposeStatistics {
		eps = 0
	}
	if err := d.commit(ctx, Command{RoundStarted: &RoundStarted{Round: r, Announce: a, OnlineCount: len(online)}}); err != nil {
		return nil, err
	}
	log.Info("round started", "sampled", len(sampled), "online", len(online), "model", head.Hash, "epsilon", eps)
	if d.cfg.Pace > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d.cfg.Pace):
		}
	}
	s := d.fsm.State()
	return s.Current, nil
}
