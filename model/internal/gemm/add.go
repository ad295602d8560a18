package gemm

// Add sets dst[i] += src[i] for i < len(dst) (src has at least len(dst)
// values): the scatter-add of col2im. On the AVX-512 path it runs 16 lanes
// at a time with the tail under an opmask; each element gets the same single
// float32 addition as the Go loop, so results are bit-identical.
func Add(dst, src []float32) {
	n := len(dst)
	if n == 0 {
		return
	}
	src = src[:n]
	if k := active.Load(); k != nil && k.name == "avx512" {
		addAVX512(&dst[0], &src[0], n)
		return
	}
	for i, v := range src {
		dst[i] += v
	}
}

// Sub sets dst[i] = a[i] − b[i] for i < len(dst) (a and b have at least
// len(dst) values): a client's update Δ = w_local − w_global. On the
// AVX-512 path it runs 16 lanes at a time; each element gets the same
// single float32 subtraction as the Go loop, so results are bit-identical.
func Sub(dst, a, b []float32) {
	n := len(dst)
	if n == 0 {
		return
	}
	a, b = a[:n], b[:n]
	if k := active.Load(); k != nil && k.name == "avx512" {
		subAVX512(&dst[0], &a[0], &b[0], n)
		return
	}
	for i := range dst {
		dst[i] = a[i] - b[i]
	}
}
