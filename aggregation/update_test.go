package aggregation

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	const dim = 5
	good := func(name string, w float64) Update {
		return Update{Client: name, Delta: []float32{1, 2, 3, 4, 5}, Weight: w}
	}
	withValue := func(name string, j int, v float32) Update {
		u := good(name, 1)
		u.Delta = append([]float32(nil), u.Delta...)
		u.Delta[j] = v
		return u
	}
	cases := []struct {
		name     string
		bad      Update
		sentinel error
		details  []string // substrings the error must contain besides the client name
	}{
		{"NaN", withValue("nan-client", 3, float32(math.NaN())), ErrNonFinite, []string{"delta[3]", "NaN"}},
		{"+Inf", withValue("inf-client", 0, float32(math.Inf(1))), ErrNonFinite, []string{"delta[0]", "+Inf"}},
		{"-Inf", withValue("ninf-client", 4, float32(math.Inf(-1))), ErrNonFinite, []string{"delta[4]", "-Inf"}},
		{"short", Update{Client: "short-client", Delta: []float32{1, 2}, Weight: 1}, ErrWrongLength, []string{"2 values", "expected 5"}},
		{"long", Update{Client: "long-client", Delta: make([]float32, 7), Weight: 1}, ErrWrongLength, []string{"7 values", "expected 5"}},
		{"nil delta", Update{Client: "nil-client", Weight: 1}, ErrWrongLength, []string{"0 values", "expected 5"}},
		{"zero weight", good("zero-client", 0), ErrBadWeight, []string{"weight is 0"}},
		{"negative weight", good("neg-client", -3), ErrBadWeight, []string{"weight is -3"}},
		{"NaN weight", good("nanw-client", math.NaN()), ErrBadWeight, []string{"weight is NaN"}},
		{"Inf weight", good("infw-client", math.Inf(1)), ErrBadWeight, []string{"weight is +Inf"}},
		{"duplicate", good("a", 7), ErrDuplicateClient, []string{"update #3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			updates := []Update{good("a", 1), {Client: "b", Delta: []float32{5, 4, 3, 2, 1}, Weight: 3}, good("c", 2), tc.bad}
			before := cloneUpdates(updates)
			valid, rejected := Validate(updates, dim)
			assertSameUpdates(t, updates, before)
			if len(rejected) != 1 {
				t.Fatalf("got %d rejections, want 1: %v", len(rejected), rejected)
			}
			r := rejected[0]
			if r.Client != tc.bad.Client {
				t.Errorf("rejection names client %q, want %q", r.Client, tc.bad.Client)
			}
			if !errors.Is(r.Err, tc.sentinel) || !errors.Is(r, tc.sentinel) {
				t.Errorf("error %v does not wrap %v", r.Err, tc.sentinel)
			}
			msg := r.Err.Error()
			for _, want := range append([]string{`"` + tc.bad.Client + `"`}, tc.details...) {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
			// The other updates still aggregate: (1·[1..5] + 3·[5..1] + 2·[1..5]) / 6.
			if len(valid) != 3 || valid[0].Client != "a" || valid[1].Client != "b" || valid[2].Client != "c" {
				t.Fatalf("valid updates %v, want a, b, c in order", valid)
			}
			dst := make([]float32, dim)
			if err := (WeightedMean{}).Combine(dst, valid); err != nil {
				t.Fatal(err)
			}
			assertClose(t, "mean of the valid updates", dst, []float32{3, 3, 3, 3, 3}, 1e-6)
		})
	}
}

func TestValidateEmptyNameAndRepeatedDuplicates(t *testing.T) {
	updates := []Update{
		{Client: "", Delta: []float32{1}, Weight: 1},
		{Client: "x", Delta: []float32{1, 2}, Weight: 1}, // invalid first copy
		{Client: "x", Delta: []float32{1}, Weight: 1},    // still a duplicate
		{Client: "y", Delta: []float32{2}, Weight: 1},
		{Client: "y", Delta: []float32{3}, Weight: 1},
	}
	valid, rejected := Validate(updates, 1)
	if len(valid) != 1 || valid[0].Client != "y" || valid[0].Delta[0] != 2 {
		t.Fatalf("valid = %+v, want only the first update of y", valid)
	}
	wants := []error{ErrEmptyClient, ErrWrongLength, ErrDuplicateClient, ErrDuplicateClient}
	if len(rejected) != len(wants) {
		t.Fatalf("got %d rejections, want %d: %v", len(rejected), len(wants), rejected)
	}
	for i, w := range wants {
		if !errors.Is(rejected[i].Err, w) {
			t.Errorf("rejection %d: %v, want %v", i, rejected[i].Err, w)
		}
	}
	if !strings.Contains(rejected[0].Err.Error(), "update #0") {
		t.Errorf("empty-name error %q does not give the position", rejected[0].Err)
	}
}
