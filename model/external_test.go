package model

import (
	"strings"
	"testing"
)

// An external model's spec round-trips through its string, its flat vector
// is the tensors' elements in layout order, and New refuses to build it.
func TestTensorsSpec(t *testing.T) {
	layout := []TensorShape{{"net.0.weight", []int{16, 10}}, {"net.1.weight", []int{16}}, {"net.1.bias", []int{16}}, {"head.weight", []int{2, 16}}}
	s, err := TensorsSpec(layout)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSpec(s.String(), 0, 0, 0, 0)
	if err != nil || back.String() != s.String() || back.NumParams() != 160+16+16+32 {
		t.Fatalf("round trip %q: %v, %d params", s, err, back.NumParams())
	}
	params := make([]float32, s.NumParams())
	for i := range params {
		params[i] = float32(i)
	}
	ts, err := ParamsToTensors(s, params)
	if err != nil || len(ts) != 4 || ts[1].Data[0] != 160 || ts[3].Data[31] != float32(len(params)-1) {
		t.Fatalf("tensors: %v", err)
	}
	got, err := TensorsToParams(s, ts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != params[i] {
			t.Fatalf("param %d: %v, want %v", i, got[i], params[i])
		}
	}
	ts[0].Shape = []int{10, 16}
	if _, err := TensorsToParams(s, ts); err == nil || !strings.Contains(err.Error(), `"net.0.weight" has shape [10 16]`) {
		t.Fatalf("wrong shape: %v", err)
	}
	if _, err := New(s); err == nil || !strings.Contains(err.Error(), "external model") {
		t.Fatalf("New of an external model: %v", err)
	}
	for _, bad := range []string{"tensors:", "tensors:a[0]", "tensors:a[2];a[3]", "tensors:a 1[2]", "tensors:a[2"} {
		if _, err := ParseSpec(bad, 1, 1, 1, 2); err == nil {
			t.Errorf("ParseSpec(%q) accepted", bad)
		}
	}
}
