package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// CSVOptions controls how ReadCSV interprets a table.
type CSVOptions struct {
	// Label selects the label column: a header name, or a 0-based column
	// index. A name is matched against the header first, so a column named
	// "3" wins over index 3. "" selects the column named "label"
	// (case-insensitive) when the header has one, else the last column.
	Label string
	// Header says whether the first record is a header: -1 detects it (the
	// first record is a header if any of its cells is not a number), 0 means
	// no header, 1 means a header.
	Header int
	// Standardize rescales each feature to zero mean and unit variance over
	// the rows read (see Standardize). Load instead standardizes with the
	// statistics of its train split only.
	Standardize bool
	// Classes is the number of classes; labels must lie in [0, Classes).
	// 0 infers it as the largest label plus one.
	Classes int
}

// LoadCSV reads a CSV file, gzip-compressed or plain (detected by the magic
// bytes 1f 8b), with ReadCSV.
func LoadCSV(path string, opt CSVOptions) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: csv: %w", err)
	}
	defer f.Close()
	return ReadCSV(f, path, opt)
}

// ReadCSV decodes a comma-separated table of numbers, one example per line,
// from r (gzip-compressed input is detected by its magic bytes). One column
// holds the class label, chosen by opt.Label; every other column is a
// feature. Labels must be non-negative integers (written as integers or as
// floats with no fractional part). Blank lines are skipped. The error for a
// malformed table names name and the line: ragged rows, non-numeric or
// non-finite cells, bad labels, no data rows.
func ReadCSV(r io.Reader, name string, opt CSVOptions) (*Dataset, error) {
	if opt.Header < -1 || opt.Header > 1 {
		return nil, fmt.Errorf("data: csv %s: CSVOptions.Header = %d, want -1 (auto), 0 (no) or 1 (yes)", name, opt.Header)
	}
	if opt.Classes < 0 || opt.Classes > MaxClasses {
		return nil, fmt.Errorf("data: csv %s: CSVOptions.Classes = %d outside [0, %d]", name, opt.Classes, MaxClasses)
	}
	br := bufio.NewReader(r)
	if head, _ := br.Peek(2); bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("data: csv %s: line 1: bad gzip header: %v", name, err)
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked here, to word the error
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true

	p := csvParser{name: name, opt: opt, label: -1}
	line := 0
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("data: csv %s: line %d, column %d: %v", name, pe.Line, pe.Column, pe.Err)
			}
			return nil, fmt.Errorf("data: csv %s: line %d: %v", name, line+1, describeEOF(err))
		}
		line, _ = cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if err := p.record(rec, line); err != nil {
			return nil, err
		}
	}
	return p.finish()
}

// csvParser holds the state of ReadCSV between records.
type csvParser struct {
	name     string
	opt      CSVOptions
	cols     int // number of columns, fixed by the first record
	label    int // label column index, -1 until known
	firstRow int // line of the first data row
	x        []float32
	y        []int32
	maxLabel int
}

func (p *csvParser) record(rec []string, line int) error {
	if p.cols == 0 {
		if len(rec) < 2 {
			return fmt.Errorf("data: csv %s: line %d: %d column(s), want at least 2 (features and a label)", p.name, line, len(rec))
		}
		p.cols = len(rec)
		header := p.opt.Header == 1 || (p.opt.Header == -1 && !allNumeric(rec))
		if err := p.chooseLabel(rec, header, line); err != nil {
			return err
		}
		if header {
			return nil
		}
	}
	if len(rec) != p.cols {
		return fmt.Errorf("data: csv %s: line %d: ragged row: %d columns, the first row has %d", p.name, line, len(rec), p.cols)
	}
	if p.firstRow == 0 {
		p.firstRow = line
	}
	for j, cell := range rec {
		if j == p.label {
			y, err := p.parseLabel(cell, line, j)
			if err != nil {
				return err
			}
			p.y = append(p.y, y)
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(cell), 32)
		if errors.Is(err, strconv.ErrRange) && math.Abs(v) > 1 {
			return fmt.Errorf("data: csv %s: line %d, column %d: non-finite cell %q (beyond float32 range)", p.name, line, j+1, cell)
		}
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("data: csv %s: line %d, column %d: non-numeric cell %q", p.name, line, j+1, cell)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("data: csv %s: line %d, column %d: non-finite cell %q", p.name, line, j+1, cell)
		}
		p.x = append(p.x, float32(v))
	}
	return nil
}

func (p *csvParser) chooseLabel(first []string, header bool, line int) error {
	want := strings.TrimSpace(p.opt.Label)
	if header {
		for j, h := range first {
			h = strings.TrimSpace(h)
			if (want != "" && h == want) || (want == "" && strings.EqualFold(h, "label")) {
				p.label = j
				return nil
			}
		}
	}
	if want == "" {
		p.label = p.cols - 1
		return nil
	}
	k, err := strconv.Atoi(want)
	if err != nil {
		if !header {
			return fmt.Errorf("data: csv %s: label column %q is a name but the file has no header (use a 0-based index or header=true)", p.name, want)
		}
		return fmt.Errorf("data: csv %s: line %d: label column %q not in header %q", p.name, line, want, strings.Join(first, ","))
	}
	if k < 0 || k >= p.cols {
		return fmt.Errorf("data: csv %s: line %d: label column index %d outside [0, %d)", p.name, line, k, p.cols)
	}
	p.label = k
	return nil
}

func (p *csvParser) parseLabel(cell string, line, col int) (int32, error) {
	s := strings.TrimSpace(cell)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("data: csv %s: line %d, column %d: non-numeric label %q", p.name, line, col+1, cell)
	}
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0) || v != math.Trunc(v):
		return 0, fmt.Errorf("data: csv %s: line %d, column %d: label %q is not an integer", p.name, line, col+1, cell)
	case v < 0:
		return 0, fmt.Errorf("data: csv %s: line %d, column %d: negative label %q", p.name, line, col+1, cell)
	case p.opt.Classes > 0 && v >= float64(p.opt.Classes):
		return 0, fmt.Errorf("data: csv %s: line %d, column %d: label %q outside [0, %d) (Classes)", p.name, line, col+1, cell, p.opt.Classes)
	case v >= MaxClasses:
		return 0, fmt.Errorf("data: csv %s: line %d, column %d: label %q exceeds the maximum of %d classes (wrong label column?)",
			p.name, line, col+1, cell, MaxClasses)
	}
	p.maxLabel = max(p.maxLabel, int(v))
	return int32(v), nil
}

func (p *csvParser) finish() (*Dataset, error) {
	if len(p.y) == 0 {
		return nil, fmt.Errorf("data: csv %s: no data rows", p.name)
	}
	d := &Dataset{
		Name: p.name, X: p.x, Y: p.y, N: len(p.y), Dim: p.cols - 1,
		Classes: p.opt.Classes, C: 1, H: 1, W: p.cols - 1,
	}
	if d.Classes == 0 {
		d.Classes = p.maxLabel + 1
	}
	if p.opt.Standardize {
		Standardize(d, nil)
	}
	return d, nil
}

// allNumeric reports whether every cell parses as a number.
func allNumeric(rec []string) bool {
	for _, c := range rec {
		if _, err := strconv.ParseFloat(strings.TrimSpace(c), 64); err != nil {
			return false
		}
	}
	return true
}
