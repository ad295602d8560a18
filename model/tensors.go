package model

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// TensorShape is one named tensor of a network in PyTorch's layout.
type TensorShape struct {
	Name  string
	Shape []int
}

// Tensors lists the named tensors of s in the layout of PyTorch's
// torch.nn.Sequential, so that load_state_dict(strict=True) accepts them
// as they are (docs/model-export.md):
//
//	logreg:  Linear(d, k)                       0.weight [k, d], 0.bias [k]
//	mlp:     Linear, ReLU, Linear, ReLU, ...    0.*, 2.*, 4.*, ... weight [out, in]
//	cnn:     (Conv2d(c, o, 5, padding=2), ReLU, MaxPool2d(2)) per conv layer,
//	         Flatten, Linear, ReLU, Linear      conv weight [out, in, 5, 5]
//
// MLP and logreg inputs are the flattened rows (x.flatten(1) in PyTorch).
// It returns nil if s is invalid.
func (s Spec) Tensors() []TensorShape {
	if s.Validate() != nil {
		return nil
	}
	if s.Kind == KindTensors {
		return cloneLayout(s.Layout)
	}
	var out []TensorShape
	idx := 0
	add := func(l layerShape) {
		name := strconv.Itoa(idx)
		if l.conv {
			out = append(out, TensorShape{name + ".weight", []int{l.out, l.inC, CNNKernel, CNNKernel}}, TensorShape{name + ".bias", []int{l.out}})
			idx += 3 // Conv2d, ReLU, MaxPool2d
			return
		}
		out = append(out, TensorShape{name + ".weight", []int{l.out, l.in}}, TensorShape{name + ".bias", []int{l.out}})
		idx += 2 // Linear, ReLU (the last Linear has none; nothing follows it)
	}
	ls := s.layerShapes()
	for i, l := range ls {
		if i > 0 && ls[i-1].conv && !l.conv {
			idx++ // Flatten
		}
		add(l)
	}
	return out
}

// cnnFlatShape returns the C, H, W of the activation the CNN's first dense
// layer reads (after the last pool), for the HWC↔CHW permutation.
func (s Spec) cnnFlatShape() (c, h, w int) {
	ch, _ := s.cnnShape()
	c, h, w = s.InC, s.InH, s.InW
	for _, oc := range ch {
		c, h, w = oc, h/2, w/2
	}
	return c, h, w
}

// ParamsToTensors maps a flat parameter vector of s to its named tensors
// (see Spec.Tensors), transposing dense weights from in×out to [out, in],
// convolution weights from out×(ky, kx, c) to [out, c, ky, kx], and
// reordering the inputs of the CNN's first dense layer from the network's
// (y, x, c) to PyTorch's flatten order (c, y, x). The data is copied.
func ParamsToTensors(s Spec, params []float32) ([]safetensors.Tensor, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(params) != s.NumParams() {
		return nil, fmt.Errorf("model: %s has %d parameters, got %d", s, s.NumParams(), len(params))
	}
	shapes := s.Tensors()
	var out []safetensors.Tensor
	off := 0
	if s.Kind == KindTensors {
		for _, sh := range shapes {
			n := 1
			for _, d := range sh.Shape {
				n *= d
			}
			out = append(out, safetensors.Tensor{Name: sh.Name, Shape: append([]int(nil), sh.Shape...), Data: append([]float32(nil), params[off:off+n]...)})
			off += n
		}
		return out, nil
	}
	ls := s.layerShapes()
	for i, l := range ls {
		wshape, bshape := shapes[2*i], shapes[2*i+1]
		nw := l.numParams() - l.out
		src := params[off : off+nw]
		w := make([]float32, nw)
		switch {
		case l.conv:
			k, inC := CNNKernel, l.inC
			for o := 0; o < l.out; o++ {
				for ky := 0; ky < k; ky++ {
					for kx := 0; kx < k; kx++ {
						for c := 0; c < inC; c++ {
							w[((o*inC+c)*k+ky)*k+kx] = src[o*k*k*inC+(ky*k+kx)*inC+c]
						}
					}
				}
			}
		default:
			perm := denseInputPerm(s, ls, i)
			for in := 0; in < l.in; in++ {
				pt := in
				if perm != nil {
					pt = perm[in]
				}
				for o := 0; o < l.out; o++ {
					w[o*l.in+pt] = src[in*l.out+o]
				}
			}
		}
		b := append([]float32(nil), params[off+nw:off+nw+l.out]...)
		out = append(out, safetensors.Tensor{Name: wshape.Name, Shape: wshape.Shape, Data: w},
			safetensors.Tensor{Name: bshape.Name, Shape: bshape.Shape, Data: b})
		off += l.numParams()
	}
	return out, nil
}

// denseInputPerm returns, for the dense layer i that directly follows a
// convolution, the map from the network's input index (y, x, c) to
// PyTorch's flatten index (c, y, x); nil when no reordering is needed.
func denseInputPerm(s Spec, ls []layerShape, i int) []int {
	if i == 0 || !ls[i-1].conv {
		return nil
	}
	c, h, w := s.cnnFlatShape()
	perm := make([]int, c*h*w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for ch := 0; ch < c; ch++ {
				perm[(y*w+x)*c+ch] = (ch*h+y)*w + x
			}
		}
	}
	return perm
}

// TensorsToParams is the inverse of ParamsToTensors: it builds the flat
// parameter vector of s from named tensors. Every tensor of s.Tensors()
// must be present with its exact shape, no other tensor may be, and every
// value must be finite; errors name the tensor and both shapes.
func TensorsToParams(s Spec, ts []safetensors.Tensor) ([]float32, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	byName := make(map[string]safetensors.Tensor, len(ts))
	for _, t := range ts {
		if _, dup := byName[t.Name]; dup {
			return nil, fmt.Errorf("model %s: tensor %q appears twice", s, t.Name)
		}
		byName[t.Name] = t
	}
	shapes := s.Tensors()
	for _, sh := range shapes {
		t, ok := byName[sh.Name]
		if !ok {
			return nil, fmt.Errorf("model %s: tensor %q %v is missing", s, sh.Name, sh.Shape)
		}
		if !equalInts(t.Shape, sh.Shape) {
			return nil, fmt.Errorf("model %s: tensor %q has shape %v, the model needs %v", s, sh.Name, t.Shape, sh.Shape)
		}
		if len(t.Data) != t.Elements() {
			return nil, fmt.Errorf("model %s: tensor %q: shape %v but %d values", s, sh.Name, t.Shape, len(t.Data))
		}
		for j, v := range t.Data {
			if v != v || v > maxFloat32 || v < -maxFloat32 {
				return nil, fmt.Errorf("model %s: tensor %q element %d is %v", s, sh.Name, j, v)
			}
		}
		delete(byName, sh.Name)
	}
	for name, t := range byName {
		names := make([]string, len(shapes))
		for i, sh := range shapes {
			names[i] = sh.Name
		}
		return nil, fmt.Errorf("model %s: tensor %q %v is not part of the model (its tensors: %s)", s, name, t.Shape, strings.Join(names, ", "))
	}
	params := make([]float32, s.NumParams())
	if s.Kind == KindTensors {
		// An external model: the tensors in layout order, row-major.
		off := 0
		for _, sh := range shapes {
			off += copy(params[off:], byName2(ts, sh.Name).Data)
		}
		return params, nil
	}
	off := 0
	ls := s.layerShapes()
	for i, l := range ls {
		w := byName2(ts, shapes[2*i].Name).Data
		b := byName2(ts, shapes[2*i+1].Name).Data
		nw := l.numParams() - l.out
		dst := params[off : off+nw]
		switch {
		case l.conv:
			k, inC := CNNKernel, l.inC
			for o := 0; o < l.out; o++ {
				for ky := 0; ky < k; ky++ {
					for kx := 0; kx < k; kx++ {
						for c := 0; c < inC; c++ {
							dst[o*k*k*inC+(ky*k+kx)*inC+c] = w[((o*inC+c)*k+ky)*k+kx]
						}
					}
				}
			}
		default:
			perm := denseInputPerm(s, ls, i)
			for in := 0; in < l.in; in++ {
				pt := in
				if perm != nil {
					pt = perm[in]
				}
				for o := 0; o < l.out; o++ {
					dst[in*l.out+o] = w[o*l.in+pt]
				}
			}
		}
		copy(params[off+nw:off+nw+l.out], b)
		off += l.numParams()
	}
	return params, nil
}

const maxFloat32 = 3.40282346638528859811704183484516925440e+38

func byName2(ts []safetensors.Tensor, name string) safetensors.Tensor {
	for _, t := range ts {
		if t.Name == name {
			return t
		}
	}
	return safetensors.Tensor{}
}
