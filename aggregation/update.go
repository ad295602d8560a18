package aggregation

import (
	"errors"
	"fmt"
	"math"

	"github.com/sovereign-fl/sovereign/internal/finite"
)

// Update is one client's contribution for a round: the model delta
// (local - global) and its weight (example count).
type Update struct {
	// Client names the sender; it must be non-empty and unique in a round.
	Client string
	// Delta is the local model minus the global model, one entry per parameter.
	Delta []float32
	// Weight is the update's share in weighted rules, usually the number of
	// local training examples. It must be finite and positive.
	Weight float64
}

// Rejection names a refused update and why.
type Rejection struct {
	// Client is the refused update's client name.
	Client string
	// Err says why; it wraps one of ErrWrongLength, ErrNonFinite,
	// ErrBadWeight, ErrDuplicateClient or ErrEmptyClient.
	Err error
}

// Error implements error so that a Rejection can be returned or wrapped.
func (r Rejection) Error() string {
	if r.Err == nil {
		return fmt.Sprintf("update from client %q rejected", r.Client)
	}
	return r.Err.Error()
}

// Unwrap returns the reason, for errors.Is and errors.As.
func (r Rejection) Unwrap() error { return r.Err }

// Reasons an update is refused by Validate. Test with errors.Is.
var (
	// ErrWrongLength: the delta does not have the model's length.
	ErrWrongLength = errors.New("wrong delta length")
	// ErrNonFinite: the delta holds a NaN or an infinity.
	ErrNonFinite = errors.New("non-finite delta value")
	// ErrBadWeight: the weight is zero, negative, NaN or infinite.
	ErrBadWeight = errors.New("invalid weight")
	// ErrDuplicateClient: the client already sent an update this round.
	ErrDuplicateClient = errors.New("duplicate client")
	// ErrEmptyClient: the update carries no client name.
	ErrEmptyClient = errors.New("empty client name")
)

// ErrTooFewUpdates is wrapped by every error that refuses to combine
// because fewer updates are present than a rule needs.
var ErrTooFewUpdates = errors.New("too few updates")

// Validate splits updates into valid ones and rejections: wrong length
// (naming expected and got), NaN or Inf (naming the first bad index),
// non-positive or non-finite weight, duplicate client, empty client name.
//
// The first update of a client name is judged on its own merits; every
// later update with the same name is rejected as a duplicate, whether or
// not the first was valid, so a client cannot count twice. Valid updates
// keep their input order. Validate never modifies the inputs: the returned
// updates share their Delta slices with the input.
func Validate(updates []Update, dim int) (valid []Update, rejected []Rejection) {
	seen := make(map[string]bool, len(updates))
	for i, u := range updates {
		if err := check(u, i, dim, seen); err != nil {
			rejected = append(rejected, Rejection{Client: u.Client, Err: err})
			continue
		}
		valid = append(valid, u)
	}
	return valid, rejected
}

// check returns why u (at position i) is invalid, or nil. It records the
// client name in seen.
func check(u Update, i, dim int, seen map[string]bool) error {
	if u.Client == "" {
		return fmt.Errorf("update #%d: %w", i, ErrEmptyClient)
	}
	if seen[u.Client] {
		return fmt.Errorf("update #%d from client %q: %w: an earlier update this round has the same name", i, u.Client, ErrDuplicateClient)
	}
	seen[u.Client] = true
	if len(u.Delta) != dim {
		return fmt.Errorf("update from client %q: %w: delta has %d values, expected %d", u.Client, ErrWrongLength, len(u.Delta), dim)
	}
	if math.IsNaN(u.Weight) || math.IsInf(u.Weight, 0) || u.Weight <= 0 {
		return fmt.Errorf("update from client %q: %w: weight is %v, must be finite and > 0", u.Client, ErrBadWeight, u.Weight)
	}
	if j := finite.First(u.Delta); j >= 0 {
		return fmt.Errorf("update from client %q: %w: delta[%d] = %v", u.Client, ErrNonFinite, j, u.Delta[j])
	}
	return nil
}

// checkShapes verifies that the rule can run on updates without panicking:
// at least min updates, and every delta of len(dst). It does not look for
// NaN: callers are expected to have run Validate.
func checkShapes(rule string, dst []float32, updates []Update, min int, need string) error {
	if len(updates) < min {
		return fmt.Errorf("%s: %w: got %d valid updates, needs %s", rule, ErrTooFewUpdates, len(updates), need)
	}
	for _, u := range updates {
		if len(u.Delta) != len(dst) {
			return fmt.Errorf("%s: update from client %q: %w: delta has %d values, expected %d", rule, u.Client, ErrWrongLength, len(u.Delta), len(dst))
		}
	}
	return nil
}
