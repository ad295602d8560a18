//go:build linux

package gemm

import (
	"math"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// guardedGeneral is randGeneral with Data ending exactly where an
// inaccessible page begins, so that a kernel reading past the end of an
// operand (an unmasked load of B's column tail, an in-place read of Aᵀ's row
// tail past the last row) faults instead of reading a neighbour's memory.
func guardedGeneral(t *testing.T, rng *rand.Rand, rows, cols, pad int) blas32.General {
	t.Helper()
	g := blas32.General{Rows: rows, Cols: cols, Stride: cols + pad}
	n := (rows-1)*g.Stride + cols
	page := os.Getpagesize()
	size := (n*4 + page - 1) / page * page
	mem, err := syscall.Mmap(-1, 0, size+page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[size:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	g.Data = unsafe.Slice((*float32)(unsafe.Pointer(&mem[size-n*4])), n)
	for i := range g.Data {
		g.Data[i] = rng.Float32()*2 - 1
	}
	return g
}

// TestNoReadPastOperands runs every path on shapes with row and column tails
// (the direct path's 4- and 8-row kernels and opmasks, the packed path's
// edges, the dot-product kernels' k tail) with A, B and C each ending at an
// inaccessible page, and compares with gonum.
func TestNoReadPastOperands(t *testing.T) {
	defer func() { _ = Select(os.Getenv(EnvVar)) }()
	rng := rand.New(rand.NewPCG(9, 10))
	trans := []blas.Transpose{blas.NoTrans, blas.Trans}
	for _, path := range Paths() {
		if err := Select(path); err != nil {
			t.Fatal(err)
		}
		for _, s := range []shape{{1, 1, 1}, {5, 7, 3}, {10, 25, 10}, {13, 25, 300}, {31, 33, 16}, {37, 9, 500}, {7840, 25, 32}, {32, 25, 7840}, {10, 200, 33}} {
			for _, tA := range trans {
				for _, tB := range trans {
					ar, ac := s.m, s.k
					if tA == blas.Trans {
						ar, ac = s.k, s.m
					}
					br, bc := s.k, s.n
					if tB == blas.Trans {
						br, bc = s.n, s.k
					}
					a := guardedGeneral(t, rng, ar, ac, rng.IntN(2))
					b := guardedGeneral(t, rng, br, bc, rng.IntN(2))
					c := guardedGeneral(t, rng, s.m, s.n, 0)
					want := cloneGeneral(c)
					blas32.Gemm(tA, tB, 1, a, b, 1, want)
					Gemm(tA, tB, 1, a, b, 1, c)
					tol := tolerance(s.k)
					for i, w := range want.Data {
						if d := math.Abs(float64(c.Data[i] - w)); d > tol*math.Max(1, math.Abs(float64(w))) {
							t.Fatalf("%s tA=%c tB=%c %v: C.Data[%d] = %g, gonum %g", path, tA, tB, s, i, c.Data[i], w)
						}
					}
				}
			}
		}
	}
}
