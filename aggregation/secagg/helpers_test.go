package secagg

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// testConfig uses non-contiguous client indices on purpose.
func testConfig(n, dim int) Config {
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(3*i + 2)
	}
	var gs [32]byte
	gs[0] = 42
	return Config{Round: 7, Clients: ids, ClipRange: 1, MaxWeight: 100, Dim: dim, GraphSeed: gs, StageTimeout: time.Second}
}

func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

// testInputs draws updates in [-1.2, 1.2] (so some get clipped) and integer
// weights in [1, MaxWeight].
func testInputs(cfg Config, seed uint64) (map[uint32][]float32, map[uint32]float64) {
	r := rand.New(seeded(seed))
	up := map[uint32][]float32{}
	w := map[uint32]float64{}
	for _, id := range cfg.Clients {
		x := make([]float32, cfg.Dim)
		for i := range x {
			x[i] = float32(2.4*r.Float64() - 1.2)
		}
		up[id] = x
		w[id] = float64(1 + r.IntN(int(cfg.MaxWeight)))
	}
	return up, w
}

// plainSum is the naive weighted sum of the clipped updates of ids.
func plainSum(cfg Config, up map[uint32][]float32, w map[uint32]float64, ids []uint32) ([]float64, float64) {
	s := make([]float64, cfg.Dim)
	tw := 0.0
	for _, id := range ids {
		for i, v := range up[id] {
			x := min(max(float64(v), -cfg.ClipRange), cfg.ClipRange)
			s[i] += w[id] * float64(float32(x))
		}
		tw += w[id]
	}
	return s, tw
}

// captureQuantized records each client's quantized vector before masking.
func captureQuantized(t *testing.T) map[uint32][]uint32 {
	got := map[uint32][]uint32{}
	testHookQuantized = func(id uint32, q []uint32) { got[id] = slices.Clone(q) }
	t.Cleanup(func() { testHookQuantized = nil })
	return got
}

// checkExact verifies that out is exactly the dequantized sum of the
// survivors' quantized vectors, and within the quantization bound of the
// plain weighted sum.
func checkExact(t *testing.T, cfg Config, out *Outcome, q map[uint32][]uint32, up map[uint32][]float32, w map[uint32]float64) {
	t.Helper()
	cfg = cfg.WithDefaults()
	quant, err := NewQuantizer(cfg.Bits, cfg.ClipRange, cfg.MaxWeight, len(cfg.Clients))
	if err != nil {
		t.Fatal(err)
	}
	exp := make([]uint32, cfg.Dim+1)
	for _, id := range out.Survivors {
		for i, v := range q[id] {
			exp[i] += v
		}
	}
	reduceBits(exp, cfg.Bits)
	es, ew := quant.Dequantize(exp)
	if ew != out.TotalWeight {
		t.Fatalf("total weight %v, want exactly %v", out.TotalWeight, ew)
	}
	for i := range es {
		if es[i] != out.Sum[i] {
			t.Fatalf("sum[%d] = %v, want exactly %v", i, out.Sum[i], es[i])
		}
	}
	ps, pw := plainSum(cfg, up, w, out.Survivors)
	bc, bw := quant.ErrorBound(len(out.Survivors))
	if d := out.TotalWeight - pw; d > bw || d < -bw {
		t.Fatalf("total weight %v vs plain %v: error %v above bound %v", out.TotalWeight, pw, d, bw)
	}
	for i := range ps {
		if d := out.Sum[i] - ps[i]; d > bc || d < -bc {
			t.Fatalf("sum[%d] = %v vs plain %v: error %v above bound %v", i, out.Sum[i], ps[i], d, bc)
		}
	}
}

func nan() float64 { return math.NaN() }
