package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas/blas32"

	"github.com/sovereign-fl/sovereign/internal/finite"
)

// TrainConfig configures local training.
type TrainConfig struct {
	// Epochs is the number E of passes over the local examples (>= 1).
	Epochs int
	// Batch is the minibatch size B (>= 1); the last minibatch of an epoch
	// may be smaller. A Batch larger than the data means full-batch steps.
	Batch int
	// LR is the learning rate (> 0).
	LR float32
	// Momentum is the SGD momentum in [0, 1).
	Momentum float32
	// WeightDecay is the L2 weight decay coefficient (>= 0).
	WeightDecay float32
	// ProxMu is FedProx's proximal coefficient μ (Li et al. 2020,
	// "Federated Optimization in Heterogeneous Networks", eq. 2): it adds
	// μ·(w − w0) to every gradient, w0 being the parameters at the start of
	// Train. 0 gives plain FedAvg.
	ProxMu float32
	// Seed drives the per-epoch shuffling.
	Seed int64
}

// Validate returns an error naming the first field out of range.
func (c TrainConfig) Validate() error {
	finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
	switch {
	case c.Epochs < 1:
		return fmt.Errorf("model: TrainConfig.Epochs=%d, must be >= 1", c.Epochs)
	case c.Batch < 1:
		return fmt.Errorf("model: TrainConfig.Batch=%d, must be >= 1", c.Batch)
	case !finite(c.LR) || c.LR <= 0:
		return fmt.Errorf("model: TrainConfig.LR=%v, must be finite and > 0", c.LR)
	case !finite(c.Momentum) || c.Momentum < 0 || c.Momentum >= 1:
		return fmt.Errorf("model: TrainConfig.Momentum=%v, must be in [0, 1)", c.Momentum)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return fmt.Errorf("model: TrainConfig.WeightDecay=%v, must be finite and >= 0", c.WeightDecay)
	case !finite(c.ProxMu) || c.ProxMu < 0:
		return fmt.Errorf("model: TrainConfig.ProxMu=%v, must be finite and >= 0", c.ProxMu)
	}
	return nil
}

// Train runs cfg.Epochs epochs of minibatch SGD on n over the examples idx
// (row indices into x, which holds len(y) rows of dim features), as a FedAvg
// client does (McMahan et al. 2017, Algorithm 1, ClientUpdate), optionally
// with the FedProx proximal term. Each epoch visits idx in a fresh order
// drawn from cfg.Seed; each minibatch's rows are gathered into a buffer
// owned by n, so the data is never copied wholesale and steps do not
// allocate. It returns the mean training loss over the last epoch's
// examples (each measured at the parameters of its step).
//
// Inputs are validated first (config, dim, len(x), idx range, labels, NaN
// or Inf in the parameters or the selected rows); on such an error the
// parameters are untouched. If the loss becomes non-finite during training,
// Train stops with an error naming the epoch and step, and the parameters
// hold the partially trained values.
func Train(n *Network, x []float32, y []int32, dim int, idx []int, cfg TrainConfig) (float64, error) {
	if n == nil {
		return 0, fmt.Errorf("model: Train: nil network")
	}
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	if dim != n.inDim {
		return 0, fmt.Errorf("model: Train: dim=%d but %s expects %d features", dim, n.spec, n.inDim)
	}
	if len(x) != len(y)*dim {
		return 0, fmt.Errorf("model: Train: len(x)=%d, want len(y)*dim = %d*%d = %d", len(x), len(y), dim, len(y)*dim)
	}
	if len(idx) == 0 {
		return 0, fmt.Errorf("model: Train: no examples (idx is empty)")
	}
	for k, i := range idx {
		if i < 0 || i >= len(y) {
			return 0, fmt.Errorf("model: Train: idx[%d]=%d out of range [0, %d)", k, i, len(y))
		}
		if c := y[i]; c < 0 || int(c) >= n.classes {
			return 0, fmt.Errorf("model: Train: label y[%d]=%d out of range [0, %d)", i, c, n.classes)
		}
		if j := finite.First(x[i*dim : (i+1)*dim]); j >= 0 {
			return 0, fmt.Errorf("model: Train: example %d feature %d is %v", i, j, x[i*dim+j])
		}
	}
	if err := n.CheckParams(); err != nil {
		return 0, fmt.Errorf("model: Train: %w", err)
	}

	batch := min(cfg.Batch, len(idx))
	n.reserve(batch)
	if len(n.bx) < batch*dim {
		n.bx = make([]float32, batch*dim)
		n.by = make([]int32, batch)
	}
	if cap(n.idx) < len(idx) {
		n.idx = make([]int, len(idx))
	}
	order := n.idx[:len(idx)]
	copy(order, idx)

	params, grads := n.params, n.grads
	if cfg.ProxMu > 0 {
		if len(n.w0) != len(params) {
			n.w0 = make([]float32, len(params))
		}
		copy(n.w0, params)
	}
	if len(n.vel) != len(params) {
		n.vel = make([]float32, len(params))
	}
	clear(n.vel)
	opt := SGD{LR: cfg.LR, Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay, velocity: n.vel}

	// Plain SGD (FedAvg's client update) applies each dense layer's step
	// inside its backward pass; see Network.lossGradSGD.
	plain := cfg.Momentum == 0 && cfg.WeightDecay == 0 && cfg.ProxMu == 0
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x747261696e696e67))
	var last float64
	for e := 0; e < cfg.Epochs; e++ {
		// Fisher–Yates shuffle (no closure, so no allocation).
		for i := len(order) - 1; i > 0; i-- {
			j := rng.IntN(i + 1)
			order[i], order[j] = order[j], order[i]
		}
		var sum float64
		for s, step := 0, 0; s < len(order); s, step = s+batch, step+1 {
			m := min(batch, len(order)-s)
			bx, by := n.bx[:m*dim], n.by[:m]
			for r, i := range order[s : s+m] {
				copy(bx[r*dim:(r+1)*dim], x[i*dim:(i+1)*dim])
				by[r] = y[i]
			}
			var loss float32
			if plain {
				loss = n.lossGradSGD(bx, by, m, cfg.LR)
			} else {
				loss = n.lossGrad(bx, by, m)
			}
			if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
				return 0, fmt.Errorf("model: Train: epoch %d step %d: loss is %v (training diverged; lower LR)", e, step, loss)
			}
			if cfg.ProxMu > 0 {
				// ∇[μ/2·‖w − w0‖²] = μ·(w − w0)
				blas32.Axpy(cfg.ProxMu, vec(params), vec(grads))
				blas32.Axpy(-cfg.ProxMu, vec(n.w0), vec(grads))
			}
			if !plain {
				_ = opt.Step(params, grads) // lengths match by construction
			}
			sum += float64(loss) * float64(m)
		}
		last = sum / float64(len(order))
	}
	return last, nil
}
