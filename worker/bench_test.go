package worker

import (
	"math"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
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
