package secagg

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/internal/vsum"
	"github.com/sovereign-fl/sovereign/internal/memfloor"
)

// BenchmarkMaskedSum1M is the server's sum of masked inputs (Bonawitz et
// al. 2017, §4: the server adds the y_u mod 2^32) over 100 inputs of 1M
// words (400 MB per op), beside the memory-speed floor measured in the same
// iterations: a vectorised read of the same bytes (memfloor.ReadSum, four
// AVX-512 accumulators) on one goroutine ("read") and on GOMAXPROCS
// goroutines split by coordinate range ("readP"). "sum" is the server's own
// path: the inputs fed to Server.flushMasked maskedBatch at a time as they
// arrive (vsum.AddU32Many: the running sum read and written once per
// batch, split over GOMAXPROCS goroutines); sum/readP is its fraction of the
// floor with as many goroutines. "stream" is the one-at-a-time vsum.AddU32 the server used before,
// "scalar" the word-by-word loop before that. Metrics: MB/s of input read
// and each one's fraction of the floor.
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
	srv := &Server{sum: make([]uint32, dim)}
	sum := make([]uint32, dim)
	var tRead, tReadP, tSum, tStream, tScalar time.Duration
	procs := runtime.GOMAXPROCS(0)
	readP := func() {
		// The floor on GOMAXPROCS goroutines, split by coordinate range as
		// flushMasked splits the sum.
		var wg sync.WaitGroup
		for w := range procs {
			lo, hi := dim*w/procs, dim*(w+1)/procs
			wg.Go(func() {
				var s uint32
				for _, v := range vecs {
					s += memfloor.ReadSum(v[lo:hi])
				}
				_ = s
			})
		}
		wg.Wait()
	}
	timeIt := func(acc *time.Duration, f func()) {
		start := time.Now()
		f()
		*acc += time.Since(start)
	}
	var sink uint32
	for b.Loop() {
		timeIt(&tRead, func() {
			for _, v := range vecs {
				sink += memfloor.ReadSum(v)
			}
		})
		timeIt(&tReadP, readP)
		timeIt(&tSum, func() {
			clear(srv.sum)
			for _, v := range vecs {
				// What recvMasked does once the checks passed.
				srv.pending = append(srv.pending, v)
				if len(srv.pending) == maskedBatch {
					srv.flushMasked()
				}
			}
			srv.flushMasked()
		})
		timeIt(&tStream, func() {
			clear(sum)
			for _, v := range vecs {
				vsum.AddU32(sum, v)
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
	b.ReportMetric(bytes/tSum.Seconds()/1e6, "sum-MB/s")
	b.ReportMetric(bytes/tStream.Seconds()/1e6, "stream-MB/s")
	b.ReportMetric(bytes/tScalar.Seconds()/1e6, "scalar-MB/s")
	b.ReportMetric(bytes/tReadP.Seconds()/1e6, "readP-MB/s")
	b.ReportMetric(tRead.Seconds()/tSum.Seconds(), "sum/read")
	b.ReportMetric(tReadP.Seconds()/tSum.Seconds(), "sum/readP")
	b.ReportMetric(tRead.Seconds()/tStream.Seconds(), "stream/read")
	b.ReportMetric(tRead.Seconds()/tScalar.Seconds(), "scalar/read")
}
