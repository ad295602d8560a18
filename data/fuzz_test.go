package data

import (
	"bytes"
	"os"
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

// FuzzReadTable checks that the schema reader never panics, that whatever
// it accepts has the schema's shape, and that its sums, statistics and
// encoding hold up.
func FuzzReadTable(f *testing.F) {
	s, err := LoadSchema("testdata/cohort_schema.toml")
	if err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile("testdata/cohort_excel.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("patient_id,age,sbp,sex,outcome\n1,54,130,M,yes\n"))
	f.Add([]byte("age\tsbp\tsex\toutcome\tpatient_id\n\"1\t2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ReadTable(bytes.NewReader(b), "fuzz", s)
		if err != nil {
			return
		}
		if d.Dim != len(s.Features()) || len(d.X) != d.N*d.Dim || len(d.Y) != d.N || d.Classes != 2 {
			t.Fatalf("accepted a table of shape N=%d Dim=%d len(X)=%d len(Y)=%d classes %d", d.N, d.Dim, len(d.X), len(d.Y), d.Classes)
		}
		sums, err := Sums(s, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := StatsFromSums(s, sums)
		if err != nil {
			return // e.g. a column with no value at all
		}
		enc, err := Encode(s, d, st, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.Validate(); err != nil {
			t.Fatalf("encoded table invalid: %v", err)
		}
	})
}
