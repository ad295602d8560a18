package secagg

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestQuantizationErrorBound(t *testing.T) {
	for _, tc := range []struct {
		bits       int
		clip, maxW float64
		n          int
	}{{32, 1, 100, 10}, {32, 0.05, 1e4, 500}, {16, 2, 3, 20}, {12, 1, 1, 100}} {
		q, err := NewQuantizer(tc.bits, tc.clip, tc.maxW, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(seeded(uint64(tc.bits)))
		const dim = 200
		sum := make([]uint32, dim+1)
		plain := make([]float64, dim)
		tw := 0.0
		for range tc.n { // the worst case: all n clients, extreme values
			x := make([]float32, dim)
			for i := range x {
				switch i % 4 {
				case 0:
					x[i] = float32(tc.clip * 5) // clipped to +R
				case 1:
					x[i] = float32(-tc.clip * 5) // clipped to -R
				default:
					x[i] = float32((2*r.Float64() - 1) * tc.clip)
				}
			}
			w := tc.maxW
			if r.IntN(2) == 0 {
				w = r.Float64() * tc.maxW
			}
			q1 := make([]uint32, dim+1)
			if err := q.Quantize(q1, x, w, r); err != nil {
				t.Fatal(err)
			}
			for i := range sum {
				sum[i] += q1[i]
			}
			for i, v := range x {
				plain[i] += w * float64(float32(min(max(float64(v), -tc.clip), tc.clip)))
			}
			tw += w
		}
		reduceBits(sum, tc.bits)
		got, gw := q.Dequantize(sum)
		bc, bw := q.ErrorBound(tc.n)
		if math.Abs(gw-tw) > bw {
			t.Fatalf("%+v: weight error %v above bound %v", tc, gw-tw, bw)
		}
		worst := 0.0
		for i := range plain {
			worst = max(worst, math.Abs(got[i]-plain[i]))
		}
		if worst > bc {
			t.Fatalf("%+v: error %v above bound %v (overflow?)", tc, worst, bc)
		}
		// The documented formula: m/S with S = (2^(b-1)-1-n)/(n·R·W).
		h := math.Ldexp(1, tc.bits-1) - 1 - float64(tc.n)
		if want := float64(tc.n) * float64(tc.n) * tc.clip * tc.maxW / h; math.Abs(bc-want) > 1e-9*want {
			t.Fatalf("%+v: bound %v, formula gives %v", tc, bc, want)
		}
	}
}

// TestStochasticRoundingUnbiased: the mean of many roundings of the same
// value approaches it far closer than one rounding unit.
func TestStochasticRoundingUnbiased(t *testing.T) {
	q, _ := NewQuantizer(32, 1, 1, 1<<20)
	r := rand.New(seeded(6))
	x := []float32{0.3}
	v := float64(float32(0.3)) * q.Scale()
	const trials = 20000
	total := 0.0
	dst := make([]uint32, 2)
	for range trials {
		q.Quantize(dst, x, 1, r)
		total += float64(int32(dst[0]))
	}
	if mean := total / trials; math.Abs(mean-v) > 0.02 {
		t.Fatalf("mean rounding %v, value %v: biased", mean, v)
	}
}

func TestQuantizerRefuses(t *testing.T) {
	q, _ := NewQuantizer(32, 1, 10, 4)
	dst := make([]uint32, 3)
	for name, tc := range map[string]struct {
		x []float32
		w float64
	}{
		"NaN":        {[]float32{float32(math.NaN()), 0}, 1},
		"Inf":        {[]float32{0, float32(math.Inf(-1))}, 1},
		"weight>max": {[]float32{0, 0}, 11},
		"weight<0":   {[]float32{0, 0}, -1},
		"weight NaN": {[]float32{0, 0}, math.NaN()},
		"wrong size": {[]float32{0}, 1},
	} {
		if err := q.Quantize(dst, tc.x, tc.w, rand.New(seeded(1))); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("%s: err = %v", name, err)
		}
	}
	for _, bad := range []struct {
		b    int
		c, w float64
		n    int
	}{{7, 1, 1, 2}, {33, 1, 1, 2}, {32, 0, 1, 2}, {32, 1, math.Inf(1), 2}, {8, 1, 1, 200}} {
		if _, err := NewQuantizer(bad.b, bad.c, bad.w, bad.n); err == nil {
			t.Fatalf("NewQuantizer%+v accepted", bad)
		}
	}
}

// quantizeRef is the one-draw-per-pair loop Quantize was before it drew its
// random words a block at a time.
func quantizeRef(q *Quantizer, dst []uint32, x []float32, weight float64, rng *rand.Rand) {
	ws := weight * q.scale
	lim := float32(q.clip)
	var bits uint64
	for i, v := range x {
		if v > lim {
			v = lim
		} else if v < -lim {
			v = -lim
		}
		if i&1 == 0 {
			bits = rng.Uint64()
		} else {
			bits >>= 32
		}
		dst[i] = q.round(float64(v)*ws, uint32(bits))
	}
	dst[len(x)] = q.round(weight*q.scaleW, uint32(rng.Uint64()))
}

// Quantize and the client's quantizeCTR give exactly the words of the
// reference loop, for lengths around the block size (odd and even), with
// clipped, negative and zero coordinates, in 32 and fewer bits.
func TestQuantizeBlockedMatchesReference(t *testing.T) {
	r := rand.New(seeded(21))
	for _, bits := range []int{32, 20} {
		q, err := NewQuantizer(bits, 1, 10, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1, 2, 1023, 1024, 1025, 3001} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(3*r.Float64() - 1.5)
				if i%7 == 0 {
					x[i] = 0
				}
			}
			w := 10 * r.Float64()
			want := make([]uint32, n+1)
			quantizeRef(q, want, x, w, rand.New(seeded(uint64(n))))
			got := make([]uint32, n+1)
			if err := q.Quantize(got, x, w, rand.New(seeded(uint64(n)))); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("bits=%d n=%d: Quantize differs from the reference loop", bits, n)
			}
			var seed [KeySize]byte
			seed[0], seed[5] = byte(n), byte(bits)
			want = make([]uint32, n+1)
			quantizeRef(q, want, x, w, rand.New(&keystreamSource{words: naiveExpand(seed, 2*(n+3))}))
			clear(got)
			if err := q.quantizeCTR(got, x, w, &seed); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("bits=%d n=%d: quantizeCTR differs from the reference loop over the AES-CTR keystream", bits, n)
			}
		}
	}
}

// The AVX-512 rounding kernel and the Go loop give the same words, and a
// NaN or infinity inside a kernel step is still reported at its index.
func TestQuantizeKernelMatchesGo(t *testing.T) {
	if !haveQuantAVX512 {
		t.Skip("this CPU lacks AVX-512 DQ/VL, so quantize never runs the AVX-512 rounding kernel; the Go loop it uses instead is checked by TestQuantizeBlockedMatchesReference")
	}
	q, err := NewQuantizer(32, 0.5, 4, 1000)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(seeded(31))
	x := make([]float32, 5000)
	for i := range x {
		switch i % 5 {
		case 0:
			x[i] = float32(r.NormFloat64() * 1e-3)
		case 1:
			x[i] = float32(r.NormFloat64() * 10) // clipped
		case 2:
			x[i] = -float32(i%7) / float32(q.scale*3) // near grid points
		default:
			x[i] = float32(r.Float64() - 0.5)
		}
	}
	var seed [KeySize]byte
	seed[3] = 9
	fast := make([]uint32, len(x)+1)
	if err := q.quantizeCTR(fast, x, 3.5, &seed); err != nil {
		t.Fatal(err)
	}
	haveQuantAVX512 = false
	slow := make([]uint32, len(x)+1)
	err = q.quantizeCTR(slow, x, 3.5, &seed)
	haveQuantAVX512 = true
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fast, slow) {
		t.Fatal("AVX-512 quantization differs from the Go loop")
	}
	for _, at := range []int{0, 13, 1030, 4999} {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
			y := slices.Clone(x)
			y[at] = bad
			err := q.quantizeCTR(fast, y, 1, &seed)
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), fmt.Sprintf("update[%d]", at)) {
				t.Fatalf("%v at %d: err = %v", bad, at, err)
			}
		}
	}
}

// keystreamSource is a rand.Source reading uint32 keystream words in
// pairs as little-endian uint64 (low word first).
type keystreamSource struct {
	words []uint32
	i     int
}

func (k *keystreamSource) Uint64() uint64 {
	v := uint64(k.words[k.i]) | uint64(k.words[k.i+1])<<32
	k.i += 2
	return v
}
