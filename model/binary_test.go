package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The rank formula against the plain pairwise count.
func TestBinaryMetricsAUCMatchesPairCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 50 {
		n := 2 + rng.IntN(60)
		s := make([]float64, n)
		y := make([]int32, n)
		for i := range s {
			s[i] = float64(rng.IntN(7)) - 3 // many ties
			y[i] = int32(rng.IntN(2))
		}
		m, err := BinaryMetrics(s, y)
		if err != nil {
			t.Fatal(err)
		}
		var num, pairs float64
		for i := range n {
			for j := range n {
				if y[i] == 1 && y[j] == 0 {
					pairs++
					switch {
					case s[i] > s[j]:
						num++
					case s[i] == s[j]:
						num += 0.5
					}
				}
			}
		}
		if pairs == 0 {
			if !math.IsNaN(m.AUC) {
				t.Fatalf("trial %d: one class only, AUC %v, want NaN", trial, m.AUC)
			}
			continue
		}
		if math.Abs(m.AUC-num/pairs) > 1e-12 {
			t.Fatalf("trial %d: AUC %v, pair count %v", trial, m.AUC, num/pairs)
		}
		if m.TP+m.FP+m.TN+m.FN != n {
			t.Fatalf("confusion matrix %+v does not sum to %d", m, n)
		}
	}
	m, _ := BinaryMetrics([]float64{-1, 2, 0.5, -3}, []int32{0, 1, 0, 1})
	if m.TP != 1 || m.FP != 1 || m.TN != 1 || m.FN != 1 || m.AUC != 0.5 {
		t.Fatalf("got %+v, want TP=FP=TN=FN=1, AUC 0.5", m)
	}
	if _, err := BinaryMetrics([]float64{1}, []int32{2}); err == nil {
		t.Fatal("label 2 accepted")
	}
}

// EvaluateScores and EvaluateProbabilities give Evaluate's loss and
// accuracy and Scores' scores or Probabilities' probabilities, bit for bit,
// from one pass over a chunked batch; they refuse short output slices, and
// EvaluateScores a network of more classes.
func TestEvaluateScoresMatchesSeparatePasses(t *testing.T) {
	spec, err := ParseSpec("mlp:16", 1, 1, 7, 2)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	n.Init(1)
	rng := rand.New(rand.NewPCG(5, 6))
	const count = 1037 // several evaluation chunks and a tail
	x := make([]float32, count*7)
	y := make([]int32, count)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := range y {
		y[i] = int32(rng.IntN(2))
	}
	loss, acc := n.Evaluate(x, y, count)
	want := make([]float64, count)
	if err := n.Scores(x, count, want); err != nil {
		t.Fatal(err)
	}
	got := make([]float64, count)
	gl, ga, err := n.EvaluateScores(x, y, count, got)
	if err != nil {
		t.Fatal(err)
	}
	if gl != loss || ga != acc {
		t.Fatalf("EvaluateScores loss %v accuracy %v, Evaluate %v %v", gl, ga, loss, acc)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("score %d: %v, Scores %v", i, got[i], want[i])
		}
	}
	if _, _, err := n.EvaluateScores(x, y, count, got[:count-1]); err == nil {
		t.Fatal("a short scores slice was accepted")
	}
	wantP := make([]float32, 2*count)
	if err := n.Probabilities(x, count, wantP); err != nil {
		t.Fatal(err)
	}
	gotP := make([]float32, 2*count)
	pl, pa, err := n.EvaluateProbabilities(x, y, count, gotP)
	if err != nil {
		t.Fatal(err)
	}
	if pl != loss || pa != acc || !slices.Equal(gotP, wantP) {
		t.Fatalf("EvaluateProbabilities (loss %v accuracy %v) differs from Evaluate and Probabilities (%v %v)", pl, pa, loss, acc)
	}
	if _, _, err := n.EvaluateProbabilities(x, y, count, gotP[:2*count-1]); err == nil {
		t.Fatal("a short probabilities slice was accepted")
	}
	spec3, _ := ParseSpec("mlp:16", 1, 1, 7, 3)
	n3, err := New(spec3)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := n3.EvaluateScores(x, y, count, got); err == nil {
		t.Fatal("a three-class network was accepted")
	}
}
