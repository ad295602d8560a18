package aggregation

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// Two steps from x0 = [1, −2] with Δ1 = [0.5, 0.25] and Δ2 = [−0.25, 0.5].
var (
	stepX0 = []float32{1, -2}
	stepD1 = []float32{0.5, 0.25}
	stepD2 = []float32{-0.25, 0.5}
)

// twoSteps runs o for two steps and returns x after each, plus the state.
func twoSteps(t *testing.T, o ServerOptimizer) (x1, x2 []float32) {
	t.Helper()
	x := slices.Clone(stepX0)
	if err := o.Step(x, stepD1); err != nil {
		t.Fatal(err)
	}
	x1 = slices.Clone(x)
	if err := o.Step(x, stepD2); err != nil {
		t.Fatal(err)
	}
	return x1, x
}

func TestFedAvgTwoSteps(t *testing.T) {
	// x ← x + η·Δ with η = 0.5:
	// x1 = [1 + 0.25, −2 + 0.125] = [1.25, −1.875]
	// x2 = [1.25 − 0.125, −1.875 + 0.25] = [1.125, −1.625]
	x1, x2 := twoSteps(t, NewFedAvg(0.5))
	assertClose(t, "x1", x1, []float32{1.25, -1.875}, 1e-7)
	assertClose(t, "x2", x2, []float32{1.125, -1.625}, 1e-7)
	if o := NewFedAvg(0); o.LR != 1 {
		t.Errorf("default FedAvg lr %v, want 1", o.LR)
	}
}

func TestFedAvgMTwoSteps(t *testing.T) {
	// v ← β·v + Δ, x ← x + η·v with η = 0.5, β = 0.5:
	// v1 = [0.5, 0.25];                      x1 = [1.25, −1.875]
	// v2 = [0.25 − 0.25, 0.125 + 0.5] = [0, 0.625]; x2 = [1.25, −1.875 + 0.3125] = [1.25, −1.5625]
	o := NewFedAvgM(0.5)
	o.Momentum = 0.5
	x1, x2 := twoSteps(t, o)
	assertClose(t, "x1", x1, []float32{1.25, -1.875}, 1e-7)
	assertClose(t, "x2", x2, []float32{1.25, -1.5625}, 1e-7)
	assertClose(t, "v2", o.State().M, []float32{0, 0.625}, 1e-7)
	if d := NewFedAvgM(0); d.LR != 0.1 || d.Momentum != 0.9 {
		t.Errorf("default FedAvgM %+v, want lr 0.1, momentum 0.9", d)
	}
}

// The adaptive examples use η = 0.1, β1 = 0.9, β2 = 0.99, τ = 1e-3, so
// v_{−1} = 1e-6 and m_{−1} = 0. In both steps m follows
// m1 = 0.1·Δ1 = [0.05, 0.025], m2 = 0.9·m1 + 0.1·Δ2 = [0.02, 0.0725].

func TestFedAdagradTwoSteps(t *testing.T) {
	// v1 = 1e-6 + Δ1² = [0.250001, 0.062501]
	// x1 = x0 + 0.1·m1/(√v1 + 1e-3)
	//    = [1 + 0.005/0.501001, −2 + 0.0025/0.251001] = [1.00998002, −1.99003992]
	// v2 = v1 + Δ2² = [0.312501, 0.312501]
	// x2 = x1 + 0.1·m2/(√v2 + 1e-3)
	//    = [1.00998002 + 0.002/0.55901883, −1.99003992 + 0.00725/0.55901883] = [1.01355133, −1.97709390]
	o := NewFedAdagrad(0.1)
	x1, x2 := twoSteps(t, o)
	assertClose(t, "x1", x1, []float32{1.00998002, -1.99003992}, 1e-6)
	assertClose(t, "x2", x2, []float32{1.01355133, -1.97709390}, 1e-6)
	st := o.State()
	assertClose(t, "m2", st.M, []float32{0.02, 0.0725}, 1e-6)
	assertClose(t, "v2", st.V, []float32{0.312501, 0.312501}, 1e-6)
}

func TestFedAdamTwoSteps(t *testing.T) {
	// v1 = 0.99·1e-6 + 0.01·Δ1² = [0.00250099, 0.00062599]
	// x1 = [1 + 0.005/(0.05000990 + 0.001), −2 + 0.0025/(0.02501980 + 0.001)] = [1.09802019, −1.90391929]
	// v2 = 0.99·v1 + 0.01·Δ2² = [0.00310098, 0.00311973]
	// x2 = [x1 + 0.002/(0.05568645 + 0.001), x1 + 0.00725/(0.05585455 + 0.001)] = [1.13330199, −1.77640090]
	o := NewFedAdam(0.1)
	x1, x2 := twoSteps(t, o)
	assertClose(t, "x1", x1, []float32{1.09802019, -1.90391929}, 1e-6)
	assertClose(t, "x2", x2, []float32{1.13330199, -1.77640090}, 1e-6)
	assertClose(t, "v2", o.State().V, []float32{0.0031009801, 0.0031197301}, 1e-6)
}

func TestFedYogiTwoSteps(t *testing.T) {
	// v_t = v_{t−1} − 0.01·Δ²·sign(v_{t−1} − Δ²); here v < Δ² in every step,
	// so v grows by 0.01·Δ²:
	// v1 = 1e-6 + 0.01·Δ1² = [0.002501, 0.000626]
	// x1 = [1 + 0.005/(0.05000999 + 0.001), −2 + 0.0025/(0.02501999 + 0.001)] = [1.09802000, −1.90392003]
	// v2 = v1 + 0.01·Δ2² = [0.003126, 0.003126]
	// x2 = [x1 + 0.002/(0.05591064 + 0.001), x1 + 0.00725/(0.05591064 + 0.001)] = [1.13316281, −1.77652734]
	o := NewFedYogi(0.1)
	x1, x2 := twoSteps(t, o)
	assertClose(t, "x1", x1, []float32{1.09802000, -1.90392003}, 1e-6)
	assertClose(t, "x2", x2, []float32{1.13316281, -1.77652734}, 1e-6)
	assertClose(t, "v2", o.State().V, []float32{0.003126, 0.003126}, 1e-6)

	// Once v exceeds Δ², Yogi shrinks v additively: v = 1 − 0.01·0.25.
	if err := o.SetState(OptimizerState{Optimizer: "fedyogi", M: []float32{0, 0}, V: []float32{1, 1}}); err != nil {
		t.Fatal(err)
	}
	x := slices.Clone(stepX0)
	if err := o.Step(x, []float32{0.5, 0.5}); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "shrunk v", o.State().V, []float32{0.9975, 0.9975}, 1e-7)
}

func TestServerOptimizerDefaults(t *testing.T) {
	for _, tc := range []struct {
		o               *adaptive
		lr, b1, b2, tau float64
	}{
		{&NewFedAdagrad(0).adaptive, 0.1, 0.9, 0, 1e-3},
		{&NewFedAdam(0).adaptive, 0.01, 0.9, 0.99, 1e-3},
		{&NewFedYogi(0).adaptive, 0.01, 0.9, 0.99, 1e-3},
	} {
		if tc.o.LR != tc.lr || tc.o.Beta1 != tc.b1 || tc.o.Beta2 != tc.b2 || tc.o.Tau != tc.tau {
			t.Errorf("defaults %+v, want lr %v β1 %v β2 %v τ %v", *tc.o, tc.lr, tc.b1, tc.b2, tc.tau)
		}
	}
}

func TestServerOptimizerErrorsLeaveStateAlone(t *testing.T) {
	opts := []ServerOptimizer{NewFedAvg(0), NewFedAvgM(0), NewFedAdagrad(0), NewFedAdam(0), NewFedYogi(0)}
	for _, o := range opts {
		x := slices.Clone(stepX0)
		if err := o.Step(x, stepD1); err != nil {
			t.Fatal(err)
		}
		var before OptimizerState
		if s, ok := o.(Stateful); ok {
			before = s.State()
		}
		xBefore := slices.Clone(x)
		bad := []struct {
			delta []float32
			want  string
		}{
			{[]float32{1}, "delta has 1 values, global model has 2"},
			{[]float32{1, float32(math.NaN())}, "delta[1]"},
			{[]float32{float32(math.Inf(-1)), 1}, "delta[0]"},
		}
		for _, b := range bad {
			err := o.Step(x, b.delta)
			if err == nil || !strings.Contains(err.Error(), b.want) || !strings.HasPrefix(err.Error(), o.Name()) {
				t.Errorf("%s: error %v, want one naming the optimizer and %q", o.Name(), err, b.want)
			}
		}
		// A state of the wrong length is refused too.
		long := []float32{1, 2, 3}
		if err := o.Step(long, []float32{0, 0, 0}); o.Name() != "fedavg" && (err == nil || !strings.Contains(err.Error(), "state holds 2 parameters")) {
			t.Errorf("%s: step on a longer model: %v", o.Name(), err)
		}
		if !slices.Equal(x, xBefore) {
			t.Errorf("%s: failed steps changed the model", o.Name())
		}
		if s, ok := o.(Stateful); ok {
			after := s.State()
			if after.Steps != before.Steps || !slices.Equal(after.M, before.M) || !slices.Equal(after.V, before.V) {
				t.Errorf("%s: failed steps changed the state", o.Name())
			}
		}
	}
	bad := NewFedAdam(0)
	bad.Beta2 = 1
	if err := bad.Step(slices.Clone(stepX0), stepD1); err == nil || !strings.Contains(err.Error(), "Beta2 is 1") {
		t.Errorf("β2 = 1 accepted: %v", err)
	}
	zero := &FedAvg{}
	if err := zero.Step(slices.Clone(stepX0), stepD1); err == nil || !strings.Contains(err.Error(), "LR is 0") {
		t.Errorf("zero learning rate accepted: %v", err)
	}
}

// A replica that restores the state after one step continues exactly like
// the optimizer that took it.
func TestServerOptimizerStateRoundTrip(t *testing.T) {
	makers := []func() ServerOptimizer{
		func() ServerOptimizer { return NewFedAvgM(0) },
		func() ServerOptimizer { return NewFedAdagrad(0) },
		func() ServerOptimizer { return NewFedAdam(0) },
		func() ServerOptimizer { return NewFedYogi(0) },
	}
	for _, mk := range makers {
		a, b := mk(), mk()
		xa := slices.Clone(stepX0)
		if err := a.Step(xa, stepD1); err != nil {
			t.Fatal(err)
		}
		st := a.(Stateful).State()
		if st.Steps != 1 || st.Optimizer != a.Name() {
			t.Fatalf("%s: state %+v", a.Name(), st)
		}
		if err := b.(Stateful).SetState(st); err != nil {
			t.Fatal(err)
		}
		st.M[0] = 1e9 // the optimizer holds its own copy
		xb := slices.Clone(xa)
		if err := a.Step(xa, stepD2); err != nil {
			t.Fatal(err)
		}
		if err := b.Step(xb, stepD2); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(xa, xb) {
			t.Errorf("%s: restored optimizer diverged: %v vs %v", a.Name(), xa, xb)
		}
		if err := b.(Stateful).SetState(OptimizerState{Optimizer: "other"}); err == nil {
			t.Errorf("%s: accepted another optimizer's state", a.Name())
		}
	}
	if err := NewFedAdam(0).SetState(OptimizerState{Optimizer: "fedadam", M: []float32{1}, V: []float32{-1}}); err == nil || !strings.Contains(err.Error(), "V[0]") {
		t.Errorf("negative second moment accepted: %v", err)
	}
	if err := NewFedAdam(0).SetState(OptimizerState{Optimizer: "fedadam", M: []float32{1}}); err == nil {
		t.Error("state with M and V of different lengths accepted")
	}
	if err := NewFedAvgM(0).SetState(OptimizerState{Optimizer: "fedavgm", M: []float32{float32(math.NaN())}}); err == nil || !strings.Contains(err.Error(), "M[0]") {
		t.Errorf("NaN momentum accepted: %v", err)
	}
}
