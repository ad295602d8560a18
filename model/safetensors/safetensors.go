// Package safetensors reads and writes the safetensors format of
// huggingface/safetensors (docs: "safetensors" format description in the
// project's README), restricted to what Sovereign's models need: named
// little-endian float32 (F32) tensors plus a string→string __metadata__ map.
//
// A file is
//
//	8 bytes        N, the header length, unsigned little-endian
//	N bytes        a UTF-8 JSON object {name: {"dtype", "shape", "data_offsets"}, "__metadata__": {string: string}},
//	               possibly padded at the end with spaces
//	rest           the byte buffer: every tensor's row-major little-endian bytes
//
// where data_offsets [begin, end) are relative to the start of the byte
// buffer. The reader enforces the format's rules as the reference
// implementation does: the header is at most MaxHeaderSize bytes and starts
// with '{'; names are unique and not empty; every tensor's byte length is
// its element count times its dtype's size; the tensors, sorted by offset,
// cover the buffer exactly (contiguous: no gap, no overlap, nothing left
// over). Every error is an *Error naming the file, the tensor (if any) and
// the byte offset in the file.
//
// The package does no other I/O than Read and Write and imports only the
// standard library.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted (100 MB, the limit of
// the reference implementation).
const MaxHeaderSize = 100_000_000

// MetadataKey is the reserved header key of the string→string metadata.
const MetadataKey = "__metadata__"

// DTypeF32 is the only element type this package decodes.
const DTypeF32 = "F32"

// dtypeSizes are the element sizes of the format's dtypes, so that a file
// of another dtype is refused with its name rather than as garbage.
var dtypeSizes = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"F64": 8, "I64": 8, "U64": 8,
}

// Tensor is one named float32 tensor, row-major (C order, the last
// dimension varying fastest). A shape of [] is a scalar holding one value.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// Elements returns the product of t's shape (1 for a scalar), or -1 if a
// dimension is negative or the product overflows.
func (t Tensor) Elements() int { return elements(t.Shape) }

func elements(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		if d != 0 && n > math.MaxInt64/8/d {
			return -1
		}
		n *= d
	}
	return n
}

// File is the content of a safetensors file: its tensors and metadata.
type File struct {
	// Tensors in the order of their data in the file (Read) or in the order
	// they are to be written (Write).
	Tensors []Tensor
	// Metadata is the header's __metadata__ (nil or empty: none written).
	Metadata map[string]string
}

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (Tensor, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Error is a malformed file, or a File that cannot be written. File is the
// path (or the name given to Decode), Tensor the tensor concerned ("" for
// the header as a whole) and Offset the byte offset in the file where the
// problem lies (-1 when it has none, e.g. a Write of a bad Tensor).
type Error struct {
	File   string
	Tensor string
	Offset int64
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("safetensors ")
	b.WriteString(e.File)
	if e.Tensor != "" {
		fmt.Fprintf(&b, ": tensor %q", e.Tensor)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " (byte %d)", e.Offset)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// Read reads and decodes the file at path. The file is read whole; its size
// must fit the header's claims exactly.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Offset: -1, Reason: err.Error()}
	}
	return Decode(b, path)
}

// Write encodes f and writes it to path atomically (a temporary file in the
// same folder, synced, then renamed over path).
func Write(path string, f *File) error {
	b, err := Encode(f, path)
	if err != nil {
		return err
	}
	fail := func(err error) error { return &Error{File: path, Offset: -1, Reason: err.Error()} }
	tmp, err := os.CreateTemp(filepath.Dir(path), ".safetensors-*.tmp")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail(err)
	}
	return nil
}

// headerEntry is one tensor's header record.
type headerEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int   `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// Encode returns the file's bytes. name is used in errors only. Tensors are
// written in the order given, contiguously; the header is padded with
// spaces so that the byte buffer starts at a multiple of 8, as the
// reference writer does. Names must be unique and not empty, not
// MetadataKey, and each tensor's Data must hold exactly its shape's element
// count.
func Encode(f *File, name string) ([]byte, error) {
	fail := func(tensor, format string, a ...any) error {
		return &Error{File: name, Tensor: tensor, Offset: -1, Reason: fmt.Sprintf(format, a...)}
	}
	seen := make(map[string]bool, len(f.Tensors))
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	var off int64
	first := true
	writeKey := func(k string) {
		if !first {
			hdr.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		hdr.Write(kb)
		hdr.WriteByte(':')
	}
	if len(f.Metadata) > 0 {
		keys := make([]string, 0, len(f.Metadata))
		for k, v := range f.Metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fail("", "metadata %q is not valid UTF-8", k)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		writeKey(MetadataKey)
		hdr.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				hdr.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			vb, _ := json.Marshal(f.Metadata[k])
			hdr.Write(kb)
			hdr.WriteByte(':')
			hdr.Write(vb)
		}
		hdr.WriteByte('}')
	}
	for _, t := range f.Tensors {
		switch {
		case t.Name == "":
			return nil, fail("", "a tensor has an empty name")
		case t.Name == MetadataKey:
			return nil, fail(t.Name, "the name is reserved for the metadata")
		case !utf8.ValidString(t.Name):
			return nil, fail(t.Name, "the name is not valid UTF-8")
		case seen[t.Name]:
			return nil, fail(t.Name, "the name is used twice")
		}
		seen[t.Name] = true
		n := t.Elements()
		if n < 0 {
			return nil, fail(t.Name, "shape %v has a negative dimension or too many elements", t.Shape)
		}
		if n != len(t.Data) {
			return nil, fail(t.Name, "shape %v holds %d elements but Data has %d", t.Shape, n, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		e := headerEntry{DType: DTypeF32, Shape: shape, DataOffsets: []int64{off, off + 4*int64(n)}}
		eb, err := json.Marshal(e)
		if err != nil {
			return nil, fail(t.Name, "%v", err)
		}
		writeKey(t.Name)
		hdr.Write(eb)
		off += 4 * int64(n)
	}
	hdr.WriteByte('}')
	for (8+hdr.Len())%8 != 0 {
		hdr.WriteByte(' ')
	}
	if hdr.Len() > MaxHeaderSize {
		return nil, fail("", "header of %d bytes exceeds %d", hdr.Len(), MaxHeaderSize)
	}
	out := make([]byte, 8, 8+int64(hdr.Len())+off)
	binary.LittleEndian.PutUint64(out, uint64(hdr.Len()))
	out = append(out, hdr.Bytes()...)
	for _, t := range f.Tensors {
		for _, v := range t.Data {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	}
	return out, nil
}

// Decode parses the bytes of a safetensors file; name is used in errors.
// Every tensor must be F32 (another dtype is refused by name).
func Decode(b []byte, name string) (*File, error) {
	fail := func(tensor string, off int64, format string, a ...any) error {
		return &Error{File: name, Tensor: tensor, Offset: off, Reason: fmt.Sprintf(format, a...)}
	}
	if len(b) < 8 {
		return nil, fail("", int64(len(b)), "file of %d bytes is shorter than the 8-byte header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if n > MaxHeaderSize {
		return nil, fail("", 0, "header length %d exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if n > uint64(len(b)-8) {
		return nil, fail("", 0, "header length %d is longer than the %d bytes after it (file truncated?)", n, len(b)-8)
	}
	if n < 2 {
		return nil, fail("", 8, "header of %d bytes cannot hold a JSON object", n)
	}
	hdr := b[8 : 8+n]
	if hdr[0] != '{' {
		return nil, fail("", 8, "header does not start with '{' (byte 0x%02x)", hdr[0])
	}
	if !utf8.Valid(hdr) {
		return nil, fail("", 8, "header is not valid UTF-8")
	}
	dataStart := int64(8 + n)
	buf := b[dataStart:]

	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	hdrErr := func(tensor string, format string, a ...any) error {
		return fail(tensor, 8+dec.InputOffset(), format, a...)
	}
	if _, err := dec.Token(); err != nil { // '{'
		return nil, hdrErr("", "header JSON: %v", err)
	}
	type located struct {
		entry  headerEntry
		name   string
		hdrOff int64 // offset in the file of the entry's value
	}
	var entries []located
	seen := map[string]bool{}
	f := &File{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, hdrErr("", "header JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, hdrErr("", "header JSON: key %v is not a string", tok)
		}
		if seen[key] {
			return nil, hdrErr(key, "the name appears twice in the header")
		}
		seen[key] = true
		// The value starts after the colon (and any blanks) that follow the key.
		valOff := 8 + dec.InputOffset()
		for i := dec.InputOffset(); i < int64(len(hdr)) && strings.IndexByte(" \t\r\n:", hdr[i]) >= 0; i++ {
			valOff++
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fail(key, valOff, "header JSON: %v", err)
		}
		if key == MetadataKey {
			md, err := decodeMetadata(raw)
			if err != nil {
				return nil, fail(key, valOff, "%v", err)
			}
			f.Metadata = md
			continue
		}
		if key == "" {
			return nil, fail(key, valOff, "a tensor has an empty name")
		}
		e, err := decodeEntry(raw)
		if err != nil {
			return nil, fail(key, valOff, "%v", err)
		}
		entries = append(entries, located{entry: e, name: key, hdrOff: valOff})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, hdrErr("", "header JSON: %v", err)
	}
	// Only padding may follow the object.
	rest := hdr[dec.InputOffset():]
	if i := bytes.IndexFunc(rest, func(r rune) bool { return r != ' ' && r != '\t' && r != '\n' && r != '\r' }); i >= 0 {
		return nil, fail("", 8+dec.InputOffset()+int64(i), "header has data after its JSON object")
	}

	for _, e := range entries {
		d := e.entry
		size, known := dtypeSizes[d.DType]
		switch {
		case !known:
			return nil, fail(e.name, e.hdrOff, "unknown dtype %q", d.DType)
		case d.DType != DTypeF32:
			return nil, fail(e.name, e.hdrOff, "dtype %s is not supported: only F32 tensors are read", d.DType)
		}
		cnt := elements(d.Shape)
		if cnt < 0 {
			return nil, fail(e.name, e.hdrOff, "shape %v has a negative dimension or too many elements", d.Shape)
		}
		lo, hi := d.DataOffsets[0], d.DataOffsets[1]
		if lo < 0 || hi < lo {
			return nil, fail(e.name, e.hdrOff, "data_offsets [%d, %d] are not an interval", lo, hi)
		}
		if hi > int64(len(buf)) {
			return nil, fail(e.name, dataStart+lo, "data_offsets [%d, %d] end past the %d bytes of data (file truncated?)", lo, hi, len(buf))
		}
		if want := int64(cnt) * int64(size); hi-lo != want {
			return nil, fail(e.name, dataStart+lo, "data_offsets [%d, %d] hold %d bytes but shape %v of %s needs %d", lo, hi, hi-lo, d.Shape, d.DType, want)
		}
	}
	// Contiguity: sorted by offset, each tensor starts where the previous
	// ended, and the last ends at the end of the file.
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b located) int {
		if c := compareInt64(a.entry.DataOffsets[0], b.entry.DataOffsets[0]); c != 0 {
			return c
		}
		return compareInt64(a.entry.DataOffsets[1], b.entry.DataOffsets[1])
	})
	var pos int64
	for i, e := range sorted {
		lo, hi := e.entry.DataOffsets[0], e.entry.DataOffsets[1]
		switch {
		case lo < pos:
			return nil, fail(e.name, dataStart+lo, "data_offsets [%d, %d] overlap tensor %q, which ends at %d", lo, hi, sorted[i-1].name, pos)
		case lo > pos:
			return nil, fail(e.name, dataStart+pos, "a gap of %d bytes before its data_offsets [%d, %d] (tensors must be contiguous)", lo-pos, lo, hi)
		}
		pos = hi
	}
	if pos != int64(len(buf)) {
		return nil, fail("", dataStart+pos, "%d bytes after the last tensor's data", int64(len(buf))-pos)
	}
	f.Tensors = make([]Tensor, len(sorted))
	for i, e := range sorted {
		lo, hi := e.entry.DataOffsets[0], e.entry.DataOffsets[1]
		raw := buf[lo:hi]
		data := make([]float32, len(raw)/4)
		for j := range data {
			data[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		f.Tensors[i] = Tensor{Name: e.name, Shape: slices.Clone(e.entry.Shape), Data: data}
		if f.Tensors[i].Shape == nil {
			f.Tensors[i].Shape = []int{}
		}
	}
	return f, nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// decodeEntry parses one tensor's header record strictly: exactly the keys
// dtype, shape and data_offsets, with integer shape and offsets.
func decodeEntry(raw json.RawMessage) (headerEntry, error) {
	var e headerEntry
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return e, fmt.Errorf("header entry is not a JSON object: %v", err)
	}
	for _, k := range []string{"dtype", "shape", "data_offsets"} {
		if _, ok := probe[k]; !ok {
			return e, fmt.Errorf("header entry lacks %q", k)
		}
	}
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("header entry: %v", err)
	}
	if err := ensureEOF(dec); err != nil {
		return e, err
	}
	if len(e.DataOffsets) != 2 {
		return e, fmt.Errorf("data_offsets has %d numbers, want [begin, end]", len(e.DataOffsets))
	}
	if e.Shape == nil {
		e.Shape = []int{}
	}
	return e, nil
}

// decodeMetadata parses __metadata__: a JSON object of strings to strings
// (null is accepted as none), with unique keys.
func decodeMetadata(raw json.RawMessage) (map[string]string, error) {
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("__metadata__ is not a JSON object of strings")
	}
	md := map[string]string{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("__metadata__: %v", err)
		}
		k, _ := kt.(string)
		if _, dup := md[k]; dup {
			return nil, fmt.Errorf("__metadata__ key %q appears twice", k)
		}
		vt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("__metadata__ key %q: %v", k, err)
		}
		v, ok := vt.(string)
		if !ok {
			return nil, fmt.Errorf("__metadata__ key %q: value is not a string", k)
		}
		md[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("__metadata__: %v", err)
	}
	return md, nil
}

func ensureEOF(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("header entry has trailing data")
	}
	return nil
}
