package wire

import (
	"fmt"
	"math"
)

// Secure federated evaluation. A round whose SecAgg+ Dim is the model's
// parameter count plus EvalWords asks every sampled worker to append to its
// update the evaluation of the round's announced model (the committed model
// it trains from, whose hash it checks) on its local test split, so that the
// coordinator learns only the sum over the survivors (at least the SecAgg+
// threshold of them) and never one worker's figures. The words are, scaled
// by the round's clip range c so that quantization keeps them:
//
//	accuracy·c, min(loss, EvalLossCap)/EvalLossCap·c, c
//
// or three zeros from a worker whose policy answers no evaluation. Each is
// weighted like the update, so the ratios of the sums are the weighted
// means over the workers that evaluated and the weights cancel.
const EvalWords = 3

// EvalLossCap bounds the loss a worker reports in a secure evaluation: a
// larger loss is reported as the cap.
const EvalLossCap = 20.0

// EvalTail returns the EvalWords coordinates a worker appends.
func EvalTail(accuracy, loss, clip float64) []float32 {
	if !(accuracy >= 0 && accuracy <= 1) || math.IsNaN(loss) || loss < 0 {
		return make([]float32, EvalWords)
	}
	l := min(loss, EvalLossCap) / EvalLossCap
	return []float32{float32(accuracy * clip), float32(l * clip), float32(clip)}
}

// NoEvalTail is the tail of a worker that answers no evaluation.
func NoEvalTail() []float32 { return make([]float32, EvalWords) }

// ParseEvalTail reads the unmasked sums of the EvalWords coordinates and
// returns the mean accuracy and loss; ok is false when no survivor
// evaluated.
func ParseEvalTail(sum []float64) (accuracy, loss float64, ok bool, err error) {
	if len(sum) != EvalWords {
		return 0, 0, false, fmt.Errorf("evaluation tail has %d words, want %d", len(sum), EvalWords)
	}
	if !(sum[2] > 0) {
		return 0, 0, false, nil
	}
	accuracy, loss = sum[0]/sum[2], sum[1]/sum[2]*EvalLossCap
	// Stochastic rounding can move a ratio slightly outside its range.
	accuracy = min(max(accuracy, 0), 1)
	loss = max(loss, 0)
	if math.IsNaN(accuracy) || math.IsNaN(loss) || math.IsInf(loss, 0) {
		return 0, 0, false, fmt.Errorf("evaluation sums %v are not finite", sum)
	}
	return accuracy, loss, true, nil
}
