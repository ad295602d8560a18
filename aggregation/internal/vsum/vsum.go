// Package vsum holds the streaming kernels of aggregation: the float64
// weighted accumulation of FedAvg's blocked sum, the modular uint32 addition
// and subtraction of SecAgg+ (the server's sum of masked inputs, masks added
// to or removed from a vector). The benchmarks measure them against
// internal/memfloor's vectorised read of the same bytes.
//
// On amd64 CPUs with AVX-512 the loops run in Go assembly; elsewhere, and for
// the tail of a slice, the plain Go loops below run. Both give bit-identical
// results: the float64 kernels multiply and add in separate, correctly
// rounded steps (no fused multiply-add) in the same order as the Go code,
// which replicas on other architectures rely on.
package vsum

import "strconv"

// Accumulate4 sets acc[j] += ((w0·r0[j] + w1·r1[j]) + w2·r2[j]) + w3·r3[j]
// in float64, each product and sum rounded separately. Every r has at
// least len(acc) values.
func Accumulate4(acc []float64, r0, r1, r2, r3 []float32, w0, w1, w2, w3 float64) {
	n := len(acc)
	r0, r1, r2, r3 = r0[:n], r1[:n], r2[:n], r3[:n]
	done := 0
	if haveAVX512 && n >= 8 {
		done = n &^ 7
		accumulate4AVX512(&acc[0], &r0[0], &r1[0], &r2[0], &r3[0], done, w0, w1, w2, w3)
	}
	accumulate4Go(acc[done:], r0[done:], r1[done:], r2[done:], r3[done:], w0, w1, w2, w3)
}

// Accumulate1 sets acc[j] += w·r[j] in float64.
func Accumulate1(acc []float64, r []float32, w float64) {
	n := len(acc)
	r = r[:n]
	done := 0
	if haveAVX512 && n >= 8 {
		done = n &^ 7
		accumulate1AVX512(&acc[0], &r[0], done, w)
	}
	accumulate1Go(acc[done:], r[done:], w)
}

// AddU32 sets dst[j] += src[j] modulo 2^32. src has at least len(dst)
// values.
func AddU32(dst, src []uint32) {
	n := len(dst)
	src = src[:n]
	done := 0
	if haveAVX512 && n >= 64 {
		done = n &^ 63
		addU32AVX512(&dst[0], &src[0], done)
	}
	addU32Go(dst[done:], src[done:])
}

// AddU32Many sets dst[j] += Σ_k srcs[k][j] modulo 2^32: the sum of several
// inputs in one pass, dst read and written once for all of them (a blocked
// sum across inputs, where AddU32 per input moves dst through the memory
// bus once per input). Every src has at least len(dst) values. The result
// equals AddU32 of each src in turn, bit for bit (addition mod 2^32 is
// associative and commutative).
func AddU32Many(dst []uint32, srcs [][]uint32) {
	n := len(dst)
	if n == 0 || len(srcs) == 0 {
		return
	}
	for k, src := range srcs {
		if len(src) < n {
			panic("vsum: AddU32Many: source " + strconv.Itoa(k) + " shorter than dst")
		}
	}
	done := 0
	if haveAVX512 && n >= 128 {
		done = n &^ 127
		addU32ManyAVX512(&dst[0], &srcs[0], len(srcs), 0, done)
	}
	if done < n {
		for _, src := range srcs {
			addU32Go(dst[done:], src[done:n])
		}
	}
}

// ForceGo makes every kernel run its plain Go loop and returns a function restoring the
// previous choice. For tests of the portable path on an AVX-512 machine;
// not safe while kernels run.
func ForceGo() (restore func()) {
	prev := haveAVX512
	haveAVX512 = false
	return func() { haveAVX512 = prev }
}

// SubU32 sets dst[j] -= src[j] modulo 2^32. src has at least len(dst)
// values.
func SubU32(dst, src []uint32) {
	n := len(dst)
	src = src[:n]
	done := 0
	if haveAVX512 && n >= 64 {
		done = n &^ 63
		subU32AVX512(&dst[0], &src[0], done)
	}
	subU32Go(dst[done:], src[done:])
}

func accumulate4Go(acc []float64, r0, r1, r2, r3 []float32, w0, w1, w2, w3 float64) {
	for j := range acc {
		// Explicit float64 conversions of each product keep the rounding
		// identical on every architecture (no fused multiply-add).
		acc[j] += float64(w0*float64(r0[j])) + float64(w1*float64(r1[j])) +
			float64(w2*float64(r2[j])) + float64(w3*float64(r3[j]))
	}
}

func accumulate1Go(acc []float64, r []float32, w float64) {
	for j := range acc {
		acc[j] += float64(w * float64(r[j]))
	}
}

func addU32Go(dst, src []uint32) {
	for j := range dst {
		dst[j] += src[j]
	}
}

func subU32Go(dst, src []uint32) {
	for j := range dst {
		dst[j] -= src[j]
	}
}
