package data

import (
	"bytes"
	"testing"
)

// FuzzReadIDX checks that the IDX decoder never panics and that whatever it
// accepts is self-consistent and loads as a Dataset or fails cleanly.
func FuzzReadIDX(f *testing.F) {
	img, lab := tinyImages(2, 2, 2, 2)
	f.Add(img)
	f.Add(lab)
	f.Add(gz(f, img))
	f.Add([]byte{0, 0, 8, 1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0x0e, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ReadIDX(bytes.NewReader(b), "fuzz")
		if err != nil {
			return
		}
		n := a.Type.Size()
		for _, d := range a.Dims {
			n *= d
		}
		if n != len(a.Data) {
			t.Fatalf("dims %v of %s accepted with %d data bytes", a.Dims, a.Type, len(a.Data))
		}
		for i := range min(a.Len(), 64) {
			_ = a.Value(i)
		}
		// Use the array as images and as labels.
		if d, err := idxDataset("fuzz", a, a); err == nil {
			if err := d.Validate(); err != nil {
				t.Fatalf("idxDataset accepted an invalid dataset: %v", err)
			}
		}
	})
}

// FuzzReadCSV checks that the CSV decoder never panics and that whatever it
// accepts passes Validate.
func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("1,2,0\n3,4,1\n"), "", int8(-1), uint8(0))
	f.Add([]byte("a,label,b\n1,1,2\n3,0,4\n"), "label", int8(1), uint8(3))
	f.Add([]byte("1,2\n3\n"), "0", int8(0), uint8(0))
	f.Add([]byte("\"1\",2,NaN\r\n"), "2", int8(-1), uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, label string, header int8, classes uint8) {
		opt := CSVOptions{Label: label, Header: int(header) % 2, Classes: int(classes)}
		d, err := ReadCSV(bytes.NewReader(b), "fuzz.csv", opt)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted an invalid dataset: %v", err)
		}
	})
}
