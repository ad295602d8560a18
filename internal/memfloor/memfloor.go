// Package memfloor is the floor that the project's streaming kernels are
// measured against in their benchmarks: a vectorised read of the same
// bytes, every word loaded once into four independent AVX-512 accumulators,
// which no kernel that reads those bytes can beat. One copy, so that every
// benchmark (FedAvg, the SecAgg+ server's sum, the NaN scan) compares
// with the same floor.
package memfloor

// ReadSum returns the sum modulo 2^32 of the words of p: it reads every
// byte once at the speed of vector loads.
func ReadSum(p []uint32) uint32 {
	n := len(p)
	done := 0
	var s uint32
	if haveAVX512 && n >= 64 {
		done = n &^ 63
		s = readSumAVX512(&p[0], done)
	}
	return s + readSumGo(p[done:])
}

func readSumGo(p []uint32) uint32 {
	var s0, s1, s2, s3 uint32
	i := 0
	for ; i+4 <= len(p); i += 4 {
		s0 += p[i]
		s1 += p[i+1]
		s2 += p[i+2]
		s3 += p[i+3]
	}
	for ; i < len(p); i++ {
		s0 += p[i]
	}
	return s0 + s1 + s2 + s3
}
