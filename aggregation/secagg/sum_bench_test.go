package secagg

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/internal/vsum"
)

// BenchmarkMaskedSum1M is the server's sum of masked inputs (Bonawitz et
// al. 2017, §4: the server adds the y_u mod 2^32 as they arrive) over 100
// inputs of 1M words (400 MB per op), beside the memory-speed floor measured
// in the same iterations: a vectorised read of the same bytes
// (vsum.ReadSum, four AVX-512 accumulators). "scalar" is the word-by-word
// loop the server used before vsum.AddU32. "blocked" is what holding the
// inputs would allow: all 100 summed 4096 words at a time, the partial sum in
// L1 (the server does not do this: it would keep every input until the stage
// closes). Metrics: MB/s of input read and each one's fraction of the floor.
//
//	go test ./aggregation/secagg -run '^$' -bench MaskedSum1M -benchtime 10x -count 3
func BenchmarkMaskedSum1M(b *testing.B) {
	const n, dim = 100, 1 << 20
	rng := rand.New(rand.NewPCG(5, 6))
	vecs := make([][]uint32, n)
	for i := range vecs {
		v := make([]uint32, dim)
		for j := range v {
			v[j] = rng.Uint32()
		}
		vecs[i] = v
	}
	sum := make([]uint32, dim)
	var tRead, tAdd, tScalar, tBlocked time.Duration
	timeIt := func(acc *time.Duration, f func()) {
		start := time.Now()
		f()
		*acc += time.Since(start)
	}
	var sink uint32
	for b.Loop() {
		timeIt(&tRead, func() {
			for _, v := range vecs {
				sink += vsum.ReadSum(v)
			}
		})
		timeIt(&tAdd, func() {
			clear(sum)
			for _, v := range vecs {
				vsum.AddU32(sum, v)
			}
		})
		timeIt(&tBlocked, func() {
			clear(sum)
			const blk = 4096
			for lo := 0; lo < dim; lo += blk {
				d := sum[lo : lo+blk]
				for _, v := range vecs {
					vsum.AddU32(d, v[lo:lo+blk])
				}
			}
		})
		timeIt(&tScalar, func() {
			clear(sum)
			for _, v := range vecs {
				for i, x := range v {
					sum[i] += x
				}
			}
		})
	}
	_ = sink
	bytes := float64(n*dim*4) * float64(b.N)
	b.ReportMetric(bytes/tRead.Seconds()/1e6, "read-MB/s")
	b.ReportMetric(bytes/tAdd.Seconds()/1e6, "sum-MB/s")
	b.ReportMetric(bytes/tScalar.Seconds()/1e6, "scalar-MB/s")
	b.ReportMetric(tRead.Seconds()/tAdd.Seconds(), "sum/read")
	b.ReportMetric(tRead.Seconds()/tScalar.Seconds(), "scalar/read")
	b.ReportMetric(bytes/tBlocked.Seconds()/1e6, "blocked-MB/s")
	b.ReportMetric(tRead.Seconds()/tBlocked.Seconds(), "blocked/read")
}
