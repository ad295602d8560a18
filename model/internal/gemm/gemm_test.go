package gemm

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

func randGeneral(rng *rand.Rand, rows, cols, pad int) blas32.General {
	g := blas32.General{Rows: rows, Cols: cols, Stride: cols + pad}
	g.Data = make([]float32, max(0, (rows-1)*g.Stride+cols))
	for i := range g.Data {
		g.Data[i] = rng.Float32()*2 - 1
	}
	return g
}

func cloneGeneral(g blas32.General) blas32.General {
	g.Data = append([]float32(nil), g.Data...)
	return g
}

// shape is one C(m×n) = op(A)(m×k)·op(B)(k×n).
type shape struct{ m, n, k int }

// modelShapes are the products the model runs with B=10: the 2NN
// (784-200-200-10) and the FedAvg CNN (5×5 convolutions 1→32 and 32→64 on
// 28×28 and 14×14 inputs, then 3136-512-10), forward and both backward
// products.
func modelShapes() []shape {
	const b = 10
	var s []shape
	for _, d := range [][2]int{{784, 200}, {200, 200}, {200, 10}, {3136, 512}, {512, 10}} {
		in, out := d[0], d[1]
		s = append(s, shape{b, out, in}, shape{in, out, b}, shape{b, in, out})
	}
	for _, c := range [][3]int{{b * 28 * 28, 32, 25}, {b * 14 * 14, 64, 800}} {
		rows, outC, kkc := c[0], c[1], c[2]
		s = append(s, shape{rows, outC, kkc}, shape{outC, kkc, rows}, shape{rows, kkc, outC})
	}
	return s
}

func tolerance(k int) float64 { return 1e-5 * float64(k+8) }

func checkAgainstGonum(t *testing.T, rng *rand.Rand, path string, tA, tB blas.Transpose, s shape, alpha, beta float32) {
	t.Helper()
	ar, ac := s.m, s.k
	if tA == blas.Trans {
		ar, ac = s.k, s.m
	}
	br, bc := s.k, s.n
	if tB == blas.Trans {
		br, bc = s.n, s.k
	}
	pad := rng.IntN(3)
	a := randGeneral(rng, ar, ac, pad)
	b := randGeneral(rng, br, bc, rng.IntN(3))
	c := randGeneral(rng, s.m, s.n, rng.IntN(3))
	want := cloneGeneral(c)
	blas32.Gemm(tA, tB, alpha, a, b, beta, want)
	Gemm(tA, tB, alpha, a, b, beta, c)
	tol := tolerance(s.k)
	for i := 0; i < s.m; i++ {
		for j := 0; j < s.n; j++ {
			g, w := c.Data[i*c.Stride+j], want.Data[i*want.Stride+j]
			if d := math.Abs(float64(g - w)); d > tol*math.Max(1, math.Abs(float64(w))) {
				t.Fatalf("%s tA=%c tB=%c %dx%dx%d alpha=%g beta=%g: C[%d,%d] = %g, gonum %g (|diff| %g > %g)",
					path, tA, tB, s.m, s.n, s.k, alpha, beta, i, j, g, w, d, tol)
			}
		}
	}
	// Padding between rows of C must be untouched.
	for i := 0; i+1 < s.m; i++ {
		for j := s.n; j < c.Stride; j++ {
			if c.Data[i*c.Stride+j] != want.Data[i*want.Stride+j] {
				t.Fatalf("%s %v: padding C[%d,%d] written", path, s, i, j)
			}
		}
	}
}

// TestGemmPathsAgreeWithGonum runs every path this CPU offers (avx512, avx2,
// go) on random shapes, the model's own B=10 shapes, all four transposes and
// several alpha/beta, and compares with gonum's blas32.Gemm.
func TestGemmPathsAgreeWithGonum(t *testing.T) {
	defer func() { _ = Select(os.Getenv(EnvVar)) }()
	defer func() { forceInPlace, forceEdge, forceDot, forceStore, forceDirect = 1, 1, 1, 1, 1 }()
	for _, path := range Paths() {
		for _, variant := range [][5]int{{1, 1, 1, 1, 1}, {0, 1, 1, 1, 1}, {1, 0, 1, 1, 1}, {1, 1, 0, 1, 1}, {1, 1, 1, 0, 1}, {0, 0, 1, 1, 1}, {1, 1, 1, 1, 0}, {1, 1, 1, 0, 0}} {
			forceInPlace, forceEdge, forceDot, forceStore, forceDirect = variant[0], variant[1], variant[2], variant[3], variant[4]
			checkAllShapes(t, path)
		}
	}
}

// TestDirectPathSplits checks the unpacked direct path (n ≤ 64 or k ≤ 16)
// against gonum above the parallel threshold (lowered to parallelFlops, so
// that k stays small enough for the tolerance to see a lost chunk), with 2
// and 3 workers, so that each of parallelDirect's splits runs: by row panels
// (the CNN's conv1 dcol and forward products), by column panels (k ≤ 16, few
// rows, wide C) and along k with scratch sums (conv1 dW, 32×25 with
// k = 7840), in all transposes, with strided operands and several alpha and
// beta.
func TestDirectPathSplits(t *testing.T) {
	defer func() { _ = Select(os.Getenv(EnvVar)) }()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer func(f float64) { parallelDirectFlops = f }(parallelDirectFlops)
	parallelDirectFlops = parallelFlops
	if err := Select(Paths()[0]); err != nil {
		t.Fatal(err)
	}
	k := active.Load()
	if k == nil || k.direct == nil {
		t.Skipf("the best path on this CPU, %s, has no direct kernels (they are AVX-512 only), so no product takes the parallel direct path; its packed path is checked by TestGemmPathsAgreeWithGonum", Path())
	}
	rng := rand.New(rand.NewPCG(5, 6))
	trans := []blas.Transpose{blas.NoTrans, blas.Trans}
	for _, workers := range []int{2, 3} {
		runtime.GOMAXPROCS(workers)
		for _, s := range []shape{
			{7840, 25, 32}, {7840, 32, 25}, {1000, 31, 200}, {1960, 64, 100}, // by row panels
			{40, 7000, 16}, {23, 20000, 10}, // by column panels
			{32, 25, 7840}, {36, 32, 3700}, {30, 17, 9000}, // along k
		} {
			if !useDirect(k, blas.NoTrans, blas.Trans, s.m, s.n, s.k) || float64(s.m)*float64(s.n)*float64(s.k) < parallelDirectFlops {
				t.Fatalf("%v does not take the parallel direct path", s)
			}
			for _, tA := range trans {
				for _, tB := range trans {
					alpha := []float32{1, -0.5, 2}[rng.IntN(3)]
					beta := []float32{0, 1, 0.25}[rng.IntN(3)]
					checkAgainstGonum(t, rng, Path(), tA, tB, s, alpha, beta)
				}
			}
		}
	}
}

// checkAllShapes compares the selected path with gonum on the model's
// shapes and random ones (seeded per path).
func checkAllShapes(t *testing.T, path string) {
	t.Helper()
	trans := []blas.Transpose{blas.NoTrans, blas.Trans}
	{
		if err := Select(path); err != nil {
			t.Fatal(err)
		}
		if Path() != path {
			t.Fatalf("Select(%q) left path %q", path, Path())
		}
		rng := rand.New(rand.NewPCG(11, uint64(len(path))))
		for _, s := range modelShapes() {
			for _, tA := range trans {
				for _, tB := range trans {
					checkAgainstGonum(t, rng, path, tA, tB, s, 1, float32(rng.IntN(2)))
				}
			}
		}
		for range 150 {
			s := shape{1 + rng.IntN(70), 1 + rng.IntN(90), 1 + rng.IntN(300)}
			if rng.IntN(10) == 0 {
				s = shape{1 + rng.IntN(400), 1 + rng.IntN(2100), 1 + rng.IntN(600)}
			}
			alpha := []float32{1, -0.5, 2, 0}[rng.IntN(4)]
			beta := []float32{0, 1, 0.25}[rng.IntN(3)]
			checkAgainstGonum(t, rng, path, trans[rng.IntN(2)], trans[rng.IntN(2)], s, alpha, beta)
		}
	}
}

func TestSelectRefusesUnknownPath(t *testing.T) {
	defer func() { _ = Select(os.Getenv(EnvVar)) }()
	before := Path()
	err := Select("avx9000")
	if err == nil || !strings.Contains(err.Error(), "avx9000") {
		t.Fatalf("Select(avx9000) = %v, want an error naming the path", err)
	}
	if Path() != before {
		t.Fatalf("refused Select changed the path from %s to %s", before, Path())
	}
}

// TestEnvVarForcesPath re-runs this test binary with SOVEREIGN_GEMM set to
// each available path and checks that start-up picks it and that the forced
// path agrees with gonum.
func TestEnvVarForcesPath(t *testing.T) {
	if want := os.Getenv("GEMM_TEST_EXPECT"); want != "" {
		if Path() != want {
			t.Fatalf("%s=%s: path at start-up is %s", EnvVar, os.Getenv(EnvVar), Path())
		}
		rng := rand.New(rand.NewPCG(3, 4))
		for _, s := range modelShapes()[:6] {
			checkAgainstGonum(t, rng, Path(), blas.NoTrans, blas.Trans, s, 1, 1)
		}
		return
	}
	// An unknown path keeps the automatic choice (the fastest).
	cases := [][2]string{{"avx9000", Paths()[0]}}
	for _, path := range Paths() {
		cases = append(cases, [2]string{path, path})
	}
	for _, tc := range cases {
		path := tc[0]
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnvVarForcesPath$", "-test.v")
		cmd.Env = append(os.Environ(), EnvVar+"="+path, "GEMM_TEST_EXPECT="+tc[1])
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestEnvVarForcesPath") {
			t.Fatalf("%s=%s: %v\n%s", EnvVar, path, err, out)
		}
	}
}

func general(d []float32, r, c int) blas32.General {
	return blas32.General{Rows: r, Cols: c, Stride: c, Data: d}
}

// TestAddMatchesLoop: Add equals the Go loop bit for bit on every path, for
// every length and misaligned starts.
func TestAddMatchesLoop(t *testing.T) {
	defer func() { _ = Select(os.Getenv(EnvVar)) }()
	rng := rand.New(rand.NewPCG(4, 4))
	for _, path := range Paths() {
		if err := Select(path); err != nil {
			t.Fatal(err)
		}
		for n := 0; n <= 70; n++ {
			off := rng.IntN(3)
			dst := make([]float32, n+off+1)[off : off+n]
			src := make([]float32, n+2)[1:]
			for i := range dst {
				dst[i] = float32(rng.NormFloat64())
			}
			for i := range src {
				src[i] = float32(rng.NormFloat64())
			}
			want := append([]float32(nil), dst...)
			for i := range want {
				want[i] += src[i]
			}
			guard := dst[:n+1][n]
			Add(dst, src)
			for i := range dst {
				if dst[i] != want[i] {
					t.Fatalf("%s n=%d: dst[%d] = %v, want %v", path, n, i, dst[i], want[i])
				}
			}
			if dst[:n+1][n] != guard {
				t.Fatalf("%s n=%d: Add wrote past len(dst)", path, n)
			}
		}
	}
}

// TestSubMatchesLoop: Sub equals the Go loop bit for bit on every path, for
// every length through a few 64-value steps, misaligned starts and
// non-finite and signed-zero operands, and writes nothing past len(dst).
func TestSubMatchesLoop(t *testing.T) {
	defer func() { _ = Select(os.Getenv(EnvVar)) }()
	rng := rand.New(rand.NewPCG(5, 5))
	special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.Copysign(0, -1)), math.MaxFloat32}
	for _, path := range Paths() {
		if err := Select(path); err != nil {
			t.Fatal(err)
		}
		for n := 0; n <= 200; n++ {
			off := rng.IntN(3)
			dst := make([]float32, n+off+1)[off : off+n]
			a := make([]float32, n+2)[1:]
			b := make([]float32, n+3)[2:]
			for i := range a {
				a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
				if rng.IntN(20) == 0 {
					a[i] = special[rng.IntN(len(special))]
				}
			}
			guard := float32(rng.NormFloat64())
			dst[:n+1][n] = guard
			Sub(dst, a, b)
			for i := range dst {
				want := a[i] - b[i]
				if math.Float32bits(dst[i]) != math.Float32bits(want) && !(want != want && dst[i] != dst[i]) {
					t.Fatalf("%s n=%d: dst[%d] = %v, want %v", path, n, i, dst[i], want)
				}
			}
			if dst[:n+1][n] != guard {
				t.Fatalf("%s n=%d: Sub wrote past len(dst)", path, n)
			}
		}
	}
}

// TestDirectTails sweeps the direct path's row tails (op(A)'s last 1..11
// rows: for Aᵀ the 4- and 8-row kernels, reading in place until the reads
// would pass the end of A.Data, then a packed panel; for untransposed A the
// kernel of each height 1..12, in place) and column tails (opmasks, and the
// 16-column kernels of untransposed A), for every transpose, k from 1 step
// to past one k block, strided or not.
func TestDirectTails(t *testing.T) {
	defer func() { _ = Select(os.Getenv(EnvVar)) }()
	rng := rand.New(rand.NewPCG(7, 8))
	trans := []blas.Transpose{blas.NoTrans, blas.Trans}
	for _, path := range Paths() {
		if err := Select(path); err != nil {
			t.Fatal(err)
		}
		for m := 1; m <= 26; m++ {
			for _, n := range []int{1, 7, 16, 25, 32, 40, 64, 65} {
				for _, k := range []int{1, 3, 10, 16, 300} {
					for _, tA := range trans {
						for _, tB := range trans {
							alpha := []float32{1, -0.5}[rng.IntN(2)]
							beta := []float32{0, 1, 0.25}[rng.IntN(3)]
							checkAgainstGonum(t, rng, path, tA, tB, shape{m, n, k}, alpha, beta)
						}
					}
				}
			}
		}
	}
}
