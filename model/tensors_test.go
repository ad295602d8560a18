package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/model/safetensors"
)

func builtinSpecs(t *testing.T) []Spec {
	var out []Spec
	for _, c := range []struct {
		name       string
		c, h, w, k int
	}{
		{"logreg", 1, 8, 8, 10}, {"2nn", 1, 28, 28, 10}, {"mlp:16,8", 1, 1, 13, 3},
		{"cnn", 1, 28, 28, 10}, {"cnn:4,6,5", 3, 9, 7, 4}, {"cnn:3,5", 1, 8, 8, 10},
	} {
		s, err := ParseSpec(c.name, c.c, c.h, c.w, c.k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestTensorNames(t *testing.T) {
	s, _ := ParseSpec("2nn", 1, 28, 28, 10)
	want := "0.weight [200 784], 0.bias [200], 2.weight [200 200], 2.bias [200], 4.weight [10 200], 4.bias [10]"
	if got := describe(s.Tensors()); got != want {
		t.Fatalf("2nn: %s, want %s", got, want)
	}
	c, _ := ParseSpec("cnn", 1, 28, 28, 10)
	want = "0.weight [32 1 5 5], 0.bias [32], 3.weight [64 32 5 5], 3.bias [64], 7.weight [512 3136], 7.bias [512], 9.weight [10 512], 9.bias [10]"
	if got := describe(c.Tensors()); got != want {
		t.Fatalf("cnn: %s, want %s", got, want)
	}
}

func describe(ts []TensorShape) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, t.Name+" "+strings.ReplaceAll(strings.Trim(strings.ReplaceAll(fmtInts(t.Shape), ",", " "), " "), "  ", " "))
	}
	return strings.Join(parts, ", ")
}

func fmtInts(v []int) string {
	s := "["
	for i, x := range v {
		if i > 0 {
			s += " "
		}
		s += itoa(x)
	}
	return s + "]"
}

func itoa(x int) string {
	if x == 0 {
		return "0"
	}
	var b []byte
	for ; x > 0; x /= 10 {
		b = append([]byte{byte('0' + x%10)}, b...)
	}
	return string(b)
}

// TestTensorsRoundTripBitExact: flat → tensors → flat is the identity, bit
// for bit, for every built-in architecture.
func TestTensorsRoundTripBitExact(t *testing.T) {
	for _, s := range builtinSpecs(t) {
		n, _ := New(s)
		n.Init(7)
		p := n.Params()
		for i := range p {
			p[i] += float32(i%97) * 1e-3 // biases non-zero too
		}
		ts, err := ParamsToTensors(s, p)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, tn := range ts {
			total += len(tn.Data)
		}
		if total != len(p) {
			t.Fatalf("%s: tensors hold %d values, model %d", s, total, len(p))
		}
		back, err := TensorsToParams(s, ts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range p {
			if math.Float32bits(back[i]) != math.Float32bits(p[i]) {
				t.Fatalf("%s: element %d (%s): %v, want %v", s, i, n.ParamLocation(i), back[i], p[i])
			}
		}
	}
}

// torchForward is a naive float64 forward pass that reads the tensors the
// way PyTorch's nn.Sequential does: Linear y = x·Wᵀ + b with W [out, in];
// Conv2d on CHW input with W [out, in, kh, kw], padding 2; MaxPool2d(2);
// Flatten in (c, y, x) order.
func torchForward(s Spec, ts []safetensors.Tensor, x []float32) []float64 {
	get := func(name string) safetensors.Tensor {
		for _, t := range ts {
			if t.Name == name {
				return t
			}
		}
		panic(name)
	}
	h := make([]float64, len(x))
	for i, v := range x {
		h[i] = float64(v)
	}
	c, hh, ww := s.InC, s.InH, s.InW
	shapes := s.Tensors()
	for li, l := range s.layerShapes() {
		W, B := get(shapes[2*li].Name), get(shapes[2*li+1].Name)
		if l.conv {
			oc, k, pad := l.out, CNNKernel, CNNKernel/2
			out := make([]float64, oc*hh*ww)
			for o := 0; o < oc; o++ {
				for y := 0; y < hh; y++ {
					for xx := 0; xx < ww; xx++ {
						sum := float64(B.Data[o])
						for ci := 0; ci < c; ci++ {
							for ky := 0; ky < k; ky++ {
								for kx := 0; kx < k; kx++ {
									iy, ix := y+ky-pad, xx+kx-pad
									if iy < 0 || iy >= hh || ix < 0 || ix >= ww {
										continue
									}
									sum += float64(W.Data[((o*c+ci)*k+ky)*k+kx]) * h[(ci*hh+iy)*ww+ix]
								}
							}
						}
						out[(o*hh+y)*ww+xx] = math.Max(0, sum)
					}
				}
			}
			ph, pw := hh/2, ww/2
			pooled := make([]float64, oc*ph*pw)
			for o := 0; o < oc; o++ {
				for y := 0; y < ph; y++ {
					for xx := 0; xx < pw; xx++ {
						m := math.Inf(-1)
						for dy := 0; dy < 2; dy++ {
							for dx := 0; dx < 2; dx++ {
								m = math.Max(m, out[(o*hh+2*y+dy)*ww+2*xx+dx])
							}
						}
						pooled[(o*ph+y)*pw+xx] = m
					}
				}
			}
			h, c, hh, ww = pooled, oc, ph, pw
			continue
		}
		out := make([]float64, l.out)
		for o := 0; o < l.out; o++ {
			sum := float64(B.Data[o])
			for i := 0; i < l.in; i++ {
				sum += float64(W.Data[o*l.in+i]) * h[i]
			}
			if l.relu {
				sum = math.Max(0, sum)
			}
			out[o] = sum
		}
		h = out
	}
	return h
}

// TestTensorsMeanPyTorchLayout: the network's logits equal those of a naive
// forward pass reading the exported tensors in PyTorch's conventions, so the
// names and layouts are not only invertible but right.
func TestTensorsMeanPyTorchLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range builtinSpecs(t) {
		if s.NumParams() > 500_000 {
			continue // the naive pass on the full CNN is slow; cnn:C,…,FC covers its code
		}
		n, _ := New(s)
		n.Init(5)
		for i, p := range n.Params() {
			n.Params()[i] = p + float32(rng.NormFloat64()*0.01)
		}
		ts, err := ParamsToTensors(s, n.Params())
		if err != nil {
			t.Fatal(err)
		}
		for ex := 0; ex < 3; ex++ {
			x := make([]float32, s.InputDim())
			for i := range x {
				x[i] = float32(rng.Float64())
			}
			got := n.forward(x, 1)
			want := torchForward(s, ts, x)
			for j := range want {
				if d := math.Abs(float64(got[j]) - want[j]); d > 1e-4*(1+math.Abs(want[j])) {
					t.Fatalf("%s example %d logit %d: network %v, PyTorch layout %v", s, ex, j, got[j], want[j])
				}
			}
		}
	}
}

func TestTensorsToParamsRefusesMismatch(t *testing.T) {
	s, _ := ParseSpec("2nn", 1, 28, 28, 10)
	n, _ := New(s)
	ts, _ := ParamsToTensors(s, n.Params())
	bad := append([]safetensors.Tensor(nil), ts...)
	bad[2] = safetensors.Tensor{Name: "2.weight", Shape: []int{100, 200}, Data: make([]float32, 20000)}
	_, err := TensorsToParams(s, bad)
	if err == nil || !strings.Contains(err.Error(), `"2.weight"`) || !strings.Contains(err.Error(), "[100 200]") || !strings.Contains(err.Error(), "[200 200]") {
		t.Fatalf("shape mismatch: error %v, want the tensor and both shapes", err)
	}
	_, err = TensorsToParams(s, ts[:5])
	if err == nil || !strings.Contains(err.Error(), `"4.bias"`) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing tensor: error %v", err)
	}
	extra := append(append([]safetensors.Tensor(nil), ts...), safetensors.Tensor{Name: "6.weight", Shape: []int{1}, Data: []float32{1}})
	if _, err = TensorsToParams(s, extra); err == nil || !strings.Contains(err.Error(), `"6.weight"`) {
		t.Fatalf("extra tensor: error %v", err)
	}
	nan := append([]safetensors.Tensor(nil), ts...)
	nan[1] = safetensors.Tensor{Name: "0.bias", Shape: []int{200}, Data: make([]float32, 200)}
	nan[1].Data[3] = float32(math.NaN())
	if _, err = TensorsToParams(s, nan); err == nil || !strings.Contains(err.Error(), `"0.bias" element 3`) {
		t.Fatalf("NaN: error %v", err)
	}
}
