package data

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func small() *Dataset {
	return &Dataset{
		Name: "small", N: 3, Dim: 2, Classes: 2, C: 1, H: 1, W: 2,
		X: []float32{1, 2, 3, 4, 5, 6},
		Y: []int32{0, 1, 1},
	}
}

func TestRowAndSubset(t *testing.T) {
	d := small()
	r := d.Row(1)
	if len(r) != 2 || r[0] != 3 || r[1] != 4 || cap(r) != 2 {
		t.Fatalf("Row(1) = %v cap %d", r, cap(r))
	}
	_ = append(r, 99) // must not overwrite row 2
	if d.X[4] != 5 {
		t.Fatal("append to a row overwrote the next row")
	}
	s, err := d.Subset("s", []int{2, 0})
	if err != nil {
		t.Fatal(err)
	}
	if s.N != 2 || s.X[0] != 5 || s.X[3] != 2 || s.Y[0] != 1 || s.Y[1] != 0 {
		t.Fatalf("Subset = %+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Subset("s", []int{0, 3}); err == nil || !strings.Contains(err.Error(), "idx[1] = 3") {
		t.Errorf("out-of-range subset: %v", err)
	}
}

func TestValidate(t *testing.T) {
	if err := small().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		mod   func(d *Dataset)
		field string
	}{
		{"short X", func(d *Dataset) { d.X = d.X[:5] }, "len(X)"},
		{"short Y", func(d *Dataset) { d.Y = d.Y[:2] }, "len(Y)"},
		{"label high", func(d *Dataset) { d.Y[2] = 2 }, "row 2: label 2"},
		{"label negative", func(d *Dataset) { d.Y[0] = -1 }, "row 0: label -1"},
		{"NaN", func(d *Dataset) { d.X[3] = float32(math.NaN()) }, "row 1, feature 1"},
		{"Inf", func(d *Dataset) { d.X[0] = float32(math.Inf(1)) }, "row 0, feature 0"},
		{"shape", func(d *Dataset) { d.H = 2 }, "C*H*W"},
		{"zero shape", func(d *Dataset) { d.C = 0 }, "image shape"},
		{"Dim", func(d *Dataset) { d.Dim = 0 }, "Dim = 0"},
		{"Classes", func(d *Dataset) { d.Classes = 0 }, "Classes = 0"},
		{"N", func(d *Dataset) { d.N = -1 }, "N = -1"},
	} {
		d := small()
		tc.mod(d)
		err := d.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "small") {
			t.Errorf("%s: got %v, want an error naming small and %q", tc.name, err, tc.field)
		}
	}
	var nilDS *Dataset
	if nilDS.Validate() == nil {
		t.Error("nil dataset validated")
	}
}

func TestStandardizeUsesTrainStatistics(t *testing.T) {
	train := &Dataset{Name: "tr", N: 4, Dim: 2, Classes: 1, C: 1, H: 1, W: 2,
		X: []float32{0, 7, 2, 7, 4, 7, 6, 7}, Y: make([]int32, 4)}
	test := &Dataset{Name: "te", N: 1, Dim: 2, Classes: 1, C: 1, H: 1, W: 2,
		X: []float32{3, 9}, Y: make([]int32, 1)}
	Standardize(train, test)
	// Column 0 on train: mean 3, variance (9+1+1+9)/4 = 5.
	sd := math.Sqrt(5)
	for i, w := range []float64{-3 / sd, -1 / sd, 1 / sd, 3 / sd} {
		if math.Abs(float64(train.X[2*i])-w) > 1e-6 {
			t.Errorf("train[%d][0] = %v, want %v", i, train.X[2*i], w)
		}
		if train.X[2*i+1] != 0 {
			t.Errorf("constant column not centred: %v", train.X[2*i+1])
		}
	}
	if test.X[0] != 0 || test.X[1] != 2 {
		t.Errorf("test = %v, want [0 2] (train mean 3, constant column shifted by 7)", test.X)
	}
}

func TestSplit(t *testing.T) {
	d := &Dataset{Name: "d", N: 10, Dim: 1, Classes: 10, C: 1, H: 1, W: 1, Y: make([]int32, 10)}
	for i := range 10 {
		d.X = append(d.X, float32(i))
		d.Y[i] = int32(i)
	}
	tr, te, err := Split(d, 0.3, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tr.N != 7 || te.N != 3 {
		t.Fatalf("sizes %d/%d", tr.N, te.N)
	}
	seen := map[float32]bool{}
	for _, s := range []*Dataset{tr, te} {
		for i := 0; i < s.N; i++ {
			if float32(s.Y[i]) != s.X[i] {
				t.Fatal("features and labels separated")
			}
			seen[s.X[i]] = true
		}
	}
	if len(seen) != 10 {
		t.Fatalf("split lost rows: %v", seen)
	}
	tr2, _, _ := Split(d, 0.3, 1)
	tr3, _, _ := Split(d, 0.3, 2)
	same2, same3 := true, true
	for i := range tr.Y {
		same2 = same2 && tr.Y[i] == tr2.Y[i]
		same3 = same3 && tr.Y[i] == tr3.Y[i]
	}
	if !same2 || same3 {
		t.Errorf("same seed equal: %v (want true); other seed equal: %v (want false)", same2, same3)
	}
	if _, _, err := Split(d, 1, 1); err == nil {
		t.Error("test fraction 1 accepted")
	}
}

func TestLoadSpecs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "iris.csv")
	var b strings.Builder
	b.WriteString("f1,f2,species\n")
	for i := range 50 {
		b.WriteString(strings.Join([]string{strconv.Itoa(i), strconv.Itoa(100 + i%3), strconv.Itoa(i % 3)}, ",") + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	train, test, err := Load("csv:" + path + "?label=species&standardize=true&test=0.3&seed=5")
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 35 || test.N != 15 || train.Dim != 2 || train.Classes != 3 {
		t.Fatalf("train N=%d Dim=%d Classes=%d, test N=%d", train.N, train.Dim, train.Classes, test.N)
	}
	mean, _ := columnStats(train)
	if math.Abs(mean[0]) > 1e-5 || math.Abs(mean[1]) > 1e-5 {
		t.Errorf("train not standardized: means %v", mean)
	}
	// Default options: label is the last column, header detected, 80/20.
	train, test, err = Load("csv:" + path)
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 40 || test.N != 10 {
		t.Errorf("default split %d/%d, want 40/10", train.N, test.N)
	}
	// By index, header forced.
	if train, _, err = Load("csv:" + path + "?label=2&header=true&classes=5"); err != nil || train.Classes != 5 {
		t.Errorf("label by index: %v, classes %v", err, train)
	}
	if d1, _, err := Load(""); err != nil || d1.Dim != 64 {
		t.Errorf(`Load("") = %v, want digits`, err)
	}

	for _, tc := range []struct{ spec, want string }{
		{"imagenet", `unknown dataset "imagenet"`},
		{"digits:x", `unknown dataset "digits:x"`},
		{"idx:", "needs a directory"},
		{"csv:", "needs a file"},
		{"csv:" + path + "?colour=red", `unknown option "colour"`},
		{"csv:" + path + "?header=maybe", "header="},
		{"csv:" + path + "?test=1", "test="},
		{"csv:" + path + "?classes=-2", "classes="},
		{"csv:" + path + "?standardize=perhaps", "standardize="},
		{"csv:" + path + "?seed=x", "seed="},
		{"csv:" + filepath.Join(dir, "nope.csv"), "nope.csv"},
		{"idx:" + filepath.Join(dir, "nodir"), "nodir"},
	} {
		_, _, err := Load(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want an error containing %q", tc.spec, err, tc.want)
			continue
		}
		if strings.HasPrefix(tc.want, "unknown") || strings.Contains(tc.want, "=") || strings.HasPrefix(tc.want, "needs") {
			if !strings.Contains(err.Error(), "allowed forms") {
				t.Errorf("Load(%q) = %v, want the allowed forms", tc.spec, err)
			}
		}
	}
}

// A non-finite value deep in a large data set (past the vector scan's
// first blocks) is named by row and feature.
func TestValidateLargeNamesNonFinite(t *testing.T) {
	const n, dim = 2000, 3
	d := &Dataset{Name: "large", N: n, Dim: dim, Classes: 2, C: 1, H: 1, W: dim, X: make([]float32, n*dim), Y: make([]int32, n)}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	d.X[1500*dim+2] = float32(math.Inf(-1))
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "row 1500, feature 2") {
		t.Fatalf("got %v, want an error naming row 1500, feature 2", err)
	}
}
