package model

import (
	"testing"
)

// TestSGDHandComputed checks two steps of each SGD variant against values
// worked out by hand from the update rules in the SGD doc comment.
func TestSGDHandComputed(t *testing.T) {
	g := []float32{0.5, 0.25}
	cases := []struct {
		name string
		opt  SGD
		want [2][2]float32 // params after step 1 and step 2
	}{
		// w -= 0.1·g
		{"plain", SGD{LR: 0.1}, [2][2]float32{{0.95, -2.025}, {0.9, -2.05}}},
		// v1 = g; w1 = w0 - 0.1·v1; v2 = 0.9·v1 + g = (0.95, 0.475); w2 = w1 - 0.1·v2
		{"momentum", SGD{LR: 0.1, Momentum: 0.9}, [2][2]float32{{0.95, -2.025}, {0.855, -2.0725}}},
		// g' = g + 0.01·w: step 1 (0.51, 0.23) -> w1 = (0.949, -2.023);
		// step 2 g' = (0.50949, 0.22977), v2 = 0.9·(0.51, 0.23) + g' = (0.96849, 0.43677),
		// w2 = (0.852151, -2.066677)
		{"momentum+L2", SGD{LR: 0.1, Momentum: 0.9, WeightDecay: 0.01}, [2][2]float32{{0.949, -2.023}, {0.852151, -2.066677}}},
		// v1 = g, w1 = w0 - 0.1·v1 - 0.001·w0 = (0.949, -2.023);
		// v2 = (0.95, 0.475), w2 = w1 - 0.1·v2 - 0.001·w1 = (0.853051, -2.068477)
		{"momentum+decoupled", SGD{LR: 0.1, Momentum: 0.9, WeightDecay: 0.01, Decoupled: true}, [2][2]float32{{0.949, -2.023}, {0.853051, -2.068477}}},
		// without momentum both decays are w = (1 - 0.001)·w - 0.1·g
		{"L2 no momentum", SGD{LR: 0.1, WeightDecay: 0.01}, [2][2]float32{{0.949, -2.023}, {0.898051, -2.045977}}},
	}
	for _, tc := range cases {
		p := []float32{1, -2}
		opt := tc.opt
		for step := 0; step < 2; step++ {
			if err := opt.Step(p, g); err != nil {
				t.Fatal(err)
			}
			for i := range p {
				if !closeTo(float64(p[i]), float64(tc.want[step][i]), 1e-6, 1e-6) {
					t.Errorf("%s step %d: p[%d]=%v, want %v", tc.name, step+1, i, p[i], tc.want[step][i])
				}
			}
		}
		if g[0] != 0.5 || g[1] != 0.25 {
			t.Fatalf("%s: Step modified grads: %v", tc.name, g)
		}
	}
}

func TestSGDLengthMismatch(t *testing.T) {
	var o SGD
	o.LR = 0.1
	p := []float32{1, 2}
	if err := o.Step(p, []float32{1}); err == nil {
		t.Fatal("no error for mismatched lengths")
	}
	if p[0] != 1 || p[1] != 2 {
		t.Fatal("params changed on error")
	}
}
