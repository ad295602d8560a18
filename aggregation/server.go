package aggregation

import (
	"fmt"
	"math"

	"github.com/sovereign-fl/sovereign/internal/finite"
)

// ServerOptimizer applies a combined delta to the global model (Reddi et
// al. 2021, "Adaptive Federated Optimization", Algorithm 2): the combined
// client delta Δ plays the role of a pseudo-gradient (with the sign of a
// descent step), and the server takes an optimizer step with it.
//
// Step updates global in place. It checks its arguments first (equal
// lengths, finite delta, valid hyper-parameters, state of the same length)
// and on error leaves both global and the optimizer's state unchanged.
// Step is deterministic. Optimizers with state (FedAvgM, FedAdagrad,
// FedAdam, FedYogi) keep it across rounds, are not safe for concurrent
// use, and expose it through State and SetState so that a replica taking
// over can resume with the same moments.
type ServerOptimizer interface {
	// Name returns the optimizer in ParseStrategy's syntax, e.g. "fedadam".
	Name() string
	// Step applies delta to global.
	Step(global, delta []float32) error
}

// OptimizerState is the per-parameter state of a server optimizer, for
// snapshots. M is the first moment (FedAvgM's velocity), V the second
// moment (nil when unused); both are nil before the first step.
type OptimizerState struct {
	// Optimizer is the Name() of the optimizer the state belongs to.
	Optimizer string
	// Steps counts the successful steps taken.
	Steps int
	// M is the first moment or momentum buffer.
	M []float32
	// V is the second moment of adaptive optimizers.
	V []float32
}

// Stateful is implemented by server optimizers that keep state across
// rounds.
type Stateful interface {
	// State returns a deep copy of the optimizer's state.
	State() OptimizerState
	// SetState replaces the state with a deep copy of s; it refuses a state
	// of another optimizer or with M and V of different lengths.
	SetState(s OptimizerState) error
}

// FedAvg applies the combined delta scaled by a server learning rate:
// x ← x + η·Δ. With η = 1 this is Federated Averaging (McMahan et al.
// 2017, Algorithm 1); other η is FedOpt with SGD on the server (Reddi et
// al. 2021, Algorithm 2 with ServerOpt = SGD). It has no state.
type FedAvg struct {
	// LR is the server learning rate η > 0; NewFedAvg defaults it to 1.
	LR float64
}

// NewFedAvg returns FedAvg with server learning rate lr (0 means 1).
func NewFedAvg(lr float64) *FedAvg {
	if lr == 0 {
		lr = 1
	}
	return &FedAvg{LR: lr}
}

// Name returns "fedavg".
func (*FedAvg) Name() string { return "fedavg" }

// Step sets global ← global + LR·delta.
func (o *FedAvg) Step(global, delta []float32) error {
	if err := checkStep(o.Name(), global, delta); err != nil {
		return err
	}
	if err := positive(o.Name(), "LR", o.LR); err != nil {
		return err
	}
	for j, d := range delta {
		global[j] = float32(float64(global[j]) + o.LR*float64(d))
	}
	return nil
}

// FedAvgM is FedAvg with server momentum (Hsu et al. 2019, "Measuring the
// Effects of Non-Identical Data Distribution for Federated Visual
// Classification", §3): v ← β·v + Δ, x ← x + η·v, v starting at 0.
// Defaults: β = 0.9 and η = 0.1. Hsu et al. note that the effective step
// is η/(1−β); these defaults keep it at 1, the step of plain FedAvg.
type FedAvgM struct {
	// LR is the server learning rate η > 0.
	LR float64
	// Momentum is β, 0 <= β < 1.
	Momentum float64

	state OptimizerState
}

// NewFedAvgM returns FedAvgM with learning rate lr (0 means 0.1) and
// momentum 0.9.
func NewFedAvgM(lr float64) *FedAvgM {
	if lr == 0 {
		lr = 0.1
	}
	return &FedAvgM{LR: lr, Momentum: 0.9}
}

// Name returns "fedavgm".
func (*FedAvgM) Name() string { return "fedavgm" }

// Step updates the velocity with delta and moves global along it.
func (o *FedAvgM) Step(global, delta []float32) error {
	if err := checkStep(o.Name(), global, delta); err != nil {
		return err
	}
	if err := positive(o.Name(), "LR", o.LR); err != nil {
		return err
	}
	if err := unitInterval(o.Name(), "Momentum", o.Momentum); err != nil {
		return err
	}
	if err := o.state.ready(o.Name(), len(global), false); err != nil {
		return err
	}
	v := o.state.M
	for j, d := range delta {
		vj := o.Momentum*float64(v[j]) + float64(d)
		v[j] = float32(vj)
		global[j] = float32(float64(global[j]) + o.LR*float64(v[j]))
	}
	o.state.Steps++
	return nil
}

// State returns a copy of the momentum buffer.
func (o *FedAvgM) State() OptimizerState { return o.state.clone(o.Name()) }

// SetState replaces the momentum buffer.
func (o *FedAvgM) SetState(s OptimizerState) error { return o.state.set(o.Name(), s, false) }

// adaptive is the shared core of FedAdagrad, FedAdam and FedYogi (Reddi et
// al. 2021, Algorithm 2):
//
//	m_t = β1·m_{t−1} + (1−β1)·Δ_t
//	v_t = second-moment update (per optimizer)
//	x_{t+1} = x_t + η·m_t / (√v_t + τ)
//
// with m_{−1} = 0 and v_{−1} = τ² (the paper asks for v_{−1} ≥ τ²).
// There is no bias correction, as in the paper.
type adaptive struct {
	// LR is the server learning rate η > 0.
	LR float64
	// Beta1 is the first-moment decay β1, 0 <= β1 < 1.
	Beta1 float64
	// Beta2 is the second-moment decay β2, 0 <= β2 < 1 (unused by FedAdagrad).
	Beta2 float64
	// Tau is the adaptivity τ > 0, which also sets v_{−1} = τ².
	Tau float64

	state OptimizerState
}

// step runs Algorithm 2 with the second-moment rule second(v, Δ²).
func (o *adaptive) step(name string, global, delta []float32, useBeta2 bool, second func(v, d2 float64) float64) error {
	if err := checkStep(name, global, delta); err != nil {
		return err
	}
	if err := positive(name, "LR", o.LR); err != nil {
		return err
	}
	if err := unitInterval(name, "Beta1", o.Beta1); err != nil {
		return err
	}
	if useBeta2 {
		if err := unitInterval(name, "Beta2", o.Beta2); err != nil {
			return err
		}
	}
	if err := positive(name, "Tau", o.Tau); err != nil {
		return err
	}
	fresh := o.state.M == nil
	if err := o.state.ready(name, len(global), true); err != nil {
		return err
	}
	m, v := o.state.M, o.state.V
	if fresh {
		t2 := float32(o.Tau * o.Tau)
		for j := range v {
			v[j] = t2
		}
	}
	for j, d := range delta {
		dj := float64(d)
		mj := o.Beta1*float64(m[j]) + (1-o.Beta1)*dj
		vj := second(float64(v[j]), dj*dj)
		m[j], v[j] = float32(mj), float32(vj)
		global[j] = float32(float64(global[j]) + o.LR*mj/(math.Sqrt(vj)+o.Tau))
	}
	o.state.Steps++
	return nil
}

// FedAdagrad is Reddi et al. 2021, Algorithm 2 with the Adagrad second
// moment v_t = v_{t−1} + Δ_t². Like FedAdam and FedYogi it has the
// exported hyper-parameter fields LR (η), Beta1 (β1), Beta2 (β2) and Tau
// (τ), which Step checks each time. Defaults: η = 0.1, β1 = 0.9, τ = 1e-3
// (values in the range of the paper's grid search, Appendix D; tune η per
// task). Beta2 is not used.
type FedAdagrad struct{ adaptive }

// NewFedAdagrad returns FedAdagrad with learning rate lr (0 means 0.1) and
// the default β1 and τ.
func NewFedAdagrad(lr float64) *FedAdagrad {
	if lr == 0 {
		lr = 0.1
	}
	return &FedAdagrad{adaptive{LR: lr, Beta1: 0.9, Tau: 1e-3}}
}

// Name returns "fedadagrad".
func (*FedAdagrad) Name() string { return "fedadagrad" }

// Step applies one FedAdagrad step.
func (o *FedAdagrad) Step(global, delta []float32) error {
	return o.step(o.Name(), global, delta, false, func(v, d2 float64) float64 { return v + d2 })
}

// State returns a copy of m and v.
func (o *FedAdagrad) State() OptimizerState { return o.state.clone(o.Name()) }

// SetState replaces m and v.
func (o *FedAdagrad) SetState(s OptimizerState) error { return o.state.set(o.Name(), s, true) }

// FedAdam is Reddi et al. 2021, Algorithm 2 with the Adam second moment
// v_t = β2·v_{t−1} + (1−β2)·Δ_t². Defaults: η = 0.01, β1 = 0.9,
// β2 = 0.99, τ = 1e-3 (the paper's β1, β2 and a τ and η in the range of
// its grid search, Appendix D; tune η per task).
type FedAdam struct{ adaptive }

// NewFedAdam returns FedAdam with learning rate lr (0 means 0.01) and the
// default β1, β2 and τ.
func NewFedAdam(lr float64) *FedAdam {
	if lr == 0 {
		lr = 0.01
	}
	return &FedAdam{adaptive{LR: lr, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}}
}

// Name returns "fedadam".
func (*FedAdam) Name() string { return "fedadam" }

// Step applies one FedAdam step.
func (o *FedAdam) Step(global, delta []float32) error {
	b2 := o.Beta2
	return o.step(o.Name(), global, delta, true, func(v, d2 float64) float64 { return b2*v + (1-b2)*d2 })
}

// State returns a copy of m and v.
func (o *FedAdam) State() OptimizerState { return o.state.clone(o.Name()) }

// SetState replaces m and v.
func (o *FedAdam) SetState(s OptimizerState) error { return o.state.set(o.Name(), s, true) }

// FedYogi is Reddi et al. 2021, Algorithm 2 with the Yogi second moment
// (Zaheer et al. 2018) v_t = v_{t−1} − (1−β2)·Δ_t²·sign(v_{t−1} − Δ_t²).
// Defaults: η = 0.01, β1 = 0.9, β2 = 0.99, τ = 1e-3.
type FedYogi struct{ adaptive }

// NewFedYogi returns FedYogi with learning rate lr (0 means 0.01) and the
// default β1, β2 and τ.
func NewFedYogi(lr float64) *FedYogi {
	if lr == 0 {
		lr = 0.01
	}
	return &FedYogi{adaptive{LR: lr, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}}
}

// Name returns "fedyogi".
func (*FedYogi) Name() string { return "fedyogi" }

// Step applies one FedYogi step.
func (o *FedYogi) Step(global, delta []float32) error {
	b2 := o.Beta2
	return o.step(o.Name(), global, delta, true, func(v, d2 float64) float64 {
		s := 0.0
		switch {
		case v > d2:
			s = 1
		case v < d2:
			s = -1
		}
		return v - (1-b2)*d2*s
	})
}

// State returns a copy of m and v.
func (o *FedYogi) State() OptimizerState { return o.state.clone(o.Name()) }

// SetState replaces m and v.
func (o *FedYogi) SetState(s OptimizerState) error { return o.state.set(o.Name(), s, true) }

// Compile-time checks.
var (
	_ ServerOptimizer = (*FedAvg)(nil)
	_ ServerOptimizer = (*FedAvgM)(nil)
	_ ServerOptimizer = (*FedAdagrad)(nil)
	_ ServerOptimizer = (*FedAdam)(nil)
	_ ServerOptimizer = (*FedYogi)(nil)
	_ Stateful        = (*FedAvgM)(nil)
	_ Stateful        = (*FedAdagrad)(nil)
	_ Stateful        = (*FedAdam)(nil)
	_ Stateful        = (*FedYogi)(nil)
)

// ready allocates the state for dim parameters on first use, or checks
// that the existing state has dim parameters.
func (s *OptimizerState) ready(name string, dim int, second bool) error {
	if s.M == nil {
		s.M = make([]float32, dim)
		if second {
			s.V = make([]float32, dim)
		}
		return nil
	}
	if len(s.M) != dim {
		return fmt.Errorf("%s: state holds %d parameters, model has %d (SetState an empty state to restart)", name, len(s.M), dim)
	}
	return nil
}

// clone returns a deep copy of s labelled with the optimizer's name.
func (s *OptimizerState) clone(name string) OptimizerState {
	return OptimizerState{Optimizer: name, Steps: s.Steps, M: cloneOrNil(s.M), V: cloneOrNil(s.V)}
}

// set replaces s with a checked deep copy of in.
func (s *OptimizerState) set(name string, in OptimizerState, second bool) error {
	if in.Optimizer != name {
		return fmt.Errorf("%s: SetState given state of optimizer %q", name, in.Optimizer)
	}
	if in.Steps < 0 {
		return fmt.Errorf("%s: SetState: Steps is %d, needs >= 0", name, in.Steps)
	}
	if second && len(in.V) != len(in.M) {
		return fmt.Errorf("%s: SetState: M has %d values, V has %d", name, len(in.M), len(in.V))
	}
	if !second && in.V != nil {
		return fmt.Errorf("%s: SetState: V has %d values, this optimizer keeps none", name, len(in.V))
	}
	if j := finite.First(in.M); j >= 0 {
		return fmt.Errorf("%s: SetState: M[%d] = %v is not finite", name, j, in.M[j])
	}
	if j := finite.First(in.V); j >= 0 {
		return fmt.Errorf("%s: SetState: V[%d] = %v is not finite", name, j, in.V[j])
	}
	if second {
		for j, v := range in.V {
			if v < 0 {
				return fmt.Errorf("%s: SetState: V[%d] = %v is negative", name, j, v)
			}
		}
	}
	*s = OptimizerState{Steps: in.Steps, M: cloneOrNil(in.M), V: cloneOrNil(in.V)}
	if len(s.M) == 0 {
		s.M, s.V = nil, nil
	}
	return nil
}

// cloneOrNil copies x, keeping nil as nil.
func cloneOrNil(x []float32) []float32 {
	if x == nil {
		return nil
	}
	return append([]float32(nil), x...)
}

// checkStep checks the common arguments of Step.
func checkStep(name string, global, delta []float32) error {
	if len(global) != len(delta) {
		return fmt.Errorf("%s: delta has %d values, global model has %d", name, len(delta), len(global))
	}
	if j := finite.First(delta); j >= 0 {
		return fmt.Errorf("%s: %w: delta[%d] = %v", name, ErrNonFinite, j, delta[j])
	}
	return nil
}

// positive checks that a hyper-parameter is finite and > 0.
func positive(name, field string, v float64) error {
	if !isFinite(v) || v <= 0 {
		return fmt.Errorf("%s: %s is %v, needs a finite value > 0", name, field, v)
	}
	return nil
}

// unitInterval checks that a decay parameter is in [0, 1).
func unitInterval(name, field string, v float64) error {
	if !(v >= 0 && v < 1) {
		return fmt.Errorf("%s: %s is %v, needs 0 <= %s < 1", name, field, v, field)
	}
	return nil
}
