package model

import (
	"fmt"
	"strconv"
	"strings"
)

// Kinds of architecture understood by Spec.
const (
	KindLogReg = "logreg" // softmax (multinomial logistic) regression
	KindMLP    = "mlp"    // fully connected ReLU network
	KindCNN    = "cnn"    // conv/pool stack + one ReLU dense layer (McMahan et al. 2017)
)

// Defaults of the FedAvg paper's CNN (McMahan et al. 2017, Section 3: "two 5x5
// convolution layers (the first with 32 channels, the second with 64, each
// followed with 2x2 max pooling), a fully connected layer with 512 units and
// ReLu activation, and a final softmax output layer").
var defaultCNNChannels = []int{32, 64}

// DefaultCNNFC is the width of the CNN's fully connected hidden layer.
const DefaultCNNFC = 512

// CNNKernel is the side of the square convolution kernels of the CNN. The
// convolutions use "same" zero padding of CNNKernel/2 and stride 1.
const CNNKernel = 5

// Spec describes an architecture. Kind is "logreg", "mlp" (Hidden set) or
// "cnn". The 2nn of the FedAvg paper is mlp with Hidden {200, 200}.
//
// The input of every network is a row of InC*InH*InW float32 values in
// channel-major (CHW) order; flat data uses InC=1, InH=1, InW=dim.
type Spec struct {
	// Kind is one of KindLogReg, KindMLP, KindCNN.
	Kind string
	// Hidden lists the widths of the hidden ReLU layers of an mlp.
	Hidden []int
	// Channels lists the output channels of the cnn's convolution layers
	// (each is 5x5 "same" convolution + ReLU + 2x2 max-pool). Nil means
	// the paper's {32, 64}.
	Channels []int
	// FC is the width of the cnn's fully connected ReLU layer; 0 means
	// DefaultCNNFC.
	FC int
	// InC, InH, InW give the input shape (channels, height, width).
	InC, InH, InW int
	// Classes is the number of output classes (at least 2).
	Classes int
	// Layout is an external model's named tensors (KindTensors only); the
	// input shape and classes are then not Sovereign's to know.
	Layout []TensorShape
}

// ParseSpec reads an architecture name for inputs of shape inC×inH×inW and
// the given number of classes. Accepted forms:
//
//	logreg             softmax regression
//	2nn                mlp:200,200 (McMahan et al. 2017)
//	mlp:H1,H2,...      ReLU MLP with the given hidden widths
//	cnn                the FedAvg CNN (conv 32, conv 64, FC 512)
//	cnn:C1,...,Ck,FC   the same structure with k conv layers of the given
//	                   channels and a FC hidden layer of width FC
func ParseSpec(s string, inC, inH, inW, classes int) (Spec, error) {
	const forms = `logreg | 2nn | cnn | mlp:H1,H2,... | cnn:C1,...,Ck,FC`
	spec := Spec{InC: inC, InH: inH, InW: inW, Classes: classes}
	name, args, hasArgs := strings.Cut(strings.TrimSpace(s), ":")
	if name == KindTensors && hasArgs {
		return parseTensorsSpec(s, args)
	}
	switch {
	case name == KindLogReg && !hasArgs:
		spec.Kind = KindLogReg
	case name == "2nn" && !hasArgs:
		spec.Kind = KindMLP
		spec.Hidden = []int{200, 200}
	case name == KindMLP && hasArgs:
		h, err := parseInts(args)
		if err != nil {
			return Spec{}, fmt.Errorf("model: spec %q: hidden sizes: %v (allowed forms: %s)", s, err, forms)
		}
		spec.Kind = KindMLP
		spec.Hidden = h
	case name == KindCNN && !hasArgs:
		spec.Kind = KindCNN
	case name == KindCNN && hasArgs:
		v, err := parseInts(args)
		if err != nil {
			return Spec{}, fmt.Errorf("model: spec %q: cnn sizes: %v (allowed forms: %s)", s, err, forms)
		}
		if len(v) < 2 {
			return Spec{}, fmt.Errorf("model: spec %q: cnn needs at least one conv channel count and the FC width (allowed forms: %s)", s, forms)
		}
		spec.Kind = KindCNN
		spec.Channels = v[:len(v)-1]
		spec.FC = v[len(v)-1]
	default:
		return Spec{}, fmt.Errorf("model: unknown architecture %q (allowed forms: %s)", s, forms)
	}
	if err := spec.Validate(); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

func parseInts(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty list")
	}
	parts := strings.Split(s, ",")
	out := make([]int, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("element %d %q is not an integer", i, p)
		}
		if v < 1 {
			return nil, fmt.Errorf("element %d is %d, must be >= 1", i, v)
		}
		out[i] = v
	}
	return out, nil
}

func joinInts(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}

// String returns the architecture name in the form ParseSpec accepts
// ("logreg", "2nn", "mlp:64,32", "cnn", "cnn:4,8,16"). The input shape and
// class count are not part of it.
func (s Spec) String() string {
	switch s.Kind {
	case KindLogReg:
		return KindLogReg
	case KindMLP:
		if len(s.Hidden) == 2 && s.Hidden[0] == 200 && s.Hidden[1] == 200 {
			return "2nn"
		}
		return KindMLP + ":" + joinInts(s.Hidden)
	case KindCNN:
		ch, fc := s.cnnShape()
		if equalInts(ch, defaultCNNChannels) && fc == DefaultCNNFC {
			return KindCNN
		}
		return KindCNN + ":" + joinInts(append(append([]int(nil), ch...), fc))
	case KindTensors:
		return s.tensorsString()
	}
	return fmt.Sprintf("invalid(%q)", s.Kind)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// cnnShape returns the conv channels and FC width with defaults applied.
func (s Spec) cnnShape() ([]int, int) {
	ch, fc := s.Channels, s.FC
	if ch == nil {
		ch = defaultCNNChannels
	}
	if fc == 0 {
		fc = DefaultCNNFC
	}
	return ch, fc
}

// InputDim is the number of features of one example: InC*InH*InW.
func (s Spec) InputDim() int { return s.InC * s.InH * s.InW }

// Validate reports whether the spec describes a network New can build; the
// error names the offending field and its value.
func (s Spec) Validate() error {
	const maxDim = 1 << 26
	if s.Kind == KindTensors {
		return s.validateTensors()
	}
	if s.InC < 1 || s.InH < 1 || s.InW < 1 {
		return fmt.Errorf("model: spec %s: input shape InC=%d InH=%d InW=%d: every dimension must be >= 1", s.Kind, s.InC, s.InH, s.InW)
	}
	if s.InC > maxDim || s.InH > maxDim || s.InW > maxDim || s.InputDim() > maxDim {
		return fmt.Errorf("model: spec %s: input shape %dx%dx%d exceeds %d features", s.Kind, s.InC, s.InH, s.InW, maxDim)
	}
	if s.Classes < 2 || s.Classes > maxDim {
		return fmt.Errorf("model: spec %s: Classes=%d, must be in [2, %d]", s.Kind, s.Classes, maxDim)
	}
	switch s.Kind {
	case KindLogReg:
		if len(s.Hidden) != 0 || s.Channels != nil || s.FC != 0 {
			return fmt.Errorf("model: spec logreg: Hidden, Channels and FC must be empty")
		}
	case KindMLP:
		if len(s.Hidden) == 0 {
			return fmt.Errorf("model: spec mlp: Hidden is empty; use logreg for no hidden layer")
		}
		for i, h := range s.Hidden {
			if h < 1 || h > maxDim {
				return fmt.Errorf("model: spec mlp: Hidden[%d]=%d, must be in [1, %d]", i, h, maxDim)
			}
		}
		if s.Channels != nil || s.FC != 0 {
			return fmt.Errorf("model: spec mlp: Channels and FC must be empty")
		}
	case KindCNN:
		if len(s.Hidden) != 0 {
			return fmt.Errorf("model: spec cnn: Hidden must be empty (use Channels and FC)")
		}
		if s.Channels != nil && len(s.Channels) == 0 {
			return fmt.Errorf("model: spec cnn: Channels is empty")
		}
		if s.FC < 0 || s.FC > maxDim {
			return fmt.Errorf("model: spec cnn: FC=%d, must be in [1, %d] (0 for the default %d)", s.FC, maxDim, DefaultCNNFC)
		}
		ch, _ := s.cnnShape()
		h, w := s.InH, s.InW
		for i, c := range ch {
			if c < 1 || c > 1<<16 {
				return fmt.Errorf("model: spec cnn: Channels[%d]=%d, must be in [1, 65536]", i, c)
			}
			if h < 2 || w < 2 {
				return fmt.Errorf("model: spec cnn: input %dx%d is too small for %d conv+2x2-pool stages (stage %d sees %dx%d)", s.InH, s.InW, len(ch), i, h, w)
			}
			h, w = h/2, w/2
		}
	default:
		return fmt.Errorf("model: spec: unknown Kind %q (allowed: %s, %s, %s)", s.Kind, KindLogReg, KindMLP, KindCNN)
	}
	total := 0
	for i, l := range s.layerShapes() {
		total += l.numParams()
		if total > MaxParams {
			return fmt.Errorf("model: spec %s: more than MaxParams=%d parameters (reached at layer %d)", s, MaxParams, i)
		}
	}
	return nil
}

// MaxParams is the largest parameter vector a Spec may describe (2^30
// float32 values, 4 GiB).
const MaxParams = 1 << 30

// NumParams returns the length of the flat parameter vector of a network
// built from s, or 0 if s is invalid.
func (s Spec) NumParams() int {
	if s.Validate() != nil {
		return 0
	}
	if s.Kind == KindTensors {
		return s.tensorsNumParams()
	}
	total := 0
	for _, l := range s.layerShapes() {
		total += l.numParams()
	}
	return total
}

// layerShape describes one parameterised layer before buffers are allocated.
type layerShape struct {
	conv bool
	// dense: in -> out. conv: inC×h×w -> out channels, same spatial size,
	// followed by ReLU and a 2x2 max-pool.
	in, out  int
	inC      int
	h, w     int
	relu     bool
	inputCHW bool // conv only: input laid out CHW (network input) instead of HWC
}

func (l layerShape) numParams() int {
	if l.conv {
		return l.out*CNNKernel*CNNKernel*l.inC + l.out
	}
	return l.in*l.out + l.out
}

// layerShapes lists the parameterised layers of a valid spec in order.
func (s Spec) layerShapes() []layerShape {
	var ls []layerShape
	switch s.Kind {
	case KindLogReg:
		ls = append(ls, layerShape{in: s.InputDim(), out: s.Classes})
	case KindMLP:
		in := s.InputDim()
		for _, h := range s.Hidden {
			ls = append(ls, layerShape{in: in, out: h, relu: true})
			in = h
		}
		ls = append(ls, layerShape{in: in, out: s.Classes})
	case KindCNN:
		ch, fc := s.cnnShape()
		c, h, w := s.InC, s.InH, s.InW
		for i, oc := range ch {
			ls = append(ls, layerShape{conv: true, inC: c, h: h, w: w, out: oc, relu: true, inputCHW: i == 0})
			c, h, w = oc, h/2, w/2
		}
		ls = append(ls, layerShape{in: c * h * w, out: fc, relu: true})
		ls = append(ls, layerShape{in: fc, out: s.Classes})
	}
	return ls
}
