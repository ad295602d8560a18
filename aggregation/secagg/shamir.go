package secagg

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"strings"
)

// Shamir secret sharing (Shamir 1979, "How to Share a Secret"; used by
// Bonawitz et al. 2017 §3) of 256-bit secrets. Instead of one big prime field
// the secret is split into eight 32-bit limbs, each shared independently over
// the Mersenne prime field GF(p), p = 2^61 - 1, with the same evaluation
// points. Each limb's sharing is perfectly hiding for fewer than t shares, so
// the concatenation is too; arithmetic stays in uint64 (no math/big).
//
// A share is the value of the t-1 degree polynomials at x = holder index
// (client indices are ≥ 1 and < p), encoded as eight big-endian uint64s.

const (
	fieldP      = (1 << 61) - 1
	secretLimbs = KeySize / 4
	// ShareSize is the encoded size of one Shamir share of a 256-bit secret.
	ShareSize = secretLimbs * 8
)

func fAdd(a, b uint64) uint64 {
	r := a + b
	if r >= fieldP {
		r -= fieldP
	}
	return r
}

func fSub(a, b uint64) uint64 {
	if a >= b {
		return a - b
	}
	return a + fieldP - b
}

// fMul multiplies a, b < p modulo p = 2^61-1 using 2^61 ≡ 1.
func fMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	r := (lo & fieldP) + (lo>>61 | hi<<3)
	r = (r & fieldP) + (r >> 61)
	if r >= fieldP {
		r -= fieldP
	}
	return r
}

func fPow(a, e uint64) uint64 {
	r := uint64(1)
	for e > 0 {
		if e&1 == 1 {
			r = fMul(r, a)
		}
		a = fMul(a, a)
		e >>= 1
	}
	return r
}

func fInv(a uint64) uint64 { return fPow(a, fieldP-2) }

// randField reads uniform elements of GF(p) from r by rejection sampling.
func randField(r io.Reader, out []uint64) error {
	buf := make([]byte, 8*len(out))
	i := 0
	for i < len(out) {
		need := buf[:8*(len(out)-i)]
		if _, err := io.ReadFull(r, need); err != nil {
			return fmt.Errorf("secagg: reading share randomness: %w", err)
		}
		for j := 0; j+8 <= len(need); j += 8 {
			v := binary.LittleEndian.Uint64(need[j:]) & fieldP
			if v != fieldP { // reject the single value ≡ 0 that is out of range
				out[i] = v
				i++
			}
		}
	}
	return nil
}

// splitSecret shares a 32-byte secret among holders xs (distinct, non-zero)
// so that any t of them rebuild it. It returns one ShareSize-byte share per
// holder, in the order of xs.
func splitSecret(secret []byte, xs []uint32, t int, r io.Reader) ([][]byte, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("secagg: secret has %d bytes, want %d", len(secret), KeySize)
	}
	if t < 1 || t > len(xs) {
		return nil, fmt.Errorf("secagg: threshold %d out of range 1..%d holders", t, len(xs))
	}
	// coef[l*(t-1)+j] is the coefficient of x^(j+1) of limb l.
	coef := make([]uint64, secretLimbs*(t-1))
	if err := randField(r, coef); err != nil {
		return nil, err
	}
	out := make([][]byte, len(xs))
	flat := make([]byte, ShareSize*len(xs))
	for h, x32 := range xs {
		if x32 == 0 {
			return nil, fmt.Errorf("secagg: share holder index 0 is not allowed")
		}
		x := uint64(x32)
		sh := flat[h*ShareSize : (h+1)*ShareSize : (h+1)*ShareSize]
		for l := 0; l < secretLimbs; l++ {
			c := coef[l*(t-1) : (l+1)*(t-1)]
			// Horner: f(x) = s + x(c0 + x(c1 + ...)).
			acc := uint64(0)
			for j := len(c) - 1; j >= 0; j-- {
				acc = fAdd(fMul(acc, x), c[j])
			}
			acc = fAdd(fMul(acc, x), uint64(binary.BigEndian.Uint32(secret[4*l:])))
			binary.BigEndian.PutUint64(sh[8*l:], acc)
		}
		out[h] = sh
	}
	return out, nil
}

// lagrangeAtZero returns the coefficients λ_j = Π_{m≠j} x_m / (x_m - x_j) of
// the Lagrange interpolation at 0 for the distinct points xs.
func lagrangeAtZero(xs []uint32) ([]uint64, error) {
	lam := make([]uint64, len(xs))
	for j, xj := range xs {
		num, den := uint64(1), uint64(1)
		for m, xm := range xs {
			if m == j {
				continue
			}
			if xm == xj {
				return nil, fmt.Errorf("secagg: duplicate share holder %d", xj)
			}
			num = fMul(num, uint64(xm))
			den = fMul(den, fSub(uint64(xm), uint64(xj)))
		}
		lam[j] = fMul(num, fInv(den))
	}
	return lam, nil
}

// lagrangeAt returns the coefficients λ_j(x) = Π_{m≠j} (x - x_m)/(x_j - x_m)
// that evaluate at x the polynomial through the distinct points xs.
func lagrangeAt(xs []uint32, x uint64) []uint64 {
	lam := make([]uint64, len(xs))
	for j, xj := range xs {
		num, den := uint64(1), uint64(1)
		for m, xm := range xs {
			if m == j {
				continue
			}
			num = fMul(num, fSub(x%fieldP, uint64(xm)))
			den = fMul(den, fSub(uint64(xj), uint64(xm)))
		}
		lam[j] = fMul(num, fInv(den))
	}
	return lam
}

// lagrangeCache memoises Lagrange coefficients by holder set: in classic
// SecAgg every secret is rebuilt from the same holders.
type lagrangeCache map[string][]uint64

func lagrangeKey(xs []uint32) string {
	var sb strings.Builder
	for _, x := range xs {
		sb.WriteString(strconv.FormatUint(uint64(x), 36))
		sb.WriteByte(',')
	}
	return sb.String()
}

// at is lagrangeAt(xs, x), memoised too: in classic SecAgg the server
// checks the same spare holders against the same verified holder set for
// every secret (Server.blame).
func (c lagrangeCache) at(xs []uint32, x uint64) []uint64 {
	key := lagrangeKey(xs) + "@" + strconv.FormatUint(x, 36)
	if l, ok := c[key]; ok {
		return l
	}
	l := lagrangeAt(xs, x)
	c[key] = l
	return l
}

func (c lagrangeCache) get(xs []uint32) ([]uint64, error) {
	key := lagrangeKey(xs)
	if l, ok := c[key]; ok {
		return l, nil
	}
	l, err := lagrangeAtZero(xs)
	if err != nil {
		return nil, err
	}
	c[key] = l
	return l, nil
}

// combineShares rebuilds a 32-byte secret from shares ys held by xs (all of
// them are used; pass exactly t). lam may be nil or the precomputed
// coefficients for xs. Inconsistent shares are detected when a rebuilt limb
// does not fit in 32 bits (probability 1 - 2^-29 per limb for random junk).
func combineShares(xs []uint32, ys [][]byte, lam []uint64) ([]byte, error) {
	if len(xs) != len(ys) || len(xs) == 0 {
		return nil, fmt.Errorf("secagg: %d holders but %d shares", len(xs), len(ys))
	}
	if lam == nil {
		var err error
		if lam, err = lagrangeAtZero(xs); err != nil {
			return nil, err
		}
	}
	for j, y := range ys {
		if len(y) != ShareSize {
			return nil, fmt.Errorf("%w: share from holder %d has %d bytes, want %d", ErrMalformed, xs[j], len(y), ShareSize)
		}
	}
	secret := make([]byte, KeySize)
	for l := 0; l < secretLimbs; l++ {
		acc := uint64(0)
		for j, y := range ys {
			v := binary.BigEndian.Uint64(y[8*l:])
			if v >= fieldP {
				return nil, fmt.Errorf("%w: share from holder %d is not a field element", ErrMalformed, xs[j])
			}
			acc = fAdd(acc, fMul(lam[j], v))
		}
		if acc > 0xffffffff {
			return nil, fmt.Errorf("%w: shares from holders %v are inconsistent", ErrMalformed, xs)
		}
		binary.BigEndian.PutUint32(secret[4*l:], uint32(acc))
	}
	return secret, nil
}
