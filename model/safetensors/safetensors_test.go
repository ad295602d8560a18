package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sample() *File {
	return &File{
		Tensors: []Tensor{
			{Name: "0.weight", Shape: []int{2, 3}, Data: []float32{1, -2, 3.5, float32(math.Inf(1)), 0, float32(math.SmallestNonzeroFloat32)}},
			{Name: "0.bias", Shape: []int{2}, Data: []float32{-0, 7}},
			{Name: "scalar", Shape: []int{}, Data: []float32{42}},
			{Name: "empty", Shape: []int{0, 5}, Data: []float32{}},
		},
		Metadata: map[string]string{"model": "2nn", "round": "3", "ünï": "cödé"},
	}
}

func TestRoundTripBitExact(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	want := sample()
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("%d tensors, want %d", len(got.Tensors), len(want.Tensors))
	}
	for i, w := range want.Tensors {
		g := got.Tensors[i]
		if g.Name != w.Name || !equalInts(g.Shape, w.Shape) || len(g.Data) != len(w.Data) {
			t.Fatalf("tensor %d: got %s %v (%d values), want %s %v (%d values)", i, g.Name, g.Shape, len(g.Data), w.Name, w.Shape, len(w.Data))
		}
		for j := range w.Data {
			if math.Float32bits(g.Data[j]) != math.Float32bits(w.Data[j]) {
				t.Fatalf("%s[%d]: bits %08x, want %08x", w.Name, j, math.Float32bits(g.Data[j]), math.Float32bits(w.Data[j]))
			}
		}
	}
	if len(got.Metadata) != len(want.Metadata) {
		t.Fatalf("metadata %v, want %v", got.Metadata, want.Metadata)
	}
	for k, v := range want.Metadata {
		if got.Metadata[k] != v {
			t.Fatalf("metadata %q = %q, want %q", k, got.Metadata[k], v)
		}
	}
	b, _ := os.ReadFile(path)
	if n := binary.LittleEndian.Uint64(b); (8+n)%8 != 0 {
		t.Fatalf("byte buffer starts at %d, not 8-aligned", 8+n)
	}
}

// TestReadsReferenceLayout decodes a file laid out by hand from the format
// description (tensors in an order other than the header's, metadata last,
// header padded with spaces).
func TestReadsReferenceLayout(t *testing.T) {
	hdr := `{"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}   `
	var file []byte
	file = binary.LittleEndian.AppendUint64(file, uint64(len(hdr)))
	file = append(file, hdr...)
	for _, v := range []float32{1, 2, 3, 4} {
		file = binary.LittleEndian.AppendUint32(file, math.Float32bits(v))
	}
	f, err := Decode(file, "ref")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.Tensor("a")
	b, _ := f.Tensor("b")
	if !equalInts(a.Shape, []int{1, 2}) || a.Data[0] != 1 || a.Data[1] != 2 || b.Data[0] != 3 || b.Data[1] != 4 {
		t.Fatalf("a=%v b=%v", a, b)
	}
	if f.Tensors[0].Name != "a" || f.Metadata["format"] != "pt" {
		t.Fatalf("tensors %v metadata %v", f.Tensors, f.Metadata)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// build assembles a file from a header string and a data length.
func build(hdr string, data int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	b = append(b, hdr...)
	return append(b, make([]byte, data)...)
}

func TestMalformedFiles(t *testing.T) {
	good, err := Encode(sample(), "x")
	if err != nil {
		t.Fatal(err)
	}
	hugeLen := binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1)
	longer := bytes.Clone(good)
	binary.LittleEndian.PutUint64(longer, uint64(len(good)))
	cases := []struct {
		name   string
		file   []byte
		tensor string
		offset int64
		reason string
	}{
		{"empty file", nil, "", 0, "shorter than the 8-byte header length"},
		{"truncated data", good[:len(good)-3], "scalar", -2, "end past"},
		{"truncated header", good[:20], "", 0, "longer than the"},
		{"header longer than the file", longer, "", 0, "longer than the"},
		{"header over 100 MB", append(hugeLen, '{', '}'), "", 0, "exceeds the limit"},
		{"not an object", build(`["a"]   `, 0), "", 8, "does not start with '{'"},
		{"overlapping offsets", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12),
			"b", 8 + int64(len(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`)) + 4, "overlap tensor \"a\""},
		{"gap between tensors", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12), "b", -2, "gap of 4 bytes"},
		{"trailing bytes", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), "", -2, "4 bytes after the last tensor"},
		{"wrong dtype", build(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`, 4), "a", 13, "dtype F16 is not supported"},
		{"unknown dtype", build(`{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,4]}}`, 4), "a", 13, "unknown dtype"},
		{"size does not match shape", build(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), "a", -2, "needs 12"},
		{"duplicate name", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), "a", -2, "appears twice"},
		{"negative dimension", build(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), "a", 13, "negative dimension"},
		{"three offsets", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 4), "a", 13, "want [begin, end]"},
		{"offsets reversed", build(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4), "a", 13, "not an interval"},
		{"unknown field", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4), "a", 13, "unknown field"},
		{"metadata not strings", build(`{"__metadata__":{"round":3}}`, 0), "__metadata__", 24, "not a string"},
		{"data after the object", build(`{}x`, 0), "", 10, "data after its JSON object"},
		{"bad JSON", build(`{"a":{"dtype":`, 0), "a", -2, "header JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.file, "bad.safetensors")
			if err == nil {
				t.Fatal("decoded without error")
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			if se.File != "bad.safetensors" || se.Tensor != c.tensor || !strings.Contains(se.Reason, c.reason) {
				t.Fatalf("error %q: want file bad.safetensors, tensor %q, reason containing %q", err, c.tensor, c.reason)
			}
			if c.offset != -2 && se.Offset != c.offset {
				t.Fatalf("error %q: offset %d, want %d", err, se.Offset, c.offset)
			}
			if se.Offset < 0 || se.Offset > int64(len(c.file)) {
				t.Fatalf("error %q: offset %d outside the file of %d bytes", err, se.Offset, len(c.file))
			}
			if !strings.Contains(err.Error(), "bad.safetensors") {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}

func TestEncodeRefusesBadTensors(t *testing.T) {
	for _, c := range []struct {
		name string
		f    File
		want string
	}{
		{"duplicate", File{Tensors: []Tensor{{Name: "a", Shape: []int{1}, Data: []float32{1}}, {Name: "a", Shape: []int{1}, Data: []float32{1}}}}, "used twice"},
		{"empty name", File{Tensors: []Tensor{{Shape: []int{1}, Data: []float32{1}}}}, "empty name"},
		{"reserved", File{Tensors: []Tensor{{Name: MetadataKey, Shape: []int{1}, Data: []float32{1}}}}, "reserved"},
		{"short data", File{Tensors: []Tensor{{Name: "w", Shape: []int{2, 2}, Data: []float32{1}}}}, "holds 4 elements but Data has 1"},
	} {
		if _, err := Encode(&c.f, "out.safetensors"); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "out.safetensors") {
			t.Errorf("%s: error %v, want one naming out.safetensors and containing %q", c.name, err, c.want)
		}
	}
}

func TestReadMissingFileNamesIt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.safetensors")
	if _, err := Read(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error %v does not name %s", err, p)
	}
}

// FuzzDecode: any input either decodes or gives an *Error with an offset
// inside the input; what decodes re-encodes to a file that decodes to the
// same tensors.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample(), "seed")
	f.Add(good)
	f.Add(build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12))
	f.Add(build(`{"__metadata__":{"k":"v"}}`, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Decode(b, "fuzz")
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not an *Error: %v", err, err)
			}
			if se.Offset < 0 || se.Offset > int64(len(b)) {
				t.Fatalf("offset %d outside [0, %d]: %v", se.Offset, len(b), err)
			}
			return
		}
		again, err := Encode(file, "fuzz")
		if err != nil {
			t.Fatalf("decoded file does not re-encode: %v", err)
		}
		back, err := Decode(again, "fuzz")
		if err != nil {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
		if len(back.Tensors) != len(file.Tensors) {
			t.Fatalf("%d tensors after re-encoding, want %d", len(back.Tensors), len(file.Tensors))
		}
		for i, tn := range file.Tensors {
			bt := back.Tensors[i]
			if bt.Name != tn.Name || !equalInts(bt.Shape, tn.Shape) || len(bt.Data) != len(tn.Data) {
				t.Fatalf("tensor %d changed: %v -> %v", i, tn.Name, bt.Name)
			}
			for j := range tn.Data {
				if math.Float32bits(bt.Data[j]) != math.Float32bits(tn.Data[j]) {
					t.Fatalf("%s[%d] changed", tn.Name, j)
				}
			}
		}
	})
}
