package coordinator

// The SecAgg+ stages of one round, as the leader drives them (Bonawitz et
// al. 2017, rounds 0–4, with the sparse graph of Bell et al. 2020). Each
// stage method asks the workers, feeds their answers to the round's
// secagg.Server, commits the stage's outcome through Raft before anything
// that depends on it leaves the leader, and returns the server's next
// messages. A stage whose outcome is already committed (a new leader after
// a failover) is replayed from the FSM instead of asked again, so every
// replica drives the same round to the same result.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/wire"
)

// roundRun is one round in flight on this leader.
type roundRun struct {
	d   *Driver
	cur *RoundState
	a   *Announce
	srv *secagg.Server
	// vnow is the server's virtual clock: the driver enforces real
	// deadlines with contexts and then closes each stage at its virtual
	// deadline.
	vnow time.Time
}

func (rr *roundRun) who(id uint32) WorkerID { return rr.a.Sampled[id-1] }

func (rr *roundRun) stageLog(s secagg.Stage) *slog.Logger {
	rr.d.setStage(s.String())
	return rr.d.log.With("round", rr.cur.Round, "stage", s.String())
}

// closeStage advances the server past the current stage: at once if every
// answer is in, else at the stage's virtual deadline.
func (rr *roundRun) closeStage() ([]secagg.Outbound, bool, error) {
	s := rr.srv.Stage()
	out, done, err := rr.srv.Advance(rr.vnow)
	if err != nil || done || rr.srv.Stage() != s {
		return out, done, err
	}
	rr.vnow = rr.srv.Deadline()
	return rr.srv.Advance(rr.vnow)
}

// insufficient turns a server error into the round's failure: too few
// clients (RoundFailed naming the missing), or proven cheaters (RoundFailed
// naming and excluding the culprits; security review H3/M3: a sum rebuilt
// from unverified shares is never released).
func (rr *roundRun) insufficient(ctx context.Context, err error) error {
	var ie *secagg.InsufficientError
	if errors.As(err, &ie) {
		return rr.d.fail(ctx, rr.cur, err.Error(), ie.Missing)
	}
	var ce *secagg.CheatingError
	if errors.As(err, &ce) {
		return rr.d.failCulprits(ctx, rr.cur, err.Error(), ce.Culprits)
	}
	return fmt.Errorf("round %d: %w", rr.cur.Round, err)
}

// closed closes the stage and maps a server error to the round's failure.
func (rr *roundRun) closed(ctx context.Context) ([]secagg.Outbound, error) {
	out, _, err := rr.closeStage()
	if err != nil {
		return nil, rr.insufficient(ctx, err)
	}
	return out, nil
}

// drive runs the SecAgg+ stages of cur from its last committed stage.
func (d *Driver) drive(ctx context.Context, cur *RoundState) error {
	r, a := cur.Round, &cur.Announce
	srv, err := secagg.NewServer(a.SecAgg)
	if err != nil {
		return fmt.Errorf("round %d: %w", r, err)
	}
	if d.cfg.Federation != "" {
		// Refuse a lying worker's signature here rather than let it make
		// its honest neighbours refuse the round (security review H1).
		v, err := wire.NewSecAggVerifier(d.cfg.Federation, a.Sampled)
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		srv.SetAuthenticator(v)
	}
	rr := &roundRun{d: d, cur: cur, a: a, srv: srv, vnow: time.Unix(0, 0)}
	out, err := rr.advertise(ctx)
	if err != nil {
		return err
	}
	if out, err = rr.shareKeys(ctx, out); err != nil {
		return err
	}
	if out, err = rr.maskedInput(ctx, out); err != nil {
		return err
	}
	if a.SecAgg.ConsistencyCheck {
		if out, err = rr.consistency(ctx, out); err != nil {
			return err
		}
	}
	sum, tw, err := rr.unmask(ctx, out)
	if err != nil {
		return err
	}
	if a.Purpose == wire.PurposeStatistics {
		return d.finishStats(ctx, cur, sum, tw)
	}
	return d.finish(ctx, cur, sum, tw)
}

// advertise is stage 0. Every sampled worker checks the announcement
// against its policy and answers its two public keys; the keys the server
// accepted, and the refusals, are committed as StageClosed(0) before any
// key is relayed. Returns the key broadcasts.
func (rr *roundRun) advertise(ctx context.Context) ([]secagg.Outbound, error) {
	d, cur, r := rr.d, rr.cur, rr.cur.Round
	log := rr.stageLog(secagg.StageAdvertise)
	if cur.Next > secagg.StageAdvertise {
		for _, k := range cur.Keys {
			if err := rr.srv.Receive(k, rr.vnow); err != nil {
				return nil, fmt.Errorf("round %d: committed keys of client %d refused: %w", r, k.From, err)
			}
		}
		return rr.closed(ctx)
	}
	all := slices.Clone(rr.a.SecAgg.Clients)
	replies := callAll(ctx, d.cfg.StageTimeout, all, func(c context.Context, id uint32) (secagg.AdvertiseKeys, error) {
		return d.cohort.Advertise(c, rr.who(id), rr.a)
	})
	var keys []secagg.AdvertiseKeys
	var done []uint32
	var refused []RefusalRecord
	for i, rp := range replies {
		id := all[i]
		if rp.err == nil && rp.v.From != id {
			rp.err = fmt.Errorf("keys claim node %d", rp.v.From)
		}
		if rp.err == nil {
			rp.err = rr.srv.Receive(rp.v, rr.vnow)
		}
		if rp.err != nil {
			log.Warn("no keys", "worker", rr.who(id), "err", rp.err)
			refused = appendRefused(refused, r, rr.who(id), rp.err)
			continue
		}
		keys, done = append(keys, rp.v), append(done, id)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("round %d: %w", r, err)
	}
	if err := d.commit(ctx, Command{StageClosed: &StageClosed{Round: r, Stage: secagg.StageAdvertise, Completed: done, Keys: keys, Refused: refused}}); err != nil {
		return nil, err
	}
	cur.Advertised, cur.Keys, cur.Next = done, keys, secagg.StageShareKeys
	log.Info("stage closed", "completed", len(done), "sampled", len(all))
	return rr.closed(ctx)
}

// shareKeys is stage 1. Each advertised worker receives its neighbours'
// keys and answers its encrypted Shamir shares of its two secrets; the
// accepted shares are committed as StageClosed(1) before any is delivered.
// Returns the share bundles.
func (rr *roundRun) shareKeys(ctx context.Context, out []secagg.Outbound) ([]secagg.Outbound, error) {
	d, cur, r := rr.d, rr.cur, rr.cur.Round
	log := rr.stageLog(secagg.StageShareKeys)
	if cur.Next > secagg.StageShareKeys {
		for _, id := range cur.Shared {
			var batch []secagg.EncryptedShare
			for _, e := range cur.Shares {
				if e.From == id {
					batch = append(batch, e)
				}
			}
			if err := rr.srv.Receive(batch, rr.vnow); err != nil {
				return nil, fmt.Errorf("round %d: committed shares of client %d refused: %w", r, id, err)
			}
		}
		return rr.closed(ctx)
	}
	kb := map[uint32]secagg.KeyBroadcast{}
	var to []uint32
	for _, o := range out {
		if m, ok := o.Msg.(secagg.KeyBroadcast); ok {
			kb[o.To] = m
			to = append(to, o.To)
		}
	}
	slices.Sort(to)
	replies := callAll(ctx, d.cfg.StageTimeout, to, func(c context.Context, id uint32) ([]secagg.EncryptedShare, error) {
		return d.cohort.ShareKeys(c, rr.who(id), kb[id])
	})
	var shares []secagg.EncryptedShare
	var done []uint32
	var refused []RefusalRecord
	for i, rp := range replies {
		id := to[i]
		for _, e := range rp.v {
			if rp.err == nil && e.From != id {
				rp.err = fmt.Errorf("share claims node %d", e.From)
			}
		}
		if rp.err == nil && len(rp.v) == 0 {
			rp.err = errors.New("no shares")
		}
		if rp.err == nil {
			rp.err = rr.srv.Receive(rp.v, rr.vnow)
		}
		if rp.err != nil {
			log.Warn("no shares", "worker", rr.who(id), "err", rp.err)
			refused = appendRefused(refused, r, rr.who(id), rp.err)
			continue
		}
		shares, done = append(shares, rp.v...), append(done, id)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("round %d: %w", r, err)
	}
	if err := d.commit(ctx, Command{StageClosed: &StageClosed{Round: r, Stage: secagg.StageShareKeys, Completed: done, Shares: shares, Refused: refused}}); err != nil {
		return nil, err
	}
	cur.Shared, cur.Shares, cur.Next = done, shares, secagg.StageMaskedInput
	log.Info("stage closed", "completed", len(done))
	return rr.closed(ctx)
}

// maskedInput is stage 2. Each worker with shares trains, clips, noises
// and masks its update and sends the masked vector; the survivor set (who
// sent one) is committed as SurvivorsCommitted before any unmask or
// consistency request names it. After a failover with the survivors
// already committed, only they are asked (they answer from their cache),
// and a different set fails the round. Returns the next stage's requests.
func (rr *roundRun) maskedInput(ctx context.Context, out []secagg.Outbound) ([]secagg.Outbound, error) {
	d, cur, r := rr.d, rr.cur, rr.cur.Round
	log := rr.stageLog(secagg.StageMaskedInput)
	bundles := map[uint32]secagg.ShareBundle{}
	var to []uint32
	committed := cur.Next == secagg.StageUnmask || cur.Next == secagg.StageConsistency
	for _, o := range out {
		if m, ok := o.Msg.(secagg.ShareBundle); ok {
			if committed {
				if _, ok := slices.BinarySearch(cur.Survivors, o.To); !ok {
					continue
				}
			}
			bundles[o.To] = m
			to = append(to, o.To)
		}
	}
	slices.Sort(to)
	replies := callAll(ctx, d.cfg.StageTimeout, to, func(c context.Context, id uint32) (secagg.MaskedInput, error) {
		return d.cohort.MaskedInput(c, rr.who(id), bundles[id], rr.a.SecAgg.Dim)
	})
	var refused []RefusalRecord
	for i, rp := range replies {
		id := to[i]
		if rp.err == nil && rp.v.From != id {
			rp.err = fmt.Errorf("masked input claims node %d", rp.v.From)
		}
		if rp.err == nil {
			rp.err = rr.srv.Receive(rp.v, rr.vnow)
		}
		if rp.err != nil {
			log.Warn("no masked input", "worker", rr.who(id), "err", rp.err)
			refused = appendRefused(refused, r, rr.who(id), rp.err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("round %d: %w", r, err)
	}
	next, err := rr.closed(ctx)
	if err != nil {
		return nil, err
	}
	survivors := slices.Clone(rr.srv.Survivors())
	slices.Sort(survivors)
	if committed {
		if !slices.Equal(survivors, cur.Survivors) {
			var missing []uint32
			for _, id := range cur.Survivors {
				if _, ok := slices.BinarySearch(survivors, id); !ok {
					missing = append(missing, id)
				}
			}
			return nil, d.fail(ctx, cur, "committed survivors did not resend their masked inputs", missing)
		}
		return next, nil
	}
	var dropped []uint32
	for _, id := range cur.Shared {
		if _, ok := slices.BinarySearch(survivors, id); !ok {
			dropped = append(dropped, id)
		}
	}
	if len(survivors) < d.cfg.MinWorkers {
		return nil, d.fail(ctx, cur, fmt.Sprintf("%d survivors, fewer than min workers %d", len(survivors), d.cfg.MinWorkers), dropped)
	}
	if dropped == nil {
		dropped = []uint32{}
	}
	if err := d.commit(ctx, Command{SurvivorsCommitted: &SurvivorsCommitted{Round: r, Survivors: survivors, Dropped: dropped, Refused: refused}}); err != nil {
		return nil, err
	}
	cur.Survivors, cur.Dropped, cur.Next = survivors, dropped, secagg.StageMaskedInput.Next(rr.a.SecAgg.ConsistencyCheck)
	log.Info("survivors committed", "survivors", len(survivors), "dropped", len(dropped))
	return next, nil
}

// consistency is the consistency check (Bonawitz et al. 2017, round 4), in
// a round whose SecAgg+ configuration runs it: every survivor signs the
// committed survivor set once; the signatures the server verified are
// committed as ConsistencyCommitted before any unmask request carries
// them. After a failover with the signatures committed they are fed to
// the server instead of asked again. Returns the unmask requests.
func (rr *roundRun) consistency(ctx context.Context, out []secagg.Outbound) ([]secagg.Outbound, error) {
	d, cur, r := rr.d, rr.cur, rr.cur.Round
	log := rr.stageLog(secagg.StageConsistency)
	if cur.Next == secagg.StageUnmask {
		for _, sg := range cur.Signatures {
			if err := rr.srv.Receive(sg, rr.vnow); err != nil {
				return nil, fmt.Errorf("round %d: committed consistency signature of client %d refused: %w", r, sg.From, err)
			}
		}
		return rr.closed(ctx)
	}
	reqs := map[uint32]secagg.ConsistencyRequest{}
	var to []uint32
	for _, o := range out {
		if m, ok := o.Msg.(secagg.ConsistencyRequest); ok {
			if !slices.Equal(m.Survivors, cur.Survivors) {
				return nil, fmt.Errorf("round %d: consistency request for client %d names survivors %v, committed %v", r, o.To, m.Survivors, cur.Survivors)
			}
			reqs[o.To] = m
			to = append(to, o.To)
		}
	}
	slices.Sort(to)
	replies := callAll(ctx, d.cfg.StageTimeout, to, func(c context.Context, id uint32) (secagg.ConsistencyResponse, error) {
		return d.cohort.ConsistencyCheck(c, rr.who(id), reqs[id])
	})
	var sigs []secagg.ConsistencyResponse
	var refused []RefusalRecord
	for i, rp := range replies {
		id := to[i]
		if rp.err == nil && rp.v.From != id {
			rp.err = fmt.Errorf("consistency signature claims node %d", rp.v.From)
		}
		if rp.err == nil {
			rp.err = rr.srv.Receive(rp.v, rr.vnow)
		}
		if rp.err != nil {
			log.Warn("no consistency signature", "worker", rr.who(id), "err", rp.err)
			refused = appendRefused(refused, r, rr.who(id), rp.err)
			continue
		}
		sigs = append(sigs, rp.v)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("round %d: %w", r, err)
	}
	next, err := rr.closed(ctx)
	if err != nil {
		return nil, err
	}
	if sigs == nil {
		sigs = []secagg.ConsistencyResponse{}
	}
	if err := d.commit(ctx, Command{ConsistencyCommitted: &ConsistencyCommitted{Round: r, Signatures: sigs, Refused: refused}}); err != nil {
		return nil, err
	}
	cur.Signatures, cur.Next = sigs, secagg.StageUnmask
	log.Info("signatures committed", "signed", len(sigs), "survivors", len(cur.Survivors))
	return next, nil
}

// unmask is stage 3, only ever for the committed survivor set (this driver
// refuses to ask about another one for the same round): each survivor
// answers the seeds and key shares that let the server remove the masks;
// the server then returns the sum and total weight. Outvoted bad shares
// are logged with the culprits.
func (rr *roundRun) unmask(ctx context.Context, out []secagg.Outbound) ([]float64, float64, error) {
	d, cur, r := rr.d, rr.cur, rr.cur.Round
	log := rr.stageLog(secagg.StageUnmask)
	d.mu.Lock()
	if prev, ok := d.unmasked[r]; ok && !slices.Equal(prev, cur.Survivors) {
		d.mu.Unlock()
		return nil, 0, fmt.Errorf("round %d: refusing to request unmasking of survivors %v after %v", r, cur.Survivors, prev)
	}
	d.unmasked[r] = slices.Clone(cur.Survivors)
	d.mu.Unlock()
	reqs := map[uint32]secagg.UnmaskRequest{}
	var to []uint32
	for _, o := range out {
		if m, ok := o.Msg.(secagg.UnmaskRequest); ok {
			if !slices.Equal(m.Survivors, cur.Survivors) {
				return nil, 0, fmt.Errorf("round %d: unmask request for client %d names survivors %v, committed %v", r, o.To, m.Survivors, cur.Survivors)
			}
			reqs[o.To] = m
			to = append(to, o.To)
		}
	}
	slices.Sort(to)
	replies := callAll(ctx, d.cfg.StageTimeout, to, func(c context.Context, id uint32) (secagg.UnmaskResponse, error) {
		return d.cohort.Unmask(c, rr.who(id), reqs[id])
	})
	for i, rp := range replies {
		id := to[i]
		if rp.err == nil && rp.v.From != id {
			rp.err = fmt.Errorf("unmask response claims node %d", rp.v.From)
		}
		if rp.err == nil {
			rp.err = rr.srv.Receive(rp.v, rr.vnow)
		}
		if rp.err != nil {
			log.Warn("no unmask response", "worker", rr.who(id), "err", rp.err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("round %d: %w", r, err)
	}
	if _, err := rr.closed(ctx); err != nil {
		return nil, 0, err
	}
	sum, tw, _, err := rr.srv.Result()
	if c, acc := rr.srv.Culprits(), rr.srv.Accused(); err == nil && (len(c) > 0 || len(acc) > 0) {
		// Outvoted bad shares (H3) or complaints that left enough holders
		// (M3): the sum is exact; the liars are named in the log.
		log.Warn("bad SecAgg+ shares outvoted", "culprits", d.workers(cur, c), "accused", d.workers(cur, acc))
	}
	if err != nil {
		return nil, 0, rr.insufficient(ctx, err)
	}
	return sum, tw, nil
}

type reply[T any] struct {
	v   T
	err error
}

// callAll calls f for every id concurrently under a deadline of one stage
// timeout and returns the replies in the order of ids.
func callAll[T any](ctx context.Context, timeout time.Duration, ids []uint32, f func(context.Context, uint32) (T, error)) []reply[T] {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]reply[T], len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := f(sctx, id)
			out[i] = reply[T]{v, err}
		}()
	}
	wg.Wait()
	return out
}
