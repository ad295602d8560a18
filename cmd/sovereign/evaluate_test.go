package main

import (
	"math"
	"math/rand/v2"
	"testing"
)

// naiveAUC counts, over every (positive, negative) pair, 1 if the positive
// scores higher and ½ on a tie: the definition of the ROC AUC as a
// probability (Hanley & McNeil 1982).
func naiveAUC(s []float64, y []int32) float64 {
	var sum, pairs float64
	for i := range s {
		for j := range s {
			if y[i] != 1 || y[j] != 0 {
				continue
			}
			pairs++
			switch {
			case s[i] > s[j]:
				sum++
			case s[i] == s[j]:
				sum += 0.5
			}
		}
	}
	return sum / pairs
}

func TestROCAUCMatchesPairCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 50; trial++ {
		n := 2 + rng.IntN(60)
		s := make([]float64, n)
		y := make([]int32, n)
		for i := range s {
			s[i] = float64(rng.IntN(8)) / 8 // many ties
			y[i] = int32(rng.IntN(2))
		}
		y[0], y[1] = 0, 1
		got, ok := rocAUC(s, y)
		if want := naiveAUC(s, y); !ok || math.Abs(got-want) > 1e-12 {
			t.Fatalf("trial %d: AUC %v (ok %v), pair count %v", trial, got, ok, want)
		}
	}
	if _, ok := rocAUC([]float64{0.1, 0.2}, []int32{1, 1}); ok {
		t.Fatal("AUC defined with one class only")
	}
}

func TestClassificationReport(t *testing.T) {
	// 3 classes; rows are probabilities, argmax: 0, 1, 1, 2, 0.
	probs := []float32{
		.8, .1, .1,
		.2, .7, .1,
		.1, .5, .4,
		.1, .2, .7,
		.5, .3, .2,
	}
	y := []int32{0, 1, 2, 2, 1}
	r := classificationReport(probs, y, 3)
	want := [][]int{{1, 0, 0}, {1, 1, 0}, {0, 1, 1}}
	for i := range want {
		for j := range want[i] {
			if r.Confusion[i][j] != want[i][j] {
				t.Fatalf("confusion %v, want %v", r.Confusion, want)
			}
		}
	}
	// class 0: precision 1/2, recall 1; class 1: 1/2, 1/2; class 2: 1, 1/2.
	for c, pr := range [][2]float64{{.5, 1}, {.5, .5}, {1, .5}} {
		s := r.PerClass[c]
		f1 := 2 * pr[0] * pr[1] / (pr[0] + pr[1])
		if math.Abs(s.Precision-pr[0]) > 1e-12 || math.Abs(s.Recall-pr[1]) > 1e-12 || math.Abs(s.F1-f1) > 1e-12 {
			t.Fatalf("class %d: %+v, want precision %v recall %v f1 %v", c, s, pr[0], pr[1], f1)
		}
	}
	if r.ROCAUC != nil {
		t.Fatal("ROC AUC reported for 3 classes")
	}
}
