//go:build !amd64

package vsum

var haveAVX512 = false

func accumulate4AVX512(acc *float64, r0, r1, r2, r3 *float32, n int, w0, w1, w2, w3 float64) {
	panic("unreachable")
}
func accumulate1AVX512(acc *float64, r *float32, n int, w float64) { panic("unreachable") }
func addU32AVX512(dst, src *uint32, n int)                         { panic("unreachable") }

func subU32AVX512(dst, src *uint32, n int) { panic("unreachable") }

func addU32ManyAVX512(dst *uint32, srcs *[]uint32, nsrc, off, n int) { panic("unreachable") }
