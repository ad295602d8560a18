//go:build !amd64

package finite

var useAVX512 = false

func anyNonFiniteAVX512(x *float32, n int) bool {
	panic("finite: no AVX-512 kernel on this architecture")
}
