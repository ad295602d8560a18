package model

import (
	"fmt"
	"math"
	"sort"
)

// Scores writes into out[:count] the logit margin z_1 − z_0 of each of the
// count rows of x: a monotone function of the predicted probability of
// class 1 (for two classes, p_1 = σ(z_1 − z_0)), which is all ROC AUC needs.
// It needs a two-class network.
func (n *Network) Scores(x []float32, count int, out []float64) error {
	if n.classes != 2 {
		return fmt.Errorf("model: Scores: %d classes, want 2", n.classes)
	}
	if err := n.CheckBatch(x, nil, count); err != nil {
		return err
	}
	if len(out) < count {
		return fmt.Errorf("model: Scores: len(out)=%d < count=%d", len(out), count)
	}
	n.forwardChunks(x, count, func(s, b int, logits []float32) {
		n.writeScores(out[s:s+b], logits)
	})
	return nil
}

// Binary are the metrics of a two-class classifier institutions report.
type Binary struct {
	// AUC is the area under the ROC curve: the probability that a random
	// positive scores above a random negative, ties counting one half
	// (the Mann–Whitney U statistic, Hanley & McNeil 1982). NaN when one
	// class is absent.
	AUC float64
	// TP, FP, TN, FN is the confusion matrix at the argmax decision
	// (score > 0 predicts class 1).
	TP, FP, TN, FN int
}

// BinaryMetrics computes Binary from scores (see Scores) and labels in {0, 1}.
func BinaryMetrics(scores []float64, y []int32) (Binary, error) {
	if len(scores) != len(y) {
		return Binary{}, fmt.Errorf("model: BinaryMetrics: %d scores for %d labels", len(scores), len(y))
	}
	var m Binary
	idx := make([]int, len(y))
	for i := range idx {
		idx[i] = i
		if y[i] != 0 && y[i] != 1 {
			return Binary{}, fmt.Errorf("model: BinaryMetrics: label %d of row %d is not 0 or 1", y[i], i)
		}
		pos := scores[i] > 0
		switch {
		case pos && y[i] == 1:
			m.TP++
		case pos:
			m.FP++
		case y[i] == 0:
			m.TN++
		default:
			m.FN++
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	// Sum of the positives' mid-ranks (ties share their average rank).
	var rankSum float64
	nPos := 0
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		mid := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			if y[idx[k]] == 1 {
				rankSum += mid
				nPos++
			}
		}
		i = j
	}
	nNeg := len(y) - nPos
	if nPos == 0 || nNeg == 0 {
		m.AUC = math.NaN()
		return m, nil
	}
	m.AUC = (rankSum - float64(nPos)*float64(nPos+1)/2) / (float64(nPos) * float64(nNeg))
	return m, nil
}
