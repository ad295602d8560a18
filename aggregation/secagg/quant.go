package secagg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"unsafe"
)

// Fixed-point quantization with stochastic rounding (as used for secure
// aggregation by Bonawitz et al. 2017 §7 and, with the weight appended, in
// FedAvg-style weighted means, McMahan et al. 2017).
//
// A client with update x (clipped to [-R, R]) and weight w ∈ [0, W] sends
//
//	q = [round(w·x_1·S), …, round(w·x_d·S), round(w·S_w)]  in Z_(2^b)
//
// where round is stochastic (unbiased) rounding and negative numbers wrap
// around (two's complement in b bits). With at most n clients,
//
//	S   = (2^(b-1) - 1 - n) / (n·R·W)
//	S_w = (2^(b-1) - 1 - n) / (n·W)
//
// so that |Σ q| ≤ n·R·W·S + n ≤ 2^(b-1) - 1: the sum of any subset of the n
// clients never overflows and reads back as a signed b-bit number. Each
// rounding errs by less than one unit, so the dequantized sum errs by less
// than m/S per coordinate (m/S_w for the total weight) for m summed clients;
// see ErrorBound.

// quantBlock is how many coordinates Quantize rounds per block of random
// draws (even, so that draw pairs never straddle two blocks).
const quantBlock = 1024

// Quantizer maps weighted updates into Z_(2^b) and sums back to reals.
type Quantizer struct {
	bits    int
	clip    float64
	maxW    float64
	scale   float64
	scaleW  float64
	modMask uint32
}

// NewQuantizer returns the quantizer for b-bit arithmetic, clip range R,
// maximum weight W and at most n summed clients.
func NewQuantizer(b int, clip, maxWeight float64, n int) (*Quantizer, error) {
	if b < 8 || b > 32 {
		return nil, fmt.Errorf("secagg: quantizer bits %d out of range 8..32", b)
	}
	if !(clip > 0) || math.IsInf(clip, 0) {
		return nil, fmt.Errorf("secagg: quantizer clip range %v must be finite and > 0", clip)
	}
	if !(maxWeight > 0) || math.IsInf(maxWeight, 0) {
		return nil, fmt.Errorf("secagg: quantizer max weight %v must be finite and > 0", maxWeight)
	}
	h := headroom(b, n)
	if n < 1 || h <= 0 {
		return nil, fmt.Errorf("secagg: quantizer: %d clients do not fit in %d bits", n, b)
	}
	q := &Quantizer{
		bits:   b,
		clip:   clip,
		maxW:   maxWeight,
		scale:  h / (float64(n) * clip * maxWeight),
		scaleW: h / (float64(n) * maxWeight),
	}
	if b == 32 {
		q.modMask = math.MaxUint32
	} else {
		q.modMask = uint32(1)<<b - 1
	}
	return q, nil
}

// Scale returns S, the number of quantization units per unit of w·x.
func (q *Quantizer) Scale() float64 { return q.scale }

// WeightScale returns S_w, the number of quantization units per unit of weight.
func (q *Quantizer) WeightScale() float64 { return q.scaleW }

// ErrorBound returns the largest absolute error of a dequantized sum of m
// clients: per coordinate of Σ w_i·clip(x_i), and for Σ w_i.
func (q *Quantizer) ErrorBound(m int) (perCoord, weight float64) {
	return float64(m) / q.scale, float64(m) / q.scaleW
}

// round rounds v stochastically using 32 random bits r: up with
// probability frac(v) (to within 2^-32), so the rounding is unbiased.
func (q *Quantizer) round(v float64, r uint32) uint32 {
	f := int64(v)
	if v < float64(f) { // int64() truncates toward zero; make it floor
		f--
	}
	if uint64(r) < uint64((v-float64(f))*(1<<32)) {
		f++
	}
	return uint32(f) & q.modMask
}

// Quantize writes the quantized [w·x, w] into dst (len(x)+1 words) using
// stochastic rounding driven by rng. Coordinates are clipped to [-R, R];
// NaN or infinite coordinates and weights outside [0, W] are refused.
func (q *Quantizer) Quantize(dst []uint32, x []float32, weight float64, rng *rand.Rand) error {
	return q.quantize(dst, x, weight, func(rb []uint64) {
		for k := range rb {
			rb[k] = rng.Uint64()
		}
	})
}

// quantizeCTR is the client's Quantize: its rounding words are the
// AES-128-CTR keystream of seed (ctrWords), with AVX-512 vector AES about
// ten times the speed of a ChaCha8 generator, which at d = 200k words cost
// as much as all of a client's masks together.
func (q *Quantizer) quantizeCTR(dst []uint32, x []float32, weight float64, seed *[KeySize]byte) error {
	return q.quantize(dst, x, weight, newCTRWords(seed).fill)
}

// quantize is Quantize drawing its random words through fill, which sets
// every word of rb to the next draw of the stream.
func (q *Quantizer) quantize(dst []uint32, x []float32, weight float64, fill func(rb []uint64)) error {
	if len(dst) != len(x)+1 {
		return fmt.Errorf("%w: quantize destination has %d words, want %d", ErrInvalidInput, len(dst), len(x)+1)
	}
	if math.IsNaN(weight) || weight < 0 || weight > q.maxW {
		return fmt.Errorf("%w: weight %v outside [0, MaxWeight=%v]", ErrInvalidInput, weight, q.maxW)
	}
	ws := weight * q.scale
	lim := float32(q.clip)
	mask := q.modMask
	// The random words are drawn a block at a time (one 64-bit draw serves
	// two coordinates: the low half the even one, the high half the odd
	// one), so that the rounding loop makes no calls and its iterations
	// overlap in the CPU; the stream read is the same as one draw per pair.
	var rb [quantBlock / 2]uint64
	for base := 0; base < len(x); base += quantBlock {
		xs := x[base:min(base+quantBlock, len(x))]
		ds := dst[base : base+len(xs)]
		fill(rb[:(len(xs)+1)/2])
		done := 0
		if haveQuantAVX512 && littleEndian && len(xs) >= 8 {
			// rb read as words is the r of each coordinate below.
			done = quantAVX512(&ds[0], &xs[0], (*uint32)(unsafe.Pointer(&rb[0])), len(xs)&^7, ws, lim, mask)
		}
		for i := done; i < len(xs); i++ {
			v := xs[i]
			if v != v || v > math.MaxFloat32 || v < -math.MaxFloat32 {
				return fmt.Errorf("%w: update[%d] = %v is not finite", ErrInvalidInput, base+i, v)
			}
			if v > lim {
				v = lim
			} else if v < -lim {
				v = -lim
			}
			r := uint32(rb[i>>1] >> (32 * (i & 1)))
			// Stochastic rounding of w·x·S, as round below.
			y := float64(v) * ws
			f := math.Floor(y)
			up := uint32(0)
			if uint64(r) < uint64(int64((y-f)*(1<<32))) {
				up = 1
			}
			ds[i] = (uint32(int64(f)) + up) & mask
		}
	}
	fill(rb[:1])
	dst[len(x)] = q.round(weight*q.scaleW, uint32(rb[0]))
	return nil
}

// Dequantize reads a sum in Z_(2^b) back as signed numbers: the weighted
// sum Σ w_i·x_i (len(sum)-1 values) and the total weight Σ w_i.
func (q *Quantizer) Dequantize(sum []uint32) (weighted []float64, totalWeight float64) {
	if len(sum) == 0 {
		return nil, 0
	}
	weighted = make([]float64, len(sum)-1)
	for i := range weighted {
		weighted[i] = float64(q.signed(sum[i])) / q.scale
	}
	return weighted, float64(q.signed(sum[len(sum)-1])) / q.scaleW
}

func (q *Quantizer) signed(v uint32) int64 {
	v &= q.modMask
	if q.bits == 32 {
		return int64(int32(v))
	}
	if v >= 1<<(q.bits-1) {
		return int64(v) - int64(1)<<q.bits
	}
	return int64(v)
}
