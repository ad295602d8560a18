package gemm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Benchmarks of the SGEMM against gonum and against the machine's FMA peak,
// all in the same run. Each iteration times this package's Gemm and then
// gonum's blas32.Gemm on the same operands, so a change in the machine's
// load hits both; the peak is measured by an FMA-only assembly loop
// (peakAVX512/peakAVX2: twelve independent FMA chains, no loads) on
// GOMAXPROCS goroutines at once, just before the sub-benchmark. Metrics:
//
//	GFLOP/s        this package (2·m·n·k flops per call)
//	gonum-GFLOP/s  gonum's blas32.Gemm, same operands, same iterations
//	x-gonum        ratio of the two
//	openblas-GFLOP/s, x-openblas  Debian's OpenBLAS (cblas_sgemm, as many
//	               threads as GOMAXPROCS), only with -tags openblas
//	peak-GFLOP/s   measured FMA peak of the selected path's vector width
//	%peak          GFLOP/s as a percentage of it
//
// Run with
//
//	go test -run '^$' -bench Gemm -benchtime 20x ./model/internal/gemm/
//
// (SOVEREIGN_GEMM=avx2 to measure the AVX2 kernel against the ymm peak;
// add -tags openblas, with libopenblas-dev installed, for the anchor).

// measurePeak returns the FMA-only GFLOP/s of the selected path on workers
// goroutines running at once.
func measurePeak(workers int) float64 {
	loop, lanes := peakLoop(Path())
	if loop == nil {
		return 0
	}
	const iters = 2_000_000
	loop(iters / 10) // warm the vector units up
	best := 0.0
	for range 3 {
		var wg sync.WaitGroup
		t0 := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				loop(iters)
			}()
		}
		wg.Wait()
		flops := float64(workers) * iters * 12 * float64(lanes) * 2
		best = max(best, flops/time.Since(t0).Seconds()/1e9)
	}
	return best
}

type benchShape struct {
	name    string
	tA, tB  blas.Transpose
	m, n, k int
}

func benchShapes() []benchShape {
	N, T := blas.NoTrans, blas.Trans
	s := []benchShape{{"1024cubed", N, N, 1024, 1024, 1024}}
	const b = 10
	for _, d := range []struct {
		name    string
		in, out int
	}{{"2nn-784x200", 784, 200}, {"2nn-200x200", 200, 200}, {"cnn-fc3136x512", 3136, 512}} {
		s = append(s,
			benchShape{d.name + "-fwd", N, N, b, d.out, d.in},
			benchShape{d.name + "-dW", T, N, d.in, d.out, b},
			benchShape{d.name + "-dX", N, T, b, d.in, d.out})
	}
	for _, c := range []struct {
		name            string
		rows, outC, kkc int
	}{{"cnn-conv1", b * 28 * 28, 32, 25}, {"cnn-conv2", b * 14 * 14, 64, 800}} {
		s = append(s,
			benchShape{c.name + "-fwd", N, T, c.rows, c.outC, c.kkc},
			benchShape{c.name + "-dW", T, N, c.outC, c.kkc, c.rows},
			benchShape{c.name + "-dcol", N, N, c.rows, c.kkc, c.outC})
	}
	return s
}

func BenchmarkGemm(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	b.Logf("path %s, GOMAXPROCS %d (%s=%q)", Path(), workers, EnvVar, os.Getenv(EnvVar))
	for _, s := range benchShapes() {
		b.Run(fmt.Sprintf("%s-%dx%dx%d", s.name, s.m, s.n, s.k), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			ar, ac := s.m, s.k
			if s.tA == blas.Trans {
				ar, ac = s.k, s.m
			}
			br, bc := s.k, s.n
			if s.tB == blas.Trans {
				br, bc = s.n, s.k
			}
			a := randGeneral(rng, ar, ac, 0)
			bm := randGeneral(rng, br, bc, 0)
			c := randGeneral(rng, s.m, s.n, 0)
			c2 := cloneGeneral(c)
			peak := measurePeak(workers)
			flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
			// Calls per timed sample, so that tiny shapes are not timer noise.
			reps := max(1, int(2e8/flops))
			Gemm(s.tA, s.tB, 1, a, bm, 0, c)
			blas32.Gemm(s.tA, s.tB, 1, a, bm, 0, c2)
			c3 := cloneGeneral(c)
			var ours, theirs, ob time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				for range reps {
					Gemm(s.tA, s.tB, 1, a, bm, 0, c)
				}
				ours += time.Since(t0)
				b.StopTimer()
				t0 = time.Now()
				for range reps {
					blas32.Gemm(s.tA, s.tB, 1, a, bm, 0, c2)
				}
				theirs += time.Since(t0)
				if openblasGemm != nil {
					t0 = time.Now()
					for range reps {
						openblasGemm(workers, s.tA, s.tB, 1, a, bm, 0, c3)
					}
					ob += time.Since(t0)
				}
				b.StartTimer()
			}
			total := flops * float64(reps) * float64(b.N)
			g := total / ours.Seconds() / 1e9
			gg := total / theirs.Seconds() / 1e9
			b.ReportMetric(g, "GFLOP/s")
			b.ReportMetric(gg, "gonum-GFLOP/s")
			b.ReportMetric(g/gg, "x-gonum")
			if openblasGemm != nil {
				og := total / ob.Seconds() / 1e9
				b.ReportMetric(og, "openblas-GFLOP/s")
				b.ReportMetric(g/og, "x-openblas")
			}
			if peak > 0 {
				b.ReportMetric(peak, "peak-GFLOP/s")
				b.ReportMetric(100*g/peak, "%peak")
			}
		})
	}
}

// openblasGemm is set by bench_openblas_test.go when the test is built with
// -tags openblas; the benchmark then times Debian's OpenBLAS beside this
// package and gonum. threads is OpenBLAS's thread count.
var openblasGemm func(threads int, tA, tB blas.Transpose, alpha float32, a, b blas32.General, beta float32, c blas32.General)
