package secagg

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"
)

// NeverDrop is the drop stage of a client that never vanishes.
const NeverDrop Stage = -1

// Outcome is the result of one simulated round.
type Outcome struct {
	// Sum is the dequantized weighted sum Σ w_i·x_i over the survivors.
	Sum []float64
	// TotalWeight is Σ w_i over the survivors.
	TotalWeight float64
	// Survivors are the clients whose inputs are in Sum, sorted.
	Survivors []uint32
	// ClientBytes is the payload each client sent (see the WireSize methods).
	ClientBytes map[uint32]int
	// PlainBytes is the size of the plain float32 update (4·Dim).
	PlainBytes int
	// End is the simulated time at which the round finished.
	End time.Time
}

// Mean returns Sum / TotalWeight, the weighted mean of the survivors'
// updates (nil if the total weight is zero).
func (o *Outcome) Mean() []float64 {
	if o.TotalWeight == 0 {
		return nil
	}
	m := make([]float64, len(o.Sum))
	for i, v := range o.Sum {
		m[i] = v / o.TotalWeight
	}
	return m
}

// Simulate runs one full round in process among cfg.Clients with the given
// updates and weights. drop maps a client to the stage at which it vanishes
// (it sends nothing from that stage on; absent or NeverDrop means never).
// Each client's randomness is a ChaCha8 stream seeded from 32 bytes read
// from rng, in client order. Time starts at now and jumps to a stage's
// deadline whenever a stage waits for a client that vanished. It returns the
// unmasked weighted sum or the server's error (an *InsufficientError when
// too many clients vanished).
func Simulate(cfg Config, updates map[uint32][]float32, weights map[uint32]float64, drop map[uint32]Stage, rng io.Reader, now time.Time) (*Outcome, error) {
	return SimulateObserved(cfg, updates, weights, drop, rng, now, nil)
}

// SimulateObserved is Simulate that also hands every client-to-server
// message (AdvertiseKeys, []EncryptedShare, MaskedInput, UnmaskResponse) to
// observe, when not nil, before the server receives it: what a curious
// server sees, for tests that check nothing leaves a client unmasked.
// observe runs on the calling goroutine, in client order, and may keep the
// messages (their vectors are then not reused).
func SimulateObserved(cfg Config, updates map[uint32][]float32, weights map[uint32]float64, drop map[uint32]Stage, rng io.Reader, now time.Time, observe func(msg any)) (*Outcome, error) {
	input := func(id uint32) ([]float32, float64, error) {
		upd, ok := updates[id]
		if !ok {
			return nil, 0, fmt.Errorf("%w: Simulate: no update for client %d", ErrInvalidInput, id)
		}
		return upd, weights[id], nil
	}
	return simulate(cfg, input, nil, drop, rng, now, observe)
}

// SimulateInputs is Simulate with each client's update and weight asked of
// input when the client computes its masked input (stage 2), so that a
// caller can produce updates on demand and never hold all n of them. input
// is called once per client reaching stage 2, from up to GOMAXPROCS
// goroutines at once; the update is not used after the masked input is
// computed: release, if not nil, is then given it back (from the goroutine
// that computed the masked input), for the caller to reuse. A nil update
// with a nil error means the client refuses to contribute (as a worker
// refusing its own update): it vanishes at stage 2 and the protocol
// removes its masks like any dropout's. An error ends the round with that
// error.
func SimulateInputs(cfg Config, input func(id uint32) (update []float32, weight float64, err error), release func(update []float32), drop map[uint32]Stage, rng io.Reader, now time.Time) (*Outcome, error) {
	return simulate(cfg, input, release, drop, rng, now, nil)
}

func simulate(cfg Config, input func(id uint32) ([]float32, float64, error), release func([]float32), drop map[uint32]Stage, rng io.Reader, now time.Time, observe func(msg any)) (*Outcome, error) {
	// An observer may keep the messages it sees, so their vectors are
	// recycled only when there is none.
	recycle := observe == nil
	if observe == nil {
		observe = func(any) {}
	}
	srv, err := NewServer(cfg)
	if err != nil {
		return nil, err
	}
	cfg = srv.Config()
	// The clients' work runs on up to GOMAXPROCS goroutines, each client on
	// its own state and random stream; the server receives the replies one
	// at a time in client order, so the outcome does not depend on timing.
	procs := runtime.GOMAXPROCS(0)
	g, err := NewGraph(cfg.Clients, cfg.Degree, cfg.GraphSeed)
	if err != nil {
		return nil, err
	}
	q, err := NewQuantizer(cfg.Bits, cfg.ClipRange, cfg.MaxWeight, len(cfg.Clients))
	if err != nil {
		return nil, err
	}
	sh := &roundShared{graph: g, quant: q}
	// Masked vectors go back to a free list once the server has summed
	// them, so a round touches a few vectors' worth of memory, not n.
	var freeMu sync.Mutex
	var free [][]uint32
	if recycle {
		srv.recycle = func(v []uint32) {
			freeMu.Lock()
			free = append(free, v)
			freeMu.Unlock()
		}
	}
	getVector := func() []uint32 {
		freeMu.Lock()
		defer freeMu.Unlock()
		if len(free) == 0 {
			return nil
		}
		v := free[len(free)-1]
		free = free[:len(free)-1]
		return v
	}
	seeds := make([][32]byte, len(cfg.Clients))
	for i, id := range cfg.Clients {
		if _, err := io.ReadFull(rng, seeds[i][:]); err != nil {
			return nil, fmt.Errorf("secagg: Simulate: reading seed of client %d: %w", id, err)
		}
	}
	clients := make(map[uint32]*Client, len(cfg.Clients))
	list := make([]*Client, len(cfg.Clients))
	errs := make([]error, len(cfg.Clients))
	err = pipeline(len(cfg.Clients), procs, func(i int) {
		list[i], errs[i] = newClient(cfg, cfg.Clients[i], rand.NewChaCha8(seeds[i]), sh)
	}, func(i int) error {
		clients[cfg.Clients[i]] = list[i]
		return errs[i]
	})
	if err != nil {
		return nil, err
	}
	out := &Outcome{ClientBytes: map[uint32]int{}, PlainBytes: 4 * cfg.Dim}
	// The consistency check sits between masked input and unmask: a client
	// that vanishes at StageUnmask still signs, one that vanishes at
	// StageConsistency neither signs nor unmasks.
	order := func(st Stage) int {
		switch st {
		case StageConsistency:
			return 2*int(StageMaskedInput) + 1
		case NeverDrop:
			return -1
		}
		return 2 * int(st)
	}
	alive := func(id uint32, st Stage) bool {
		d, ok := drop[id]
		return !ok || d < 0 || order(st) < order(d)
	}
	// advance closes the current stage, jumping to its deadline if needed.
	advance := func() ([]Outbound, bool, error) {
		st := srv.Stage()
		o, done, err := srv.Advance(now)
		if err != nil || done || srv.Stage() != st {
			return o, done, err
		}
		now = srv.Deadline()
		return srv.Advance(now)
	}
	// deliver hands one reply to the server; masked vectors are dropped by
	// the client once the server has them (it never resends here), so only
	// the few in flight are held.
	type reply struct {
		msg   any
		bytes int
		err   error
	}
	deliver := func(to uint32, r *reply) error {
		if r.err != nil {
			return r.err
		}
		if r.msg == nil {
			return nil
		}
		out.ClientBytes[to] += r.bytes
		observe(r.msg)
		if err := srv.Receive(r.msg, now); err != nil {
			return err
		}
		if _, ok := r.msg.(MaskedInput); ok {
			clients[to].forgetMasked()
		}
		*r = reply{}
		return nil
	}
	replies := make([]reply, len(cfg.Clients))
	err = pipeline(len(cfg.Clients), procs, func(i int) {
		id := cfg.Clients[i]
		if !alive(id, StageAdvertise) {
			return
		}
		ad, err := list[i].Advertise()
		replies[i] = reply{ad, ad.WireSize(), err}
	}, func(i int) error { return deliver(cfg.Clients[i], &replies[i]) })
	if err != nil {
		return nil, err
	}
	for {
		msgs, done, err := advance()
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
		replies := make([]reply, len(msgs))
		work := func(i int) {
			m := msgs[i]
			c := clients[m.To]
			r := &replies[i]
			switch msg := m.Msg.(type) {
			case KeyBroadcast:
				if !alive(m.To, StageShareKeys) {
					return
				}
				batch, err := c.ShareKeys(msg.Keys)
				n := 0
				for _, e := range batch {
					n += e.WireSize()
				}
				*r = reply{batch, n, err}
			case ShareBundle:
				if !alive(m.To, StageMaskedInput) {
					return
				}
				upd, w, err := input(m.To)
				if err != nil || upd == nil {
					r.err = err
					return
				}
				mi, err := c.maskedInput(msg.Shares, upd, w, getVector())
				if release != nil {
					release(upd)
				}
				*r = reply{mi, mi.WireSize(), err}
			case ConsistencyRequest:
				if !alive(m.To, StageConsistency) {
					return
				}
				cr, err := c.ConsistencyCheck(msg)
				*r = reply{cr, cr.WireSize(), err}
			case UnmaskRequest:
				if !alive(m.To, StageUnmask) {
					return
				}
				ur, err := c.Unmask(msg)
				*r = reply{ur, ur.WireSize(), err}
			default:
				r.err = fmt.Errorf("secagg: Simulate: unexpected outbound %T", m.Msg)
			}
			if r.err != nil {
				r.msg = nil
			}
		}
		err = pipeline(len(msgs), procs, work, func(i int) error { return deliver(msgs[i].To, &replies[i]) })
		if err != nil {
			return nil, err
		}
	}
	sum, tw, surv, err := srv.Result()
	if err != nil {
		return nil, err
	}
	out.Sum, out.TotalWeight, out.Survivors, out.End = sum, tw, surv, now
	return out, nil
}

// pipeline runs work(i) for every i < n on up to p goroutines and
// deliver(i) on the calling goroutine in increasing i, each once work(i)
// is done; at most 2p results wait for delivery, which bounds what is held.
// It stops at the first error of deliver and returns it, after the
// goroutines it started have ended.
func pipeline(n, p int, work func(i int), deliver func(i int) error) error {
	if n == 0 {
		return nil
	}
	p = max(1, min(p, n))
	ready := make([]chan struct{}, n)
	for i := range ready {
		ready[i] = make(chan struct{})
	}
	next := make(chan int)
	stop := make(chan struct{})
	slots := make(chan struct{}, 2*p)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(next)
		for i := range n {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			}
			select {
			case next <- i:
			case <-stop:
				return
			}
		}
	})
	for range p {
		wg.Go(func() {
			for i := range next {
				work(i)
				close(ready[i])
			}
		})
	}
	var err error
	for i := range n {
		<-ready[i]
		<-slots
		if err = deliver(i); err != nil {
			break
		}
	}
	close(stop)
	wg.Wait()
	return err
}
