package trainer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sovereign-fl/sovereign/model"
)

// SpecFor returns the built-in architecture spec (model.ParseSpec syntax,
// e.g. "cnn" or "mlp:64") whose tensor layout (model.Spec.Tensors, PyTorch's
// nn.Sequential names and shapes) is the trainer's hello layout. The
// input shape and the number of classes are read from the tensors
// themselves (a trainer holds the data, the worker does not): the first
// weight's input size (convolutions: its input channels, and the square
// image side from the first dense layer after them) and the last bias's
// size. An error names the first tensor that differs and both shapes.
//
// This is how a federation names an external model: by a spec whose layout
// the trainer reproduces, so the coordinator, the ledger, built-in workers
// and the trainer's workers agree on the flat parameter vector
// (model.ParamsToTensors / TensorsToParams).
func SpecFor(spec string, tensors []TensorInfo) (model.Spec, error) {
	if strings.HasPrefix(spec, model.KindTensors+":") {
		// An external model: the layout is the announced one, exactly.
		sp, err := model.ParseSpec(spec, 0, 0, 0, 0)
		if err != nil {
			return model.Spec{}, err
		}
		if err := CheckLayout(sp, tensors); err != nil {
			return model.Spec{}, err
		}
		return sp, nil
	}
	fail := func(format string, a ...any) (model.Spec, error) {
		return model.Spec{}, fmt.Errorf("model %q: the trainer's tensors do not fit: "+format, append([]any{spec}, a...)...)
	}
	if len(tensors) < 2 {
		return fail("%d tensors; a %q model has at least a weight and a bias", len(tensors), spec)
	}
	first, last := tensors[0].Shape, tensors[len(tensors)-1].Shape
	if len(last) != 1 {
		return fail("the last tensor %q has shape %v; a built-in model ends with a bias of one dimension", tensors[len(tensors)-1].Name, last)
	}
	classes := last[0]
	c, h, w := 1, 1, 0
	switch len(first) {
	case 2:
		w = first[1]
	case 4:
		c = first[1]
		convs := 0
		lastCh := 0
		for _, t := range tensors {
			if len(t.Shape) == 4 {
				convs++
				lastCh = t.Shape[0]
				continue
			}
			if len(t.Shape) == 2 {
				if lastCh == 0 || t.Shape[1]%lastCh != 0 {
					return fail("dense tensor %q %v after convolutions of %d channels", t.Name, t.Shape, lastCh)
				}
				hw := t.Shape[1] / lastCh
				s := 1
				for s*s < hw {
					s++
				}
				if s*s != hw {
					return fail("dense tensor %q %v: %d inputs per channel is not a square image", t.Name, t.Shape, hw)
				}
				h, w = s<<convs, s<<convs
				break
			}
		}
		if w == 0 {
			return fail("no dense tensor after the convolutions")
		}
	default:
		return fail("the first tensor %q has shape %v; want a dense [out, in] or convolution [out, in, k, k] weight", tensors[0].Name, first)
	}
	sp, err := model.ParseSpec(spec, c, h, w, classes)
	if err != nil {
		return model.Spec{}, fmt.Errorf("model %q on the trainer's layout (input %dx%dx%d, %d classes): %w", spec, c, h, w, classes, err)
	}
	if err := CheckLayout(sp, tensors); err != nil {
		return model.Spec{}, err
	}
	return sp, nil
}

// CheckLayout checks that the trainer's tensors are exactly sp's (names,
// shapes, order); an error names the tensor and both shapes.
func CheckLayout(sp model.Spec, tensors []TensorInfo) error {
	want := sp.Tensors()
	byName := map[string][]int{}
	for _, t := range tensors {
		byName[t.Name] = t.Shape
	}
	var names []string
	for _, w := range want {
		names = append(names, w.Name)
		got, ok := byName[w.Name]
		if !ok {
			return fmt.Errorf("model %s: tensor %q %v is missing from the trainer's hello", SpecName(sp), w.Name, w.Shape)
		}
		if !slices.Equal(got, w.Shape) {
			return fmt.Errorf("model %s: tensor %q has shape %v in the trainer's hello, the model needs %v", SpecName(sp), w.Name, got, w.Shape)
		}
		delete(byName, w.Name)
	}
	for _, t := range tensors {
		if _, extra := byName[t.Name]; extra {
			return fmt.Errorf("model %s: the trainer's tensor %q %v is not part of the model (its tensors: %s)", SpecName(sp), t.Name, t.Shape, strings.Join(names, ", "))
		}
	}
	return nil
}

// SpecName names a spec in messages: its string, or for an external model
// (whose string lists every tensor) "tensors (N tensors, P parameters)".
func SpecName(sp model.Spec) string {
	if sp.External() {
		return fmt.Sprintf("tensors (%d tensors, %d parameters)", len(sp.Layout), sp.NumParams())
	}
	return sp.String()
}
