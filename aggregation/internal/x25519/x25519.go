// Package x25519 computes batches of the X25519 function (RFC 7748 §5) on
// Curve25519. On CPUs with AVX-512 IFMA it runs eight (or four) Montgomery
// ladders at once, one per vector lane, with 52-bit multiply-accumulate
// (vpmadd52luq/huq, used for big-integer products as in Gueron and
// Krasnov, "Accelerating big integer arithmetic using Intel IFMA
// extensions", ARITH 2016) in radix 2^51; elsewhere it calls crypto/ecdh
// once per result. Both paths are constant time in the scalars and agree
// bit for bit (TestAgreeMatchesECDH).
//
// A SecAgg+ client (Bell et al. 2020) makes two key pairs and agrees a key
// with each of its k neighbours twice a round, so a simulated federation of
// n clients makes (2k+2)·n scalar multiplications per round, k at a time
// with one scalar: a batch of eight costs about what one ladder costs in
// scalar code.
//
// The environment variable SOVEREIGN_X25519=go forces the crypto/ecdh path.
package x25519

import (
	"crypto/ecdh"
	"os"
)

// Size is the size in bytes of scalars, points and results.
const Size = 32

// EnvVar names the environment variable that forces the crypto/ecdh path
// ("go"); any other value, or none, lets the CPU decide.
const EnvVar = "SOVEREIGN_X25519"

// Basepoint is the u-coordinate 9 of Curve25519's base point.
var Basepoint = [Size]byte{9}

var useVector = hasIFMA && os.Getenv(EnvVar) != "go"

// Path names the implementation in use: "avx512ifma" or "go" (crypto/ecdh).
func Path() string {
	if useVector {
		return "avx512ifma"
	}
	return "go"
}

// Agree sets dst[i] = X25519(scalar, points[i]) for every i: the scalar
// is clamped and the top bit of each point ignored, as RFC 7748 requires,
// and each result is the canonical encoding of a u-coordinate. A low-order
// point gives all zeroes; callers that need a contributory secret must
// reject it (IsZero). It panics if dst and points differ in length.
func Agree(dst [][Size]byte, scalar *[Size]byte, points [][Size]byte) {
	if len(dst) != len(points) {
		panic("x25519: Agree: dst and points of different lengths")
	}
	if len(dst) == 0 {
		return
	}
	if useVector {
		scalarMultVector(dst, [][Size]byte{*scalar}, points)
		return
	}
	priv, err := ecdh.X25519().NewPrivateKey(scalar[:])
	if err != nil {
		panic("x25519: " + err.Error()) // only for a scalar of the wrong length
	}
	for i := range dst {
		dst[i] = [Size]byte{}
		pub, err := ecdh.X25519().NewPublicKey(points[i][:])
		if err != nil {
			panic("x25519: " + err.Error())
		}
		if shared, err := priv.ECDH(pub); err == nil { // err: a low-order point
			copy(dst[i][:], shared)
		}
	}
}

// PublicKeys sets dst[i] = X25519(scalars[i], 9), the public keys of the
// scalars. It panics if dst and scalars differ in length.
func PublicKeys(dst, scalars [][Size]byte) {
	if len(dst) != len(scalars) {
		panic("x25519: PublicKeys: dst and scalars of different lengths")
	}
	if len(dst) == 0 {
		return
	}
	if useVector {
		scalarMultVector(dst, scalars, [][Size]byte{Basepoint})
		return
	}
	for i := range dst {
		priv, err := ecdh.X25519().NewPrivateKey(scalars[i][:])
		if err != nil {
			panic("x25519: " + err.Error())
		}
		copy(dst[i][:], priv.PublicKey().Bytes())
	}
}

// IsZero reports, in constant time, whether x is all zeroes (the result
// X25519 gives for a low-order point).
func IsZero(x *[Size]byte) bool {
	var acc byte
	for _, b := range x {
		acc |= b
	}
	return acc == 0
}
