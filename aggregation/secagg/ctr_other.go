//go:build !amd64

package secagg

var haveVAES = false

func ctrVAES(rk *[15][16]byte, dst *uint32, groups int, block uint64, mode int) {
	panic("unreachable")
}
