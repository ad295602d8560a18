package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// IDXType is the element type code of an IDX file, the third byte of its
// magic number (LeCun et al., "THE MNIST DATABASE of handwritten digits",
// file format section).
type IDXType byte

// IDX element types. The values are the on-disk codes; do not renumber.
const (
	IDXUint8   IDXType = 0x08
	IDXInt8    IDXType = 0x09
	IDXInt16   IDXType = 0x0B
	IDXInt32   IDXType = 0x0C
	IDXFloat32 IDXType = 0x0D
	IDXFloat64 IDXType = 0x0E
)

// Size returns the size in bytes of one element, or 0 for an unknown type.
func (t IDXType) Size() int {
	switch t {
	case IDXUint8, IDXInt8:
		return 1
	case IDXInt16:
		return 2
	case IDXInt32, IDXFloat32:
		return 4
	case IDXFloat64:
		return 8
	}
	return 0
}

// String names the type as the format's documentation does.
func (t IDXType) String() string {
	switch t {
	case IDXUint8:
		return "unsigned byte"
	case IDXInt8:
		return "signed byte"
	case IDXInt16:
		return "short"
	case IDXInt32:
		return "int"
	case IDXFloat32:
		return "float"
	case IDXFloat64:
		return "double"
	}
	return fmt.Sprintf("unknown type 0x%02x", byte(t))
}

// integral reports whether the type holds integers.
func (t IDXType) integral() bool {
	return t == IDXUint8 || t == IDXInt8 || t == IDXInt16 || t == IDXInt32
}

// IDX is one decoded IDX file: an n-dimensional array of Type elements,
// stored big-endian in Data exactly as on disk.
type IDX struct {
	// Name is the file name given to ReadIDX, used in error messages.
	Name string
	// Type is the element type.
	Type IDXType
	// Dims are the array's dimensions, outermost first.
	Dims []int
	// Data holds the elements, big-endian, len(Data) = product(Dims)*Type.Size().
	Data []byte
}

// HeaderSize is the offset of the first data byte: the 4-byte magic number
// followed by one 4-byte size per dimension.
func (a *IDX) HeaderSize() int { return 4 + 4*len(a.Dims) }

// Len returns the number of elements.
func (a *IDX) Len() int { return len(a.Data) / a.Type.Size() }

// Value returns element i (in row-major order) as a float64.
func (a *IDX) Value(i int) float64 {
	switch a.Type {
	case IDXUint8:
		return float64(a.Data[i])
	case IDXInt8:
		return float64(int8(a.Data[i]))
	case IDXInt16:
		return float64(int16(binary.BigEndian.Uint16(a.Data[2*i:])))
	case IDXInt32:
		return float64(int32(binary.BigEndian.Uint32(a.Data[4*i:])))
	case IDXFloat32:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(a.Data[4*i:])))
	case IDXFloat64:
		return math.Float64frombits(binary.BigEndian.Uint64(a.Data[8*i:]))
	}
	return math.NaN()
}

// Offset returns the byte offset in the (decompressed) file of element i.
func (a *IDX) Offset(i int) int { return a.HeaderSize() + i*a.Type.Size() }

// maxIDXBytes bounds the data section an IDX header may declare (16 GiB).
const maxIDXBytes = 1 << 34

// readChunk is the most ReadIDX allocates ahead of data it has seen when the
// input's size cannot be known.
const readChunk = 1 << 16

// maxDeflateRatio bounds how many bytes one compressed byte can expand to:
// DEFLATE (RFC 1951) emits at most 258 bytes per 2-bit-minimum code pair, a
// ratio under 1032:1.
const maxDeflateRatio = 1032

var gzipMagic = []byte{0x1f, 0x8b}

// inputSize returns how many bytes remain in r, if r can tell: a
// *bytes.Reader, *strings.Reader or a regular *os.File.
func inputSize(r io.Reader) (int64, bool) {
	switch v := r.(type) {
	case interface{ Len() int }:
		return int64(v.Len()), true
	case *os.File:
		st, err := v.Stat()
		if err != nil || !st.Mode().IsRegular() {
			return 0, false
		}
		pos, err := v.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, false
		}
		return max(st.Size()-pos, 0), true
	}
	return 0, false
}

// ReadIDX decodes an IDX file (the format of the MNIST files) from r. The
// input may be gzip-compressed; that is detected from the magic bytes 1f 8b.
// name is used in error messages, which give the byte offset in the
// decompressed stream where the problem lies: a wrong magic number, an
// unknown element type, zero dimensions, a declared size that overflows or
// exceeds what the input can hold, a truncated data section, a corrupt
// compressed stream or trailing bytes after the data.
//
// A forged header cannot make ReadIDX allocate much more than the input's
// real size: when r can tell its size (*bytes.Reader, *strings.Reader,
// *os.File) the declared size is checked against it (for gzip input, against
// the most its compressed bytes can expand to) before allocating; otherwise
// the buffer grows only as data arrives.
func ReadIDX(r io.Reader, name string) (*IDX, error) {
	remaining, known := inputSize(r)
	br := bufio.NewReader(r)
	if head, _ := br.Peek(2); bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("data: idx %s: byte offset 0: bad gzip header: %v", name, err)
		}
		defer zr.Close()
		bound := int64(-1)
		if known && remaining < maxIDXBytes/maxDeflateRatio {
			bound = remaining * maxDeflateRatio
		}
		return readIDX(bufio.NewReader(zr), name, true, bound)
	}
	bound := int64(-1)
	if known {
		bound = remaining
	}
	return readIDX(br, name, false, bound)
}

// readIDX decodes an uncompressed IDX stream of which at most bound bytes
// remain (-1: unknown).
func readIDX(r io.Reader, name string, gz bool, bound int64) (*IDX, error) {
	what := "file"
	if gz {
		what = "decompressed stream"
	}
	var magic [4]byte
	if n, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, fmt.Errorf("data: idx %s: byte offset %d: truncated magic number (%s has %d bytes, want 4): %v",
			name, n, what, n, describeEOF(err))
	}
	t := IDXType(magic[2])
	if magic[0] != 0 || magic[1] != 0 || t.Size() == 0 {
		return nil, fmt.Errorf("data: idx %s: byte offset 0: wrong magic number 0x%08x "+
			"(want 0x0000TTDD with type TT in 08,09,0B,0C,0D,0E and DD dimensions)",
			name, binary.BigEndian.Uint32(magic[:]))
	}
	nd := int(magic[3])
	if nd == 0 {
		return nil, fmt.Errorf("data: idx %s: byte offset 3: magic number 0x%08x declares zero dimensions",
			name, binary.BigEndian.Uint32(magic[:]))
	}
	hdr := make([]byte, 4*nd)
	if n, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("data: idx %s: byte offset %d: truncated header: %d dimensions need %d bytes, %s ends after %d: %v",
			name, 4+n, nd, 4*nd, what, 4+n, describeEOF(err))
	}
	a := &IDX{Name: name, Type: t, Dims: make([]int, nd)}
	size := uint64(t.Size())
	for k := range a.Dims {
		d := uint64(binary.BigEndian.Uint32(hdr[4*k:]))
		a.Dims[k] = int(d)
		if d != 0 && size > maxIDXBytes/d {
			return nil, fmt.Errorf("data: idx %s: byte offset %d: dimension %d of size %d makes the data section larger than %d bytes",
				name, 4+4*k, k, d, uint64(maxIDXBytes))
		}
		size *= d
	}
	hs := a.HeaderSize()
	if bound >= 0 && !gz && size > uint64(max(bound-int64(hs), 0)) {
		return nil, fmt.Errorf("data: idx %s: byte offset %d: truncated data: dims %v of %s declare %d data bytes, the file ends after %d",
			name, max(bound, int64(hs)), a.Dims, t, size, max(bound-int64(hs), 0))
	}
	if bound >= 0 && gz && size > uint64(bound) {
		return nil, fmt.Errorf("data: idx %s: byte offset %d: dims %v of %s declare %d data bytes, more than the compressed input can hold (%d)",
			name, hs, a.Dims, t, size, bound)
	}
	var data []byte
	var n int
	var err error
	if bound >= 0 {
		data = make([]byte, size)
		n, err = io.ReadFull(r, data)
	} else {
		data, err = readGrowing(r, int(size))
		n = len(data)
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("data: idx %s: byte offset %d: truncated data: dims %v of %s declare %d data bytes, %s ends after %d",
				name, hs+n, a.Dims, t, size, what, n)
		}
		return nil, fmt.Errorf("data: idx %s: byte offset %d: reading data: %v", name, hs+n, err)
	}
	// Nothing may follow the data; reading to the end also makes the gzip
	// reader verify its checksum.
	var extra [1]byte
	if k, err := io.ReadFull(r, extra[:]); k > 0 {
		return nil, fmt.Errorf("data: idx %s: byte offset %d: trailing bytes after the %d declared data bytes", name, hs+int(size), size)
	} else if err != io.EOF {
		return nil, fmt.Errorf("data: idx %s: byte offset %d: after the data: %v", name, hs+int(size), err)
	}
	a.Data = data
	return a, nil
}

// readGrowing reads exactly size bytes from r, growing its buffer
// geometrically from readChunk as data arrives, never beyond size.
func readGrowing(r io.Reader, size int) ([]byte, error) {
	buf := make([]byte, 0, min(size, readChunk))
	for len(buf) < size {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(size, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err == io.EOF && len(buf) < size {
			return buf, io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return buf, err
		}
	}
	return buf, nil
}

func describeEOF(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of file"
	}
	return err.Error()
}

// readIDXFile opens path and decodes it with ReadIDX.
func readIDXFile(path string) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: idx: %w", err)
	}
	defer f.Close()
	return ReadIDX(f, path)
}

// LoadIDX reads an images file and a labels file in IDX format, each either
// gzip-compressed or raw (detected by the magic bytes 1f 8b), and returns them
// as a Dataset. Images of unsigned bytes are scaled by 1/255 to [0, 1]; other
// element types are taken as they are and must be finite. The images array
// must have at least two dimensions (N, then the shape of one example: 3-D
// arrays give C,H,W = 1,H,W and 4-D arrays C,H,W); the labels must be a 1-D
// array of an integer type with the same N and non-negative values. Classes is
// the largest label plus one.
func LoadIDX(imagesPath, labelsPath string) (*Dataset, error) {
	img, err := readIDXFile(imagesPath)
	if err != nil {
		return nil, err
	}
	lab, err := readIDXFile(labelsPath)
	if err != nil {
		return nil, err
	}
	return idxDataset(imagesPath, img, lab)
}

// idxDataset combines decoded images and labels into a Dataset.
func idxDataset(name string, img, lab *IDX) (*Dataset, error) {
	if len(img.Dims) < 2 {
		return nil, fmt.Errorf("data: idx %s: byte offset 3: images have %d dimension(s), want at least 2 (count, then example shape)",
			img.Name, len(img.Dims))
	}
	if len(lab.Dims) != 1 {
		return nil, fmt.Errorf("data: idx %s: byte offset 3: labels have %d dimensions %v, want 1",
			lab.Name, len(lab.Dims), lab.Dims)
	}
	if !lab.Type.integral() {
		return nil, fmt.Errorf("data: idx %s: byte offset 2: labels have element type %s, want an integer type",
			lab.Name, lab.Type)
	}
	n := img.Dims[0]
	if lab.Dims[0] != n {
		return nil, fmt.Errorf("data: idx: dimension mismatch: %s (byte offset 4) declares %d images but %s (byte offset 4) declares %d labels",
			img.Name, n, lab.Name, lab.Dims[0])
	}
	dim := 1
	for _, d := range img.Dims[1:] {
		dim *= d
	}
	if dim == 0 {
		return nil, fmt.Errorf("data: idx %s: byte offset 8: image shape %v has no pixels", img.Name, img.Dims[1:])
	}
	if n == 0 {
		return nil, fmt.Errorf("data: idx %s: byte offset 4: zero images", img.Name)
	}
	d := &Dataset{Name: name, N: n, Dim: dim, C: 1, H: 1, W: dim}
	switch len(img.Dims) {
	case 3:
		d.H, d.W = img.Dims[1], img.Dims[2]
	case 4:
		d.C, d.H, d.W = img.Dims[1], img.Dims[2], img.Dims[3]
	}
	d.Y = make([]int32, n)
	maxLabel := -1
	for i := range d.Y {
		v := lab.Value(i)
		if v < 0 || v >= MaxClasses {
			return nil, fmt.Errorf("data: idx %s: byte offset %d: label %v of example %d outside [0, %d)",
				lab.Name, lab.Offset(i), v, i, MaxClasses)
		}
		d.Y[i] = int32(v)
		maxLabel = max(maxLabel, int(v))
	}
	d.Classes = maxLabel + 1
	d.X = make([]float32, n*dim)
	if img.Type == IDXUint8 {
		var lut [256]float32
		for i := range lut {
			lut[i] = float32(i) / 255
		}
		for i, b := range img.Data {
			d.X[i] = lut[b]
		}
		return d, nil
	}
	for i := range d.X {
		v := img.Value(i)
		f := float32(v)
		if math.IsNaN(v) || math.IsInf(float64(f), 0) {
			return nil, fmt.Errorf("data: idx %s: byte offset %d: non-finite pixel %v (example %d)",
				img.Name, img.Offset(i), v, i/dim)
		}
		d.X[i] = f
	}
	return d, nil
}
