package coordinator_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	. "github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
)

// BenchmarkRound compares one driven round (FSM commits, concurrent cohort
// calls, stage bookkeeping) with the bare SecAgg+ protocol run in process
// by secagg.Simulate on the same configuration: the difference is the
// coordinator's overhead.
func BenchmarkRound(b *testing.B) {
	cfg := testConfig()
	cfg.Model, cfg.InW = "logreg", 500 // 1002 parameters
	cfg.WorkersPerRound = 10
	cfg.Rounds = 1
	b.Run("driver", func(b *testing.B) {
		for b.Loop() {
			f := NewFSM()
			d, err := NewDriver(cfg, f, NewLocal(f), NewMemRegistry(), coordtest.NewCohort(10, 1), quietLogger())
			if err != nil {
				b.Fatal(err)
			}
			if err := d.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-simulate", func(b *testing.B) {
		spec, _ := ConfigSpec(cfg)
		sc := secagg.Config{Round: 1, Clients: []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, ClipRange: 1, MaxWeight: 100, Dim: spec.NumParams()}
		upd := map[uint32][]float32{}
		w := map[uint32]float64{}
		for _, id := range sc.Clients {
			upd[id] = make([]float32, sc.Dim)
			w[id] = 10
		}
		for b.Loop() {
			if _, err := secagg.Simulate(sc, upd, w, nil, rand.NewChaCha8([32]byte{1}), time.Unix(0, 0)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
