package aggregation

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestParseStrategy(t *testing.T) {
	cases := []struct {
		in     string
		lr     float64
		rule   string
		server string
		wantLR float64
		mu     float32
	}{
		{"fedavg", 0, "mean", "fedavg", 1, 0},
		{" FedAvg ", 0.5, "mean", "fedavg", 0.5, 0},
		{"fedavgm", 0, "mean", "fedavgm", 0.1, 0},
		{"fedadam", 0, "mean", "fedadam", 0.01, 0},
		{"fedyogi", 0.03, "mean", "fedyogi", 0.03, 0},
		{"fedadagrad", 0, "mean", "fedadagrad", 0.1, 0},
		{"fedprox:0.01", 0, "mean", "fedavg", 1, 0.01},
		{"fedprox:0", 0, "mean", "fedavg", 1, 0},
		{"median", 0, "median", "fedavg", 1, 0},
		{"trimmed:0.2", 0, "trimmed:0.2", "fedavg", 1, 0},
		{"trimmed:0", 0, "trimmed:0", "fedavg", 1, 0},
		{"krum:2", 0.7, "krum:2", "fedavg", 0.7, 0},
		{"multikrum:1", 0, "multikrum:1", "fedavg", 1, 0},
		{"multikrum:1:3", 0, "multikrum:1:3", "fedavg", 1, 0},
		{"bulyan:0", 0, "bulyan:0", "fedavg", 1, 0},
	}
	for _, tc := range cases {
		s, err := ParseStrategy(tc.in, tc.lr)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if s.Rule.Name() != tc.rule || s.Server.Name() != tc.server || s.ProxMu != tc.mu {
			t.Errorf("%q: got %s, want rule %s server %s mu %v", tc.in, s, tc.rule, tc.server, tc.mu)
		}
		var lr float64
		switch o := s.Server.(type) {
		case *FedAvg:
			lr = o.LR
		case *FedAvgM:
			lr = o.LR
		case *FedAdam:
			lr = o.LR
		case *FedYogi:
			lr = o.LR
		case *FedAdagrad:
			lr = o.LR
		}
		if lr != tc.wantLR {
			t.Errorf("%q: server lr %v, want %v", tc.in, lr, tc.wantLR)
		}
		// A parsed rule's name parses back to the same rule.
		if tc.rule != "mean" {
			again, err := ParseStrategy(s.Rule.Name(), 0)
			if err != nil || again.Rule != s.Rule {
				t.Errorf("%q: name %q does not parse back: %v", tc.in, s.Rule.Name(), err)
			}
		}
	}
}

func TestParseStrategyErrors(t *testing.T) {
	cases := []struct {
		in   string
		lr   float64
		want string
	}{
		{"fedsgd", 0, `unknown strategy "fedsgd"`},
		{"", 0, "unknown strategy"},
		{"trimmed:0.5", 0, "trimmed:BETA needs 0 <= BETA < 0.5"},
		{"trimmed:-0.1", 0, "trimmed:BETA needs 0 <= BETA < 0.5"},
		{"trimmed:abc", 0, "trimmed:BETA needs 0 <= BETA < 0.5"},
		{"trimmed", 0, "trimmed:BETA needs one parameter"},
		{"trimmed:0.1:2", 0, "trimmed:BETA needs one parameter"},
		{"krum", 0, "krum:F needs one integer parameter F >= 0"},
		{"krum:-1", 0, `F is "-1", needs an integer 0 <= F <= 1048576`},
		{"krum:1.5", 0, `F is "1.5"`},
		{"bulyan:x", 0, `F is "x"`},
		{"krum:1048577", 0, `F is "1048577"`},
		{"multikrum:1:0", 0, `M is "0", needs an integer 1 <= M <= 1048576`},
		{"multikrum:1:2:3", 0, "multikrum:F or multikrum:F:M"},
		{"fedprox", 0, "fedprox:MU needs one parameter MU >= 0"},
		{"fedprox:-1", 0, "fedprox:MU needs MU >= 0"},
		{"fedprox:NaN", 0, "fedprox:MU needs MU >= 0"},
		{"fedadam:0.1", 0, "fedadam takes no parameter"},
		{"median:", 0, "median takes no parameter"},
		{"fedavg", -1, "server learning rate -1"},
		{"fedavg", math.NaN(), "server learning rate NaN"},
		{"fedavg", math.Inf(1), "server learning rate +Inf"},
	}
	for _, tc := range cases {
		_, err := ParseStrategy(tc.in, tc.lr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseStrategy(%q, %v): error %v, want one containing %q", tc.in, tc.lr, err, tc.want)
			continue
		}
		if tc.lr == 0 && (!strings.Contains(err.Error(), Forms) || !strings.Contains(err.Error(), `"`+tc.in+`"`)) {
			t.Errorf("ParseStrategy(%q): error %q should quote the value and list the forms", tc.in, err)
		}
	}
}

func TestRoundFedAvgWithRejections(t *testing.T) {
	s, err := ParseStrategy("fedavg", 0)
	if err != nil {
		t.Fatal(err)
	}
	global := []float32{10, 20, 30}
	updates := []Update{
		{Client: "a", Delta: []float32{1, 1, 1}, Weight: 1},
		{Client: "bad", Delta: []float32{1, float32(math.NaN()), 1}, Weight: 1},
		{Client: "b", Delta: []float32{4, -2, 0}, Weight: 2},
	}
	rejected, err := s.Round(global, updates)
	if err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 1 || rejected[0].Client != "bad" || !errors.Is(rejected[0].Err, ErrNonFinite) {
		t.Fatalf("rejections %v, want only client bad", rejected)
	}
	// (1·[1,1,1] + 2·[4,−2,0]) / 3 = [3, −1, 1/3]
	assertClose(t, "global", global, []float32{13, 19, 30 + 1.0/3}, 1e-6)
}

func TestRoundTooFewLeavesGlobalUnchanged(t *testing.T) {
	for _, spec := range []string{"krum:1", "bulyan:1", "multikrum:1:5"} {
		s, err := ParseStrategy(spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		us := randomUpdates(5, 6, 4)
		us[2].Weight = 0 // 5 valid left: krum:1 needs 5, bulyan:1 needs 7
		us[3].Client = "c01"
		// Now only 4 remain valid (c02 weight 0, c01 duplicated).
		global := []float32{1, 2, 3, 4}
		rejected, err := s.Round(global, us)
		if len(rejected) != 2 {
			t.Errorf("%s: rejections %v, want 2", spec, rejected)
		}
		if !errors.Is(err, ErrTooFewUpdates) || !strings.Contains(err.Error(), "4 of 6 updates valid") || !strings.Contains(err.Error(), spec) {
			t.Errorf("%s: error %v, want too few updates naming the rule and the counts", spec, err)
		}
		if !slices.Equal(global, []float32{1, 2, 3, 4}) {
			t.Errorf("%s: global changed to %v", spec, global)
		}
	}
	// krum:1 runs once 5 valid updates are present.
	s, _ := ParseStrategy("krum:1", 0)
	us := randomUpdates(5, 5, 4)
	global := []float32{1, 2, 3, 4}
	if _, err := s.Round(global, us); err != nil {
		t.Fatalf("krum:1 with 5 updates: %v", err)
	}
	if slices.Equal(global, []float32{1, 2, 3, 4}) {
		t.Error("krum:1 round did not move the model")
	}
}

func TestRoundStatefulServerPersists(t *testing.T) {
	s, err := ParseStrategy("fedadam", 0.1)
	if err != nil {
		t.Fatal(err)
	}
	ref := NewFedAdam(0.1)
	global := slices.Clone(stepX0)
	want := slices.Clone(stepX0)
	for _, d := range [][]float32{stepD1, stepD2} {
		if _, err := s.Round(global, []Update{{Client: "only", Delta: d, Weight: 3}}); err != nil {
			t.Fatal(err)
		}
		if err := ref.Step(want, d); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(global, want) {
		t.Fatalf("two rounds gave %v, two FedAdam steps %v", global, want)
	}
	if st := s.Server.(Stateful).State(); st.Steps != 2 {
		t.Errorf("state steps %d, want 2", st.Steps)
	}
}

func TestRoundNilStrategy(t *testing.T) {
	var s *Strategy
	if _, err := s.Round([]float32{1}, nil); err == nil {
		t.Error("nil strategy ran a round")
	}
	empty := &Strategy{Rule: Median{}}
	global := []float32{1, 1}
	if _, err := empty.Round(global, []Update{{Client: "a", Delta: []float32{1, 2}, Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(global, []float32{2, 3}) {
		t.Errorf("nil server should act as FedAvg with lr 1, got %v", global)
	}
	if _, err := empty.Round(global, nil); !errors.Is(err, ErrTooFewUpdates) {
		t.Errorf("round without updates: %v", err)
	}
}

// FuzzParseStrategy: any string either parses into a usable strategy or
// gives an error; never a panic.
func FuzzParseStrategy(f *testing.F) {
	for _, s := range []string{"fedavg", "krum:2", "multikrum:1:3", "trimmed:0.49", "fedprox:1e-3", "bulyan:-0", ":", "krum:99999999999999999999", "krum:4611686018427387904", "bulyan:2305843009213693952", "multikrum:4611686018427387904:1"} {
		f.Add(s, 0.0)
	}
	f.Fuzz(func(t *testing.T, s string, lr float64) {
		st, err := ParseStrategy(s, lr)
		if err != nil {
			return
		}
		if st.Rule == nil || st.Server == nil {
			t.Fatalf("%q parsed to an incomplete strategy %v", s, st)
		}
		global := make([]float32, 3)
		us := randomUpdates(1, 3, 3)
		if _, err := st.Round(global, us); err != nil && !errors.Is(err, ErrTooFewUpdates) && !strings.Contains(err.Error(), "M is") {
			t.Fatalf("%q: round failed: %v", s, err)
		}
	})
}
