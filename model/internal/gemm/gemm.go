// Package gemm is the single-precision matrix multiply of the model package:
// C = alpha·op(A)·op(B) + beta·C on row-major blas32.General matrices, with the
// same contract as gonum's blas32.Gemm.
//
// On amd64 it runs a packed, cache-blocked algorithm after Goto & van de Geijn,
// "Anatomy of High-Performance Matrix Multiplication", ACM TOMS 34(3), 2008,
// in the loop order of BLIS (Van Zee & van de Geijn, "BLIS: A Framework for
// Rapidly Instantiating BLAS Functionality", ACM TOMS 41(3), 2015): the k×nc
// block of op(B) is packed into nr-wide column panels, the mc×kc block of
// op(A) (scaled by alpha) into mr-tall row panels, and a register-blocked
// micro-kernel written in Go assembly computes each mr×nr tile of C from one
// A panel and one B panel with fused multiply-adds. Two micro-kernels exist:
// AVX-512 (12×32, 24 zmm accumulators) and AVX2+FMA (6×16, twelve ymm
// accumulators). For thin C (the minibatch rows) an untransposed B is read in
// place instead of packed (when the direct path below does not take the
// product), and C += A·Bᵀ runs on AVX-512 dot-product kernels
// that read both operands along k, so the weight matrix is never repacked.
// Products with at most two column panels of C (n ≤ 64) or k ≤ 16, and
// untransposed products of a few hundred rows (the minibatch times a
// weight matrix), where packing costs as much as the multiply-adds, run on
// AVX-512 kernels that read both operands where they are (see useDirect).
// The kernel is chosen once at start-up from the CPU's features
// (golang.org/x/sys/cpu); on other CPUs and architectures gonum's pure-Go
// blas32.Gemm runs instead.
//
// The environment variable SOVEREIGN_GEMM (avx512, avx2 or go) forces a path;
// a path the CPU cannot run is refused at start-up with a message on stderr
// and the automatic choice is kept.
package gemm

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// EnvVar names the environment variable that forces a path.
const EnvVar = "SOVEREIGN_GEMM"

// kernel is one micro-kernel: fn adds the product of an mr×k packed A panel
// and a k×nr B panel (row p at b + p·ldb) into the mr×nr tile at c (row
// stride ldc).
type kernel struct {
	name   string
	mr, nr int
	fn     func(k int, a, b *float32, ldb int, c *float32, ldc int)
	// store, if set, is fn writing the tile over C instead of adding to it
	// (beta = 0, first k block): C is then neither cleared nor read.
	store func(k int, a, b *float32, ldb int, c *float32, ldc int)
	// edge, if set, is fn storing only the first rows rows and the columns
	// under the masks m0 (0..15) and m1 (16..31); without it edge tiles go
	// through a scratch tile.
	edge func(k int, a, b *float32, ldb int, c *float32, ldc int, rows int, m0, m1 uint16)
	// dot, if set, holds the 1-, 2- and 3-row dot-product kernels used for
	// C += A·Bᵀ with thin A (dotNT).
	dot [3]dotFn
	// direct, if set, is the unpacked 12×32 kernel for Aᵀ read in place (or
	// a packed 12-row panel); see direct.
	direct directFn
	// directTail, if set, holds 4×32 and 8×32 versions of direct for Aᵀ's
	// last rows.
	directTail [2]directFn
	// dn, if set, holds the unpacked kernels for untransposed A read in
	// place: dn[w][r-1] computes r rows (1..12) by 16·(w+1) columns, so that
	// neither a batch's last rows nor its narrow last column panel is padded.
	dn [2][12]directFn
}

type dotFn func(k16 int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, mask uint16)

type directFn func(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, rows int, m0, m1 uint16, alpha float32, acc int)

// Tile of the direct kernels.
const directMR, directNR = 12, 32

// useDirect reports whether C = alpha·op(A)·op(B) goes through direct, with
// neither operand packed. Packing op(A) pays only when its panel serves
// several column panels of B (n > 64: with two panels the 12-row strip of A
// read in place is still in L1 for the second), and packing both pays only
// when each tile has enough k steps to amortise the copies (k > 16); the
// CNN's convolutions (n = 25, 32 or 64 except conv2's dW and dcol) and the
// dense layers' dW (k = 10) are below one bound or the other. An
// untransposed product (directNN: the dense layers' forward pass, a
// minibatch times an in×out weight matrix, and the convolutions' dcol) is
// direct too while it has at most 256 rows, or at most 1024 with k ≥ 256
// and n ≤ 256, its B read in place a 32-column panel at a time while A's
// rows stream past: for a thin product packing A cost a tenth of the time
// and the padding of the packed 12×32 tiles a fifth (10×200 in 12×32
// tiles). In same-session A/B runs the direct path measured 1.1–1.6× the
// packed one from 10 to 600 rows with n = 200 and k = 200 or 784, 0.94×
// at 600–1960 rows with k = 64 (conv2's dcol), and 0.75× on one core at
// 1024³, where a panel of B read in place spans 256 rows 4 KiB apart
// (a page each) and the packed path's contiguous panels win; hence the
// bounds.
func useDirect(k *kernel, tA, tB blas.Transpose, m, n, kk int) bool {
	return k.direct != nil && forceDirect != 0 && (n <= 2*directNR || kk <= 16 || directNN(k, tA, tB, m, n, kk))
}

// directNNRows bounds m for any direct untransposed product,
// directNNLongRows for one with k ≥ 256 and n ≤ directNNCols (see
// useDirect). Variables so that the benchmarks can compare.
var directNNRows, directNNLongRows, directNNCols = 256, 1024, 256

func directNN(k *kernel, tA, tB blas.Transpose, m, n, kk int) bool {
	if tA != blas.NoTrans || tB != blas.NoTrans || k.dn[1][0] == nil {
		return false
	}
	return m <= directNNRows || (m <= directNNLongRows && kk >= 256 && n <= directNNCols)
}

// direct computes C[i0:i1, j0:j1] = alpha·op(A)[i0:i1, p0:p1]·op(B)[p0:p1,
// j0:j1] + C (C's old value is dropped in the first k block if overwrite) in
// 12×32 tiles. An untransposed B is read in place (column tail under
// opmasks), a transposed one from pb, packed once by packBAll (it is small:
// n ≤ 64 or k ≤ 16); op(A) is read in place, untransposed all of it (the dn
// kernels of the last rows' height), transposed but for its last rows (fewer
// than 12, see tailOf).
func direct(k *kernel, ws *workspace, pb []float32, tA, tB blas.Transpose, alpha float32, a, b, c blas32.General, i0, i1, j0, j1, p0, p1 int, overwrite bool) {
	const mr, nr = directMR, directNR
	full := i0 + (i1-i0)/mr*mr
	for pc := p0; pc < p1; pc += kc {
		kb := min(kc, p1-pc)
		acc := 1
		if overwrite && pc == p0 {
			acc = 0
		}
		var t directTail
		if full < i1 && (tA == blas.Trans || k.dn[1][0] == nil) {
			t = tailOf(k, tA, a, i1-full, full, pc, kb)
			if t.inPlace < kb {
				ws.a = grow(ws.a, mr*(kb-t.inPlace))
				packA(ws.a, a, tA, full, i1-full, pc+t.inPlace, kb-t.inPlace, mr, 1)
			}
		}
		// With B's block small enough to stay in L1 or L2 (k ≤ 16: the dense
		// layers' dW; n ≤ 64), C is written a row panel at a time, which
		// keeps the stores to a large C in few pages and op(A)'s 12-row strip
		// in L1 for both column panels; otherwise B's column panel is the
		// outer loop and stays in L1 while op(A) streams past it.
		if kb*(j1-j0) <= 16384 {
			for ir := i0; ir < i1; ir += mr {
				for jr := j0; jr < j1; jr += nr {
					directTile(k, ws, pb, tA, tB, alpha, a, b, c, ir, min(mr, i1-ir), full, jr, min(nr, j1-jr), pc, kb, acc, t)
				}
			}
			continue
		}
		for jr := j0; jr < j1; jr += nr {
			for ir := i0; ir < i1; ir += mr {
				directTile(k, ws, pb, tA, tB, alpha, a, b, c, ir, min(mr, i1-ir), full, jr, min(nr, j1-jr), pc, kb, acc, t)
			}
		}
	}
}

// packBAll packs all of a transposed op(B) (n ≤ 64 or k ≤ 16 in the direct
// path, so it is small) as 32-wide panels over all kk steps: element (p, j)
// of panel q at q·32·kk + p·32 + j, columns past n zero. An untransposed B
// is read in place and nothing is packed.
func packBAll(dst []float32, b blas32.General, tB blas.Transpose, n, kk int) []float32 {
	if tB != blas.Trans {
		return dst
	}
	dst = grow(dst, roundUp(n, directNR)*kk)
	packB(dst, b, tB, 0, kk, 0, n, directNR)
	return dst
}

// directTail is how direct runs op(A)'s last rows (fewer than 12): fn
// reads mr values per k step; the first inPlace steps of the k block are
// read in place from Aᵀ, the others from a zero-padded 12-row panel.
type directTail struct {
	fn          directFn
	mr, inPlace int
}

// tailOf chooses the kernel for the rows rows from row full of op(A) and
// the k steps pc..pc+kb it may read in place: with A transposed, step p
// reads mr values from A[p][full], which may run past A's row (rows < mr)
// into the next one, and is in place only while that stays inside A.Data.
func tailOf(k *kernel, tA blas.Transpose, a blas32.General, rows, full, pc, kb int) directTail {
	t := directTail{fn: k.direct, mr: directMR}
	switch {
	case k.directTail[0] == nil:
	case rows <= 4:
		t.fn, t.mr = k.directTail[0], 4
	case rows <= 8:
		t.fn, t.mr = k.directTail[1], 8
	}
	if tA == blas.Trans {
		if last := len(a.Data) - full - t.mr; last >= 0 {
			t.inPlace = min(kb, max(0, last/a.Stride+1-pc))
		}
	}
	return t
}

// directTile runs one direct kernel call: the rows×cols tile of C at (ir,
// jr) over k steps pc..pc+kb. Rows from full on go through t; a transposed
// B comes from pb (see packBAll).
func directTile(k *kernel, ws *workspace, pb []float32, tA, tB blas.Transpose, alpha float32, a, b, c blas32.General, ir, rows, full, jr, cols, pc, kb, acc int, t directTail) {
	const mr, nr = directMR, directNR
	m0, m1 := colMasks(cols)
	bp, ldb := (*float32)(nil), nr
	var bRest *float32 // B's row pc + t.inPlace, for the packed tail steps
	if tB == blas.NoTrans {
		boff := pc*b.Stride + jr
		_ = b.Data[boff+(kb-1)*b.Stride+cols-1]
		bp, ldb = &b.Data[boff], b.Stride
		if ir >= full && t.inPlace < kb {
			bRest = &b.Data[boff+t.inPlace*b.Stride]
		}
	} else {
		boff := jr/nr*nr*b.Cols + pc*nr // op(B) = Bᵀ has b.Cols rows
		_ = pb[boff+kb*nr-1]
		bp = &pb[boff]
		if ir >= full && t.inPlace < kb {
			bRest = &pb[boff+t.inPlace*nr]
		}
	}
	coff := ir*c.Stride + jr
	_ = c.Data[coff+(rows-1)*c.Stride+cols-1]
	switch {
	case tA == blas.NoTrans && k.dn[1][0] != nil:
		aoff := ir*a.Stride + pc
		_ = a.Data[aoff+(rows-1)*a.Stride+kb-1]
		w := 1
		if cols <= directNR/2 {
			w = 0
		}
		k.dn[w][rows-1](kb, &a.Data[aoff], a.Stride, bp, ldb, &c.Data[coff], c.Stride, rows, m0, m1, alpha, acc)
	case ir >= full:
		if t.inPlace > 0 {
			aoff := pc*a.Stride + ir
			_ = a.Data[aoff+(t.inPlace-1)*a.Stride+t.mr-1]
			t.fn(t.inPlace, &a.Data[aoff], a.Stride, bp, ldb, &c.Data[coff], c.Stride, rows, m0, m1, alpha, acc)
			acc = 1
		}
		if t.inPlace < kb {
			t.fn(kb-t.inPlace, &ws.a[0], mr, bRest, ldb, &c.Data[coff], c.Stride, rows, m0, m1, alpha, acc)
		}
	default:
		aoff := pc*a.Stride + ir
		_ = a.Data[aoff+(kb-1)*a.Stride+mr-1]
		k.direct(kb, &a.Data[aoff], a.Stride, bp, ldb, &c.Data[coff], c.Stride, mr, m0, m1, alpha, acc)
	}
}

// parallelDirect splits direct over workers: by 12-row panels when there are
// at least two per worker, else by 32-column panels when there is one per
// worker, else along k, each worker but the caller summing into a scratch C
// that is added to C at the end (the conv1 dW product, 32×25 with k = 7840).
// Starting a goroutine on the other core can take a sizeable part of these
// products' fraction of a millisecond, and the other core may be busy, so
// the split is into up to 8 chunks per worker taken from a shared counter:
// the calling goroutine starts at once (chunk 0 is its own) and a helper
// that starts late takes fewer chunks instead of being waited for.
func parallelDirect(k *kernel, workers int, tA, tB blas.Transpose, alpha float32, a, b, c blas32.General, m, n, kk int, overwrite bool) {
	rowPanels := (m + directMR - 1) / directMR
	colPanels := (n + directNR - 1) / directNR
	byRows, byCols := rowPanels >= 2*workers, rowPanels < 2*workers && colPanels >= workers
	chunks := 8 * workers
	switch {
	case byRows:
		chunks = min(chunks, rowPanels)
	case byCols:
		chunks = min(chunks, colPanels)
	default:
		chunks = min(chunks, kk)
	}
	wss := make([]*workspace, workers)
	for w := range wss {
		wss[w] = getWS()
	}
	// A transposed B is packed once, all of it, and shared read-only.
	wss[0].b = packBAll(wss[0].b, b, tB, n, kk)
	pb := wss[0].b
	var next atomic.Int64
	next.Store(1)
	run := func(w int) {
		ws := wss[w]
		ws.c = ws.c[:0]
		first := true
		for idx := 0; idx < chunks; idx = int(next.Add(1) - 1) {
			if w > 0 && first && idx == 0 {
				continue // chunk 0 is the caller's
			}
			switch {
			case byRows:
				lo := rowPanels * idx / chunks * directMR
				hi := min(m, rowPanels*(idx+1)/chunks*directMR)
				direct(k, ws, pb, tA, tB, alpha, a, b, c, lo, hi, 0, n, 0, kk, overwrite)
			case byCols:
				lo := colPanels * idx / chunks * directNR
				hi := min(n, colPanels*(idx+1)/chunks*directNR)
				direct(k, ws, pb, tA, tB, alpha, a, b, c, 0, m, lo, hi, 0, kk, overwrite)
			default:
				lo, hi := kk*idx/chunks, kk*(idx+1)/chunks
				if w == 0 {
					direct(k, ws, pb, tA, tB, alpha, a, b, c, 0, m, 0, n, lo, hi, overwrite && first)
				} else {
					if first {
						ws.c = grow(ws.c, m*n)
					}
					scratch := blas32.General{Rows: m, Cols: n, Stride: n, Data: ws.c}
					direct(k, ws, pb, tA, tB, alpha, a, b, scratch, 0, m, 0, n, lo, hi, first)
				}
			}
			first = false
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			run(w)
		}(w)
	}
	run(0)
	wg.Wait()
	if !byRows && !byCols {
		for _, ws := range wss[1:] {
			if len(ws.c) == 0 {
				continue
			}
			for i := 0; i < m; i++ {
				Add(c.Data[i*c.Stride:i*c.Stride+n], ws.c[i*n:i*n+n])
			}
		}
	}
	for _, ws := range wss {
		putWS(ws)
	}
}

// dotNT computes C += A·Bᵀ for thin C (the minibatch rows times a weight
// matrix's transpose) without packing: packing Bᵀ would cost as much as the
// product. Columns past the last multiple of 4 go through the packed path.
func dotNT(k *kernel, a, b blas32.General, c blas32.General, m, n, kk int) {
	n4 := n / 4 * 4
	k16, mask := kk/16, uint16(uint32(1)<<(kk%16)-1)
	for i := 0; i < m; i += 3 {
		r := min(3, m-i)
		_ = a.Data[(i+r-1)*a.Stride+kk-1]
		_ = c.Data[(i+r-1)*c.Stride+n-1]
		fn := k.dot[r-1]
		for j := 0; j < n4; j += 4 {
			_ = b.Data[(j+3)*b.Stride+kk-1]
			fn(k16, &a.Data[i*a.Stride], a.Stride, &b.Data[j*b.Stride], b.Stride, &c.Data[i*c.Stride+j], c.Stride, mask)
		}
	}
	if n4 < n {
		Gemm(blas.NoTrans, blas.Trans, 1, a,
			blas32.General{Rows: n - n4, Cols: kk, Stride: b.Stride, Data: b.Data[n4*b.Stride:]}, 1,
			blas32.General{Rows: m, Cols: n - n4, Stride: c.Stride, Data: c.Data[n4:]})
	}
}

// colMasks returns the opmasks of the first cols of 32 columns.
func colMasks(cols int) (uint16, uint16) {
	if cols >= 16 {
		return 0xFFFF, uint16(uint32(1)<<(cols-16) - 1)
	}
	return uint16(uint32(1)<<cols - 1), 0
}

// Blocking parameters (Goto & van de Geijn 2008, §6): the kc×nr B micro-panel
// stays in L1 (256·32·4 B = 32 KiB for AVX-512), the mc×kc A block in L2.
const (
	kc = 256
	mc = 192 // multiple of mr = 6
	nc = 2048
	// parallelFlops is the m·n·k above which the work is split over
	// GOMAXPROCS goroutines; below it the call stays on the caller's
	// goroutine and allocates nothing.
	parallelFlops = 1 << 22
)

// parallelDirectFlops is the m·n·k above which a narrow direct product
// with long k (n ≤ 64, k > 16) is split over GOMAXPROCS goroutines; the
// other direct products split at parallelFlops. It is higher because the
// narrow products just above parallelFlops (the CNN's conv1, 6.3M) take
// 30–60 µs on one core, and on this 2-core machine two goroutines ran them
// at 0.7–1.1× the speed of one (goroutine start-up and the other core's
// load). A variable so that the tests can lower it.
var parallelDirectFlops = float64(1 << 24)

var active atomic.Pointer[kernel]

func init() {
	if err := Select(os.Getenv(EnvVar)); err != nil {
		_ = Select("")
		fmt.Fprintf(os.Stderr, "sovereign: %s: %v; using %s\n", EnvVar, err, Path())
	}
}

// Paths lists the paths this CPU can run, fastest first; "go" is always last.
func Paths() []string {
	var p []string
	for _, k := range kernels() {
		p = append(p, k.name)
	}
	return append(p, "go")
}

// Select forces a path by name ("avx512", "avx2", "go"); "" picks the fastest
// the CPU supports. A path the CPU cannot run is an error and leaves the
// current choice unchanged.
func Select(name string) error {
	ks := kernels()
	switch name {
	case "":
		if len(ks) > 0 {
			active.Store(&ks[0])
		} else {
			active.Store(nil)
		}
		return nil
	case "go":
		active.Store(nil)
		return nil
	}
	for i := range ks {
		if ks[i].name == name {
			active.Store(&ks[i])
			return nil
		}
	}
	return fmt.Errorf("path %q is not available on this CPU (available: %v)", name, Paths())
}

// Path names the path in use.
func Path() string {
	if k := active.Load(); k != nil {
		return k.name
	}
	return "go"
}

// workspace holds one goroutine's packing buffers; a free list (not a
// sync.Pool, which the collector may empty) keeps calls allocation-free.
type workspace struct {
	a, b, tile []float32
	// c is a worker's scratch C when parallelDirect splits k.
	c []float32
}

var (
	freeMu sync.Mutex
	free   []*workspace
)

func getWS() *workspace {
	freeMu.Lock()
	defer freeMu.Unlock()
	if n := len(free); n > 0 {
		w := free[n-1]
		free = free[:n-1]
		return w
	}
	return &workspace{}
}

func putWS(w *workspace) {
	freeMu.Lock()
	free = append(free, w)
	freeMu.Unlock()
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C, like blas32.Gemm, split
// over GOMAXPROCS goroutines when the product is large enough.
func Gemm(tA, tB blas.Transpose, alpha float32, a, b blas32.General, beta float32, c blas32.General) {
	gemm(runtime.GOMAXPROCS(0), tA, tB, alpha, a, b, beta, c)
}

// GemmSerial is Gemm on the caller's goroutine only, for callers that
// split the work themselves (one call per range of examples).
func GemmSerial(tA, tB blas.Transpose, alpha float32, a, b blas32.General, beta float32, c blas32.General) {
	gemm(1, tA, tB, alpha, a, b, beta, c)
}

func gemm(workers int, tA, tB blas.Transpose, alpha float32, a, b blas32.General, beta float32, c blas32.General) {
	k := active.Load()
	if k == nil {
		blas32.Gemm(tA, tB, alpha, a, b, beta, c)
		return
	}
	m, n := c.Rows, c.Cols
	var kk int
	if tA == blas.NoTrans {
		if a.Rows != m {
			panic(fmt.Sprintf("gemm: op(A) has %d rows, C has %d", a.Rows, m))
		}
		kk = a.Cols
	} else {
		if a.Cols != m {
			panic(fmt.Sprintf("gemm: op(A) has %d rows, C has %d", a.Cols, m))
		}
		kk = a.Rows
	}
	if tB == blas.NoTrans {
		if b.Rows != kk || b.Cols != n {
			panic(fmt.Sprintf("gemm: op(B) is %d×%d, want %d×%d", b.Rows, b.Cols, kk, n))
		}
	} else if b.Cols != kk || b.Rows != n {
		panic(fmt.Sprintf("gemm: op(B) is %d×%d, want %d×%d", b.Cols, b.Rows, kk, n))
	}
	if m == 0 || n == 0 {
		return
	}
	dot := tA == blas.NoTrans && tB == blas.Trans && k.dot[0] != nil && forceDot != 0 && alpha == 1 && m <= 16 && n >= 4
	dir := !dot && useDirect(k, tA, tB, m, n, kk)
	// With beta = 0 the first k block stores its tiles over C (see macro)
	// instead of C being cleared, then read back, in a pass of its own.
	overwrite := beta == 0 && (k.store != nil || dir) && forceStore != 0 && kk > 0 && alpha != 0 && !dot
	if beta != 1 && !overwrite {
		for i := 0; i < m; i++ {
			row := c.Data[i*c.Stride : i*c.Stride+n]
			if beta == 0 {
				clear(row)
			} else {
				for j := range row {
					row[j] *= beta
				}
			}
		}
	}
	if kk == 0 || alpha == 0 {
		return
	}
	if dot {
		dotNT(k, a, b, c, m, n, kk)
		return
	}
	big := workers > 1 && float64(m)*float64(n)*float64(kk) >= parallelFlops
	if dir {
		// Only the narrow products with long k (n ≤ 64, k > 16: the CNN's
		// conv1) wait for parallelDirectFlops; the others split at the
		// packed path's threshold.
		split := float64(parallelFlops)
		if n <= 2*directNR && kk > 16 && !directNN(k, tA, tB, m, n, kk) {
			split = parallelDirectFlops
		}
		if workers > 1 && float64(m)*float64(n)*float64(kk) >= split {
			parallelDirect(k, workers, tA, tB, alpha, a, b, c, m, n, kk, overwrite)
			return
		}
		ws := getWS()
		ws.b = packBAll(ws.b, b, tB, n, kk)
		direct(k, ws, ws.b, tA, tB, alpha, a, b, c, 0, m, 0, n, 0, kk, overwrite)
		putWS(ws)
		return
	}
	if big {
		parallel(k, workers, tA, tB, alpha, a, b, c, m, n, kk, overwrite)
		return
	}
	ws := getWS()
	for jc := 0; jc < n; jc += nc {
		columns(k, ws, tA, tB, alpha, a, b, c, m, kk, jc, jc+min(nc, n-jc), overwrite)
	}
	putWS(ws)
}

// columns computes C's columns [j0, j1) (at most nc) over the whole k
// range, block by block: for thin C (the minibatch rows) with B
// untransposed, each B panel would serve at most mc/mr tiles, too few to
// repay packing it, so the kernel reads B's rows where they are;
// otherwise B's columns are packed and every mc row block of op(A) packed
// in turn.
func columns(k *kernel, ws *workspace, tA, tB blas.Transpose, alpha float32, a, b, c blas32.General, m, kk, j0, j1 int, overwrite bool) {
	width := j1 - j0
	inPlace := tB == blas.NoTrans && forceInPlace != 0 && m <= mc
	for pc := 0; pc < kk; pc += kc {
		kb := min(kc, kk-pc)
		first := overwrite && pc == 0
		if inPlace {
			ws.a = grow(ws.a, roundUp(m, k.mr)*kb)
			packA(ws.a, a, tA, 0, m, pc, kb, k.mr, alpha)
			full := width / k.nr * k.nr
			macroInPlace(k, ws, ws.a, b, pc, kb, m, j0, full, c, first)
			if full < width {
				ws.b = grow(ws.b, k.nr*kb)
				packB(ws.b, b, tB, pc, kb, j0+full, width-full, k.nr)
				macro(k, ws, ws.a, ws.b, kb, m, 0, width-full, c, 0, j0+full, first)
			}
			continue
		}
		ws.b = grow(ws.b, roundUp(width, k.nr)*kb)
		packB(ws.b, b, tB, pc, kb, j0, width, k.nr)
		for ic := 0; ic < m; ic += mc {
			mb := min(mc, m-ic)
			ws.a = grow(ws.a, roundUp(mb, k.mr)*kb)
			packA(ws.a, a, tA, ic, mb, pc, kb, k.mr, alpha)
			macro(k, ws, ws.a, ws.b, kb, mb, 0, width, c, ic, j0, first)
		}
	}
}

// parallel splits the product over workers. With at least as many mc row
// blocks as workers it splits each (jc, pc) block by row blocks, the packed B
// block shared read-only. Otherwise (thin or short C) each worker takes a
// range of nr column panels for the whole k range: it packs its own columns
// of B (or, for thin C with B untransposed, reads them in place) and all of
// op(A), so no packing is serial and the workers meet once per jc block.
func parallel(k *kernel, workers int, tA, tB blas.Transpose, alpha float32, a, b, c blas32.General, m, n, kk int, overwrite bool) {
	shared := getWS()
	wss := make([]*workspace, workers)
	for w := range wss {
		wss[w] = getWS()
	}
	var wg sync.WaitGroup
	icBlocks := (m + mc - 1) / mc
	for jc := 0; jc < n; jc += nc {
		nb := min(nc, n-jc)
		panels := (nb + k.nr - 1) / k.nr
		if icBlocks < workers {
			for w := 0; w < workers; w++ {
				lo := (panels * w / workers) * k.nr
				hi := min(nb, (panels*(w+1)/workers)*k.nr)
				if lo >= hi {
					continue
				}
				wg.Add(1)
				go func(ws *workspace) {
					defer wg.Done()
					columns(k, ws, tA, tB, alpha, a, b, c, m, kk, jc+lo, jc+hi, overwrite)
				}(wss[w])
			}
			wg.Wait()
			continue
		}
		for pc := 0; pc < kk; pc += kc {
			kb := min(kc, kk-pc)
			shared.b = grow(shared.b, roundUp(nb, k.nr)*kb)
			packB(shared.b, b, tB, pc, kb, jc, nb, k.nr)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					ws := wss[w]
					for blk := w; blk < icBlocks; blk += workers {
						ic := blk * mc
						mb := min(mc, m-ic)
						ws.a = grow(ws.a, roundUp(mb, k.mr)*kb)
						packA(ws.a, a, tA, ic, mb, pc, kb, k.mr, alpha)
						macro(k, ws, ws.a, shared.b, kb, mb, 0, nb, c, ic, jc, overwrite && pc == 0)
					}
				}(w)
			}
			wg.Wait()
		}
	}
	putWS(shared)
	for _, ws := range wss {
		putWS(ws)
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// packA writes rows ic..ic+mb of op(A), columns pc..pc+kb, scaled by alpha,
// as mr-tall panels: element (i, p) of panel q at q·mr·kb + p·mr + i; rows
// past mb are zero.
func packA(dst []float32, a blas32.General, tA blas.Transpose, ic, mb, pc, kb, mr int, alpha float32) {
	for q := 0; q*mr < mb; q++ {
		panel := dst[q*mr*kb : (q+1)*mr*kb]
		rows := min(mr, mb-q*mr)
		r0 := ic + q*mr
		if tA == blas.NoTrans {
			if rows == mr && mr == 12 && alpha == 1 {
				packA12(panel, a.Data[r0*a.Stride+pc:], a.Stride, kb)
				continue
			}
			for i := 0; i < rows; i++ {
				src := a.Data[(r0+i)*a.Stride+pc : (r0+i)*a.Stride+pc+kb]
				for p, v := range src {
					panel[p*mr+i] = alpha * v
				}
			}
			for i := rows; i < mr; i++ {
				for p := 0; p < kb; p++ {
					panel[p*mr+i] = 0
				}
			}
			continue
		}
		for p := 0; p < kb; p++ {
			src := a.Data[(pc+p)*a.Stride+r0 : (pc+p)*a.Stride+r0+rows]
			d := panel[p*mr : p*mr+mr]
			for i, v := range src {
				d[i] = alpha * v
			}
			clear(d[rows:])
		}
	}
}

// packA12 is packA's untransposed, unscaled case for a full 12-row panel:
// twelve row streams read in step so that the panel is written in order.
func packA12(panel, src []float32, lda, kb int) {
	r0 := src[0*lda : 0*lda+kb]
	r1 := src[1*lda : 1*lda+kb]
	r2 := src[2*lda : 2*lda+kb]
	r3 := src[3*lda : 3*lda+kb]
	r4 := src[4*lda : 4*lda+kb]
	r5 := src[5*lda : 5*lda+kb]
	r6 := src[6*lda : 6*lda+kb]
	r7 := src[7*lda : 7*lda+kb]
	r8 := src[8*lda : 8*lda+kb]
	r9 := src[9*lda : 9*lda+kb]
	r10 := src[10*lda : 10*lda+kb]
	r11 := src[11*lda : 11*lda+kb]
	panel = panel[:12*kb]
	for p := 0; p < kb; p++ {
		d := panel[p*12 : p*12+12 : p*12+12]
		d[0], d[1], d[2], d[3] = r0[p], r1[p], r2[p], r3[p]
		d[4], d[5], d[6], d[7] = r4[p], r5[p], r6[p], r7[p]
		d[8], d[9], d[10], d[11] = r8[p], r9[p], r10[p], r11[p]
	}
}

// packB writes rows pc..pc+kb, columns jc..jc+nb of op(B) as nr-wide
// panels: element (p, j) of panel q at q·nr·kb + p·nr + j; columns past nb
// are zero.
func packB(dst []float32, b blas32.General, tB blas.Transpose, pc, kb, jc, nb, nr int) {
	for q := 0; q*nr < nb; q++ {
		panel := dst[q*nr*kb : (q+1)*nr*kb]
		cols := min(nr, nb-q*nr)
		c0 := jc + q*nr
		if tB == blas.NoTrans {
			for p := 0; p < kb; p++ {
				d := panel[p*nr : p*nr+nr]
				copy(d, b.Data[(pc+p)*b.Stride+c0:(pc+p)*b.Stride+c0+cols])
				clear(d[cols:])
			}
			continue
		}
		for j := 0; j < cols; j++ {
			src := b.Data[(c0+j)*b.Stride+pc : (c0+j)*b.Stride+pc+kb]
			for p, v := range src {
				panel[p*nr+j] = v
			}
		}
		for j := cols; j < nr; j++ {
			for p := 0; p < kb; p++ {
				panel[p*nr+j] = 0
			}
		}
	}
}

// macro runs the micro-kernel over the packed blocks for rows 0..mb and
// columns lo..hi (a multiple of nr) of the block whose corner is C[ic, jc].
// Edge tiles go through a zeroed scratch tile and are added back. With
// overwrite (beta = 0, first k block) the tiles replace C's old contents: full
// tiles through the store kernel, edge tiles after clearing their part of C.
func macro(k *kernel, ws *workspace, pa, pb []float32, kb, mb, lo, hi int, c blas32.General, ic, jc int, overwrite bool) {
	mr, nr := k.mr, k.nr
	ws.tile = grow(ws.tile, mr*nr)
	for jr := lo; jr < hi; jr += nr {
		cols := min(nr, hi-jr)
		bp := &pb[(jr/nr)*nr*kb]
		for ir := 0; ir < mb; ir += mr {
			rows := min(mr, mb-ir)
			ap := &pa[(ir/mr)*mr*kb]
			off := (ic+ir)*c.Stride + jc + jr
			if rows == mr && cols == nr {
				_ = c.Data[off+(mr-1)*c.Stride+nr-1]
				if overwrite {
					k.store(kb, ap, bp, nr, &c.Data[off], c.Stride)
				} else {
					k.fn(kb, ap, bp, nr, &c.Data[off], c.Stride)
				}
				continue
			}
			if overwrite {
				clearTile(c, off, rows, cols)
			}
			if k.edge != nil && forceEdge != 0 {
				m0, m1 := colMasks(cols)
				k.edge(kb, ap, bp, nr, &c.Data[off], c.Stride, rows, m0, m1)
				continue
			}
			t := ws.tile
			clear(t)
			k.fn(kb, ap, bp, nr, &t[0], nr)
			for i := 0; i < rows; i++ {
				dst := c.Data[off+i*c.Stride : off+i*c.Stride+cols]
				for j := range dst {
					dst[j] += t[i*nr+j]
				}
			}
		}
	}
}

// macroInPlace is macro for column panels jc..jc+full (a multiple of nr) of
// an unpacked, untransposed B whose rows pc..pc+kb it reads in place.
func macroInPlace(k *kernel, ws *workspace, pa []float32, b blas32.General, pc, kb, mb, jc, full int, c blas32.General, overwrite bool) {
	mr, nr := k.mr, k.nr
	ws.tile = grow(ws.tile, mr*nr)
	for jr := 0; jr < full; jr += nr {
		boff := pc*b.Stride + jc + jr
		_ = b.Data[boff+(kb-1)*b.Stride+nr-1]
		bp := &b.Data[boff]
		for ir := 0; ir < mb; ir += mr {
			rows := min(mr, mb-ir)
			ap := &pa[(ir/mr)*mr*kb]
			off := ir*c.Stride + jc + jr
			if rows == mr {
				_ = c.Data[off+(mr-1)*c.Stride+nr-1]
				if overwrite {
					k.store(kb, ap, bp, b.Stride, &c.Data[off], c.Stride)
				} else {
					k.fn(kb, ap, bp, b.Stride, &c.Data[off], c.Stride)
				}
				continue
			}
			if overwrite {
				clearTile(c, off, rows, nr)
			}
			if k.edge != nil && forceEdge != 0 {
				k.edge(kb, ap, bp, b.Stride, &c.Data[off], c.Stride, rows, 0xFFFF, 0xFFFF)
				continue
			}
			t := ws.tile
			clear(t)
			k.fn(kb, ap, bp, b.Stride, &t[0], nr)
			for i := 0; i < rows; i++ {
				dst := c.Data[off+i*c.Stride : off+i*c.Stride+nr]
				for j := range dst {
					dst[j] += t[i*nr+j]
				}
			}
		}
	}
}

// clearTile zeroes rows×cols of C from offset off.
func clearTile(c blas32.General, off, rows, cols int) {
	for i := 0; i < rows; i++ {
		clear(c.Data[off+i*c.Stride : off+i*c.Stride+cols])
	}
}

// forceInPlace, forceEdge, forceDot, forceStore and forceDirect let the
// tests switch the in-place path, the masked edge kernel, the dot-product
// path, the beta = 0 store kernel and the unpacked direct path off (0) to
// compare.
var forceInPlace, forceEdge, forceDot, forceStore, forceDirect = 1, 1, 1, 1, 1
