package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// closeTo reports whether got is within atol + rtol·max(|got|,|want|) of want.
func closeTo(got, want, atol, rtol float64) bool {
	return math.Abs(got-want) <= atol+rtol*math.Max(math.Abs(got), math.Abs(want))
}

// TestNetworkGradientsMatchReference checks, for every kind of network,
// that the forward loss equals the naive float64 reference and that the
// backpropagated gradient equals central finite differences of the
// reference loss (the gradient-check approach of gonum's
// optimize/functions/validate.go).
func TestNetworkGradientsMatchReference(t *testing.T) {
	cases := []struct {
		arch          string
		inC, inH, inW int
		classes       int
		batch         int
	}{
		{"logreg", 1, 1, 7, 3, 5},
		{"mlp:5,4", 1, 1, 6, 3, 4},
		{"mlp:3", 2, 2, 2, 4, 3},
		{"cnn:2,3,4", 1, 6, 6, 3, 2},   // 6x6 -> 3x3 -> 1x1
		{"cnn:3,2,5", 2, 5, 4, 3, 2},   // CHW multi-channel input, non-square, odd (floor) pooling
		{"cnn:2,2,2,3", 1, 8, 8, 2, 2}, // three conv stages
	}
	for ci, tc := range cases {
		t.Run(tc.arch, func(t *testing.T) {
			spec, err := ParseSpec(tc.arch, tc.inC, tc.inH, tc.inW, tc.classes)
			if err != nil {
				t.Fatal(err)
			}
			n, err := New(spec)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(ci), 1))
			n.Init(int64(ci))
			// Non-zero biases too, so every parameter's gradient is exercised.
			p := n.Params()
			for i := range p {
				p[i] += float32(rng.NormFloat64() * 0.05)
			}
			x := randNormal32(rng, tc.batch*spec.InputDim(), 1)
			y := randLabels(rng, tc.batch, tc.classes)

			loss, err := n.LossGradChecked(x, y, tc.batch)
			if err != nil {
				t.Fatal(err)
			}
			p64, x64 := to64(p), to64(x)
			ref := refLoss(spec, p64, x64, y, tc.batch)
			if !closeTo(float64(loss), ref, 1e-5, 1e-5) {
				t.Fatalf("loss %v, reference %v", loss, ref)
			}

			g := n.Grads()
			// Check every parameter of small nets, a seeded sample of big ones.
			check := make([]int, 0, len(p))
			for i := range p {
				check = append(check, i)
			}
			if len(check) > 400 {
				rng.Shuffle(len(check), func(i, j int) { check[i], check[j] = check[j], check[i] })
				check = check[:400]
			}
			const eps = 1e-6
			bad := 0
			nonzero := 0
			for _, i := range check {
				orig := p64[i]
				p64[i] = orig + eps
				lp := refLoss(spec, p64, x64, y, tc.batch)
				p64[i] = orig - eps
				lm := refLoss(spec, p64, x64, y, tc.batch)
				p64[i] = orig
				fd := (lp - lm) / (2 * eps)
				if fd != 0 {
					nonzero++
				}
				if !closeTo(float64(g[i]), fd, 2e-6, 2e-4) {
					bad++
					if bad <= 5 {
						t.Errorf("param %d (%s): backprop %v, finite difference %v", i, n.ParamLocation(i), g[i], fd)
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%d of %d gradient entries differ", bad, len(check))
			}
			if nonzero < len(check)/4 {
				t.Fatalf("only %d of %d finite differences are non-zero; the check is too weak", nonzero, len(check))
			}
		})
	}
}

// objective returns Σ r_i·out_i in float64, the scalar whose gradient with
// respect to out is r.
func objective(out []float32, r []float32) float64 {
	var s float64
	for i := range out {
		s += float64(out[i]) * float64(r[i])
	}
	return s
}

// TestConvLayer checks one convolution layer alone (no ReLU, so it is linear
// in its input and weights and central differences are exact up to
// rounding): forward against the naive convolution, and dX, dW, db against
// finite differences, for CHW and HWC input layouts.
func TestConvLayer(t *testing.T) {
	for _, chw := range []bool{true, false} {
		name := "hwc"
		if chw {
			name = "chw"
		}
		t.Run(name, func(t *testing.T) {
			const inC, h, w, outC, k, batch = 3, 5, 6, 4, 5, 2
			rng := rand.New(rand.NewPCG(7, 7))
			c := newConv(inC, h, w, outC, k, false, chw)
			params := randNormal32(rng, c.numParams(), 0.3)
			grads := make([]float32, c.numParams())
			c.bind(params, grads)
			c.reserve(batch)
			x := randNormal32(rng, batch*c.inDim(), 1)

			out := c.forward(x, batch)
			// Forward against the reference (reference is CHW in, CHW out;
			// the layer emits HWC).
			for b := 0; b < batch; b++ {
				xb := x[b*c.inDim() : (b+1)*c.inDim()]
				in := act3{c: inC, h: h, w: w, v: make([]float64, inC*h*w)}
				for ci := 0; ci < inC; ci++ {
					for yy := 0; yy < h; yy++ {
						for xx := 0; xx < w; xx++ {
							var v float32
							if chw {
								v = xb[(ci*h+yy)*w+xx]
							} else {
								v = xb[(yy*w+xx)*inC+ci]
							}
							in.v[(ci*h+yy)*w+xx] = float64(v)
						}
					}
				}
				want := refConv(in, to64(params), outC, k, false).flattenHWC()
				got := out[b*c.outDim() : (b+1)*c.outDim()]
				for i := range want {
					if !closeTo(float64(got[i]), want[i], 1e-5, 1e-5) {
						t.Fatalf("example %d output %d: got %v, want %v", b, i, got[i], want[i])
					}
				}
			}

			r := randNormal32(rng, len(out), 1)
			dy := append([]float32(nil), r...)
			dx := append([]float32(nil), c.backward(dy, batch, true)...)
			gw := append([]float32(nil), grads...)

			f := func() float64 { return objective(c.forward(x, batch), r) }
			const eps = 0.25
			fdCheck(t, "dX", x, dx, f, eps)
			fdCheck(t, "dW/db", params, gw, f, eps)
		})
	}
}

// fdCheck compares grad with central differences of f over every element
// of v (perturbed in place and restored).
func fdCheck(t *testing.T, what string, v, grad []float32, f func() float64, eps float32) {
	t.Helper()
	bad := 0
	for i := range v {
		orig := v[i]
		v[i] = orig + eps
		fp := f()
		v[i] = orig - eps
		fm := f()
		v[i] = orig
		fd := (fp - fm) / float64(2*eps)
		if !closeTo(float64(grad[i]), fd, 1e-5, 1e-4) {
			bad++
			if bad <= 5 {
				t.Errorf("%s[%d]: backprop %v, finite difference %v", what, i, grad[i], fd)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d entries differ", what, bad, len(v))
	}
}

// TestMaxPoolLayer checks 2x2 max pooling on an odd-sized HWC input against
// the naive pool, and its input gradient against finite differences. Input
// values are distinct and at least 0.01 apart so a perturbation of 1e-3
// never changes which element wins.
func TestMaxPoolLayer(t *testing.T) {
	for _, relu := range []bool{false, true} {
		t.Run(fmt.Sprintf("relu=%v", relu), func(t *testing.T) { testMaxPool(t, relu) })
	}
}

// testMaxPool: with relu the pool must equal max(0, pool), and values are
// offset by half a step so that none sits on the ReLU's kink at 0.
func testMaxPool(t *testing.T, relu bool) {
	const c, h, w, batch = 3, 5, 7, 2
	rng := rand.New(rand.NewPCG(3, 3))
	p := newMaxPool(c, h, w)
	p.relu = relu
	p.reserve(batch)
	x := make([]float32, batch*p.inDim())
	for i, j := range rng.Perm(len(x)) {
		x[i] = float32(j)*0.01 - 0.995
	}
	out := p.forward(x, batch)
	for b := 0; b < batch; b++ {
		in := act3{c: c, h: h, w: w, v: make([]float64, c*h*w)}
		xb := x[b*p.inDim():]
		for ci := 0; ci < c; ci++ {
			for yy := 0; yy < h; yy++ {
				for xx := 0; xx < w; xx++ {
					in.v[(ci*h+yy)*w+xx] = float64(xb[(yy*w+xx)*c+ci])
				}
			}
		}
		want := refPool(in).flattenHWC()
		got := out[b*p.outDim() : (b+1)*p.outDim()]
		for i := range want {
			if relu {
				want[i] = math.Max(0, want[i])
			}
			if float64(got[i]) != want[i] {
				t.Fatalf("example %d output %d: got %v, want %v", b, i, got[i], want[i])
			}
		}
	}
	r := randNormal32(rng, len(out), 1)
	dx := append([]float32(nil), p.backward(append([]float32(nil), r...), batch, true)...)
	fdCheck(t, "dX", x, dx, func() float64 { return objective(p.forward(x, batch), r) }, 1e-3)
}

// TestSoftmaxCrossEntropyStable feeds logits far beyond exp's float range
// and checks the loss and gradient stay finite and correct.
func TestSoftmaxCrossEntropyStable(t *testing.T) {
	logits := []float32{1000, 0, -1000, 500, 500, 500}
	y := []int32{1, 2}
	d := make([]float32, 6)
	loss := softmaxCrossEntropy(logits, y, 2, 3, d)
	// Example 0: -log softmax = 1000 (up to e^-1000); example 1: log 3.
	want := (1000 + math.Log(3)) / 2
	if !closeTo(loss, want, 1e-9, 1e-12) {
		t.Fatalf("loss %v, want %v", loss, want)
	}
	wantD := []float64{0.5, -0.5, 0, 1.0 / 6, 1.0 / 6, 1.0/6 - 0.5}
	for i := range d {
		if !closeTo(float64(d[i]), wantD[i], 1e-7, 1e-6) {
			t.Fatalf("d[%d]=%v, want %v", i, d[i], wantD[i])
		}
	}
}
