// Package data provides the labelled data sets Sovereign trains on, their
// loaders (IDX, CSV and the embedded digits and MNIST sets) and the
// partitioners that split one data set among the clients of a simulated
// federation.
//
// A Dataset is a dense row-major table of float32 features with integer class
// labels. Loaders check every byte they read: a malformed file produces an
// error naming the file and the line (CSV) or byte offset (IDX), never a
// panic.
package data

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sovereign-fl/sovereign/internal/finite"
)

// MaxClasses bounds the number of classes a loader will infer from labels.
// A label beyond it is almost certainly a mis-chosen label column, and
// accepting it would make downstream models allocate enormous output layers.
const MaxClasses = 1 << 16

// Dataset is a labelled table of float32 features, row-major.
//
// Row i occupies X[i*Dim : (i+1)*Dim] and has label Y[i] in [0, Classes).
// C, H and W give the image shape (channels, height, width) when the rows are
// images, so that a convolutional model can use them; otherwise they are
// 1, 1, Dim. C*H*W always equals Dim.
type Dataset struct {
	// Name identifies the data set in error messages and logs.
	Name string
	// X holds N rows of Dim features each.
	X []float32
	// Y holds the N labels.
	Y []int32
	// N is the number of rows, Dim the number of features per row and
	// Classes the number of classes.
	N, Dim, Classes int
	// C, H, W are the image shape if known, else 1, 1, Dim.
	C, H, W int
	// StdMean and StdScale are set by Standardize on both sets: every
	// feature was mapped x' = (x − StdMean[j])·StdScale[j]. Nil otherwise.
	StdMean, StdScale []float64
}

// Row returns the features of row i as a sub-slice of d.X (not a copy).
// Its capacity is limited to the row, so appending to it cannot overwrite the
// next row. It panics, like any slice index, if i is not in [0, N).
func (d *Dataset) Row(i int) []float32 {
	lo := i * d.Dim
	hi := lo + d.Dim
	return d.X[lo:hi:hi]
}

// Validate checks that the fields of d are consistent: positive sizes, slice
// lengths matching N and Dim, an image shape whose product is Dim, labels in
// [0, Classes) and finite features. The error names the data set and the
// offending field or row.
func (d *Dataset) Validate() error {
	if d == nil {
		return errors.New("data: nil dataset")
	}
	name := d.Name
	if name == "" {
		name = "(unnamed)"
	}
	switch {
	case d.N < 0:
		return fmt.Errorf("data: dataset %s: N = %d is negative", name, d.N)
	case d.Dim < 1:
		return fmt.Errorf("data: dataset %s: Dim = %d, want >= 1", name, d.Dim)
	case d.Classes < 1:
		return fmt.Errorf("data: dataset %s: Classes = %d, want >= 1", name, d.Classes)
	case d.Classes > MaxClasses:
		return fmt.Errorf("data: dataset %s: Classes = %d exceeds the maximum %d", name, d.Classes, MaxClasses)
	case d.C < 1 || d.H < 1 || d.W < 1:
		return fmt.Errorf("data: dataset %s: image shape C,H,W = %d,%d,%d must be positive", name, d.C, d.H, d.W)
	case d.C*d.H*d.W != d.Dim:
		return fmt.Errorf("data: dataset %s: image shape C*H*W = %d*%d*%d = %d does not equal Dim = %d",
			name, d.C, d.H, d.W, d.C*d.H*d.W, d.Dim)
	case d.N > 0 && d.Dim > math.MaxInt/d.N:
		return fmt.Errorf("data: dataset %s: N*Dim = %d*%d overflows", name, d.N, d.Dim)
	case len(d.X) != d.N*d.Dim:
		return fmt.Errorf("data: dataset %s: len(X) = %d, want N*Dim = %d*%d = %d", name, len(d.X), d.N, d.Dim, d.N*d.Dim)
	case len(d.Y) != d.N:
		return fmt.Errorf("data: dataset %s: len(Y) = %d, want N = %d", name, len(d.Y), d.N)
	}
	for i, y := range d.Y {
		if y < 0 || int(y) >= d.Classes {
			return fmt.Errorf("data: dataset %s: row %d: label %d outside [0, %d)", name, i, y, d.Classes)
		}
	}
	if j := finite.First(d.X); j >= 0 {
		return fmt.Errorf("data: dataset %s: row %d, feature %d: non-finite value %v", name, j/d.Dim, j%d.Dim, d.X[j])
	}
	return nil
}

// ClassCounts returns how many rows carry each label, indexed by class.
func (d *Dataset) ClassCounts() []int {
	counts := make([]int, d.Classes)
	for _, y := range d.Y {
		if y >= 0 && int(y) < d.Classes {
			counts[y]++
		}
	}
	return counts
}

// Subset returns a new Dataset holding copies of the rows listed in idx, in
// that order, with the same Dim, Classes and image shape. An index outside
// [0, N) is an error naming its position in idx.
func (d *Dataset) Subset(name string, idx []int) (*Dataset, error) {
	for k, i := range idx {
		if i < 0 || i >= d.N {
			return nil, fmt.Errorf("data: subset %s of %s: idx[%d] = %d outside [0, %d)", name, d.Name, k, i, d.N)
		}
	}
	s := &Dataset{
		Name: name, N: len(idx), Dim: d.Dim, Classes: d.Classes, C: d.C, H: d.H, W: d.W,
		X: make([]float32, 0, len(idx)*d.Dim),
		Y: make([]int32, 0, len(idx)),
	}
	for _, i := range idx {
		s.X = append(s.X, d.Row(i)...)
		s.Y = append(s.Y, d.Y[i])
	}
	return s, nil
}

// Split shuffles the rows of d with a PCG generator seeded by seed and
// returns the first part as train and the last round(testFrac*N) rows as
// test. testFrac must lie in [0, 1). Both parts keep d's Classes and image
// shape and are named d.Name+":train" and d.Name+":test".
func Split(d *Dataset, testFrac float64, seed int64) (train, test *Dataset, err error) {
	if err := d.Validate(); err != nil {
		return nil, nil, err
	}
	return splitRows(d, testFrac, seed)
}

// SplitTable is Split for a raw table read by ReadTable, whose missing cells
// are NaN: the same shuffle, so the same rows go to the same side.
func SplitTable(d *Dataset, testFrac float64, seed int64) (train, test *Dataset, err error) {
	if d == nil || d.N < 1 || d.Dim < 1 || len(d.X) != d.N*d.Dim || len(d.Y) != d.N {
		return nil, nil, fmt.Errorf("data: split of a malformed table")
	}
	return splitRows(d, testFrac, seed)
}

func splitRows(d *Dataset, testFrac float64, seed int64) (train, test *Dataset, err error) {
	if !(testFrac >= 0 && testFrac < 1) {
		return nil, nil, fmt.Errorf("data: split of %s: test fraction %v outside [0, 1)", d.Name, testFrac)
	}
	perm := newRand(seed, streamSplit).Perm(d.N)
	nTest := int(math.Round(testFrac * float64(d.N)))
	if train, err = d.Subset(d.Name+":train", perm[:d.N-nTest]); err != nil {
		return nil, nil, err
	}
	if test, err = d.Subset(d.Name+":test", perm[d.N-nTest:]); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// Standardize rescales every feature to zero mean and unit variance (a
// z-score) using the mean and standard deviation computed on train only, and
// applies the same affine map to test, so no statistic of the test rows leaks
// into training. A feature that is constant on train is only centred. test
// may be nil. Statistics are accumulated in float64. Mismatched Dim between
// the two sets leaves test untouched; callers should have validated both.
func Standardize(train, test *Dataset) {
	if train == nil || train.N == 0 || train.Dim < 1 || len(train.X) != train.N*train.Dim {
		return
	}
	mean, scale := columnStats(train)
	apply := func(d *Dataset) {
		for i := 0; i < d.N; i++ {
			row := d.Row(i)
			for j := range row {
				row[j] = float32((float64(row[j]) - mean[j]) * scale[j])
			}
		}
	}
	apply(train)
	train.StdMean, train.StdScale = mean, scale
	if test != nil && test.Dim == train.Dim && len(test.X) == test.N*test.Dim {
		apply(test)
		test.StdMean, test.StdScale = mean, scale
	}
}

// columnStats returns the per-feature mean and 1/std (1 where std is zero)
// computed with Welford's one-pass update (Welford 1962).
func columnStats(d *Dataset) (mean, scale []float64) {
	mean = make([]float64, d.Dim)
	m2 := make([]float64, d.Dim)
	for i := 0; i < d.N; i++ {
		row := d.Row(i)
		k := float64(i + 1)
		for j, v := range row {
			x := float64(v)
			delta := x - mean[j]
			mean[j] += delta / k
			m2[j] += delta * (x - mean[j])
		}
	}
	scale = make([]float64, d.Dim)
	for j := range scale {
		sd := math.Sqrt(m2[j] / float64(d.N))
		if sd > 0 && !math.IsInf(1/sd, 0) {
			scale[j] = 1 / sd
		} else {
			scale[j] = 1
		}
	}
	return mean, scale
}

// Random streams: each use of a seed draws from its own PCG stream, so the
// same seed passed to Split and Partition does not correlate them.
const (
	streamSplit     = 0x5350_4c49_5400_0001 // "SPLIT"
	streamPartition = 0x5041_5254_0000_0002 // "PART"
)

// newRand returns a math/rand/v2 generator over a PCG source (O'Neill 2014)
// seeded by seed on the given stream.
func newRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}
