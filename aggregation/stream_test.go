package aggregation

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// spoil makes some updates invalid in every way Validate refuses: NaN and
// Inf values, wrong length, bad weight, a repeated or empty name.
func spoil(rng *rand.Rand, us []Update) {
	for i := range us {
		switch rng.IntN(12) {
		case 0:
			us[i].Delta[rng.IntN(len(us[i].Delta))] = float32(math.NaN())
		case 1:
			us[i].Delta[rng.IntN(len(us[i].Delta))] = float32(math.Inf(-1))
		case 2:
			us[i].Delta = us[i].Delta[:len(us[i].Delta)-1]
		case 3:
			us[i].Weight = []float64{0, -1, math.NaN(), math.Inf(1)}[rng.IntN(4)]
		case 4:
			if i > 0 {
				us[i].Client = us[i-1].Client
			}
		case 5:
			us[i].Client = ""
		}
	}
}

// A Stream gives the bits of WeightedMean.Combine and WeightedSum over the
// valid updates, the rejections of Validate with the same reasons, and
// releases every delta exactly once, for counts around the fold group and
// with invalid updates anywhere.
func TestStreamMatchesHeld(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const dim = 3*blockLen + 17
	for _, n := range []int{1, 3, 4, 5, 15, 16, 17, 31, 33, 64, 70} {
		for _, bad := range []bool{false, true} {
			us := randomUpdates(uint64(n), n, dim)
			if bad {
				spoil(rng, us)
			}
			held := cloneUpdates(us)
			valid, rejected := Validate(held, dim)

			released := map[*float32]int{}
			st := NewStream(dim, func(d []float32) { released[&d[0]]++ })
			for _, u := range us {
				err := st.Add(u)
				if err == nil == slices.ContainsFunc(rejected, func(r Rejection) bool { return r.Client == u.Client && r.Err.Error() == fmt.Sprint(err) }) {
					t.Fatalf("n=%d: Add(%q) = %v, Validate's rejections %v", n, u.Client, err, rejected)
				}
			}
			if st.Valid() != len(valid) || len(st.Rejected()) != len(rejected) {
				t.Fatalf("n=%d: stream %d valid %d rejected, Validate %d and %d", n, st.Valid(), len(st.Rejected()), len(valid), len(rejected))
			}
			for i, r := range st.Rejected() {
				if r.Client != rejected[i].Client || r.Err.Error() != rejected[i].Err.Error() {
					t.Fatalf("n=%d: rejection %d: stream %v, Validate %v", n, i, r, rejected[i])
				}
			}
			// The float64 sum itself, before rounding to float32 hides a
			// different order of additions.
			st.fold()
			ref := make([]float64, dim)
			rows := make([][]float32, len(valid))
			ws := make([]float64, len(valid))
			for i, u := range valid {
				rows[i], ws[i] = u.Delta, u.Weight
			}
			accumulate(ref, rows, ws)
			if !slices.Equal(st.acc, ref) {
				t.Fatalf("n=%d bad=%v: the stream's float64 sum differs from one accumulate over the valid updates", n, bad)
			}
			got, want := make([]float32, dim), make([]float32, dim)
			meanErr := st.Mean(got)
			if len(valid) == 0 {
				if !errors.Is(meanErr, ErrTooFewUpdates) {
					t.Fatalf("n=%d: no valid update: Mean = %v, want ErrTooFewUpdates", n, meanErr)
				}
				continue
			}
			if meanErr != nil {
				t.Fatal(meanErr)
			}
			if err := (WeightedMean{}).Combine(want, valid); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("n=%d bad=%v: streamed mean differs from WeightedMean.Combine", n, bad)
			}
			total, err := st.Sum(got)
			if err != nil {
				t.Fatal(err)
			}
			wantTotal, err := WeightedSum(want, valid)
			if err != nil {
				t.Fatal(err)
			}
			if total != wantTotal || !slices.Equal(got, want) {
				t.Fatalf("n=%d bad=%v: streamed sum (total %v) differs from WeightedSum (total %v)", n, bad, total, wantTotal)
			}
			if len(released) != n {
				t.Fatalf("n=%d: %d deltas released, want every one", n, len(released))
			}
			for p, c := range released {
				if c != 1 {
					t.Fatalf("n=%d: delta at %p released %d times", n, p, c)
				}
			}
		}
	}
}

// RoundStream steps the server optimizer exactly as Round does on the same
// updates, and fails as Round does when no update is valid, leaving the
// model unchanged.
func TestRoundStreamMatchesRound(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const dim = 1000
	for _, name := range []string{"fedavg", "fedadam", "fedavgm"} {
		held, _ := ParseStrategy(name, 0)
		streamed, _ := ParseStrategy(name, 0)
		if !streamed.Streams() {
			t.Fatalf("%s does not stream", name)
		}
		g1 := make([]float32, dim)
		g2 := make([]float32, dim)
		for r := range 3 {
			us := randomUpdates(uint64(10+r), 21, dim)
			spoil(rng, us)
			rej1, err1 := held.Round(g1, cloneUpdates(us))
			st := NewStream(dim, nil)
			for _, u := range us {
				_ = st.Add(u)
			}
			rej2, err2 := streamed.RoundStream(g2, st)
			if fmt.Sprint(err1) != fmt.Sprint(err2) || len(rej1) != len(rej2) || !slices.Equal(g1, g2) {
				t.Fatalf("%s round %d: Round (%v, %d rejected) and RoundStream (%v, %d rejected) differ", name, r, err1, len(rej1), err2, len(rej2))
			}
		}
		// No valid update: the same error, the model untouched.
		us := randomUpdates(99, 3, dim)
		for i := range us {
			us[i].Weight = 0
		}
		before := slices.Clone(g2)
		_, err1 := held.Round(g1, cloneUpdates(us))
		st := NewStream(dim, nil)
		for _, u := range us {
			_ = st.Add(u)
		}
		_, err2 := streamed.RoundStream(g2, st)
		if err2 == nil || fmt.Sprint(err1) != fmt.Sprint(err2) || !errors.Is(err2, ErrTooFewUpdates) || !slices.Equal(before, g2) {
			t.Fatalf("%s: all invalid: Round %v, RoundStream %v (model changed: %v)", name, err1, err2, !slices.Equal(before, g2))
		}
	}
	for _, s := range []string{"median", "krum:1", "trimmed:0.1"} {
		st, _ := ParseStrategy(s, 0)
		if st.Streams() {
			t.Fatalf("%s claims to stream", s)
		}
		if _, err := st.RoundStream(make([]float32, 4), NewStream(4, nil)); err == nil {
			t.Fatalf("%s: RoundStream accepted a rule that needs every update", s)
		}
	}
}
