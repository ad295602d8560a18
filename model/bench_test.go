package model

import (
	"math/rand/v2"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"

	"github.com/sovereign-fl/sovereign/model/internal/gemm"
)

// Benchmarks of local training, each with its baseline in the same run: a
// "bare-gemm" sub-benchmark performs only the GEMMs of the same shapes
// (forward, and the dW and dX products of backward) on preallocated
// buffers, and the "train" sub-benchmark reports its time as a multiple of
// that baseline (metric x-bare-gemm), measured by running one untimed
// baseline iteration before each timed one. Run with
//
//	go test -run '^$' -bench . -count 3 ./model/

// syntheticImages returns n seeded random examples of dim features in [0,1)
// with labels in [0,classes).
func syntheticImages(seed uint64, n, dim, classes int) ([]float32, []int32) {
	rng := rand.New(rand.NewPCG(seed, 11))
	x := make([]float32, n*dim)
	for i := range x {
		x[i] = rng.Float32()
	}
	return x, randLabels(rng, n, classes)
}

// bareGemm is C (m×n) = op(A)·op(B) with row-major, tightly packed operands.
func bareGemm(tA, tB blas.Transpose, m, n, k int, a, b, c []float32) {
	ar, ac := m, k
	if tA == blas.Trans {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB == blas.Trans {
		br, bc = n, k
	}
	gemm.Gemm(tA, tB, 1, general(a, ar, ac), general(b, br, bc), 0, general(c, m, n))
}

// untimed runs f with the benchmark timer stopped and returns how long it
// took. Interleaving the baseline with the measured work this way keeps the
// ratio honest when the machine's load changes during the run.
func untimed(b *testing.B, f func()) time.Duration {
	b.StopTimer()
	t0 := time.Now()
	f()
	d := time.Since(t0)
	b.StartTimer()
	return d
}

// snapshot returns a copy of v[:n].
func snapshot(v []float32, n int) []float32 { return append([]float32(nil), v[:n]...) }

// BenchmarkEpoch2NN is one local epoch of the FedAvg 2NN (784-200-200-10)
// on 600 examples with B=10: 60 steps.
//
// gonum's GEMM skips zero elements of its left operand, so the baseline
// must multiply the operands a real step produces (ReLU-sparse activations
// and masked deltas), not dense random matrices; they are taken from one
// LossGrad of the network on the first minibatch.
func BenchmarkEpoch2NN(b *testing.B) {
	const examples, dim, batch, classes = 600, 784, 10, 10
	x, y := syntheticImages(1, examples, dim, classes)
	spec, err := ParseSpec("2nn", 1, 28, 28, classes)
	if err != nil {
		b.Fatal(err)
	}
	ref, err := New(spec)
	if err != nil {
		b.Fatal(err)
	}
	ref.Init(1)
	ref.LossGrad(x[:batch*dim], y[:batch], batch)
	l0, l1, l2 := ref.layers[0].(*dense), ref.layers[1].(*dense), ref.layers[2].(*dense)
	w1, w2, w3 := l0.w, l1.w, l2.w
	h1, h2 := snapshot(l0.y, batch*200), snapshot(l1.y, batch*200)
	dz := snapshot(ref.dlogits, batch*classes)
	d2, d1 := snapshot(l2.dx, batch*200), snapshot(l1.dx, batch*200) // after ReLU masking
	g1, g2, g3 := make([]float32, dim*200), make([]float32, 200*200), make([]float32, 200*classes)
	o1, o2, oz := make([]float32, batch*200), make([]float32, batch*200), make([]float32, batch*classes)
	od2, od1 := make([]float32, batch*200), make([]float32, batch*200)
	bareEpoch := func() {
		for s := 0; s < examples; s += batch {
			xb := x[s*dim : (s+batch)*dim]
			// forward
			bareGemm(blas.NoTrans, blas.NoTrans, batch, 200, dim, xb, w1, o1)
			bareGemm(blas.NoTrans, blas.NoTrans, batch, 200, 200, h1, w2, o2)
			bareGemm(blas.NoTrans, blas.NoTrans, batch, classes, 200, h2, w3, oz)
			// backward: dW and dX
			bareGemm(blas.Trans, blas.NoTrans, 200, classes, batch, h2, dz, g3)
			bareGemm(blas.NoTrans, blas.Trans, batch, 200, classes, dz, w3, od2)
			bareGemm(blas.Trans, blas.NoTrans, 200, 200, batch, h1, d2, g2)
			bareGemm(blas.NoTrans, blas.Trans, batch, 200, 200, d2, w2, od1)
			bareGemm(blas.Trans, blas.NoTrans, dim, 200, batch, xb, d1, g1)
		}
	}
	b.Run("bare-gemm", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			bareEpoch()
		}
	})
	b.Run("train", func(b *testing.B) {
		n, err := New(spec)
		if err != nil {
			b.Fatal(err)
		}
		n.Init(1)
		idx := allIdx(examples)
		cfg := TrainConfig{Epochs: 1, Batch: batch, LR: 0.01, Seed: 1}
		if _, err := Train(n, x, y, dim, idx, cfg); err != nil { // sizes the buffers
			b.Fatal(err)
		}
		b.ResetTimer()
		var bare time.Duration
		for i := 0; i < b.N; i++ {
			bare += untimed(b, bareEpoch)
			cfg.Seed = int64(i)
			if _, err := Train(n, x, y, dim, idx, cfg); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed())/float64(bare), "x-bare-gemm")
	})
}

// BenchmarkStepCNN is one training step (LossGrad + SGD with momentum) of
// the FedAvg CNN on a batch of 10 28x28 images. As for the 2NN, the
// baseline multiplies the operands of a real step (im2col matrices,
// activations, masked deltas).
func BenchmarkStepCNN(b *testing.B) {
	const batch, classes = 10, 10
	x, y := syntheticImages(3, batch, 784, classes)
	spec, err := ParseSpec("cnn", 1, 28, 28, classes)
	if err != nil {
		b.Fatal(err)
	}
	ref, err := New(spec)
	if err != nil {
		b.Fatal(err)
	}
	ref.Init(1)
	ref.LossGrad(x, y, batch)
	c1, p1, c2, p2 := ref.layers[0].(*conv), ref.layers[1].(*maxPool), ref.layers[2].(*conv), ref.layers[3].(*maxPool)
	f3, f4 := ref.layers[4].(*dense), ref.layers[5].(*dense)
	r1, r2 := batch*28*28, batch*14*14 // im2col rows of conv1, conv2
	col1, col2 := snapshot(c1.col, r1*25), snapshot(c2.col, r2*800)
	w1, w2, w3, w4 := c1.wt, c2.wt, f3.w, f4.w
	a3, h3 := snapshot(p2.y, batch*3136), snapshot(f3.y, batch*512)
	dz, dh3 := snapshot(ref.dlogits, batch*classes), snapshot(f4.dx, batch*512)
	dy2, dy1 := snapshot(p2.dx, r2*64), snapshot(p1.dx, r1*32) // after ReLU masking
	y1, y2, z := make([]float32, r1*32), make([]float32, r2*64), make([]float32, batch*classes)
	oh3, oa3, odh3, dcol2 := make([]float32, batch*512), make([]float32, batch*3136), make([]float32, batch*512), make([]float32, r2*800)
	g1, g2, g3, g4 := make([]float32, len(w1)), make([]float32, len(w2)), make([]float32, len(w3)), make([]float32, len(w4))
	bareStep := func() {
		// forward
		bareGemm(blas.NoTrans, blas.Trans, r1, 32, 25, col1, w1, y1)
		bareGemm(blas.NoTrans, blas.Trans, r2, 64, 800, col2, w2, y2)
		bareGemm(blas.NoTrans, blas.NoTrans, batch, 512, 3136, a3, w3, oh3)
		bareGemm(blas.NoTrans, blas.NoTrans, batch, classes, 512, h3, w4, z)
		// backward: dW and dX (none for the first layer)
		bareGemm(blas.Trans, blas.NoTrans, 512, classes, batch, h3, dz, g4)
		bareGemm(blas.NoTrans, blas.Trans, batch, 512, classes, dz, w4, odh3)
		bareGemm(blas.Trans, blas.NoTrans, 3136, 512, batch, a3, dh3, g3)
		bareGemm(blas.NoTrans, blas.Trans, batch, 3136, 512, dh3, w3, oa3)
		bareGemm(blas.Trans, blas.NoTrans, 64, 800, r2, dy2, col2, g2)
		bareGemm(blas.NoTrans, blas.NoTrans, r2, 800, 64, dy2, w2, dcol2)
		bareGemm(blas.Trans, blas.NoTrans, 32, 25, r1, dy1, col1, g1)
	}
	b.Run("bare-gemm", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			bareStep()
		}
	})
	b.Run("train", func(b *testing.B) {
		n, err := New(spec)
		if err != nil {
			b.Fatal(err)
		}
		n.Init(1)
		opt := SGD{LR: 0.01, Momentum: 0.9}
		n.LossGrad(x, y, batch) // sizes the buffers
		b.ResetTimer()
		var bare time.Duration
		for i := 0; i < b.N; i++ {
			bare += untimed(b, bareStep)
			n.LossGrad(x, y, batch)
			if err := opt.Step(n.Params(), n.Grads()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed())/float64(bare), "x-bare-gemm")
	})
}
