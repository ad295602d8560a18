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
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Problem is one cell (or row, or header) that breaks the schema.
type Problem struct {
	// Line is the 1-based line of the file (0 for the file as a whole).
	Line int
	// Column is the column's header name ("" for a whole row).
	Column string
	// Value is the offending cell as written.
	Value string
	// Expected says what the schema wants there.
	Expected string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d", p.Line)
	}
	if p.Column != "" {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "column %q", p.Column)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "value %q, expected %s", p.Value, p.Expected)
	return b.String()
}

// MaxReportedProblems bounds the problems a SchemaError keeps (all are
// counted).
const MaxReportedProblems = 1000

// SchemaError reports every problem of a file against its schema at once.
type SchemaError struct {
	File     string
	Problems []Problem // the first MaxReportedProblems
	Total    int       // all problems
	ByColumn map[string]int
	Rows     int // distinct lines with a problem
}

func (e *SchemaError) add(p Problem) {
	if e.ByColumn == nil {
		e.ByColumn = map[string]int{}
	}
	e.Total++
	e.ByColumn[p.Column]++
	if len(e.Problems) < MaxReportedProblems {
		e.Problems = append(e.Problems, p)
	}
}

// Error lists every kept problem, one a line, after a summary with counts.
func (e *SchemaError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "data: csv %s: %d problem(s) in %d row(s) against the schema", e.File, e.Total, e.Rows)
	cols := make([]string, 0, len(e.ByColumn))
	for c := range e.ByColumn {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	for i, c := range cols {
		if i == 0 {
			b.WriteString(" (")
		} else {
			b.WriteString(", ")
		}
		name := c
		if name == "" {
			name = "(row)"
		}
		fmt.Fprintf(&b, "%s: %d", name, e.ByColumn[c])
	}
	if len(cols) > 0 {
		b.WriteString(")")
	}
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	if e.Total > len(e.Problems) {
		fmt.Fprintf(&b, "\n  … and %d more", e.Total-len(e.Problems))
	}
	return b.String()
}

// LoadTable reads a CSV file (plain or gzip) against a schema with ReadTable.
func LoadTable(path string, s *Schema) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: csv: %w", err)
	}
	defer f.Close()
	return ReadTable(f, path, s)
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// ReadTable reads a CSV table as institutions write it, checked against the
// schema: a UTF-8 BOM is skipped, the delimiter is the schema's or detected
// from the header (the most frequent of ',', ';', tab), fields may be
// quoted, the first record is the header and columns are found by name in
// any order. Cells equal to one of the schema's missing tokens are missing;
// a row with a missing cell in a column whose policy is "drop" is dropped.
//
// It returns the raw table: one column per schema feature column (see
// Schema.Features), holding the number for a numeric column, the value's
// index for a categorical one and NaN for a missing cell; labels are class
// indices. Encode turns it into the feature vectors a model trains on.
//
// Every problem is collected; if there is any, the error is a *SchemaError
// naming each line, column, value and what was expected.
func ReadTable(r io.Reader, name string, s *Schema) (*Dataset, error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(2); bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("data: csv %s: bad gzip header: %v", name, err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	if head, _ := br.Peek(3); bytes.Equal(head, utf8BOM) {
		br.Discard(3)
	}
	delim := s.Delimiter
	if delim == "" {
		delim = detectDelimiter(br)
	}
	cr := csv.NewReader(br)
	cr.Comma = rune(delim[0])
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = delim != "\t"
	cr.LazyQuotes = false

	rep := &SchemaError{File: name}
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("data: csv %s: empty file (want a header naming the schema's columns)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("data: csv %s: header: %v", name, err)
	}
	header = slices.Clone(header)
	// pos[k] is the file column of schema column k, -1 if absent.
	pos := make([]int, len(s.Columns))
	for k := range pos {
		pos[k] = -1
	}
	byName := map[string]int{}
	for k, c := range s.Columns {
		byName[c.Name] = k
	}
	for j, h := range header {
		h = strings.TrimSpace(h)
		header[j] = h
		k, ok := byName[h]
		if !ok {
			rep.add(Problem{Line: 1, Column: h, Value: h, Expected: "a column of the schema (declare it type = \"ignored\" to skip it)"})
			continue
		}
		if pos[k] >= 0 {
			rep.add(Problem{Line: 1, Column: h, Value: h, Expected: "each column once in the header"})
			continue
		}
		pos[k] = j
	}
	for k, c := range s.Columns {
		if pos[k] < 0 && c.Type != TypeIgnored {
			rep.add(Problem{Line: 1, Column: c.Name, Value: "", Expected: fmt.Sprintf("a %s column named %q in the header", c.Type, c.Name)})
		}
	}
	if rep.Total > 0 {
		rep.Rows = 1
		return nil, rep
	}

	feats := s.Features()
	d := &Dataset{Name: name, Dim: len(feats), C: 1, H: 1, W: len(feats), Classes: s.Classes()}
	missing := map[string]bool{}
	for _, t := range s.MissingTokens {
		missing[strings.TrimSpace(t)] = true
	}
	lab := s.Label()
	classOf := map[string]int32{}
	for k, c := range lab.Classes {
		classOf[c] = int32(k)
	}
	maxLabel := -1
	row := make([]float32, len(feats))
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				// A broken quote desynchronises the rest of the file.
				rep.add(Problem{Line: pe.Line, Value: "", Expected: fmt.Sprintf("a well-formed CSV record (column %d: %v)", pe.Column, pe.Err)})
				rep.Rows++
				break
			}
			return nil, fmt.Errorf("data: csv %s: %v", name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		before := rep.Total
		if len(rec) != len(header) {
			rep.add(Problem{Line: line, Value: strconv.Itoa(len(rec)) + " cells", Expected: fmt.Sprintf("%d cells as in the header", len(header))})
			rep.Rows++
			continue
		}
		drop := false
		for f, k := range feats {
			c := &s.Columns[k]
			cell := strings.TrimSpace(rec[pos[k]])
			if missing[cell] {
				row[f] = float32(math.NaN())
				switch c.Missing {
				case MissingDrop:
					drop = true
				case MissingError:
					rep.add(Problem{Line: line, Column: c.Name, Value: rec[pos[k]], Expected: "a value (the schema's missing policy for this column is \"error\")"})
				}
				continue
			}
			if c.Type == TypeCategorical {
				idx := slices.Index(c.Values, cell)
				if idx < 0 {
					rep.add(Problem{Line: line, Column: c.Name, Value: rec[pos[k]], Expected: "one of " + quoteAll(c.Values)})
				}
				row[f] = float32(idx)
				continue
			}
			v, err := strconv.ParseFloat(cell, 64)
			if err != nil && strings.Count(cell, ",") == 1 && delim != "," {
				// A decimal comma, as written where ';' delimits.
				v, err = strconv.ParseFloat(strings.Replace(cell, ",", ".", 1), 64)
			}
			switch {
			case err != nil || math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > math.MaxFloat32:
				rep.add(Problem{Line: line, Column: c.Name, Value: rec[pos[k]], Expected: "a finite number"})
			case c.Min != nil && v < *c.Min, c.Max != nil && v > *c.Max:
				rep.add(Problem{Line: line, Column: c.Name, Value: rec[pos[k]], Expected: rangeText(c)})
			}
			row[f] = float32(v)
		}
		cell := strings.TrimSpace(rec[pos[s.label]])
		var y int32
		switch {
		case missing[cell]:
			if lab.Missing == MissingDrop {
				drop = true
			} else {
				rep.add(Problem{Line: line, Column: lab.Name, Value: rec[pos[s.label]], Expected: "a label (the schema's missing policy for the label is \"error\")"})
			}
		case len(lab.Classes) > 0:
			k, ok := classOf[cell]
			if !ok {
				rep.add(Problem{Line: line, Column: lab.Name, Value: rec[pos[s.label]], Expected: "one of the classes " + quoteAll(lab.Classes)})
			}
			y = k
		default:
			v, err := strconv.Atoi(cell)
			if err != nil || v < 0 || v >= MaxClasses {
				rep.add(Problem{Line: line, Column: lab.Name, Value: rec[pos[s.label]], Expected: fmt.Sprintf("an integer class in [0, %d) (or list the classes in the schema)", MaxClasses)})
			}
			y = int32(v)
		}
		if rep.Total > before {
			rep.Rows++
			continue
		}
		if drop {
			continue
		}
		maxLabel = max(maxLabel, int(y))
		d.X = append(d.X, row...)
		d.Y = append(d.Y, y)
	}
	if rep.Total > 0 {
		return nil, rep
	}
	d.N = len(d.Y)
	if d.N == 0 {
		return nil, fmt.Errorf("data: csv %s: no data rows (after dropping rows with missing cells)", name)
	}
	if d.Classes == 0 {
		d.Classes = maxLabel + 1
	}
	return d, nil
}

func quoteAll(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

func rangeText(c *Column) string {
	switch {
	case c.Min != nil && c.Max != nil:
		return fmt.Sprintf("a number in [%v, %v]", *c.Min, *c.Max)
	case c.Min != nil:
		return fmt.Sprintf("a number ≥ %v", *c.Min)
	default:
		return fmt.Sprintf("a number ≤ %v", *c.Max)
	}
}

// detectDelimiter picks the most frequent of ',', ';' and tab outside
// quotes in the first line (',' on a tie or none).
func detectDelimiter(br *bufio.Reader) string {
	head, _ := br.Peek(br.Size())
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		head = head[:i]
	}
	counts := map[byte]int{}
	quoted := false
	for _, c := range head {
		switch {
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ',' || c == ';' || c == '\t'):
			counts[c]++
		}
	}
	best := byte(',')
	for _, c := range []byte{';', '\t'} {
		if counts[c] > counts[best] {
			best = c
		}
	}
	return string(best)
}
