package model

import (
	"strings"
	"testing"
)

// TestParamCounts checks the parameter counts stated in McMahan et al. 2017
// (2NN: 199,210; CNN: 1,663,370) and hand-computed counts of other shapes.
func TestParamCounts(t *testing.T) {
	cases := []struct {
		arch          string
		inC, inH, inW int
		classes       int
		want          int
	}{
		{"2nn", 1, 28, 28, 10, 199210},
		{"cnn", 1, 28, 28, 10, 1663370},
		{"logreg", 1, 1, 784, 10, 784*10 + 10},
		{"mlp:5,4", 1, 1, 6, 3, (6*5 + 5) + (5*4 + 4) + (4*3 + 3)},
		// 8x8 digits: 8 -> 4 -> 2 after the two pools.
		{"cnn", 1, 8, 8, 10, (25*32 + 32) + (25*32*64 + 64) + (2*2*64*512 + 512) + (512*10 + 10)},
		// 3-channel 6x6: 6 -> 3 -> 1.
		{"cnn:2,3,4", 3, 6, 6, 5, (25*3*2 + 2) + (25*2*3 + 3) + (3*4 + 4) + (4*5 + 5)},
	}
	for _, tc := range cases {
		spec, err := ParseSpec(tc.arch, tc.inC, tc.inH, tc.inW, tc.classes)
		if err != nil {
			t.Fatalf("%s: %v", tc.arch, err)
		}
		if got := spec.NumParams(); got != tc.want {
			t.Errorf("%s %dx%dx%d: NumParams=%d, want %d", tc.arch, tc.inC, tc.inH, tc.inW, got, tc.want)
		}
		n, err := New(spec)
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Params()) != tc.want || len(n.Grads()) != tc.want {
			t.Errorf("%s: len(Params)=%d len(Grads)=%d, want %d", tc.arch, len(n.Params()), len(n.Grads()), tc.want)
		}
	}
}

func TestParseSpecRoundTrip(t *testing.T) {
	for _, s := range []string{"logreg", "2nn", "mlp:64", "mlp:3,2,1", "cnn", "cnn:4,8,16", "cnn:32,64,100"} {
		spec, err := ParseSpec(s, 1, 28, 28, 10)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if spec.String() != s {
			t.Errorf("ParseSpec(%q).String() = %q", s, spec.String())
		}
	}
	spec, err := ParseSpec("mlp:200,200", 1, 1, 784, 10)
	if err != nil || spec.String() != "2nn" {
		t.Errorf("mlp:200,200 -> %q, %v; want 2nn", spec.String(), err)
	}
	spec, err = ParseSpec("cnn:32,64,512", 1, 28, 28, 10)
	if err != nil || spec.String() != "cnn" || spec.NumParams() != 1663370 {
		t.Errorf("cnn:32,64,512 -> %q (%d params), %v", spec.String(), spec.NumParams(), err)
	}
}

func TestParseSpecErrors(t *testing.T) {
	cases := []struct {
		s             string
		inC, inH, inW int
		classes       int
		mention       string
	}{
		{"resnet", 1, 28, 28, 10, `"resnet"`},
		{"mlp", 1, 28, 28, 10, "allowed forms"},
		{"mlp:", 1, 28, 28, 10, "empty"},
		{"mlp:10,x", 1, 28, 28, 10, `"x"`},
		{"mlp:10,0", 1, 28, 28, 10, "element 1 is 0"},
		{"logreg:3", 1, 28, 28, 10, "allowed forms"},
		{"cnn:8", 1, 28, 28, 10, "FC width"},
		{"logreg", 1, 1, 0, 10, "InW=0"},
		{"logreg", 1, 1, 5, 1, "Classes=1"},
		{"cnn", 1, 3, 3, 10, "too small"},
		{"cnn:2,2,2,4", 1, 6, 6, 10, "too small"},
		{"mlp:60000,60000", 1, 1, 784, 10, "MaxParams"},
	}
	for _, tc := range cases {
		_, err := ParseSpec(tc.s, tc.inC, tc.inH, tc.inW, tc.classes)
		if err == nil {
			t.Errorf("ParseSpec(%q, %d,%d,%d, %d): no error", tc.s, tc.inC, tc.inH, tc.inW, tc.classes)
			continue
		}
		if !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseSpec(%q): error %q does not mention %q", tc.s, err, tc.mention)
		}
	}
	if _, err := New(Spec{Kind: "mlp", InC: 1, InH: 1, InW: 4, Classes: 2}); err == nil || !strings.Contains(err.Error(), "Hidden") {
		t.Errorf("New(mlp without Hidden): %v", err)
	}
	if (Spec{Kind: "bogus"}).NumParams() != 0 {
		t.Error("NumParams of invalid spec is not 0")
	}
}

func TestInitDeterministic(t *testing.T) {
	spec, err := ParseSpec("cnn:4,8,16", 1, 8, 8, 10)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := New(spec)
	b, _ := New(spec)
	c, _ := New(spec)
	a.Init(42)
	b.Init(42)
	c.Init(43)
	same, differ := true, false
	for i := range a.Params() {
		if a.Params()[i] != b.Params()[i] {
			same = false
		}
		if a.Params()[i] != c.Params()[i] {
			differ = true
		}
	}
	if !same {
		t.Fatal("same seed gave different parameters")
	}
	if !differ {
		t.Fatal("different seeds gave identical parameters")
	}
	// Biases are zero, weights lie within the He/Glorot bounds and are not
	// all zero.
	shapes := spec.layerShapes()
	off := 0
	for li, s := range shapes {
		np := s.numParams()
		nb := s.out
		w := a.Params()[off : off+np-nb]
		bias := a.Params()[off+np-nb : off+np]
		fanIn, fanOut := s.in, s.out
		if s.conv {
			fanIn, fanOut = CNNKernel*CNNKernel*s.inC, CNNKernel*CNNKernel*s.out
		}
		limit := float32(initLimit(fanIn, fanOut, s.relu))
		var maxAbs float32
		for _, v := range w {
			if v > limit || v < -limit {
				t.Fatalf("layer %d weight %v outside ±%v", li, v, limit)
			}
			maxAbs = max(maxAbs, v, -v)
		}
		if maxAbs < limit/2 {
			t.Fatalf("layer %d: largest |weight| %v is far below the bound %v", li, maxAbs, limit)
		}
		for i, v := range bias {
			if v != 0 {
				t.Fatalf("layer %d bias %d = %v, want 0", li, i, v)
			}
		}
		off += np
	}
	if off != len(a.Params()) {
		t.Fatalf("walked %d params, have %d", off, len(a.Params()))
	}
}
