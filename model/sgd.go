package model

import (
	"fmt"

	"gonum.org/v1/gonum/blas/blas32"
)

// SGD is minibatch stochastic gradient descent with optional heavy-ball
// momentum and weight decay, in the convention of PyTorch's torch.optim.SGD
// (dampening 0, no Nesterov):
//
//	L2 (Decoupled=false):  g' = g + WeightDecay·w;  v = Momentum·v + g';  w -= LR·v
//	decoupled (true):      v = Momentum·v + g;      w -= LR·v + LR·WeightDecay·w
//
// The decoupled form is SGDW (Loshchilov & Hutter 2019, "Decoupled Weight
// Decay Regularization", Algorithm 1). With Momentum 0 the two coincide.
// The momentum buffer starts at zero and is (re)created whenever the
// parameter length changes; Reset clears it.
type SGD struct {
	// LR is the learning rate.
	LR float32
	// Momentum is the heavy-ball coefficient in [0, 1); 0 disables it.
	Momentum float32
	// WeightDecay is the decay coefficient; 0 disables it.
	WeightDecay float32
	// Decoupled selects SGDW-style weight decay instead of L2 in the gradient.
	Decoupled bool

	velocity []float32
}

// Reset zeroes the momentum buffer.
func (o *SGD) Reset() { clear(o.velocity) }

func vec(v []float32) blas32.Vector { return blas32.Vector{N: len(v), Inc: 1, Data: v} }

// Step updates params in place from grads (which it does not modify). It
// returns an error, changing nothing, if the lengths differ.
func (o *SGD) Step(params, grads []float32) error {
	if len(params) != len(grads) {
		return fmt.Errorf("model: SGD.Step: len(params)=%d != len(grads)=%d", len(params), len(grads))
	}
	p, g := vec(params), vec(grads)
	if o.Momentum == 0 {
		// Without momentum both decay forms are w = (1-LR·WD)·w - LR·g.
		if o.WeightDecay != 0 {
			blas32.Scal(1-o.LR*o.WeightDecay, p)
		}
		blas32.Axpy(-o.LR, g, p)
		return nil
	}
	if len(o.velocity) != len(params) {
		o.velocity = make([]float32, len(params))
	}
	v := vec(o.velocity)
	blas32.Scal(o.Momentum, v)
	blas32.Axpy(1, g, v)
	if o.WeightDecay != 0 {
		if o.Decoupled {
			blas32.Scal(1-o.LR*o.WeightDecay, p)
		} else {
			blas32.Axpy(o.WeightDecay, p, v)
		}
	}
	blas32.Axpy(-o.LR, v, p)
	return nil
}
