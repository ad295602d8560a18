package data

import (
	"slices"
	"testing"
)

// TestLoadMNIST is the one test that decodes the embedded MNIST (about a
// second); it goes through Load to cover the spec dispatch too.
func TestLoadMNIST(t *testing.T) {
	train, test, err := Load("mnist")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Dataset{train, test} {
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		if d.Dim != 784 || d.C != 1 || d.H != 28 || d.W != 28 || d.Classes != 10 {
			t.Fatalf("%s: Dim=%d CHW=%d,%d,%d Classes=%d", d.Name, d.Dim, d.C, d.H, d.W, d.Classes)
		}
	}
	if train.N != 60000 || test.N != 10000 {
		t.Fatalf("sizes %d/%d, want 60000/10000", train.N, test.N)
	}
	if train.Y[0] != 5 || test.Y[0] != 7 {
		t.Errorf("first labels %d (train), %d (test), want 5 and 7", train.Y[0], test.Y[0])
	}
	// Published class counts of the MNIST training and test sets.
	if got, want := train.ClassCounts(), []int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}; !slices.Equal(got, want) {
		t.Errorf("train class counts %v, want %v", got, want)
	}
	if got, want := test.ClassCounts(), []int{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}; !slices.Equal(got, want) {
		t.Errorf("test class counts %v, want %v", got, want)
	}
	// Pixels are bytes scaled by 1/255: 0 and 1 both occur, every value is k/255.
	lo, hi := float32(1), float32(0)
	for _, v := range train.Row(0) {
		lo, hi = min(lo, v), max(hi, v)
		if k := v * 255; k != float32(int(k+0.5)) {
			t.Fatalf("pixel %v is not k/255", v)
		}
	}
	if lo != 0 || hi != 1 {
		t.Errorf("first image spans [%v, %v], want [0, 1]", lo, hi)
	}
	// The image is centred: its border rows are blank, its middle is not.
	ink := func(r int) (s float32) {
		for c := range 28 {
			s += train.Row(0)[r*28+c]
		}
		return s
	}
	if ink(0) != 0 || ink(27) != 0 || ink(14) == 0 {
		t.Errorf("first image ink by row: top %v, middle %v, bottom %v", ink(0), ink(14), ink(27))
	}
}
