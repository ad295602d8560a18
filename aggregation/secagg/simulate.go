package secagg

import (
	"fmt"
	"io"
	"math/rand/v2"
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
func SimulateObserved(cfg Config, updates map[uint32][]float32, weights map[uint32]float64, drop map[uint32]Stage, rng io.Reader, now time.Time, observe func(msg any)) (*Outcome, error) {
	if observe == nil {
		observe = func(any) {}
	}
	srv, err := NewServer(cfg)
	if err != nil {
		return nil, err
	}
	cfg = srv.Config()
	clients := make(map[uint32]*Client, len(cfg.Clients))
	out := &Outcome{ClientBytes: map[uint32]int{}, PlainBytes: 4 * cfg.Dim}
	for _, id := range cfg.Clients {
		var seed [32]byte
		if _, err := io.ReadFull(rng, seed[:]); err != nil {
			return nil, fmt.Errorf("secagg: Simulate: reading seed of client %d: %w", id, err)
		}
		c, err := NewClient(cfg, id, rand.NewChaCha8(seed))
		if err != nil {
			return nil, err
		}
		clients[id] = c
	}
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
	for _, id := range cfg.Clients {
		if !alive(id, StageAdvertise) {
			continue
		}
		ad, err := clients[id].Advertise()
		if err != nil {
			return nil, err
		}
		out.ClientBytes[id] += ad.WireSize()
		observe(ad)
		if err := srv.Receive(ad, now); err != nil {
			return nil, err
		}
	}
	for {
		msgs, done, err := advance()
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
		for _, m := range msgs {
			c := clients[m.To]
			var reply any
			switch msg := m.Msg.(type) {
			case KeyBroadcast:
				if !alive(m.To, StageShareKeys) {
					continue
				}
				sh, err := c.ShareKeys(msg.Keys)
				if err != nil {
					return nil, err
				}
				for _, e := range sh {
					out.ClientBytes[m.To] += e.WireSize()
				}
				reply = sh
			case ShareBundle:
				if !alive(m.To, StageMaskedInput) {
					continue
				}
				upd, ok := updates[m.To]
				if !ok {
					return nil, fmt.Errorf("%w: Simulate: no update for client %d", ErrInvalidInput, m.To)
				}
				mi, err := c.MaskedInput(msg.Shares, upd, weights[m.To])
				if err != nil {
					return nil, err
				}
				out.ClientBytes[m.To] += mi.WireSize()
				reply = mi
			case ConsistencyRequest:
				if !alive(m.To, StageConsistency) {
					continue
				}
				r, err := c.ConsistencyCheck(msg)
				if err != nil {
					return nil, err
				}
				out.ClientBytes[m.To] += r.WireSize()
				reply = r
			case UnmaskRequest:
				if !alive(m.To, StageUnmask) {
					continue
				}
				r, err := c.Unmask(msg)
				if err != nil {
					return nil, err
				}
				out.ClientBytes[m.To] += r.WireSize()
				reply = r
			default:
				return nil, fmt.Errorf("secagg: Simulate: unexpected outbound %T", m.Msg)
			}
			observe(reply)
			if err := srv.Receive(reply, now); err != nil {
				return nil, err
			}
		}
	}
	sum, tw, surv, err := srv.Result()
	if err != nil {
		return nil, err
	}
	out.Sum, out.TotalWeight, out.Survivors, out.End = sum, tw, surv, now
	return out, nil
}
