package secagg

import (
	"fmt"
	"math"
)

// SafeThreshold returns ⌊(k+1+c)/2⌋+1, the smallest threshold t with
// 2t > k+1+c. A client's self-mask seed has k+1 holders (its k neighbours
// and itself) and its mask key k. To rebuild both secrets of one client a
// server must collect t shares of each; c colluding holders give both, so
// it needs 2(t-c) distinct honest holders out of at most k+1-c, i.e.
// 2t ≤ k+1+c — whatever survivor stories it tells (security review H2;
// Bell et al. 2020 size t the same way against a δ-fraction of corrupted
// clients). The result is capped at k+1.
func SafeThreshold(k, c int) int {
	t := (k+1+c)/2 + 1
	if t > k+1 {
		t = k + 1
	}
	return t
}

// binomTail returns log P[X ≥ c] for X ~ Binomial(k, p).
func binomTail(k, c int, p float64) float64 {
	if c <= 0 {
		return 0
	}
	if c > k || p <= 0 {
		return math.Inf(-1)
	}
	if p >= 1 {
		return 0
	}
	lg := func(x int) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
	acc := math.Inf(-1)
	for i := c; i <= k; i++ {
		l := lg(k) - lg(i) - lg(k-i) + float64(i)*math.Log(p) + float64(k-i)*math.Log1p(-p)
		acc = logAdd(acc, l)
	}
	return acc
}

// binomHead returns log P[X < c] for X ~ Binomial(k, p).
func binomHead(k, c int, p float64) float64 {
	return binomTail(k, k-c+1, 1-p) // X < c  ⇔  k-X > k-c
}

func logAdd(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if b > a {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// Params are SecAgg+ parameters sized for a stated adversary.
type Params struct {
	// Degree k and Threshold t of the round.
	Degree, Threshold int
	// Colluders c is the number of colluding neighbours of one client that
	// t tolerates (t = SafeThreshold(k, c)).
	Colluders int
	// Log2Privacy is log2 of the probability, union-bounded over the n
	// clients, that some client has more than c colluding neighbours.
	Log2Privacy float64
	// Log2Failure is log2 of the probability, union-bounded over the n
	// clients, that some secret has fewer than t honest surviving holders.
	Log2Failure float64
}

// ParamsFor sizes SecAgg+ for n clients of which a fraction gamma collude
// with the server and a fraction delta drop out, so that both the privacy
// failure (some client has more than c colluding neighbours) and the
// correctness failure (some secret has fewer than t honest, surviving
// holders) have probability at most 2^-secBits, union-bounded over the n
// clients. This follows the analysis of Bell et al. 2020 (§3.2, Theorems
// 3.5–3.6: a random k-regular graph, per-client binomial tails); we use
// the binomial tail with p = gamma for the colluders among k neighbours
// (an upper bound for sampling without replacement) and with p = (1-γ)(1-δ)
// for the honest surviving holders among k. It returns the smallest even k
// (or k = n-1) that satisfies both, or an error naming the bound that no
// k ≤ n-1 meets.
func ParamsFor(n int, gamma, delta float64, secBits int) (Params, error) {
	if n < 3 {
		return Params{}, fmt.Errorf("secagg: ParamsFor: n = %d, need ≥ 3", n)
	}
	if !(gamma >= 0 && gamma < 1) || !(delta >= 0 && delta < 1) {
		return Params{}, fmt.Errorf("secagg: ParamsFor: gamma %v and delta %v must be in [0, 1)", gamma, delta)
	}
	// Per-client goal: 2^-secBits / n.
	goal := -float64(secBits)*math.Ln2 - math.Log(float64(n))
	honest := (1 - gamma) * (1 - delta)
	var cands []int
	for k := 2; k < n-1; k += 2 {
		cands = append(cands, k)
	}
	cands = append(cands, n-1)
	var best Params
	for _, k := range cands {
		p, ok := sized(k, n, gamma, honest, goal)
		if ok {
			return p, nil
		}
		best = p
	}
	return best, fmt.Errorf("secagg: ParamsFor: no degree k ≤ %d reaches 2^-%d for n=%d, γ=%v, δ=%v (k=%d: privacy 2^%.1f, failure 2^%.1f)",
		n-1, secBits, n, gamma, delta, best.Degree, best.Log2Privacy, best.Log2Failure)
}

// ColludersFor returns the number c of colluding neighbours (among k) that
// a client must assume when a fraction gamma of n clients collude with the
// server: the smallest c such that P[some client has more than c colluding
// neighbours] ≤ 2^-secBits (the binomial tail with p = gamma, union-bounded
// over the n clients, as in ParamsFor). With c ≥ k no threshold protects.
func ColludersFor(k, n int, gamma float64, secBits int) int {
	if gamma <= 0 || k <= 0 {
		return 0
	}
	goal := -float64(secBits)*math.Ln2 - math.Log(float64(max(n, 1)))
	c := 0
	for c < k && binomTail(k, c+1, gamma) > goal {
		c++
	}
	return c
}

// sized derives c and t for degree k and reports whether both failure
// probabilities per client are at most e^goal.
func sized(k, n int, gamma, honest, goal float64) (Params, bool) {
	c := 0
	for c < k && binomTail(k, c+1, gamma) > goal {
		c++
	}
	t := SafeThreshold(k, c)
	priv := binomTail(k, c+1, gamma)
	// The mask key has k holders (the self-mask seed k+1): count k.
	fail := binomHead(k, t, honest)
	ln := math.Log(float64(n))
	p := Params{Degree: k, Threshold: t, Colluders: c, Log2Privacy: (priv + ln) / math.Ln2, Log2Failure: (fail + ln) / math.Ln2}
	return p, c < t && t <= k && priv <= goal && fail <= goal
}
