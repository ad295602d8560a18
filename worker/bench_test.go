package worker

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
)

// BenchmarkStorePutMasked writes a masked vector of 2NN-on-MNIST size
// (199,210 parameters) through the worker store (encoding, CRC-32C, synced
// badger transaction) against the baseline of a raw synced badger Set of
// the same number of bytes.
func BenchmarkStorePutMasked(b *testing.B) {
	const dim = 199210
	mi := secagg.MaskedInput{Round: 1, From: 1, Vector: make([]uint32, dim+1)}
	for i := range mi.Vector {
		mi.Vector[i] = uint32(i) * 2654435761
	}
	b.Run("worker-store", func(b *testing.B) {
		s := openTestStore(b, b.TempDir())
		defer s.Close()
		b.SetBytes(int64(4 * len(mi.Vector)))
		for i := 0; b.Loop(); i++ {
			if err := s.PutMasked(uint64(i), nil, mi); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("badger-raw", func(b *testing.B) {
		s := openTestStore(b, b.TempDir())
		defer s.Close()
		val := encodeMasked(mi)
		b.SetBytes(int64(4 * len(mi.Vector)))
		for i := 0; b.Loop(); i++ {
			err := s.db.Update(func(txn *badger.Txn) error {
				return txn.Set([]byte(roundKey(uint64(i), recMasked)), val)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMaskedInputResend measures answering a repeated stage-2 request
// from the store (what a new leader asking again costs a worker; the node
// was restarted once, so the answer comes from disk) against the baseline
// of the local training that a worker without the cache would redo.
func BenchmarkMaskedInputResend(b *testing.B) {
	cl := newCluster(b, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	cl.runRound(a, hooks{})
	sb := secagg.ShareBundle{Round: 1, To: 1}
	cl.restart(0)
	b.Run("resend", func(b *testing.B) {
		for b.Loop() {
			if _, err := cl.nodes[0].MaskedInput(sb, cl.global); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("retrain", func(b *testing.B) {
		train := cl.nodes[0].train
		net, err := model.New(cl.spec)
		if err != nil {
			b.Fatal(err)
		}
		idx := make([]int, train.N)
		for i := range idx {
			idx[i] = i
		}
		for b.Loop() {
			copy(net.Params(), cl.global)
			if _, err := model.Train(net, train.X, train.Y, train.Dim, idx, model.TrainConfig{Epochs: a.Train.Epochs, Batch: a.Train.Batch, LR: float32(a.Train.LR), Seed: 1}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkNodeRound runs whole rounds of the configuration — ten
// workers, the 2NN (199,210 parameters) on 600 MNIST examples each, E=1,
// B=10, SecAgg+ — through the workers' Node methods in one process, with
// synced on-disk stores: advertise, share keys, masked input (training
// included), unmask, evaluation of the model and commit. The baseline
// "model-only" does just the model work of the same round: ten trainings
// and ten evaluations on fresh networks. The difference is what a worker
// spends per round beyond the model (store writes, state encoding, SecAgg+).
//
//	go test ./worker -run '^$' -bench BenchmarkNodeRound -benchtime 5x
func BenchmarkNodeRound(b *testing.B) {
	const workers, perWorker = 10, 600
	mnist, _, err := data.MNIST()
	if err != nil {
		b.Fatal(err)
	}
	cl := &cluster{t: b, n: workers}
	var trains, tests []*data.Dataset
	for i := range workers {
		lo := i * perWorker * 5 / 4
		sub := func(name string, lo, hi int) *data.Dataset {
			idx := make([]int, 0, hi-lo)
			for r := lo; r < hi; r++ {
				idx = append(idx, r)
			}
			d, err := mnist.Subset(fmt.Sprintf("mnist-%s%d", name, i), idx)
			if err != nil {
				b.Fatal(err)
			}
			return d
		}
		train, test := sub("train", lo, lo+perWorker), sub("test", lo+perWorker, lo+perWorker*5/4)
		trains, tests = append(trains, train), append(tests, test)
		c := testConfig(fmt.Sprintf("inst%d", i))
		c.Policy.MaxEpsilon = math.Inf(1) // differential privacy off, as in the e2e benchmark
		st, err := OpenStore(b.TempDir(), StoreOptions{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		node, err := NewNode(c, st, train, test, slog.New(slog.DiscardHandler), WithID(workerID(i)), WithRand(seeded(uint64(i))))
		if err != nil {
			b.Fatal(err)
		}
		cl.cfgs, cl.stores, cl.nodes = append(cl.cfgs, c), append(cl.stores, st), append(cl.nodes, node)
	}
	sp, err := model.ParseSpec("2nn", 1, 28, 28, 10)
	if err != nil {
		b.Fatal(err)
	}
	net, err := model.New(sp)
	if err != nil {
		b.Fatal(err)
	}
	net.Init(7)
	cl.spec, cl.global = sp, slices.Clone(net.Params())
	announce := func(round uint64) Announce {
		a := cl.announce(round, maxExamples)
		a.ModelSpec, a.NumParams, a.SecAgg.Dim = "2nn", len(cl.global), len(cl.global)
		a.Train = TrainParams{Epochs: 1, Batch: 10, LR: 0.05}
		return a
	}
	round := uint64(0) // rounds go on across runs of the sub-benchmark (-count)
	b.Run("node", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			round++
			cl.runRound(announce(round), hooks{})
			for i, node := range cl.nodes {
				if _, _, _, err := node.Evaluate(round, cl.global); err != nil {
					b.Fatalf("worker %d: %v", i, err)
				}
			}
		}
	})
	b.Run("model-only", func(b *testing.B) {
		a := announce(1)
		defer reportCPU(b)()
		for b.Loop() {
			for i := range workers {
				net, err := model.New(sp)
				if err != nil {
					b.Fatal(err)
				}
				copy(net.Params(), cl.global)
				train := trains[i]
				idx := make([]int, train.N)
				for j := range idx {
					idx[j] = j
				}
				if _, err := model.Train(net, train.X, train.Y, train.Dim, idx, model.TrainConfig{Epochs: 1, Batch: 10, LR: 0.05, Seed: trainSeed(&a, workerID(i))}); err != nil {
					b.Fatal(err)
				}
				copy(net.Params(), cl.global)
				if _, _, err := net.EvaluateChecked(tests[i].X, tests[i].Y, tests[i].N); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// reportCPU starts measuring the process's CPU time (user + system); the
// returned function reports it per iteration as cpu-s/op. On a shared
// machine it varies less than the wall-clock time.
func reportCPU(b *testing.B) func() {
	cpu := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	c0 := cpu()
	return func() { b.ReportMetric((cpu()-c0)/float64(b.N), "cpu-s/op") }
}
