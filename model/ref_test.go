package model

import (
	"math"
	"math/rand/v2"
)

// This file holds a deliberately naive float64 implementation of the
// networks, written from the definitions with scalar loops, against which
// the GEMM/im2col implementation is checked (forward values and, by central
// finite differences, gradients).

// act3 is a C×H×W activation, stored channel-major.
type act3 struct {
	c, h, w int
	v       []float64
}

func (a act3) at(c, y, x int) float64 {
	if y < 0 || y >= a.h || x < 0 || x >= a.w {
		return 0 // zero padding
	}
	return a.v[(c*a.h+y)*a.w+x]
}

// flattenHWC flattens in the order the network's dense layer sees conv
// outputs: ((y·W)+x)·C + c.
func (a act3) flattenHWC() []float64 {
	out := make([]float64, 0, len(a.v))
	for y := 0; y < a.h; y++ {
		for x := 0; x < a.w; x++ {
			for c := 0; c < a.c; c++ {
				out = append(out, a.at(c, y, x))
			}
		}
	}
	return out
}

func refDense(in []float64, w []float64, nin, nout int, relu bool) []float64 {
	out := make([]float64, nout)
	for j := 0; j < nout; j++ {
		s := w[nin*nout+j]
		for i := 0; i < nin; i++ {
			s += in[i] * w[i*nout+j]
		}
		if relu && s < 0 {
			s = 0
		}
		out[j] = s
	}
	return out
}

// refConv is a k×k "same" convolution (stride 1, zero padding k/2), weight
// index oc·(k·k·inC) + (ky·k+kx)·inC + c, biases after the weights.
func refConv(in act3, w []float64, outC, k int, relu bool) act3 {
	pad := k / 2
	kkc := k * k * in.c
	out := act3{c: outC, h: in.h, w: in.w, v: make([]float64, outC*in.h*in.w)}
	for oc := 0; oc < outC; oc++ {
		for y := 0; y < in.h; y++ {
			for x := 0; x < in.w; x++ {
				s := w[outC*kkc+oc]
				for ky := 0; ky < k; ky++ {
					for kx := 0; kx < k; kx++ {
						for c := 0; c < in.c; c++ {
							s += w[oc*kkc+(ky*k+kx)*in.c+c] * in.at(c, y+ky-pad, x+kx-pad)
						}
					}
				}
				if relu && s < 0 {
					s = 0
				}
				out.v[(oc*in.h+y)*in.w+x] = s
			}
		}
	}
	return out
}

func refPool(in act3) act3 {
	out := act3{c: in.c, h: in.h / 2, w: in.w / 2}
	out.v = make([]float64, out.c*out.h*out.w)
	for c := 0; c < in.c; c++ {
		for y := 0; y < out.h; y++ {
			for x := 0; x < out.w; x++ {
				m := math.Inf(-1)
				for dy := 0; dy < 2; dy++ {
					for dx := 0; dx < 2; dx++ {
						m = math.Max(m, in.at(c, 2*y+dy, 2*x+dx))
					}
				}
				out.v[(c*out.h+y)*out.w+x] = m
			}
		}
	}
	return out
}

// refLogits computes the logits of one example x (CHW) under spec with
// parameters p.
func refLogits(spec Spec, p []float64, x []float64) []float64 {
	off := 0
	take := func(n int) []float64 { s := p[off : off+n]; off += n; return s }
	var flat []float64
	a := act3{c: spec.InC, h: spec.InH, w: spec.InW, v: x}
	isFlat := spec.Kind != KindCNN
	if isFlat {
		flat = x
	}
	for _, l := range spec.layerShapes() {
		if l.conv {
			a = refPool(refConv(a, take(l.numParams()), l.out, CNNKernel, l.relu))
			continue
		}
		if !isFlat {
			flat, isFlat = a.flattenHWC(), true
		}
		flat = refDense(flat, take(l.numParams()), l.in, l.out, l.relu)
	}
	return flat
}

// refLoss is the mean softmax cross-entropy over the batch, computed
// directly as -log(exp(z_y)/Σexp(z_j)) with a max shift.
func refLoss(spec Spec, p []float64, x []float64, y []int32, batch int) float64 {
	dim := spec.InputDim()
	var total float64
	for r := 0; r < batch; r++ {
		z := refLogits(spec, p, x[r*dim:(r+1)*dim])
		m := z[0]
		for _, v := range z {
			m = math.Max(m, v)
		}
		var s float64
		for _, v := range z {
			s += math.Exp(v - m)
		}
		total += -(z[y[r]] - m - math.Log(s))
	}
	return total / float64(batch)
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func randNormal32(rng *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64() * scale)
	}
	return out
}

func randLabels(rng *rand.Rand, n, classes int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(rng.IntN(classes))
	}
	return out
}
