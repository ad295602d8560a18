package aggregation

import (
	"errors"
	"fmt"
	"math"
)

// streamGroup is how many valid updates a Stream holds before folding them
// into its sum. A multiple of four, so that the sum has the bits of one
// accumulate over all of them (see accumulateInto); sixteen rows per pass
// over a block of the float64 sum keep its traffic small next to the
// updates' own.
const streamGroup = 16

// Stream takes the weighted mean of FedAvg (McMahan et al. 2017,
// Algorithm 1) one update at a time, in the order the updates are added,
// so that a round with many clients holds a float64 sum and at most
// streamGroup updates instead of every update. Each update is checked as
// Validate checks it (position, name, length, weight, NaN/Inf); the sum,
// the total weight and so Mean and Sum have the same bits as
// WeightedMean.Combine and WeightedSum over the valid updates in the same
// order. A Stream is not safe for concurrent use.
type Stream struct {
	dim      int
	acc      []float64
	group    []Update
	seen     map[string]bool
	added    int
	total    float64
	rejected []Rejection
	release  func(delta []float32)
	ws       []float64
}

// NewStream returns an empty Stream for deltas of dim values. release, if
// not nil, is given each delta once the Stream no longer needs it (folded
// into the sum, or rejected), for the caller to reuse.
func NewStream(dim int, release func(delta []float32)) *Stream {
	return &Stream{dim: dim, acc: make([]float64, dim), seen: map[string]bool{}, release: release}
}

// Add checks u and queues it for the sum. An invalid update is recorded
// among the rejections, released, and its reason returned; nothing else
// changes. u.Delta must not be modified until it is released.
func (s *Stream) Add(u Update) error {
	i := s.added
	s.added++
	if err := check(u, i, s.dim, s.seen); err != nil {
		s.rejected = append(s.rejected, Rejection{Client: u.Client, Err: err})
		s.free(u.Delta)
		return err
	}
	s.total += u.Weight
	s.group = append(s.group, u)
	if len(s.group) == streamGroup {
		s.fold()
	}
	return nil
}

func (s *Stream) free(delta []float32) {
	if s.release != nil && delta != nil {
		s.release(delta)
	}
}

// fold adds the queued updates into the sum, block by block as
// weightedCombine does (eachBlock).
func (s *Stream) fold() {
	if len(s.group) == 0 {
		return
	}
	s.ws = s.ws[:0]
	for _, u := range s.group {
		s.ws = append(s.ws, u.Weight)
	}
	eachBlock(s.group, s.dim, 0, func(b, e int, rows [][]float32) {
		accumulateInto(s.acc[b:e], rows, s.ws)
	})
	for i, u := range s.group {
		s.free(u.Delta)
		s.group[i] = Update{}
	}
	s.group = s.group[:0]
}

// Valid returns how many updates were accepted so far.
func (s *Stream) Valid() int { return s.added - len(s.rejected) }

// Rejected returns the rejected updates, in the order they were added.
func (s *Stream) Rejected() []Rejection { return s.rejected }

// TotalWeight returns the accepted updates' total weight.
func (s *Stream) TotalWeight() float64 { return s.total }

// Sum writes Σ w_i·Δ_i over the accepted updates into dst (WeightedSum's
// result) and returns their total weight.
func (s *Stream) Sum(dst []float32) (float64, error) {
	if err := s.finish(dst, "stream sum"); err != nil {
		return 0, err
	}
	for j, v := range s.acc {
		dst[j] = float32(v)
	}
	return s.total, nil
}

// Mean writes the accepted updates' weighted mean into dst
// (WeightedMean.Combine's result).
func (s *Stream) Mean(dst []float32) error {
	if err := s.finish(dst, "mean"); err != nil {
		return err
	}
	if s.Valid() == 0 {
		return fmt.Errorf("mean: %w: no valid update", ErrTooFewUpdates)
	}
	if math.IsNaN(s.total) || math.IsInf(s.total, 0) || s.total <= 0 {
		return fmt.Errorf("mean: %w: total weight is %v, must be finite and > 0", ErrBadWeight, s.total)
	}
	scale := 1 / s.total
	for j, v := range s.acc {
		dst[j] = float32(v * scale)
	}
	return nil
}

func (s *Stream) finish(dst []float32, what string) error {
	if len(dst) != s.dim {
		return fmt.Errorf("%s: dst has %d values, the stream's deltas %d", what, len(dst), s.dim)
	}
	s.fold()
	return nil
}

// Streams reports whether the strategy's rule is the weighted mean, which
// RoundStream can take one update at a time; the robust rules need every
// update at once.
func (s *Strategy) Streams() bool {
	if s == nil {
		return false
	}
	_, ok := s.Rule.(WeightedMean)
	return ok
}

// RoundStream is Round for a strategy that Streams, on the updates added to
// st: the same checks, errors and result as Round over the same updates in
// the same order. On any error global and the optimizer state are
// unchanged.
func (s *Strategy) RoundStream(global []float32, st *Stream) (rejected []Rejection, err error) {
	if !s.Streams() {
		return nil, errors.New("round: the strategy's rule does not take updates one at a time")
	}
	if math.IsNaN(float64(s.ProxMu)) || s.ProxMu < 0 {
		return nil, fmt.Errorf("round: ProxMu is %v, needs >= 0", s.ProxMu)
	}
	rejected = st.Rejected()
	if need := s.MinUpdates(); st.Valid() < need {
		return rejected, fmt.Errorf("round with %s: %w: %d of %d updates valid (%d rejected), the rule needs at least %d",
			s.Rule.Name(), ErrTooFewUpdates, st.Valid(), st.added, len(rejected), need)
	}
	delta := make([]float32, len(global))
	if err := st.Mean(delta); err != nil {
		return rejected, fmt.Errorf("round: %w", err)
	}
	if err := s.server().Step(global, delta); err != nil {
		return rejected, fmt.Errorf("round: %w", err)
	}
	return rejected, nil
}
