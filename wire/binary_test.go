package wire

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// The histogram AUC equals the Mann–Whitney statistic of the scores when no
// positive and negative share a bin, and is within the share of same-bin
// pairs of it otherwise; sums of reports are the pooled data's.
func TestBinaryReportAUC(t *testing.T) {
	mw := func(pos, neg []float64) float64 {
		var u float64
		for _, p := range pos {
			for _, n := range neg {
				switch {
				case p > n:
					u++
				case p == n:
					u += 0.5
				}
			}
		}
		return u / float64(len(pos)*len(neg))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var all BinaryReport
	var allPos, allNeg []float64
	for site := range 3 {
		var r BinaryReport
		for range 200 {
			y := rng.IntN(2)
			p := math.Min(0.999, math.Max(0, rng.NormFloat64()*0.2+0.35+0.3*float64(y)+0.05*float64(site)))
			if y == 1 {
				r.Pos[ScoreBin(p)]++
				allPos = append(allPos, p)
			} else {
				r.Neg[ScoreBin(p)]++
				allNeg = append(allNeg, p)
			}
		}
		all.Add(&r)
	}
	// Same-bin pairs bound the binning error.
	same := 0.0
	for i := range ScoreBins {
		same += float64(all.Pos[i] * all.Neg[i])
	}
	exact, got := mw(allPos, allNeg), all.AUC()
	bound := same / float64(len(allPos)*len(allNeg)) / 2
	if math.Abs(got-exact) > bound+1e-12 {
		t.Fatalf("histogram AUC %v, exact %v, bound %v", got, exact, bound)
	}
	// Distinct bins: exact.
	var r BinaryReport
	r.Pos[15], r.Pos[3], r.Neg[2], r.Neg[10] = 1, 1, 1, 1
	if got, want := r.AUC(), mw([]float64{0.76, 0.16}, []float64{0.11, 0.51}); got != want {
		t.Fatalf("AUC %v, want %v", got, want)
	}
	if !math.IsNaN((&BinaryReport{}).AUC()) {
		t.Fatal("AUC without a class is not NaN")
	}
}

// A worker's counts must add up: confusion to the examples, the histograms
// to the examples, tp+fn to the positives; otherwise the report is refused
// with the field named.
func TestAttackInconsistentBinaryReportRefused(t *testing.T) {
	good := MetricsToPB(3, Metrics{Examples: 4, Loss: 0.5, Accuracy: 0.5, Binary: &BinaryReport{TP: 1, FP: 1, TN: 1, FN: 1, Pos: [ScoreBins]uint64{10: 2}, Neg: [ScoreBins]uint64{5: 2}}})
	if m, err := MetricsFromPB(good, 3); err != nil || m.Binary == nil || m.Binary.TP != 1 {
		t.Fatalf("good report: %+v, %v", m, err)
	}
	for name, mutate := range map[string]func(m *pb.MetricsReport){
		"confusion over examples": func(m *pb.MetricsReport) { m.Confusion[0] += 100 },
		"histogram short":         func(m *pb.MetricsReport) { m.PositiveScores = m.PositiveScores[:3] },
		"positives mismatch":      func(m *pb.MetricsReport) { m.PositiveScores[10], m.NegativeScores[5] = 3, 1 },
		"confusion missing":       func(m *pb.MetricsReport) { m.Confusion = nil },
	} {
		bad := MetricsToPB(3, Metrics{Examples: 4, Loss: 0.5, Accuracy: 0.5, Binary: &BinaryReport{TP: 1, FP: 1, TN: 1, FN: 1, Pos: [ScoreBins]uint64{10: 2}, Neg: [ScoreBins]uint64{5: 2}}})
		mutate(bad)
		if _, err := MetricsFromPB(bad, 3); err == nil || !strings.Contains(err.Error(), "confusion") {
			t.Errorf("%s: %v, want an error naming confusion", name, err)
		}
	}
}
