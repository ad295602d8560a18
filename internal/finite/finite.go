// Package finite finds NaN and ±Inf in float32 vectors at memory speed:
// every update, parameter vector and noise vector that crosses a trust
// boundary is scanned, once per client per round.
package finite

// block is how many elements are summed before the sum is looked at.
const block = 1024

// First returns the index of the first NaN or ±Inf in x, or -1. With
// AVX-512 each whole block is checked 16 lanes at a time (its largest
// sign-cleared bit pattern against +Inf's, see finite_amd64.s) and only a
// block holding a NaN or ±Inf is searched element by element; the rest,
// and every block on other CPUs, goes through firstGo.
func First(x []float32) int {
	off := 0
	if useAVX512 {
		for ; off+block <= len(x); off += block {
			if anyNonFiniteAVX512(&x[off], block) {
				return off + firstGo(x[off:off+block])
			}
		}
	}
	if j := firstGo(x[off:]); j >= 0 {
		return off + j
	}
	return -1
}

// firstGo is First in Go: it sums v-v over blocks of x in eight
// independent accumulators (v-v is 0 for finite v and NaN for NaN and
// ±Inf, and NaN survives every addition) and searches only a block whose
// sum is not 0.
func firstGo(x []float32) int {
	for off := 0; off < len(x); off += block {
		b := x[off:min(off+block, len(x))]
		var a0, a1, a2, a3, a4, a5, a6, a7 float32
		i := 0
		for ; i+8 <= len(b); i += 8 {
			c := b[i : i+8 : i+8]
			a0 += c[0] - c[0]
			a1 += c[1] - c[1]
			a2 += c[2] - c[2]
			a3 += c[3] - c[3]
			a4 += c[4] - c[4]
			a5 += c[5] - c[5]
			a6 += c[6] - c[6]
			a7 += c[7] - c[7]
		}
		for ; i < len(b); i++ {
			a0 += b[i] - b[i]
		}
		if (a0+a1)+(a2+a3)+(a4+a5)+(a6+a7) == 0 {
			continue
		}
		for j, v := range b {
			if v-v != 0 {
				return off + j
			}
		}
	}
	return -1
}
