package model

import (
	"fmt"
	"strings"
)

// KindTensors is an external model: the institutions' own training code
// (the trainer protocol, docs/trainer-protocol.md) computes it, and
// Sovereign knows only its named tensors, in order. Its flat parameter
// vector is the concatenation of the tensors' elements in row-major
// (PyTorch) order; New cannot build it.
const KindTensors = "tensors"

// maxLayoutTensors bounds the tensors of an external model.
const maxLayoutTensors = 4096

// TensorsSpec returns the spec of an external model with the given layout.
func TensorsSpec(layout []TensorShape) (Spec, error) {
	s := Spec{Kind: KindTensors, Layout: cloneLayout(layout)}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

func cloneLayout(l []TensorShape) []TensorShape {
	out := make([]TensorShape, len(l))
	for i, t := range l {
		out[i] = TensorShape{Name: t.Name, Shape: append([]int(nil), t.Shape...)}
	}
	return out
}

// parseTensorsSpec reads "name[d0,d1,...];name[...];..." (the part after
// "tensors:").
func parseTensorsSpec(s, args string) (Spec, error) {
	var layout []TensorShape
	for i, part := range strings.Split(args, ";") {
		name, rest, ok := strings.Cut(part, "[")
		if !ok || !strings.HasSuffix(rest, "]") || name == "" {
			return Spec{}, fmt.Errorf("model: spec %q: tensor %d %q is not name[d0,d1,...]", short(s), i, part)
		}
		dims, err := parseInts(strings.TrimSuffix(rest, "]"))
		if err != nil {
			return Spec{}, fmt.Errorf("model: spec %q: tensor %q: shape: %v", short(s), name, err)
		}
		layout = append(layout, TensorShape{Name: name, Shape: dims})
	}
	return TensorsSpec(layout)
}

func short(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

func (s Spec) tensorsString() string {
	var b strings.Builder
	b.WriteString(KindTensors + ":")
	for i, t := range s.Layout {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(t.Name)
		b.WriteByte('[')
		b.WriteString(joinInts(t.Shape))
		b.WriteByte(']')
	}
	return b.String()
}

func (s Spec) validateTensors() error {
	if len(s.Layout) == 0 || len(s.Layout) > maxLayoutTensors {
		return fmt.Errorf("model: spec tensors: %d tensors, want 1..%d", len(s.Layout), maxLayoutTensors)
	}
	if len(s.Hidden) != 0 || s.Channels != nil || s.FC != 0 {
		return fmt.Errorf("model: spec tensors: Hidden, Channels and FC must be empty")
	}
	seen := map[string]bool{}
	total := 0
	for i, t := range s.Layout {
		if t.Name == "" || len(t.Name) > 256 || strings.ContainsAny(t.Name, "[];, \t\n") {
			return fmt.Errorf("model: spec tensors: tensor %d name %q: want 1..256 bytes without []; , or spaces", i, t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("model: spec tensors: tensor %q listed twice", t.Name)
		}
		seen[t.Name] = true
		if len(t.Shape) == 0 || len(t.Shape) > 8 {
			return fmt.Errorf("model: spec tensors: tensor %q has %d dimensions, want 1..8", t.Name, len(t.Shape))
		}
		n := 1
		for _, d := range t.Shape {
			if d < 1 || d > MaxParams || n > MaxParams/d {
				return fmt.Errorf("model: spec tensors: tensor %q shape %v out of range", t.Name, t.Shape)
			}
			n *= d
		}
		if total += n; total > MaxParams {
			return fmt.Errorf("model: spec tensors: more than MaxParams=%d parameters (reached at tensor %q)", MaxParams, t.Name)
		}
	}
	return nil
}

func (s Spec) tensorsNumParams() int {
	total := 0
	for _, t := range s.Layout {
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		total += n
	}
	return total
}

// External reports whether s is an external model (KindTensors).
func (s Spec) External() bool { return s.Kind == KindTensors }
