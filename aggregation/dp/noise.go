// Package dp holds the differential-privacy pieces of a federated round:
// clipping an update to a bounded L2 norm, adding Gaussian noise (at the
// aggregator, or split across clients for use under secure aggregation), and
// a Rényi-DP accountant for the sampled Gaussian mechanism that turns the
// rounds run so far into an (ε, δ) guarantee.
//
// The package works on flat vectors and plain numbers and imports nothing of
// the project. Every random draw takes a caller-supplied, seeded source.
//
// References:
//   - Abadi et al. 2016, "Deep Learning with Differential Privacy" (clipping,
//     the sampled Gaussian mechanism, the moments accountant).
//   - McMahan, Ramage, Talwar, Zhang 2018, "Learning Differentially Private
//     Recurrent Language Models" (DP-FedAvg: per-client clipping, noise σ·C
//     on the sum of client updates).
//   - Mironov 2017, "Rényi Differential Privacy" (RDP, composition, the
//     classic conversion to (ε, δ)).
//   - Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled
//     Gaussian Mechanism", arXiv:1908.10530 (the computation of A_α).
//   - Balle, Barthe, Gaboardi, Hsu, Sato 2020, "Hypothesis Testing
//     Interpretations and Rényi Differential Privacy", AISTATS, Theorem 21
//     (the tighter conversion to (ε, δ)).
//   - Kairouz, Liu, Steinke 2021, "The Distributed Discrete Gaussian
//     Mechanism for Federated Learning with Secure Aggregation", and Truex
//     et al. 2019, "A Hybrid Approach to Privacy-Preserving Federated
//     Learning" (splitting the noise across clients).
package dp

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sovereign-fl/sovereign/internal/finite"
)

// ClipL2 scales v in place so that its Euclidean norm is at most c and
// returns the norm v had before clipping (Abadi et al. 2016, §3.1; McMahan
// et al. 2018, Algorithm 1 "ClipFn"). A vector already inside the ball is
// left untouched.
//
// The norm is accumulated in float64, which cannot overflow for float32
// inputs. Contracts for unusual inputs, chosen so that a mistake never lets
// an unbounded update through:
//   - c = +Inf means no clipping;
//   - c ≤ 0 or NaN clips to the zero ball: v is set to all zeros;
//   - if v holds a NaN or ±Inf coordinate the returned norm is NaN or +Inf
//     and v is left unchanged: such an update must be refused by the caller
//     (CheckFinite names the offending coordinate).
func ClipL2(v []float32, c float64) float64 {
	norm := L2Norm(v)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm
	}
	if math.IsNaN(c) || c <= 0 {
		clear(v)
		return norm
	}
	if norm <= c {
		return norm
	}
	scale := float32(c / norm)
	for i := range v {
		v[i] *= scale
	}
	// Rounding to float32 can leave the result a few ulps above c; shrink
	// by the measured excess (at least one ulp) until the bound holds.
	after := L2Norm(v)
	for range 8 {
		if after <= c {
			break
		}
		s := float32(c / after)
		if s >= 1 {
			s = math.Nextafter32(1, 0)
		}
		for i := range v {
			v[i] *= s
		}
		after = L2Norm(v)
	}
	return norm
}

// L2Norm returns the Euclidean norm of v, accumulated in float64.
func L2Norm(v []float32) float64 {
	// Four independent accumulators let the additions overlap.
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		a, b, c, d := float64(v[i]), float64(v[i+1]), float64(v[i+2]), float64(v[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(v); i++ {
		a := float64(v[i])
		s0 += a * a
	}
	return math.Sqrt((s0 + s1) + (s2 + s3))
}

// CheckFinite returns an error naming the first coordinate of v that is NaN
// or ±Inf, or nil when every coordinate is finite.
func CheckFinite(v []float32) error {
	if i := finite.First(v); i >= 0 {
		return fmt.Errorf("dp: coordinate %d of the update is %v", i, v[i])
	}
	return nil
}

// AddGaussian adds independent N(0, std²) noise to every coordinate of v,
// drawing from rng (a math/rand/v2 source the caller seeds, e.g.
// rand.New(rand.NewPCG(seed, stream)) or rand.New(rand.NewChaCha8(seed)); the
// same seed gives the same noise). std = 0 leaves v unchanged.
//
// It returns an error, and leaves v unchanged, when std is negative, NaN or
// infinite, or when rng is nil: a silent no-op there would release an
// update without the noise its privacy guarantee assumes.
func AddGaussian(v []float32, std float64, rng *rand.Rand) error {
	if math.IsNaN(std) || math.IsInf(std, 0) || std < 0 {
		return fmt.Errorf("dp: noise std must be finite and >= 0, got %v", std)
	}
	if rng == nil {
		return errors.New("dp: AddGaussian needs a seeded random source, got nil")
	}
	if std == 0 {
		return nil
	}
	for i, x := range v {
		v[i] = float32(float64(x) + std*rng.NormFloat64())
	}
	return nil
}

// CentralStd is the standard deviation of the Gaussian noise the aggregator
// adds to the sum of clipped updates in central DP: σ·C, where σ is the noise
// multiplier and C the clipping bound, i.e. the L2 sensitivity of the sum
// under adding or removing one client (McMahan et al. 2018, Algorithm 1).
// The accountant's noise multiplier is then exactly σ.
//
// Invalid inputs (negative or NaN σ or C) give NaN, which AddGaussian
// refuses; Params.Validate reports them with the field named.
func CentralStd(sigma, clip float64) float64 {
	if !(sigma >= 0) || !(clip >= 0) {
		return math.NaN()
	}
	return sigma * clip
}

// DistributedStd is the standard deviation each client adds to its own
// clipped update, before quantization and masking, in distributed DP:
// σ·C/√t, where t is the fewest clients a released sum may contain (the
// coordinator aborts a round with fewer survivors).
//
// Independent Gaussians add variances, so a sum over n ≥ t clients carries
// noise of variance n·σ²C²/t ≥ σ²C²: at least the central noise σ·C, and the
// accountant may use noise multiplier σ for it. The server, which only ever
// sees the unmasked sum under secure aggregation, learns nothing with less
// noise than that. Each client alone carries only σ·C/√t, which is why the
// guarantee is stated for the sum and relies on secure aggregation hiding the
// individual updates (Truex et al. 2019, §4; Kairouz, Liu, Steinke 2021, §1
// and §4, which also treats the discretization this package leaves to the
// quantizer). A colluding set of t-1 clients could subtract its own noise;
// choose t with that in mind (Kairouz et al. 2021 discuss the trade-off).
//
// minClients < 1 is treated as 1 (each client adds the full σ·C, the most
// conservative reading). Invalid σ or C give NaN, as in CentralStd.
func DistributedStd(sigma, clip float64, minClients int) float64 {
	if !(sigma >= 0) || !(clip >= 0) {
		return math.NaN()
	}
	if minClients < 1 {
		minClients = 1
	}
	return sigma * clip / math.Sqrt(float64(minClients))
}

// Params gathers the privacy knobs of one federation.
type Params struct {
	// Clip is the L2 bound C every client update is clipped to.
	Clip float64
	// NoiseMultiplier is σ: the noise on the sum has std σ·C.
	NoiseMultiplier float64
	// MinClients is the fewest clients a released sum may contain; used by
	// distributed noise only.
	MinClients int
}

// Validate returns an error naming the first field outside its range:
// Clip must be finite and > 0, NoiseMultiplier finite and > 0, MinClients
// at least 1.
func (p Params) Validate() error {
	if math.IsNaN(p.Clip) || math.IsInf(p.Clip, 0) || p.Clip <= 0 {
		return fmt.Errorf("dp: Clip must be finite and > 0, got %v", p.Clip)
	}
	if math.IsNaN(p.NoiseMultiplier) || math.IsInf(p.NoiseMultiplier, 0) || p.NoiseMultiplier <= 0 {
		return fmt.Errorf("dp: NoiseMultiplier must be finite and > 0, got %v", p.NoiseMultiplier)
	}
	if p.MinClients < 1 {
		return fmt.Errorf("dp: MinClients must be >= 1, got %d", p.MinClients)
	}
	return nil
}

// CentralStd returns CentralStd(p.NoiseMultiplier, p.Clip).
func (p Params) CentralStd() float64 { return CentralStd(p.NoiseMultiplier, p.Clip) }

// DistributedStd returns DistributedStd(p.NoiseMultiplier, p.Clip, p.MinClients).
func (p Params) DistributedStd() float64 {
	return DistributedStd(p.NoiseMultiplier, p.Clip, p.MinClients)
}
