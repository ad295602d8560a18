//go:build !amd64

package secagg

var haveVAES = false

func ctrVAES(rk *roundKeys, dst *uint32, groups int, block uint64, mode int) {
	panic("unreachable")
}

var haveQuantAVX512 = false

func quantAVX512(dst *uint32, x *float32, r *uint32, n int, ws float64, lim float32, mask uint32) int {
	panic("unreachable")
}
