package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// encodeIDX builds an IDX file of the given type, dimensions and raw data.
func encodeIDX(t IDXType, dims []int, data []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, byte(t), byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, uint32(d))
	}
	b.Write(data)
	return b.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tinyImages returns n images of h*w unsigned bytes with pixel (i, j) =
// (i*7 + j) mod 256, and labels i mod classes.
func tinyImages(n, h, w, classes int) (img, lab []byte) {
	px := make([]byte, n*h*w)
	for i := range px {
		px[i] = byte((i/(h*w))*7 + i%(h*w))
	}
	ls := make([]byte, n)
	for i := range ls {
		ls[i] = byte(i % classes)
	}
	return encodeIDX(IDXUint8, []int{n, h, w}, px), encodeIDX(IDXUint8, []int{n}, ls)
}

func TestReadIDXTypes(t *testing.T) {
	f32 := make([]byte, 8)
	binary.BigEndian.PutUint32(f32, math.Float32bits(1.5))
	binary.BigEndian.PutUint32(f32[4:], math.Float32bits(-2))
	f64 := make([]byte, 8)
	binary.BigEndian.PutUint64(f64, math.Float64bits(3.25))
	for _, tc := range []struct {
		typ  IDXType
		dims []int
		data []byte
		want []float64
	}{
		{IDXUint8, []int{3}, []byte{0, 128, 255}, []float64{0, 128, 255}},
		{IDXInt8, []int{3}, []byte{0, 0x80, 0xff}, []float64{0, -128, -1}},
		{IDXInt16, []int{2}, []byte{0x01, 0x02, 0xff, 0xfe}, []float64{258, -2}},
		{IDXInt32, []int{1, 1}, []byte{0xff, 0xff, 0xff, 0xfd}, []float64{-3}},
		{IDXFloat32, []int{2}, f32, []float64{1.5, -2}},
		{IDXFloat64, []int{1}, f64, []float64{3.25}},
	} {
		for _, compress := range []bool{false, true} {
			raw := encodeIDX(tc.typ, tc.dims, tc.data)
			if compress {
				raw = gz(t, raw)
			}
			a, err := ReadIDX(bytes.NewReader(raw), "x")
			if err != nil {
				t.Fatalf("%s gz=%v: %v", tc.typ, compress, err)
			}
			if a.Type != tc.typ || len(a.Dims) != len(tc.dims) || a.Len() != len(tc.want) {
				t.Fatalf("%s gz=%v: got type %s dims %v len %d", tc.typ, compress, a.Type, a.Dims, a.Len())
			}
			for i, w := range tc.want {
				if got := a.Value(i); got != w {
					t.Errorf("%s gz=%v: value %d = %v, want %v", tc.typ, compress, i, got, w)
				}
			}
		}
	}
}

func TestLoadIDX(t *testing.T) {
	dir := t.TempDir()
	img, lab := tinyImages(5, 3, 4, 3)
	ip := writeFile(t, dir, "img", img)
	lp := writeFile(t, dir, "lab.gz", gz(t, lab))
	d, err := LoadIDX(ip, lp)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.N != 5 || d.Dim != 12 || d.C != 1 || d.H != 3 || d.W != 4 || d.Classes != 3 {
		t.Fatalf("got N=%d Dim=%d CHW=%d,%d,%d Classes=%d", d.N, d.Dim, d.C, d.H, d.W, d.Classes)
	}
	for i := 0; i < d.N; i++ {
		if d.Y[i] != int32(i%3) {
			t.Errorf("label %d = %d, want %d", i, d.Y[i], i%3)
		}
		for j, v := range d.Row(i) {
			if want := float32(byte(i*7+j)) / 255; v != want {
				t.Fatalf("pixel (%d,%d) = %v, want %v", i, j, v, want)
			}
		}
	}
}

func TestLoadIDXErrors(t *testing.T) {
	img, lab := tinyImages(4, 2, 2, 2)
	labNeg := encodeIDX(IDXInt8, []int{4}, []byte{0, 1, 0xff, 1})
	nanImg := make([]byte, 4*4*4)
	binary.BigEndian.PutUint32(nanImg[4*6:], math.Float32bits(float32(math.NaN())))
	trailing := append(append([]byte{}, img...), 9)
	for _, tc := range []struct {
		name     string
		img, lab []byte
		file     string // "img" or "lab": the file the error must name
		want     []string
	}{
		{"empty", []byte{}, lab, "img", []string{"byte offset 0", "truncated magic"}},
		{"wrong magic", append([]byte{1, 0}, img[2:]...), lab, "img", []string{"byte offset 0", "wrong magic number 0x01000803"}},
		{"unknown type", append([]byte{0, 0, 0x07}, img[3:]...), lab, "img", []string{"byte offset 0", "wrong magic"}},
		{"zero dims", []byte{0, 0, 8, 0}, lab, "img", []string{"byte offset 3", "zero dimensions"}},
		{"truncated header", img[:9], lab, "img", []string{"byte offset 9", "truncated header"}},
		{"truncated data", img[:len(img)-3], lab, "img", []string{"byte offset 29", "truncated data"}},
		{"truncated gz", gz(t, img)[:30], lab, "img", []string{"byte offset 23", "truncated data"}},
		{"trailing", trailing, lab, "img", []string{"byte offset 32", "trailing"}},
		{"huge declared", encodeIDX(IDXFloat64, []int{1 << 20, 1 << 20, 1 << 20}, nil), lab, "img", []string{"byte offset 8", "larger than"}},
		{"declared beyond data", encodeIDX(IDXUint8, []int{1 << 24, 28, 28}, []byte{1, 2, 3}), lab, "img", []string{"byte offset 19", "truncated data"}},
		{"count mismatch", img, encodeIDX(IDXUint8, []int{3}, []byte{0, 1, 0}), "lab", []string{"dimension mismatch", "4 images", "3 labels", "byte offset 4"}},
		{"labels 2-D", img, encodeIDX(IDXUint8, []int{4, 1}, []byte{0, 1, 0, 1}), "lab", []string{"byte offset 3", "want 1"}},
		{"labels float", img, encodeIDX(IDXFloat32, []int{1}, make([]byte, 4)), "lab", []string{"byte offset 2", "integer type"}},
		{"negative label", img, labNeg, "lab", []string{"byte offset 10", "label -1"}},
		{"images 1-D", encodeIDX(IDXUint8, []int{4}, []byte{1, 2, 3, 4}), lab, "img", []string{"byte offset 3", "at least 2"}},
		{"NaN pixel", encodeIDX(IDXFloat32, []int{4, 2, 2}, nanImg), lab, "img", []string{"byte offset 40", "non-finite", "example 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ip := writeFile(t, dir, "images-file", tc.img)
			lp := writeFile(t, dir, "labels-file", tc.lab)
			_, err := LoadIDX(ip, lp)
			if err == nil {
				t.Fatal("no error")
			}
			want := map[string]string{"img": ip, "lab": lp}[tc.file]
			msg := err.Error()
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not name %s", msg, want)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
	if _, err := LoadIDX(filepath.Join(t.TempDir(), "missing"), "x"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: got %v", err)
	}
}

func TestLoadIDXDir(t *testing.T) {
	img, lab := tinyImages(6, 2, 3, 4)
	timg, tlab := tinyImages(2, 2, 3, 2)
	for _, names := range [][4]string{
		{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
		{"train-images.idx3-ubyte.gz", "train-labels.idx1-ubyte", "test-images.idx3-ubyte", "t10k-labels-idx1-ubyte.gz"},
	} {
		dir := t.TempDir()
		for i, b := range [][]byte{img, lab, timg, tlab} {
			if strings.HasSuffix(names[i], ".gz") {
				b = gz(t, b)
			}
			writeFile(t, dir, names[i], b)
		}
		train, test, err := Load("idx:" + dir)
		if err != nil {
			t.Fatalf("%v: %v", names, err)
		}
		if train.N != 6 || test.N != 2 || train.Dim != 6 || train.H != 2 || train.W != 3 {
			t.Errorf("%v: train N=%d Dim=%d H=%d W=%d, test N=%d", names, train.N, train.Dim, train.H, train.W, test.N)
		}
		if train.Classes != 4 || test.Classes != 4 {
			t.Errorf("%v: classes %d/%d, want 4/4 (shared)", names, train.Classes, test.Classes)
		}
	}
	dir := t.TempDir()
	writeFile(t, dir, "train-images-idx3-ubyte", img)
	_, _, err := Load("idx:" + dir)
	if err == nil || !strings.Contains(err.Error(), "train-labels-idx1-ubyte") || !strings.Contains(err.Error(), dir) {
		t.Errorf("missing labels: got %v", err)
	}
}

// opaque hides the size of its reader, forcing ReadIDX onto its growing path.
type opaque struct{ r io.Reader }

func (o opaque) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestReadIDXUnknownSize(t *testing.T) {
	big := make([]byte, 3*readChunk+17)
	for i := range big {
		big[i] = byte(i * 31)
	}
	file := encodeIDX(IDXUint8, []int{len(big)}, big)
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" = success
	}{
		{"whole", file, ""},
		{"whole gz", gz(t, file), ""},
		{"truncated", file[:len(file)-5], "byte offset 196628: truncated data"},
		{"trailing", append(slices.Clone(file), 0), "byte offset 196633: trailing"},
		{"forged size", encodeIDX(IDXUint8, []int{1 << 30, 16}, []byte{1, 2}), "byte offset 14: truncated data"},
	} {
		for _, wrap := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(tc.in)
			if wrap {
				r = opaque{r}
			}
			a, err := ReadIDX(r, "f")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("%s wrap=%v: %v", tc.name, wrap, err)
				}
				if !bytes.Equal(a.Data, big) {
					t.Fatalf("%s wrap=%v: data differ", tc.name, wrap)
				}
				continue
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s wrap=%v: got %v, want %q", tc.name, wrap, err, tc.want)
			}
		}
	}
	// A flipped bit in the compressed data is caught (by inflate or by the CRC).
	z := gz(t, file)
	z[len(z)-6] ^= 0x40 // inside the CRC-32 trailer
	if _, err := ReadIDX(bytes.NewReader(z), "crc"); err == nil || !strings.Contains(err.Error(), "crc") {
		t.Errorf("corrupt checksum: got %v", err)
	}
	// Declared sizes beyond what the compressed input can expand to are refused before allocating.
	zf := gz(t, encodeIDX(IDXUint8, []int{1 << 20, 1 << 10}, nil))
	if _, err := ReadIDX(bytes.NewReader(zf), "bomb"); err == nil || !strings.Contains(err.Error(), "more than the compressed input can hold") {
		t.Errorf("forged gz size: got %v", err)
	}
}
