package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sovereign-fl/sovereign/internal/finite"
)

// maxEvalBufFloats bounds the activation buffers Evaluate and Predict grow
// to when choosing their chunk size (2^23 float32 = 32 MiB).
const maxEvalBufFloats = 1 << 23

// maxEvalChunk is the largest number of examples Evaluate runs at once.
const maxEvalChunk = 256

// Network is a feed-forward classifier whose parameters are one flat
// []float32 vector. It is not safe for concurrent use; use one per goroutine.
type Network struct {
	spec    Spec
	params  []float32
	grads   []float32
	layers  []layer
	offsets []int // offsets[i] is where layer i's parameters start
	inDim   int
	classes int

	capacity int       // batch size the buffers are sized for
	dlogits  []float32 // capacity×classes
	bufPerEx int       // float32 buffer elements per example, all layers

	// Scratch reused by Train.
	bx  []float32
	by  []int32
	idx []int
	w0  []float32
	vel []float32
}

// New builds a network for spec. Its parameters start at zero: call Init
// (or write Params) before training.
func New(spec Spec) (*Network, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Kind == KindTensors {
		return nil, fmt.Errorf("model: %s is an external model (%d tensors, %d parameters): only the institutions' trainers compute it", short(spec.String()), len(spec.Layout), spec.NumParams())
	}
	spec.Hidden = append([]int(nil), spec.Hidden...)
	if spec.Channels != nil {
		spec.Channels = append([]int(nil), spec.Channels...)
	}
	n := &Network{spec: spec, inDim: spec.InputDim(), classes: spec.Classes}
	for _, s := range spec.layerShapes() {
		if s.conv {
			c := newConv(s.inC, s.h, s.w, s.out, CNNKernel, s.relu, s.inputCHW)
			p := newMaxPool(s.out, s.h, s.w)
			c.reluInPool, p.relu = s.relu, s.relu
			n.layers = append(n.layers, c, p)
		} else {
			n.layers = append(n.layers, newDense(s.in, s.out, s.relu))
		}
	}
	total := 0
	for _, l := range n.layers {
		n.offsets = append(n.offsets, total)
		total += l.numParams()
		n.bufPerEx += l.bufPerExample()
	}
	n.bufPerEx += 2 * n.classes
	if total != spec.NumParams() {
		return nil, fmt.Errorf("model: internal error: %s has %d parameters in layers but NumParams=%d", spec, total, spec.NumParams())
	}
	n.params = make([]float32, total)
	n.grads = make([]float32, total)
	for i, l := range n.layers {
		k := l.numParams()
		o := n.offsets[i]
		l.bind(n.params[o:o+k:o+k], n.grads[o:o+k:o+k])
	}
	return n, nil
}

// Spec returns the architecture of n.
func (n *Network) Spec() Spec { return n.spec }

// NumParams returns len(n.Params()).
func (n *Network) NumParams() int { return len(n.params) }

// InputDim returns the number of features per example.
func (n *Network) InputDim() int { return n.inDim }

// Classes returns the number of output classes.
func (n *Network) Classes() int { return n.classes }

// Params returns the flat parameter vector. It is owned by n; callers may
// read and write its elements (not its length) between calls on n.
func (n *Network) Params() []float32 { return n.params }

// Grads returns the flat gradient vector filled by LossGrad, laid out like
// Params. It is owned by n.
func (n *Network) Grads() []float32 { return n.grads }

// SetParams copies p into the parameter vector after checking its length
// and that every element is finite.
func (n *Network) SetParams(p []float32) error {
	if len(p) != len(n.params) {
		return fmt.Errorf("model: SetParams: got %d values, %s has %d parameters", len(p), n.spec, len(n.params))
	}
	if err := n.checkFinite(p, "SetParams"); err != nil {
		return err
	}
	copy(n.params, p)
	return nil
}

// CheckParams returns an error naming the first parameter that is NaN or
// infinite, and the layer it belongs to.
func (n *Network) CheckParams() error { return n.checkFinite(n.params, "parameters") }

func (n *Network) checkFinite(p []float32, what string) error {
	if i := finite.First(p); i >= 0 {
		return fmt.Errorf("model: %s: element %d (%s) is %v", what, i, n.ParamLocation(i), p[i])
	}
	return nil
}

// ParamLocation describes which layer, and whether weight or bias, the
// element i of the flat parameter vector belongs to, e.g. "layer 2 (conv)
// weight 17".
func (n *Network) ParamLocation(i int) string {
	if i < 0 || i >= len(n.params) {
		return fmt.Sprintf("out of range [0, %d)", len(n.params))
	}
	for li := len(n.layers) - 1; li >= 0; li-- {
		o := n.offsets[li]
		l := n.layers[li]
		if l.numParams() == 0 || i < o {
			continue
		}
		j := i - o
		nb := l.outDim()
		switch t := l.(type) {
		case *conv:
			nb = t.outC
		case *dense:
			nb = t.out
		}
		if j >= l.numParams()-nb {
			return fmt.Sprintf("layer %d (%s) bias %d", li, l.name(), j-(l.numParams()-nb))
		}
		return fmt.Sprintf("layer %d (%s) weight %d", li, l.name(), j)
	}
	return "unknown"
}

// Init sets the parameters deterministically from seed: weights of layers
// followed by ReLU are drawn from He uniform U(±sqrt(6/fanIn)) (He et al.
// 2015), the output layer's from Glorot uniform U(±sqrt(6/(fanIn+fanOut)))
// (Glorot & Bengio 2010); biases are 0. The same seed gives bit-identical
// parameters.
func (n *Network) Init(seed int64) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6d6f64656c696e69))
	for _, l := range n.layers {
		l.initParams(rng)
	}
}

// reserve grows the buffers to hold batches of up to batch examples.
func (n *Network) reserve(batch int) {
	if batch <= n.capacity {
		return
	}
	for _, l := range n.layers {
		l.reserve(batch)
	}
	n.dlogits = make([]float32, batch*n.classes)
	n.capacity = batch
}

// evalChunk is the number of examples Evaluate and Predict run at once.
func (n *Network) evalChunk() int {
	c := maxEvalBufFloats / max(1, n.bufPerEx)
	c = max(c, n.capacity) // buffers of that size exist already
	return max(1, min(c, maxEvalChunk))
}

// forward runs the network on batch rows of x and returns the logits
// (batch×classes), owned by the last layer.
func (n *Network) forward(x []float32, batch int) []float32 {
	n.reserve(batch)
	h := x[:batch*n.inDim]
	for _, l := range n.layers {
		h = l.forward(h, batch)
	}
	return h
}

// CheckBatch validates a batch: batch >= 1, len(x) == batch*InputDim, and,
// if y is not nil, len(y) == batch with every label in [0, Classes).
func (n *Network) CheckBatch(x []float32, y []int32, batch int) error {
	if batch < 1 {
		return fmt.Errorf("model: batch=%d, must be >= 1", batch)
	}
	if len(x) != batch*n.inDim {
		return fmt.Errorf("model: len(x)=%d, want batch*InputDim = %d*%d = %d", len(x), batch, n.inDim, batch*n.inDim)
	}
	if y == nil {
		return nil
	}
	if len(y) != batch {
		return fmt.Errorf("model: len(y)=%d, want batch=%d", len(y), batch)
	}
	for i, c := range y {
		if c < 0 || int(c) >= n.classes {
			return fmt.Errorf("model: label y[%d]=%d out of range [0, %d)", i, c, n.classes)
		}
	}
	return nil
}

// LossGrad runs forward and backward on a batch: x is batch×InputDim
// row-major, y the labels. It fills Grads with the gradient of the mean
// softmax cross-entropy over the batch and returns that mean loss. On
// malformed input (see CheckBatch) it returns NaN and leaves Grads
// unchanged; use LossGradChecked to get the reason.
func (n *Network) LossGrad(x []float32, y []int32, batch int) float32 {
	l, err := n.LossGradChecked(x, y, batch)
	if err != nil {
		return float32(math.NaN())
	}
	return l
}

// LossGradChecked is LossGrad returning an error for malformed input.
func (n *Network) LossGradChecked(x []float32, y []int32, batch int) (float32, error) {
	if err := n.CheckBatch(x, y, batch); err != nil {
		return float32(math.NaN()), err
	}
	return n.lossGrad(x, y, batch), nil
}

// lossGrad is LossGrad without validation.
func (n *Network) lossGrad(x []float32, y []int32, batch int) float32 {
	logits := n.forward(x, batch)
	d := n.dlogits[:batch*n.classes]
	loss := softmaxCrossEntropy(logits, y, batch, n.classes, d)
	for i := len(n.layers) - 1; i >= 0; i-- {
		d = n.layers[i].backward(d, batch, i > 0)
	}
	return float32(loss)
}

// lossGradSGD is lossGrad followed by a plain SGD step, w −= lr·∇w (McMahan
// et al. 2017, ClientUpdate with no momentum or decay), with the dense
// layers' weight updates fused into their backward GEMMs. Grads is left
// stale for those layers; the other layers' gradients are applied here.
func (n *Network) lossGradSGD(x []float32, y []int32, batch int, lr float32) float32 {
	for _, l := range n.layers {
		if d, ok := l.(*dense); ok {
			d.sgdLR = lr
		}
	}
	loss := n.lossGrad(x, y, batch)
	for i, l := range n.layers {
		if d, ok := l.(*dense); ok {
			d.sgdLR = 0
			continue
		}
		k := l.numParams()
		o := n.offsets[i]
		p, g := n.params[o:o+k], n.grads[o:o+k]
		for j, v := range g {
			p[j] -= lr * v
		}
	}
	return loss
}

// softmaxCrossEntropy returns the mean over the batch of -log softmax(z)_y
// and, if d is not nil, writes its gradient with respect to the logits,
// (softmax(z) - onehot(y)) / batch, into d. It subtracts each row's maximum
// before exponentiating (the log-sum-exp trick), so large logits do not
// overflow.
func softmaxCrossEntropy(logits []float32, y []int32, batch, classes int, d []float32) float64 {
	var total float64
	inv := 1 / float64(batch)
	for r := 0; r < batch; r++ {
		z := logits[r*classes : (r+1)*classes]
		m := z[0]
		for _, v := range z[1:] {
			if v > m {
				m = v
			}
		}
		var s float64
		for _, v := range z {
			s += math.Exp(float64(v - m))
		}
		logS := math.Log(s)
		lab := int(y[r])
		total += logS - float64(z[lab]-m)
		if d == nil {
			continue
		}
		dr := d[r*classes : (r+1)*classes]
		for j, v := range z {
			dr[j] = float32(math.Exp(float64(v-m)-logS) * inv)
		}
		dr[lab] -= float32(inv)
	}
	return total * inv
}

// argmax returns the index of the first largest element of z.
func argmax(z []float32) int {
	best := 0
	for j, v := range z {
		if v > z[best] {
			best = j
		}
	}
	return best
}

// Evaluate returns the mean softmax cross-entropy and the accuracy of the
// network on count examples (x is count×InputDim row-major), processed in
// chunks of at most 256. On malformed input it returns NaN, NaN; use
// EvaluateChecked to get the reason.
func (n *Network) Evaluate(x []float32, y []int32, count int) (loss float64, accuracy float64) {
	l, a, err := n.EvaluateChecked(x, y, count)
	if err != nil {
		return math.NaN(), math.NaN()
	}
	return l, a
}

// EvaluateChecked is Evaluate returning an error for malformed input.
func (n *Network) EvaluateChecked(x []float32, y []int32, count int) (loss float64, accuracy float64, err error) {
	return n.evaluate(x, y, count, nil, nil)
}

// EvaluateScores is EvaluateChecked for a two-class network that also
// writes each example's score (as Scores does) into scores, from the same
// forward pass.
func (n *Network) EvaluateScores(x []float32, y []int32, count int, scores []float64) (loss float64, accuracy float64, err error) {
	if n.classes != 2 {
		return math.NaN(), math.NaN(), fmt.Errorf("model: EvaluateScores: %d classes, want 2", n.classes)
	}
	if len(scores) < count {
		return math.NaN(), math.NaN(), fmt.Errorf("model: EvaluateScores: len(scores)=%d < count=%d", len(scores), count)
	}
	return n.evaluate(x, y, count, scores, nil)
}

// EvaluateProbabilities is EvaluateChecked that also writes each example's
// class probabilities (as Probabilities does, Classes values per example)
// into probs, from the same forward pass.
func (n *Network) EvaluateProbabilities(x []float32, y []int32, count int, probs []float32) (loss float64, accuracy float64, err error) {
	if len(probs) < count*n.classes {
		return math.NaN(), math.NaN(), fmt.Errorf("model: EvaluateProbabilities: len(probs)=%d < count*Classes=%d", len(probs), count*n.classes)
	}
	return n.evaluate(x, y, count, nil, probs)
}

// evaluate is EvaluateChecked, also writing scores and probs when they are
// not nil (their lengths checked by the caller).
func (n *Network) evaluate(x []float32, y []int32, count int, scores []float64, probs []float32) (loss float64, accuracy float64, err error) {
	if err := n.CheckBatch(x, y, count); err != nil {
		return math.NaN(), math.NaN(), err
	}
	var total float64
	correct := 0
	n.forwardChunks(x, count, func(s, b int, logits []float32) {
		if scores != nil {
			n.writeScores(scores[s:s+b], logits)
		}
		if probs != nil {
			n.writeProbabilities(probs[s*n.classes:(s+b)*n.classes], logits)
		}
		yb := y[s : s+b]
		total += softmaxCrossEntropy(logits, yb, b, n.classes, nil) * float64(b)
		for r := 0; r < b; r++ {
			if argmax(logits[r*n.classes:(r+1)*n.classes]) == int(yb[r]) {
				correct++
			}
		}
	})
	return total / float64(count), float64(correct) / float64(count), nil
}

// forwardChunks runs the network on the count rows of x (already checked)
// in chunks of evalChunk rows, handing fn each chunk's first row s, row
// count b and logits (b×classes, valid until the next chunk).
func (n *Network) forwardChunks(x []float32, count int, fn func(s, b int, logits []float32)) {
	chunk := n.evalChunk()
	for s := 0; s < count; s += chunk {
		b := min(chunk, count-s)
		fn(s, b, n.forward(x[s*n.inDim:(s+b)*n.inDim], b))
	}
}

// writeScores writes the logit margin z_1 − z_0 of each row of a
// two-class network's logits into out.
func (n *Network) writeScores(out []float64, logits []float32) {
	for r := range out {
		out[r] = float64(logits[2*r+1]) - float64(logits[2*r])
	}
}

// writeProbabilities writes the softmax of each row of logits into out
// (Classes values per row).
func (n *Network) writeProbabilities(out, logits []float32) {
	for r := 0; r*n.classes < len(out); r++ {
		softmaxRow(out[r*n.classes:(r+1)*n.classes], logits[r*n.classes:(r+1)*n.classes])
	}
}

// Predict writes the most likely class of each of the batch rows of x into
// out[:batch]. It returns an error, writing nothing, if len(x) !=
// batch*InputDim or len(out) < batch.
func (n *Network) Predict(x []float32, batch int, out []int32) error {
	if err := n.CheckBatch(x, nil, batch); err != nil {
		return err
	}
	if len(out) < batch {
		return fmt.Errorf("model: Predict: len(out)=%d < batch=%d", len(out), batch)
	}
	n.forwardChunks(x, batch, func(s, b int, logits []float32) {
		for r := 0; r < b; r++ {
			out[s+r] = int32(argmax(logits[r*n.classes : (r+1)*n.classes]))
		}
	})
	return nil
}

// Probabilities writes the softmax class probabilities of each of the batch
// rows of x into out[:batch*Classes] (row-major), computed in float64 from
// the logits with the row maximum subtracted, and returns an error, writing
// nothing, on malformed input.
func (n *Network) Probabilities(x []float32, batch int, out []float32) error {
	if err := n.CheckBatch(x, nil, batch); err != nil {
		return err
	}
	if len(out) < batch*n.classes {
		return fmt.Errorf("model: Probabilities: len(out)=%d < batch*Classes=%d", len(out), batch*n.classes)
	}
	n.forwardChunks(x, batch, func(s, b int, logits []float32) {
		n.writeProbabilities(out[s*n.classes:(s+b)*n.classes], logits)
	})
	return nil
}

// softmaxRow writes the softmax of the logits z into dst, shifted by the
// largest logit and summed in float64.
func softmaxRow(dst, z []float32) {
	m := z[argmax(z)]
	var sum float64
	for _, v := range z {
		sum += math.Exp(float64(v - m))
	}
	for j, v := range z {
		dst[j] = float32(math.Exp(float64(v-m)) / sum)
	}
}
