package finite

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/sovereign-fl/sovereign/internal/memfloor"
)

// TestFirst puts NaN, +Inf, -Inf, the largest finite values and
// subnormals at every position of vectors around the block and unroll
// sizes, and compares with the plain definition.
func TestFirst(t *testing.T) {
	defer func(v bool) { useAVX512 = v }(useAVX512)
	paths := []bool{false}
	if useAVX512 {
		paths = append(paths, true)
	}
	for _, vec := range paths {
		useAVX512 = vec
		t.Run(map[bool]string{false: "go", true: "avx512"}[vec], testFirst)
	}
}

func testFirst(t *testing.T) {
	bad := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00001), math.Float32frombits(0xff800001)}
	good := []float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 0, float32(math.Copysign(0, -1)), 1e30}
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, 8, 9, block - 1, block, block + 1, 3*block + 5} {
		x := make([]float32, n)
		for i := range x {
			x[i] = good[r.IntN(len(good))]
		}
		if got := First(x); got != -1 {
			t.Fatalf("n=%d, all finite: got %d", n, got)
		}
		for p := range n {
			if n > 64 && p%13 != 0 && p != n-1 {
				continue
			}
			for _, b := range bad {
				x[p] = b
				if got := First(x); got != p {
					t.Fatalf("n=%d, %v at %d: got %d", n, b, p, got)
				}
				// A second one later does not move the answer.
				if p+1 < n {
					x[n-1] = b
					if got := First(x); got != p {
						t.Fatalf("n=%d, %v at %d and %d: got %d", n, b, p, n-1, got)
					}
					x[n-1] = 1
				}
			}
			x[p] = 1
		}
	}
}

// BenchmarkFirst scans finite vectors of the 2NN's size (0.8 MB, in L2
// after a client's training wrote it) and of 1M values, beside the floor a
// scan cannot beat, a vectorised read of the same bytes (memfloor.ReadSum),
// and the Go loop, in the same run.
func BenchmarkFirst(b *testing.B) {
	defer func(v bool) { useAVX512 = v }(useAVX512)
	vecOK := useAVX512
	for _, n := range []int{199_210, 1 << 20} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(i)
		}
		scan := func(name string, vec bool) {
			b.Run(fmt.Sprintf("n=%d/%s", n, name), func(b *testing.B) {
				useAVX512 = vec
				b.SetBytes(int64(4 * n))
				for b.Loop() {
					if First(x) != -1 {
						b.Fatal("non-finite")
					}
				}
			})
		}
		if vecOK {
			scan("first", true)
			b.Run(fmt.Sprintf("n=%d/read-floor", n), func(b *testing.B) {
				words := unsafe.Slice((*uint32)(unsafe.Pointer(&x[0])), len(x))
				b.SetBytes(int64(4 * n))
				for b.Loop() {
					sink ^= memfloor.ReadSum(words)
				}
			})
		}
		scan("first-go", false)
	}
}

var sink uint32
