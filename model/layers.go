package model

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/sovereign-fl/sovereign/model/internal/gemm"
)

// layer is one stage of a network. Layers own their activation buffers,
// sized by reserve for a maximum batch; forward and backward only
// re-slice them, so a step does not allocate.
//
// Contract: backward must follow the forward of the same batch (it uses the
// input and output kept by forward). backward overwrites (never accumulates)
// the layer's gradient view and may modify dy in place. The returned slices
// are owned by the layer and valid until its next forward/backward call.
type layer interface {
	// numParams is the length of the layer's slice of the flat vector.
	numParams() int
	// bind points the layer's weights and gradients at views of the flat
	// parameter and gradient vectors (each of length numParams).
	bind(w, g []float32)
	// initParams draws weights from rng and zeroes biases.
	initParams(rng *rand.Rand)
	// inDim and outDim are the features per example in and out.
	inDim() int
	outDim() int
	// reserve sizes the buffers for batches of up to batch examples.
	reserve(batch int)
	// bufPerExample is the number of float32 buffer elements per example.
	bufPerExample() int
	forward(x []float32, batch int) []float32
	backward(dy []float32, batch int, needDX bool) []float32
	// name describes the layer in error messages.
	name() string
}

func general(data []float32, rows, cols int) blas32.General {
	return blas32.General{Rows: rows, Cols: cols, Stride: cols, Data: data}
}

// uniformFill fills w with draws from U(-limit, limit).
func uniformFill(w []float32, limit float64, rng *rand.Rand) {
	for i := range w {
		w[i] = float32((2*rng.Float64() - 1) * limit)
	}
}

// initLimit returns the bound of the uniform initialiser: He et al. 2015
// ("Delving Deep into Rectifiers") sqrt(6/fanIn) before a ReLU, Glorot &
// Bengio 2010 sqrt(6/(fanIn+fanOut)) for the linear output layer.
func initLimit(fanIn, fanOut int, relu bool) float64 {
	if relu {
		return math.Sqrt(6 / float64(fanIn))
	}
	return math.Sqrt(6 / float64(fanIn+fanOut))
}

// reluForward clamps y at zero in place.
func reluForward(y []float32) {
	for i, v := range y {
		if v < 0 {
			y[i] = 0
		}
	}
}

// reluBackward zeroes dy where the ReLU output y was not positive.
func reluBackward(dy, y []float32) {
	y = y[:len(dy)]
	for i, v := range y {
		if v <= 0 {
			dy[i] = 0
		}
	}
}

// addBias sets every row of y (rows×len(b)) to b.
func fillRows(y, b []float32, rows int) {
	n := len(b)
	for r := 0; r < rows; r++ {
		copy(y[r*n:(r+1)*n], b)
	}
}

// colSums writes the column sums of dy (rows×len(gb)) into gb.
func colSums(gb, dy []float32, rows int) {
	n := len(gb)
	clear(gb)
	for r := 0; r < rows; r++ {
		row := dy[r*n : (r+1)*n]
		for j, v := range row {
			gb[j] += v
		}
	}
}

// dense is a fully connected layer y = x·W + b, optionally followed by ReLU.
// W is stored in×out row-major, then b (out).
type dense struct {
	in, out int
	relu    bool

	w, b, gw, gb []float32

	x     []float32 // input of the last forward (not owned)
	y, dx []float32
	cap   int

	// sgdLR, when not 0, makes backward apply plain SGD to the weights in
	// place, w -= sgdLR·∇w, instead of writing the gradient view (see
	// Network.lossGradSGD).
	sgdLR float32

	// backward's products split over ranges of W's rows (input features):
	// dx's columns and W's (or ∇W's) rows of one range depend on that
	// range only. dy, batch and needDX are backward's while it runs.
	rowPass splitter
	dy      []float32
	batch   int
	needDX  bool
}

func newDense(in, out int, relu bool) *dense {
	d := &dense{in: in, out: out, relu: relu}
	// Split only products of at least 4M multiply-adds (the CNN's 3136×512
	// layer at B=10 has 16M; the 2NN's largest 1.6M), where a range per
	// core pays for waking the other core.
	d.rowPass.f, d.rowPass.minWork = d.backwardRows, 1<<22
	return d
}

func (d *dense) numParams() int { return d.in*d.out + d.out }
func (d *dense) inDim() int     { return d.in }
func (d *dense) outDim() int    { return d.out }
func (d *dense) name() string {
	if d.relu {
		return "dense+relu"
	}
	return "dense"
}
func (d *dense) bufPerExample() int { return d.out + d.in }

func (d *dense) bind(w, g []float32) {
	k := d.in * d.out
	d.w, d.b = w[:k:k], w[k:]
	d.gw, d.gb = g[:k:k], g[k:]
}

func (d *dense) initParams(rng *rand.Rand) {
	uniformFill(d.w, initLimit(d.in, d.out, d.relu), rng)
	clear(d.b)
}

func (d *dense) reserve(batch int) {
	if batch <= d.cap {
		return
	}
	d.y = make([]float32, batch*d.out)
	d.dx = make([]float32, batch*d.in)
	d.cap = batch
}

func (d *dense) forward(x []float32, batch int) []float32 {
	d.x = x[:batch*d.in]
	y := d.y[:batch*d.out]
	fillRows(y, d.b, batch)
	gemm.Gemm(blas.NoTrans, blas.NoTrans, 1, general(d.x, batch, d.in), general(d.w, d.in, d.out), 1, general(y, batch, d.out))
	if d.relu {
		reluForward(y)
	}
	return y
}

func (d *dense) backward(dy []float32, batch int, needDX bool) []float32 {
	dy = dy[:batch*d.out]
	if d.relu {
		reluBackward(dy, d.y)
	}
	d.dy, d.batch, d.needDX = dy, batch, needDX
	d.rowPass.run(d.in, batch*d.out)
	d.dy = nil
	colSums(d.gb, dy, batch)
	if d.sgdLR != 0 {
		for j, g := range d.gb { // b −= lr·colsum(dy)
			d.b[j] -= d.sgdLR * g
		}
	}
	if !needDX {
		return nil
	}
	return d.dx[:batch*d.in]
}

// backwardRows is backward's products for W's rows [i0, i1): dx's columns
// i0..i1 = dy·W[i0:i1]ᵀ (with W before this step's update), then W[i0:i1]
// += (−lr)·x[:, i0:i1]ᵀ·dy in place under plain SGD (the gradient is never
// written out and read back: for the CNN's 3136×512 layer that is 6.4 MB
// each way per step), or ∇W[i0:i1] = x[:, i0:i1]ᵀ·dy.
func (d *dense) backwardRows(i0, i1 int) {
	batch, dy, n := d.batch, d.dy, i1-i0
	mul := d.rowPass.gemm()
	wRows := blas32.General{Rows: n, Cols: d.out, Stride: d.out, Data: d.w[i0*d.out : i1*d.out]}
	xCols := blas32.General{Rows: batch, Cols: n, Stride: d.in, Data: d.x[i0:]}
	dyM := general(dy, batch, d.out)
	if d.needDX {
		mul(blas.NoTrans, blas.Trans, 1, dyM, wRows, 0, blas32.General{Rows: batch, Cols: n, Stride: d.in, Data: d.dx[i0:]})
	}
	if d.sgdLR != 0 {
		mul(blas.Trans, blas.NoTrans, -d.sgdLR, xCols, dyM, 1, wRows)
		return
	}
	mul(blas.Trans, blas.NoTrans, 1, xCols, dyM, 0, blas32.General{Rows: n, Cols: d.out, Stride: d.out, Data: d.gw[i0*d.out : i1*d.out]})
}

// conv is a k×k convolution, stride 1, "same" zero padding of k/2, computed
// as im2col + GEMM (Chellapilla et al. 2006), optionally followed by ReLU.
//
// Output is HWC per example (rows (y,x), channels innermost). The input is
// HWC, or CHW for the network's first layer (chw=true). Weights are stored
// outC×(k·k·inC) row-major with the column index ((ky·k)+kx)·inC+c, then the
// outC biases.
type conv struct {
	inC, h, w, outC, k, pad int
	relu, chw               bool
	// reluInPool: the ReLU is applied by the max-pool that follows (relu
	// still chooses the initialiser); forward leaves y before the ReLU and
	// backward receives dy already masked. max and ReLU commute, so the pool
	// clamps a quarter of the values and the two full passes over y go.
	reluInPool bool

	wt, b, gw, gb []float32

	x                []float32 // input of the last forward (not owned)
	col, y, dcol, dx []float32
	cap              int

	// The per-example passes, split over the examples of a batch: forward
	// (im2col and the product of those rows) and, in backward, dcol and
	// col2im. dy is backward's input while it runs.
	fwdPass, dxPass splitter
	dy              []float32
}

func newConv(inC, h, w, outC, k int, relu, chw bool) *conv {
	c := &conv{inC: inC, h: h, w: w, outC: outC, k: k, pad: k / 2, relu: relu, chw: chw}
	c.fwdPass.f, c.dxPass.f = c.forwardRange, c.backwardDXRange
	return c
}

func (c *conv) kkc() int       { return c.k * c.k * c.inC }
func (c *conv) numParams() int { return c.outC*c.kkc() + c.outC }
func (c *conv) inDim() int     { return c.inC * c.h * c.w }
func (c *conv) outDim() int    { return c.outC * c.h * c.w }
func (c *conv) name() string   { return "conv" }
func (c *conv) bufPerExample() int {
	hw := c.h * c.w
	return 2*hw*c.kkc() + hw*c.outC + c.inDim()
}

func (c *conv) bind(w, g []float32) {
	n := c.outC * c.kkc()
	c.wt, c.b = w[:n:n], w[n:]
	c.gw, c.gb = g[:n:n], g[n:]
}

func (c *conv) initParams(rng *rand.Rand) {
	uniformFill(c.wt, initLimit(c.kkc(), c.k*c.k*c.outC, c.relu), rng)
	clear(c.b)
}

func (c *conv) reserve(batch int) {
	if batch <= c.cap {
		return
	}
	hw := c.h * c.w
	c.col = make([]float32, batch*hw*c.kkc())
	c.dcol = make([]float32, batch*hw*c.kkc())
	c.y = make([]float32, batch*hw*c.outC)
	c.dx = make([]float32, batch*c.inDim())
	c.cap = batch
}

// strides returns the element strides of channel, row and column in one
// input example.
func (c *conv) strides() (cs, ys, xs int) {
	if c.chw && c.inC > 1 {
		return c.h * c.w, c.w, 1
	}
	return 1, c.w * c.inC, c.inC
}

// kxRange returns the kernel columns [kx0, kx1) that fall inside the image
// for output column ox.
func (c *conv) kxRange(ox int) (int, int) {
	kx0 := max(0, c.pad-ox)
	kx1 := min(c.k, c.w+c.pad-ox)
	return kx0, kx1
}

// im2colRange writes one row of k·k·inC values of c.x per output pixel of
// the examples [b0, b1).
func (c *conv) im2colRange(b0, b1 int) {
	kkc, inC, k := c.kkc(), c.inC, c.k
	cs, ys, xs := c.strides()
	ex := c.inDim()
	x, col := c.x, c.col
	r := b0 * c.h * c.w
	for b := b0; b < b1; b++ {
		xb := x[b*ex : (b+1)*ex]
		for oy := 0; oy < c.h; oy++ {
			for ox := 0; ox < c.w; ox++ {
				row := col[r*kkc : (r+1)*kkc]
				r++
				kx0, kx1 := c.kxRange(ox)
				for ky := 0; ky < k; ky++ {
					seg := row[ky*k*inC : (ky+1)*k*inC]
					iy := oy + ky - c.pad
					if iy < 0 || iy >= c.h {
						clear(seg)
						continue
					}
					clear(seg[:kx0*inC])
					clear(seg[kx1*inC:])
					ix0 := ox + kx0 - c.pad
					if cs == 1 {
						// HWC: the valid kernel columns are contiguous.
						copy(seg[kx0*inC:kx1*inC], xb[iy*ys+ix0*xs:])
						continue
					}
					for kx := kx0; kx < kx1; kx++ {
						base := iy*ys + (ix0+kx-kx0)*xs
						for ci := 0; ci < inC; ci++ {
							seg[kx*inC+ci] = xb[base+ci*cs]
						}
					}
				}
			}
		}
	}
}

// col2imRange adds every row of dcol of the examples [b0, b1) back onto
// the input positions it was read from (the adjoint of im2col), writing
// their c.dx.
func (c *conv) col2imRange(b0, b1 int) {
	kkc, inC, k := c.kkc(), c.inC, c.k
	cs, ys, xs := c.strides()
	ex := c.inDim()
	dx, dcol := c.dx, c.dcol
	clear(dx[b0*ex : b1*ex])
	r := b0 * c.h * c.w
	for b := b0; b < b1; b++ {
		db := dx[b*ex : (b+1)*ex]
		for oy := 0; oy < c.h; oy++ {
			for ox := 0; ox < c.w; ox++ {
				row := dcol[r*kkc : (r+1)*kkc]
				r++
				kx0, kx1 := c.kxRange(ox)
				for ky := 0; ky < k; ky++ {
					iy := oy + ky - c.pad
					if iy < 0 || iy >= c.h {
						continue
					}
					seg := row[ky*k*inC : (ky+1)*k*inC]
					ix0 := ox + kx0 - c.pad
					if cs == 1 {
						src := seg[kx0*inC : kx1*inC]
						gemm.Add(db[iy*ys+ix0*xs:][:len(src)], src)
						continue
					}
					for kx := kx0; kx < kx1; kx++ {
						base := iy*ys + (ix0+kx-kx0)*xs
						for ci := 0; ci < inC; ci++ {
							db[base+ci*cs] += seg[kx*inC+ci]
						}
					}
				}
			}
		}
	}
}

func (c *conv) forward(x []float32, batch int) []float32 {
	c.x = x[:batch*c.inDim()]
	c.fwdPass.run(batch, c.h*c.w*c.kkc())
	y := c.y[:batch*c.h*c.w*c.outC]
	if c.relu && !c.reluInPool {
		reluForward(y)
	}
	return y
}

// forwardRange is forward before the ReLU for the examples [b0, b1): their
// im2col rows and y = bias + col·Wᵀ of those rows. A range of a split
// batch runs its product on its own goroutine (the split is the
// parallelism); the whole batch lets Gemm split it.
func (c *conv) forwardRange(b0, b1 int) {
	c.im2colRange(b0, b1)
	hw, kkc := c.h*c.w, c.kkc()
	r0, r1 := b0*hw, b1*hw
	y := c.y[r0*c.outC : r1*c.outC]
	fillRows(y, c.b, r1-r0)
	// y (rows×outC) += col (rows×kkc) · Wᵀ (kkc×outC)
	mul := c.fwdPass.gemm()
	mul(blas.NoTrans, blas.Trans, 1, general(c.col[r0*kkc:r1*kkc], r1-r0, kkc), general(c.wt, c.outC, kkc), 1, general(y, r1-r0, c.outC))
}

func (c *conv) backward(dy []float32, batch int, needDX bool) []float32 {
	rows, kkc := batch*c.h*c.w, c.kkc()
	dy = dy[:rows*c.outC]
	if c.relu && !c.reluInPool {
		reluBackward(dy, c.y)
	}
	// dW (outC×kkc) = dyᵀ · col; db = column sums of dy.
	gemm.Gemm(blas.Trans, blas.NoTrans, 1, general(dy, rows, c.outC), general(c.col[:rows*kkc], rows, kkc), 0, general(c.gw, c.outC, kkc))
	colSums(c.gb, dy, rows)
	if !needDX {
		return nil
	}
	// dcol (rows×kkc) = dy · W, then scatter back to the input, per range
	// of examples.
	c.dy = dy
	c.dxPass.run(batch, c.h*c.w*kkc)
	c.dy = nil
	return c.dx[:batch*c.inDim()]
}

// backwardDXRange computes dcol = dy·W for the rows of the examples
// [b0, b1) and scatters it into their dx (col2im).
func (c *conv) backwardDXRange(b0, b1 int) {
	hw, kkc := c.h*c.w, c.kkc()
	r0, r1 := b0*hw, b1*hw
	mul := c.dxPass.gemm()
	mul(blas.NoTrans, blas.NoTrans, 1, general(c.dy[r0*c.outC:r1*c.outC], r1-r0, c.outC), general(c.wt, c.outC, kkc), 0, general(c.dcol[r0*kkc:r1*kkc], r1-r0, kkc))
	c.col2imRange(b0, b1)
}

// maxPool is 2×2 max pooling with stride 2 on HWC input; odd trailing rows
// and columns are dropped (floor), as in the FedAvg CNN's "2x2 max pooling".
// With relu it computes max(0, max of the window), the pool of the ReLU of
// its input, and backward passes a gradient only where that output is
// positive (so the convolution before it needs no ReLU pass of its own).
type maxPool struct {
	c, h, w, oh, ow int
	relu            bool

	y, dx []float32
	arg   []int32 // per output: index of the winning input within its example
	cap   int

	x, dy                 []float32 // inputs of the running pass (not owned)
	forwardPass, backPass splitter
}

func newMaxPool(c, h, w int) *maxPool {
	p := &maxPool{c: c, h: h, w: w, oh: h / 2, ow: w / 2}
	p.forwardPass.f, p.backPass.f = p.forwardRange, p.backwardRange
	return p
}

func (p *maxPool) numParams() int            { return 0 }
func (p *maxPool) bind(w, g []float32)       {}
func (p *maxPool) initParams(rng *rand.Rand) {}
func (p *maxPool) inDim() int                { return p.c * p.h * p.w }
func (p *maxPool) outDim() int               { return p.c * p.oh * p.ow }
func (p *maxPool) name() string              { return "maxpool" }
func (p *maxPool) bufPerExample() int        { return 2*p.outDim() + p.inDim() }

func (p *maxPool) reserve(batch int) {
	if batch <= p.cap {
		return
	}
	p.y = make([]float32, batch*p.outDim())
	p.arg = make([]int32, batch*p.outDim())
	p.dx = make([]float32, batch*p.inDim())
	p.cap = batch
}

func (p *maxPool) forward(x []float32, batch int) []float32 {
	p.x = x
	p.forwardPass.run(batch, p.inDim())
	p.x = nil
	return p.y[:batch*p.outDim()]
}

// forwardRange is forward for the examples [b0, b1) of p.x.
func (p *maxPool) forwardRange(b0, b1 int) {
	ex, ox := p.inDim(), p.outDim()
	x, y, arg := p.x, p.y, p.arg
	c, rowStride := p.c, p.w*p.c
	o := b0 * ox
	for b := b0; b < b1; b++ {
		xb := x[b*ex : (b+1)*ex]
		for py := 0; py < p.oh; py++ {
			for px := 0; px < p.ow; px++ {
				i00 := (2*py*p.w + 2*px) * c
				// The four rows of the window, channels innermost. The
				// selections below compile to conditional moves: with
				// random signs a branch per comparison mispredicts often.
				r0 := xb[i00 : i00+c]
				r1 := xb[i00+c : i00+2*c]
				r2 := xb[i00+rowStride : i00+rowStride+c]
				r3 := xb[i00+rowStride+c : i00+rowStride+2*c]
				yo, ao := y[o:o+c], arg[o:o+c]
				for ch := range yo {
					a0, a1, a2, a3 := r0[ch], r1[ch], r2[ch], r3[ch]
					m := max(a0, a1, a2, a3)
					// The first window position holding the maximum.
					j := int32(i00 + rowStride + c)
					if a2 == m {
						j = int32(i00 + rowStride)
					}
					if a1 == m {
						j = int32(i00 + c)
					}
					if a0 == m {
						j = int32(i00)
					}
					if p.relu {
						m = max(m, 0)
					}
					yo[ch] = m
					ao[ch] = j + int32(ch)
				}
				o += c
			}
		}
	}
}

func (p *maxPool) backward(dy []float32, batch int, needDX bool) []float32 {
	if !needDX {
		return nil
	}
	p.dy = dy
	p.backPass.run(batch, p.inDim())
	p.dy = nil
	return p.dx[:batch*p.inDim()]
}

// backwardRange is backward for the examples [b0, b1) of p.dy.
func (p *maxPool) backwardRange(b0, b1 int) {
	ex, ox := p.inDim(), p.outDim()
	dx, dy := p.dx, p.dy
	clear(dx[b0*ex : b1*ex])
	for b := b0; b < b1; b++ {
		db := dx[b*ex : (b+1)*ex]
		if p.relu {
			for o := b * ox; o < (b+1)*ox; o++ {
				if p.y[o] > 0 {
					db[p.arg[o]] += dy[o]
				}
			}
			continue
		}
		for o := b * ox; o < (b+1)*ox; o++ {
			db[p.arg[o]] += dy[o]
		}
	}
}
