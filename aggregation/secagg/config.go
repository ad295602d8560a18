package secagg

import (
	"fmt"
	"math"
	"math/bits"
	"time"
)

// Stage numbers the protocol stages of Bonawitz et al. 2017. The values reach
// the wire and disk: do not renumber.
type Stage int

const (
	// StageAdvertise is stage 0: clients advertise their two public keys.
	StageAdvertise Stage = 0
	// StageShareKeys is stage 1: clients send encrypted shares to neighbours.
	StageShareKeys Stage = 1
	// StageMaskedInput is stage 2: clients send their masked vectors.
	StageMaskedInput Stage = 2
	// StageUnmask is stage 3: survivors reveal the shares needed to unmask.
	StageUnmask Stage = 3
	// StageDone means the round finished (successfully or not).
	StageDone Stage = 4
	// StageConsistency is the consistency check of Bonawitz et al. 2017
	// (their round 4): between masked input and unmask, run only when
	// Config.ConsistencyCheck is set. Numbered after StageDone because the
	// values reach disk; Next orders the stages.
	StageConsistency Stage = 5
)

// Next returns the stage after s in a round with or without the
// consistency check.
func (s Stage) Next(consistency bool) Stage {
	switch {
	case s == StageMaskedInput && consistency:
		return StageConsistency
	case s == StageConsistency:
		return StageUnmask
	case s >= StageDone:
		return StageDone
	}
	return s + 1
}

// String names the stage.
func (s Stage) String() string {
	switch s {
	case StageAdvertise:
		return "advertise-keys(0)"
	case StageShareKeys:
		return "share-keys(1)"
	case StageMaskedInput:
		return "masked-input(2)"
	case StageUnmask:
		return "unmask(3)"
	case StageDone:
		return "done(4)"
	case StageConsistency:
		return "consistency-check(5)"
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// Defaults used by Config.WithDefaults for zero fields.
const (
	// DefaultBits is the default width b of the modular arithmetic Z_(2^b).
	DefaultBits = 32
	// DefaultStageTimeout is the default deadline of each server stage.
	DefaultStageTimeout = time.Minute
	// MaxDim bounds Config.Dim to keep allocations sane.
	MaxDim = 1 << 28
	// MaxClients bounds the number of sampled clients per round.
	MaxClients = 1 << 16
)

// Config is the public, per-round configuration shared by the server and all
// clients of one round. Zero Degree, Threshold, Bits and StageTimeout mean
// "use the default" (see WithDefaults).
type Config struct {
	// Round is the round number; every message carries it.
	Round uint64
	// Clients are the sampled clients' node indices, sorted ascending,
	// distinct and non-zero (they are the Shamir evaluation points).
	Clients []uint32
	// Degree k is the number of neighbours of each client in the SecAgg+
	// graph: even and ≤ n-1, or exactly n-1 (classic SecAgg). Default
	// DefaultDegree(n).
	Degree int
	// Threshold t is the number of shares needed to rebuild a client's
	// secret. A client's secrets are shared among its k neighbours and
	// itself (k+1 holders; the mask key only among the k neighbours), so
	// 2 ≤ t ≤ k+1. Default DefaultThreshold(k) = ⌊(k+1)/2⌋+1, a strict
	// majority of the holders, so that no server can collect t shares of
	// both secrets of one client even by telling different neighbours
	// different stories (Bell et al. 2020, §4).
	Threshold int
	// Bits b is the width of the modular arithmetic: vectors live in
	// Z_(2^b), 8 ≤ b ≤ 32. Default 32.
	Bits int
	// ClipRange R: each update coordinate is clipped to [-R, R].
	ClipRange float64
	// MaxWeight is the largest weight (example count) a client may use.
	MaxWeight float64
	// Dim is the length d of the update vector (the masked vector has d+1
	// entries: the weighted update and the weight).
	Dim int
	// GraphSeed is the public seed of the neighbour graph.
	GraphSeed [32]byte
	// StageTimeout is the server's deadline for each stage, measured from
	// the time the stage opened. Default one minute.
	StageTimeout time.Duration
	// ConsistencyCheck runs the consistency-check stage of Bonawitz et al.
	// 2017 between masked input and unmask: every survivor signs the
	// survivor set it was told, and a client reveals a share of a
	// neighbour's secret only if at least Threshold holders of that secret
	// signed the same set. With an Authenticator the signatures are checked
	// against the clients' identities; without one they only count.
	ConsistencyCheck bool
}

// DefaultDegree returns the SecAgg+ default degree for n clients:
// 2·⌈log2 n⌉, rounded up to even and capped at n-1.
func DefaultDegree(n int) int {
	if n <= 1 {
		return 0
	}
	k := 2 * bits.Len(uint(n-1)) // 2·⌈log2 n⌉
	if k%2 == 1 {
		k++
	}
	if k > n-1 {
		k = n - 1
	}
	return k
}

// DefaultThreshold returns ⌊(k+1)/2⌋+1 capped at k+1: a strict majority of
// the k+1 holders of a client's self-mask seed.
func DefaultThreshold(k int) int {
	t := (k+1)/2 + 1
	if t > k+1 {
		t = k + 1
	}
	return t
}

// WithDefaults returns a copy of c with zero Degree, Threshold, Bits and
// StageTimeout replaced by their defaults. Clients is not copied.
func (c Config) WithDefaults() Config {
	n := len(c.Clients)
	if c.Degree == 0 {
		c.Degree = DefaultDegree(n)
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold(c.Degree)
	}
	if c.Bits == 0 {
		c.Bits = DefaultBits
	}
	if c.StageTimeout == 0 {
		c.StageTimeout = DefaultStageTimeout
	}
	return c
}

// Validate checks the configuration after defaults are applied; its errors
// name the field and its limit.
func (c Config) Validate() error {
	c = c.WithDefaults()
	n := len(c.Clients)
	if n < 2 || n > MaxClients {
		return fmt.Errorf("secagg: Config.Clients has %d entries, need 2..%d", n, MaxClients)
	}
	for i, id := range c.Clients {
		if id == 0 {
			return fmt.Errorf("secagg: Config.Clients[%d] is 0; client indices must be ≥ 1", i)
		}
		if i > 0 && id <= c.Clients[i-1] {
			return fmt.Errorf("secagg: Config.Clients must be sorted and distinct: Clients[%d]=%d after %d", i, id, c.Clients[i-1])
		}
	}
	if c.Degree < 1 || c.Degree > n-1 {
		return fmt.Errorf("secagg: Config.Degree %d out of range 1..%d (n-1)", c.Degree, n-1)
	}
	if c.Degree != n-1 && c.Degree%2 != 0 {
		return fmt.Errorf("secagg: Config.Degree %d must be even (or exactly n-1 = %d)", c.Degree, n-1)
	}
	if c.Threshold < 2 || c.Threshold > c.Degree+1 {
		return fmt.Errorf("secagg: Config.Threshold %d out of range 2..%d (Degree+1)", c.Threshold, c.Degree+1)
	}
	if lo := SafeThreshold(c.Degree, 0); c.Threshold < lo {
		// Below a strict majority of a secret's k+1 holders a coordinator
		// that tells two halves different survivor sets rebuilds both of
		// a victim's secrets without any colluding worker (security
		// review H2; Bonawitz et al. 2017 §4).
		return fmt.Errorf("secagg: Config.Threshold %d is below %d, a strict majority of the %d holders of each secret", c.Threshold, lo, c.Degree+1)
	}
	if c.Bits < 8 || c.Bits > 32 {
		return fmt.Errorf("secagg: Config.Bits %d out of range 8..32", c.Bits)
	}
	if !(c.ClipRange > 0) || math.IsInf(c.ClipRange, 0) {
		return fmt.Errorf("secagg: Config.ClipRange %v must be finite and > 0", c.ClipRange)
	}
	if !(c.MaxWeight > 0) || math.IsInf(c.MaxWeight, 0) {
		return fmt.Errorf("secagg: Config.MaxWeight %v must be finite and > 0", c.MaxWeight)
	}
	if c.Dim < 1 || c.Dim > MaxDim {
		return fmt.Errorf("secagg: Config.Dim %d out of range 1..%d", c.Dim, MaxDim)
	}
	if c.StageTimeout < 0 {
		return fmt.Errorf("secagg: Config.StageTimeout %v must be > 0", c.StageTimeout)
	}
	if headroom(c.Bits, n) <= 0 {
		return fmt.Errorf("secagg: Config.Bits %d too small for %d clients: need 2^(Bits-1) > n+1", c.Bits, n)
	}
	return nil
}

// headroom is the largest magnitude the quantized sum of n clients may take
// in Z_(2^b) read as signed: 2^(b-1) - 1 - n (n units are reserved for the
// stochastic rounding of each client).
func headroom(b, n int) float64 {
	return math.Ldexp(1, b-1) - 1 - float64(n)
}
