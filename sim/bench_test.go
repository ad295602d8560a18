package sim

import (
	"context"
	"sync"
	"testing"

	"github.com/sovereign-fl/sovereign/data"
)

var (
	mnistOnce         sync.Once
	mnistTrain, mnist *data.Dataset
	mnistErr          error
)

// BenchmarkRound2NN times one round of the FedAvg paper's 2NN on MNIST
// (100 clients, C = 0.1, E = 1, B = 10: 10 clients of 600 examples) in
// plain mode and through the whole SecAgg+ protocol, in the same run.
// The figure to read is secure ÷ plain (goal ≤ 1.3).
//
//	go test ./sim -run '^$' -bench Round2NN -benchtime 5x
func BenchmarkRound2NN(b *testing.B) {
	mnistOnce.Do(func() { mnistTrain, mnist, mnistErr = data.MNIST() })
	if mnistErr != nil {
		b.Fatal(mnistErr)
	}
	for _, secure := range []bool{false, true} {
		name := "plain"
		if secure {
			name = "secure"
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Dataset, cfg.Model = "mnist", "2nn"
			cfg.Clients, cfg.Fraction, cfg.Epochs, cfg.Batch, cfg.LR = 100, 0.1, 1, 10, 0.1
			cfg.Rounds = b.N
			cfg.Secure = secure
			b.ResetTimer()
			res, err := RunOn(context.Background(), cfg, mnistTrain, mnist, nil)
			if err != nil {
				b.Fatal(err)
			}
			var train float64
			for _, m := range res.Rounds {
				train += m.Seconds
			}
			b.ReportMetric(train/float64(len(res.Rounds))*1000, "ms/round")
		})
	}
}
