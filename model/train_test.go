package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// blobs returns n examples of dim features in `classes` well separated
// Gaussian clusters (mean 3·e_c, unit noise), seeded.
func blobs(seed uint64, n, dim, classes int) ([]float32, []int32) {
	rng := rand.New(rand.NewPCG(seed, 99))
	x := make([]float32, n*dim)
	y := make([]int32, n)
	for i := 0; i < n; i++ {
		c := rng.IntN(classes)
		y[i] = int32(c)
		for j := 0; j < dim; j++ {
			v := rng.NormFloat64()
			if j == c {
				v += 3
			}
			x[i*dim+j] = float32(v)
		}
	}
	return x, y
}

// quadrants returns 6x6 single-channel images whose class (0..3) is the
// quadrant holding a bright 2x2 square, plus noise.
func quadrants(seed uint64, n int) ([]float32, []int32) {
	rng := rand.New(rand.NewPCG(seed, 5))
	x := make([]float32, n*36)
	y := make([]int32, n)
	for i := 0; i < n; i++ {
		c := rng.IntN(4)
		y[i] = int32(c)
		img := x[i*36 : (i+1)*36]
		for j := range img {
			img[j] = float32(rng.NormFloat64() * 0.3)
		}
		oy, ox := (c/2)*3+rng.IntN(2), (c%2)*3+rng.IntN(2)
		for dy := 0; dy < 2; dy++ {
			for dx := 0; dx < 2; dx++ {
				img[(oy+dy)*6+ox+dx] += 2
			}
		}
	}
	return x, y
}

func allIdx(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

func TestTrainReducesLoss(t *testing.T) {
	bx, by := blobs(1, 300, 10, 3)
	qx, qy := quadrants(2, 300)
	cases := []struct {
		arch          string
		inC, inH, inW int
		classes       int
		x             []float32
		y             []int32
		cfg           TrainConfig
	}{
		{"logreg", 1, 1, 10, 3, bx, by, TrainConfig{Epochs: 5, Batch: 10, LR: 0.1, Seed: 1}},
		{"mlp:16,8", 1, 1, 10, 3, bx, by, TrainConfig{Epochs: 5, Batch: 10, LR: 0.05, Momentum: 0.9, WeightDecay: 1e-4, Seed: 2}},
		{"cnn:4,8,16", 1, 6, 6, 4, qx, qy, TrainConfig{Epochs: 8, Batch: 10, LR: 0.05, Momentum: 0.5, Seed: 3}},
	}
	for _, tc := range cases {
		t.Run(tc.arch, func(t *testing.T) {
			spec, err := ParseSpec(tc.arch, tc.inC, tc.inH, tc.inW, tc.classes)
			if err != nil {
				t.Fatal(err)
			}
			n, err := New(spec)
			if err != nil {
				t.Fatal(err)
			}
			n.Init(7)
			count := len(tc.y)
			before, _ := n.Evaluate(tc.x, tc.y, count)
			trainLoss, err := Train(n, tc.x, tc.y, spec.InputDim(), allIdx(count), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			after, acc := n.Evaluate(tc.x, tc.y, count)
			t.Logf("%s: loss %.4f -> %.4f (last-epoch train loss %.4f), accuracy %.3f", tc.arch, before, after, trainLoss, acc)
			if !(after < 0.25*before) || !(trainLoss < 0.5*before) {
				t.Fatalf("loss did not fall enough: before %v, after %v, train %v", before, after, trainLoss)
			}
			if acc < 0.95 {
				t.Fatalf("accuracy %v < 0.95 on a separable problem", acc)
			}
		})
	}
}

func TestTrainDeterministicAndUsesOnlyIdx(t *testing.T) {
	x, y := blobs(3, 200, 8, 4)
	idx := make([]int, 0, 100)
	for i := 0; i < 200; i += 2 {
		idx = append(idx, i)
	}
	// Rows outside idx are poisoned: Train must never read them.
	poisoned := append([]float32(nil), x...)
	poisonedY := append([]int32(nil), y...)
	for i := 1; i < 200; i += 2 {
		for j := 0; j < 8; j++ {
			poisoned[i*8+j] = float32(math.NaN())
		}
		poisonedY[i] = 99
	}
	spec, _ := ParseSpec("mlp:6", 1, 1, 8, 4)
	run := func(x []float32, y []int32, seed int64) []float32 {
		n, err := New(spec)
		if err != nil {
			t.Fatal(err)
		}
		n.Init(1)
		if _, err := Train(n, x, y, 8, idx, TrainConfig{Epochs: 2, Batch: 7, LR: 0.05, Momentum: 0.9, Seed: seed}); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), n.Params()...)
	}
	a := run(x, y, 5)
	b := run(poisoned, poisonedY, 5)
	c := run(x, y, 6)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("param %d differs between clean and poisoned-outside-idx data: %v vs %v", i, a[i], b[i])
		}
	}
	differ := false
	for i := range a {
		differ = differ || a[i] != c[i]
	}
	if !differ {
		t.Fatal("different shuffle seeds gave identical parameters")
	}
	if idx[0] != 0 || idx[1] != 2 || idx[99] != 198 {
		t.Fatal("Train reordered the caller's idx")
	}
}

// TestTrainFedProx checks two full-batch steps of FedProx against the
// update done by hand: w1 = w0 - lr·g(w0); w2 = w1 - lr·(g(w1) + μ(w1 - w0)).
func TestTrainFedProx(t *testing.T) {
	x, y := blobs(4, 40, 5, 3)
	spec, _ := ParseSpec("mlp:4", 1, 1, 5, 3)
	const lr, mu = 0.1, 0.5
	n, _ := New(spec)
	n.Init(3)
	w0 := append([]float32(nil), n.Params()...)
	if _, err := Train(n, x, y, 5, allIdx(40), TrainConfig{Epochs: 2, Batch: 40, LR: lr, ProxMu: mu, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	got := n.Params()

	m, _ := New(spec)
	copy(m.Params(), w0)
	m.LossGrad(x, y, 40)
	p := m.Params()
	for i := range p {
		p[i] -= lr * m.Grads()[i]
	}
	m.LossGrad(x, y, 40)
	for i := range p {
		p[i] -= lr * (m.Grads()[i] + mu*(p[i]-w0[i]))
	}
	proxSeen := false
	for i := range p {
		if !closeTo(float64(got[i]), float64(p[i]), 1e-6, 1e-4) {
			t.Fatalf("param %d: Train %v, by hand %v", i, got[i], p[i])
		}
	}
	// The proximal term must have mattered: plain FedAvg ends elsewhere.
	f, _ := New(spec)
	copy(f.Params(), w0)
	if _, err := Train(f, x, y, 5, allIdx(40), TrainConfig{Epochs: 2, Batch: 40, LR: lr, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range p {
		if !closeTo(float64(f.Params()[i]), float64(p[i]), 1e-6, 1e-4) {
			proxSeen = true
		}
	}
	if !proxSeen {
		t.Fatal("ProxMu had no effect")
	}
}

func TestTrainRejectsBadInput(t *testing.T) {
	x, y := blobs(5, 20, 4, 3)
	spec, _ := ParseSpec("logreg", 1, 1, 4, 3)
	good := TrainConfig{Epochs: 1, Batch: 5, LR: 0.1}
	badY := append([]int32(nil), y...)
	badY[7] = 3
	nanX := append([]float32(nil), x...)
	nanX[4*3+1] = float32(math.Inf(1))
	cases := []struct {
		name    string
		x       []float32
		y       []int32
		dim     int
		idx     []int
		cfg     TrainConfig
		nanPar  bool
		mention string
	}{
		{"label", x, badY, 4, allIdx(20), good, false, "y[7]=3"},
		{"len x", x[:len(x)-1], y, 4, allIdx(20), good, false, "len(x)=79"},
		{"dim", x, y, 5, allIdx(20), good, false, "dim=5"},
		{"idx range", x, y, 4, []int{0, 20}, good, false, "idx[1]=20"},
		{"idx negative", x, y, 4, []int{-1}, good, false, "idx[0]=-1"},
		{"empty idx", x, y, 4, nil, good, false, "no examples"},
		{"inf feature", nanX, y, 4, allIdx(20), good, false, "example 3 feature 1"},
		{"nan params", x, y, 4, allIdx(20), good, true, "is NaN"},
		{"epochs", x, y, 4, allIdx(20), TrainConfig{Batch: 5, LR: 0.1}, false, "Epochs=0"},
		{"batch", x, y, 4, allIdx(20), TrainConfig{Epochs: 1, LR: 0.1}, false, "Batch=0"},
		{"lr", x, y, 4, allIdx(20), TrainConfig{Epochs: 1, Batch: 5, LR: float32(math.NaN())}, false, "LR=NaN"},
		{"momentum", x, y, 4, allIdx(20), TrainConfig{Epochs: 1, Batch: 5, LR: 0.1, Momentum: 1}, false, "Momentum=1"},
		{"prox", x, y, 4, allIdx(20), TrainConfig{Epochs: 1, Batch: 5, LR: 0.1, ProxMu: -1}, false, "ProxMu=-1"},
	}
	for _, tc := range cases {
		n, _ := New(spec)
		n.Init(1)
		if tc.nanPar {
			n.Params()[13] = float32(math.NaN())
		}
		before := append([]float32(nil), n.Params()...)
		_, err := Train(n, tc.x, tc.y, tc.dim, tc.idx, tc.cfg)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.mention)
		}
		for i := range before {
			if math.Float32bits(before[i]) != math.Float32bits(n.Params()[i]) {
				t.Fatalf("%s: parameters changed on a rejected call", tc.name)
			}
		}
	}
	if _, err := Train(nil, x, y, 4, allIdx(20), good); err == nil {
		t.Error("nil network: no error")
	}
	n, _ := New(spec)
	n.Params()[13] = float32(math.NaN())
	if err := n.CheckParams(); err == nil || !strings.Contains(err.Error(), "layer 0 (dense) bias 1") {
		t.Errorf("CheckParams: %v, want it to name layer 0 (dense) bias 1", err)
	}
}

func TestTrainReportsDivergence(t *testing.T) {
	x, y := blobs(6, 20, 4, 3)
	for i := range x {
		x[i] *= 1e19
	}
	spec, _ := ParseSpec("logreg", 1, 1, 4, 3)
	n, _ := New(spec)
	n.Init(1)
	_, err := Train(n, x, y, 4, allIdx(20), TrainConfig{Epochs: 5, Batch: 5, LR: 1e6, Seed: 1})
	if err == nil || !strings.Contains(err.Error(), "diverged") || !strings.Contains(err.Error(), "epoch") {
		t.Fatalf("got %v, want a divergence error naming the epoch", err)
	}
}

func TestLossGradEvaluatePredictRejectBadInput(t *testing.T) {
	spec, _ := ParseSpec("mlp:3", 1, 1, 4, 3)
	n, _ := New(spec)
	n.Init(1)
	x := make([]float32, 8)
	if _, err := n.LossGradChecked(x, []int32{0, 5}, 2); err == nil || !strings.Contains(err.Error(), "y[1]=5") {
		t.Errorf("LossGradChecked bad label: %v", err)
	}
	if _, err := n.LossGradChecked(x[:7], []int32{0, 1}, 2); err == nil || !strings.Contains(err.Error(), "len(x)=7") {
		t.Errorf("LossGradChecked short x: %v", err)
	}
	if l := n.LossGrad(x, []int32{0}, 2); !math.IsNaN(float64(l)) {
		t.Errorf("LossGrad with len(y) != batch returned %v, want NaN", l)
	}
	if _, _, err := n.EvaluateChecked(x, []int32{0, -1}, 2); err == nil {
		t.Error("EvaluateChecked negative label: no error")
	}
	if l, a := n.Evaluate(x, []int32{0, 1}, 0); !math.IsNaN(l) || !math.IsNaN(a) {
		t.Errorf("Evaluate with count 0 = %v, %v; want NaN", l, a)
	}
	if err := n.Predict(x, 2, make([]int32, 1)); err == nil {
		t.Error("Predict with short out: no error")
	}
	if err := n.Predict(x, 3, make([]int32, 3)); err == nil {
		t.Error("Predict with short x: no error")
	}
	if err := n.SetParams(make([]float32, 3)); err == nil {
		t.Error("SetParams wrong length: no error")
	}
}

// TestEvaluateMatchesPerExample checks the chunked Evaluate and Predict
// against one-example-at-a-time LossGrad on a CNN over more examples than a
// chunk.
func TestEvaluateMatchesPerExample(t *testing.T) {
	x, y := quadrants(8, 300)
	spec, _ := ParseSpec("cnn:3,4,8", 1, 6, 6, 4)
	n, _ := New(spec)
	n.Init(2)
	loss, acc := n.Evaluate(x, y, 300)
	pred := make([]int32, 300)
	if err := n.Predict(x, 300, pred); err != nil {
		t.Fatal(err)
	}
	one, _ := New(spec)
	copy(one.Params(), n.Params())
	var sum float64
	correct := 0
	for i := 0; i < 300; i++ {
		sum += float64(one.LossGrad(x[i*36:(i+1)*36], y[i:i+1], 1))
		logits := one.forward(x[i*36:(i+1)*36], 1)
		if int32(argmax(logits)) != pred[i] {
			t.Fatalf("example %d: Predict %d, single forward %d", i, pred[i], argmax(logits))
		}
		if pred[i] == y[i] {
			correct++
		}
	}
	if !closeTo(loss, sum/300, 1e-6, 1e-5) {
		t.Fatalf("Evaluate loss %v, per-example mean %v", loss, sum/300)
	}
	if acc != float64(correct)/300 {
		t.Fatalf("Evaluate accuracy %v, per-example %v", acc, float64(correct)/300)
	}
}

// TestNoAllocationPerStep checks the hot path reuses its buffers. Shapes are
// small enough that gonum's GEMM runs serially (its parallel path starts
// goroutines, which allocate).
func TestNoAllocationPerStep(t *testing.T) {
	for _, tc := range []struct {
		arch  string
		batch int
	}{{"mlp:8,8", 8}, {"cnn:2,3,4", 2}} {
		arch, b := tc.arch, tc.batch
		spec, _ := ParseSpec(arch, 1, 6, 6, 3)
		n, _ := New(spec)
		n.Init(1)
		x, _ := quadrants(1, 64)
		y := make([]int32, 64)
		for i := range y {
			y[i] = int32(i % 3)
		}
		n.LossGrad(x[:b*36], y[:b], b)
		if a := testing.AllocsPerRun(20, func() { n.LossGrad(x[:b*36], y[:b], b) }); a != 0 {
			t.Errorf("%s: LossGrad allocates %v times per call", arch, a)
		}
		for _, cfg := range []TrainConfig{{Batch: b, LR: 0.01, Momentum: 0.9, ProxMu: 0.1}, {Batch: b, LR: 0.01}} {
			train := func(epochs int) float64 {
				cfg.Epochs = epochs
				return testing.AllocsPerRun(5, func() {
					if _, err := Train(n, x, y, 36, allIdx(64), cfg); err != nil {
						t.Fatal(err)
					}
				})
			}
			if a1, a4 := train(1), train(4); a1 != a4 {
				t.Errorf("%s %+v: Train allocates %v times for 1 epoch, %v for 4: steps allocate", arch, cfg, a1, a4)
			}
		}
	}
}

// TestTrainPlainSGDFused: without momentum, decay or proximal term Train
// applies the dense layers' steps inside backward (lossGradSGD); the result
// must match LossGrad followed by w −= lr·g done by hand, step by step, for
// an MLP and a CNN (whose conv layers take the unfused update).
func TestTrainPlainSGDFused(t *testing.T) {
	for _, arch := range []string{"mlp:6,5", "cnn:2,3,4"} {
		t.Run(arch, func(t *testing.T) {
			spec, _ := ParseSpec(arch, 1, 6, 6, 3)
			x, _ := quadrants(2, 24)
			y := make([]int32, 24)
			for i := range y {
				y[i] = int32(i % 3)
			}
			const lr, batch = 0.2, 8
			n, _ := New(spec)
			n.Init(5)
			w0 := append([]float32(nil), n.Params()...)
			// Full-batch-sized minibatches in index order: shuffling is
			// the same permutation in both, so replay it by hand.
			if _, err := Train(n, x, y, 36, allIdx(24), TrainConfig{Epochs: 2, Batch: batch, LR: lr, Seed: 9}); err != nil {
				t.Fatal(err)
			}
			m, _ := New(spec)
			copy(m.Params(), w0)
			ref := trainByHand(t, m, x, y, 36, 24, batch, 2, lr, 9)
			for i, v := range n.Params() {
				if !closeTo(float64(v), float64(ref[i]), 1e-6, 1e-4) {
					t.Fatalf("param %d (%s): fused Train %v, LossGrad+SGD by hand %v", i, n.ParamLocation(i), v, ref[i])
				}
			}
			moved := false
			for i, v := range n.Params() {
				if v != w0[i] {
					moved = true
				}
			}
			if !moved {
				t.Fatal("Train did not change the parameters")
			}
		})
	}
}

// trainByHand replays Train's shuffling (same generator and seed) with
// LossGrad and an explicit SGD step.
func trainByHand(t *testing.T, m *Network, x []float32, y []int32, dim, count, batch, epochs int, lr float32, seed int64) []float32 {
	t.Helper()
	order := allIdx(count)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x747261696e696e67))
	p := m.Params()
	for e := 0; e < epochs; e++ {
		for i := len(order) - 1; i > 0; i-- {
			j := rng.IntN(i + 1)
			order[i], order[j] = order[j], order[i]
		}
		for s := 0; s < count; s += batch {
			b := min(batch, count-s)
			bx := make([]float32, 0, b*dim)
			by := make([]int32, 0, b)
			for _, i := range order[s : s+b] {
				bx = append(bx, x[i*dim:(i+1)*dim]...)
				by = append(by, y[i])
			}
			m.LossGrad(bx, by, b)
			for i, g := range m.Grads() {
				p[i] -= lr * g
			}
		}
	}
	return p
}
