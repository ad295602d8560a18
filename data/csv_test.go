package data

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCSVOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		opt     CSVOptions
		wantX   []float32
		wantY   []int32
		classes int
	}{
		{"last column, no header", "1,2,0\n3,4,2\n", CSVOptions{Header: -1}, []float32{1, 2, 3, 4}, []int32{0, 2}, 3},
		{"auto header with label column", "a,label,b\n1,1,2\n3,0,4\n", CSVOptions{Header: -1}, []float32{1, 2, 3, 4}, []int32{1, 0}, 2},
		{"label by name", "y,a,b\n1,5,6\n0,7,8\n", CSVOptions{Header: -1, Label: "y"}, []float32{5, 6, 7, 8}, []int32{1, 0}, 2},
		{"label by index", "1,5,6\n0,7,8\n", CSVOptions{Header: 0, Label: "0"}, []float32{5, 6, 7, 8}, []int32{1, 0}, 2},
		{"header named like an index", "x,0,1\n1,2,3\n4,5,6\n", CSVOptions{Header: 1, Label: "0"}, []float32{1, 3, 4, 6}, []int32{2, 5}, 6},
		{"forced header", "7,8,9\n1,2,1\n", CSVOptions{Header: 1}, []float32{1, 2}, []int32{1}, 2},
		{"blank lines and spaces", "\n1, 2, 3.0\n\n4,5e0,1\n", CSVOptions{Header: 0}, []float32{1, 2, 4, 5}, []int32{3, 1}, 4},
		{"explicit classes", "1,0\n2,1\n", CSVOptions{Classes: 10}, []float32{1, 2}, []int32{0, 1}, 10},
		{"CRLF", "1,2,1\r\n3,4,0\r\n", CSVOptions{}, []float32{1, 2, 3, 4}, []int32{1, 0}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, compress := range []bool{false, true} {
				in := []byte(tc.in)
				if compress {
					in = gz(t, in)
				}
				d, err := ReadCSV(strings.NewReader(string(in)), "t.csv", tc.opt)
				if err != nil {
					t.Fatalf("gz=%v: %v", compress, err)
				}
				if err := d.Validate(); err != nil {
					t.Fatal(err)
				}
				if d.Classes != tc.classes || d.N != len(tc.wantY) || d.Dim != len(tc.wantX)/len(tc.wantY) {
					t.Fatalf("gz=%v: N=%d Dim=%d Classes=%d", compress, d.N, d.Dim, d.Classes)
				}
				for i := range tc.wantX {
					if d.X[i] != tc.wantX[i] {
						t.Errorf("X = %v, want %v", d.X, tc.wantX)
						break
					}
				}
				for i := range tc.wantY {
					if d.Y[i] != tc.wantY[i] {
						t.Errorf("Y = %v, want %v", d.Y, tc.wantY)
						break
					}
				}
			}
		})
	}
}

func TestReadCSVErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		opt  CSVOptions
		want []string
	}{
		{"ragged", "1,2,0\n3,4,1\n5,1\n", CSVOptions{}, []string{"line 3", "ragged", "2 columns"}},
		{"non-numeric", "1,2,0\n3,x,1\n", CSVOptions{}, []string{"line 2", "column 2", `non-numeric cell "x"`}},
		{"empty cell", "1,2,0\n3,,1\n", CSVOptions{}, []string{"line 2", "column 2", "non-numeric"}},
		{"NaN cell", "1,2,0\nNaN,4,1\n", CSVOptions{}, []string{"line 2", "column 1", "non-finite"}},
		{"Inf cell", "a,b,c\n1,2,0\n3,1e99,1\n", CSVOptions{Header: -1}, []string{"line 3", "column 2", "non-finite"}},
		{"negative label", "1,2,0\n3,4,-1\n", CSVOptions{}, []string{"line 2", "column 3", "negative label"}},
		{"fractional label", "1,2,0\n3,4,1.5\n", CSVOptions{}, []string{"line 2", "not an integer"}},
		{"text label", "h1,h2,label\n1,2,cat\n", CSVOptions{Header: -1}, []string{"line 2", "non-numeric label"}},
		{"label too big for Classes", "1,2,0\n3,4,10\n", CSVOptions{Classes: 10}, []string{"line 2", "outside [0, 10)"}},
		{"label beyond MaxClasses", "1,2,0\n3,4,1e9\n", CSVOptions{}, []string{"line 2", "maximum"}},
		{"one column", "1\n2\n", CSVOptions{}, []string{"line 1", "at least 2"}},
		{"no rows", "a,b\n", CSVOptions{Header: -1}, []string{"no data rows"}},
		{"empty", "", CSVOptions{}, []string{"no data rows"}},
		{"unknown label name", "a,b\n1,2\n", CSVOptions{Label: "y", Header: -1}, []string{"line 1", `"y" not in header`}},
		{"label name without header", "1,2\n", CSVOptions{Label: "y", Header: 0}, []string{"no header"}},
		{"label index out of range", "1,2\n", CSVOptions{Label: "2"}, []string{"line 1", "index 2"}},
		{"bad quote", "1,2,0\n\"3,4,1\n", CSVOptions{}, []string{"line 2"}},
		{"bad Header option", "1,2\n", CSVOptions{Header: 2}, []string{"Header = 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad-"+strings.ReplaceAll(tc.name, " ", "_")+".csv")
			if err := os.WriteFile(path, []byte(tc.in), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadCSV(path, tc.opt)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestReadCSVStandardize(t *testing.T) {
	d, err := ReadCSV(strings.NewReader("1,5,0\n3,5,1\n5,5,0\n"), "s", CSVOptions{Standardize: true})
	if err != nil {
		t.Fatal(err)
	}
	// Column 0: mean 3, population sd sqrt(8/3); column 1 is constant.
	sd := math.Sqrt(8.0 / 3)
	want := []float64{-2 / sd, 0, 0, 0, 2 / sd, 0}
	for i, w := range want {
		if math.Abs(float64(d.X[i])-w) > 1e-6 {
			t.Fatalf("X = %v, want %v", d.X, want)
		}
	}
}

func TestDigits(t *testing.T) {
	train, test, err := Digits()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Dataset{train, test} {
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		if d.Dim != 64 || d.Classes != 10 || d.C != 1 || d.H != 8 || d.W != 8 {
			t.Fatalf("%s: Dim=%d Classes=%d CHW=%d,%d,%d", d.Name, d.Dim, d.Classes, d.C, d.H, d.W)
		}
		lo, hi := float32(1), float32(0)
		for _, v := range d.X {
			lo, hi = min(lo, v), max(hi, v)
		}
		if lo != 0 || hi != 1 {
			t.Errorf("%s: features span [%v, %v], want [0, 1]", d.Name, lo, hi)
		}
	}
	if train.N+test.N != 1797 || test.N != 359 {
		t.Fatalf("train %d + test %d, want 1438 + 359 = 1797", train.N, test.N)
	}
	counts := make([]int, 10)
	for _, d := range []*Dataset{train, test} {
		for c, k := range d.ClassCounts() {
			counts[c] += k
		}
	}
	// scikit-learn's digits: between 174 and 183 examples per class.
	for c, k := range counts {
		if k < 174 || k > 183 {
			t.Errorf("class %d has %d examples, want 174..183", c, k)
		}
	}
	// The first row of the file is a 0 whose first pixels are 0,0,5,13,9,1.
	raw, err := ReadCSV(strings.NewReader(string(digitsCSV)), "digits", CSVOptions{Header: 0})
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{0, 0, 5, 13, 9, 1}
	for j, w := range want {
		if raw.X[j] != w {
			t.Fatalf("raw row 0 = %v, want prefix %v", raw.Row(0)[:6], want)
		}
	}
	found := false
	for i := 0; i < train.N && !found; i++ {
		r := train.Row(i)
		found = train.Y[i] == 0 && r[2] == 5.0/16 && r[3] == 13.0/16 && r[4] == 9.0/16
	}
	for i := 0; i < test.N && !found; i++ {
		r := test.Row(i)
		found = test.Y[i] == 0 && r[2] == 5.0/16 && r[3] == 13.0/16 && r[4] == 9.0/16
	}
	if !found {
		t.Error("first raw row, scaled by 1/16, not found in the split")
	}
	// The split is deterministic.
	train2, _, err := Digits()
	if err != nil {
		t.Fatal(err)
	}
	for i := range train.Y {
		if train.Y[i] != train2.Y[i] {
			t.Fatal("two calls of Digits gave different splits")
		}
	}
}
