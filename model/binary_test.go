package model

import (
	"math"
	"math/rand/v2"
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
