package data

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// A Schema is the federation-wide description of a tabular data set: every
// member holds the same file (like the federation file), so every site reads
// its own CSV into the same feature vector. Example (schema.toml):
//
//	delimiter = ";"                # ",", ";", "\t", or "" to detect
//	missing_tokens = ["", "NA", "NaN", "?"]
//
//	[[column]]
//	name = "age"                   # years
//	type = "numeric"
//	min = 0
//	max = 120
//	missing = "mean"               # mean | indicator | drop | error
//
//	[[column]]
//	name = "sex"
//	type = "categorical"
//	values = ["M", "F"]
//	missing = "mode"               # mode | drop | error
//
//	[[column]]
//	name = "patient_id"
//	type = "ignored"
//
//	[[column]]
//	name = "outcome"
//	type = "label"
//	classes = ["no", "yes"]        # class 0, class 1, …
//
// Units go in TOML comments or in the column's unit key. The encoded
// feature vector lists, in schema order, each numeric column (followed by
// its 0/1 missing indicator when missing = "indicator") and each categorical
// column one-hot over its values in the schema's order.
type Schema struct {
	// Name is the file the schema was read from (for error messages).
	Name string `toml:"-"`
	// Delimiter is one of ",", ";", "\t"; "" detects it from the header.
	Delimiter string `toml:"delimiter"`
	// Encoding must be "utf-8" (the default); a leading BOM is skipped.
	Encoding string `toml:"encoding"`
	// MissingTokens are the cell values read as missing (after trimming
	// spaces). Default "", "NA", "NaN", "?" (DefaultMissingTokens).
	MissingTokens []string `toml:"missing_tokens"`
	// Standardize (default true) z-scores numeric columns with the
	// federation's mean and deviation.
	Standardize *bool `toml:"standardize"`
	// Columns are the file's columns by header name. A file column not in
	// the schema is an error (declare it type = "ignored").
	Columns []Column `toml:"column"`

	label int // index in Columns of the label column
}

// DefaultMissingTokens are the cells read as missing when the schema does
// not list its own.
var DefaultMissingTokens = []string{"", "NA", "NaN", "?"}

// Column types.
const (
	TypeNumeric     = "numeric"
	TypeCategorical = "categorical"
	TypeIgnored     = "ignored"
	TypeLabel       = "label"
)

// Missing-value policies.
const (
	MissingError     = "error"     // a missing cell is a problem (default)
	MissingMean      = "mean"      // impute the federation mean (numeric)
	MissingMode      = "mode"      // impute the federation mode (categorical)
	MissingIndicator = "indicator" // impute the mean and add a 0/1 column (numeric)
	MissingDrop      = "drop"      // drop the row
)

// Column describes one CSV column.
type Column struct {
	Name string `toml:"name"`
	Type string `toml:"type"`
	// Unit documents the column (not interpreted).
	Unit string `toml:"unit"`
	// Min and Max bound a numeric column's values (a value outside is a
	// problem). The federated statistics need them: max(|Min|, |Max|) is the
	// public range of secure aggregation's fixed-point encoding.
	Min *float64 `toml:"min"`
	Max *float64 `toml:"max"`
	// Values are a categorical column's allowed values, in one-hot order.
	Values []string `toml:"values"`
	// Classes are the label column's class names: class k is Classes[k].
	// Empty means integer labels 0, 1, ….
	Classes []string `toml:"classes"`
	// Missing is the missing-value policy (see the Missing* constants).
	Missing string `toml:"missing"`
}

// LoadSchema reads and checks a schema file.
func LoadSchema(path string) (*Schema, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: schema: %w", err)
	}
	return ParseSchema(b, path)
}

// ParseSchema decodes a schema (TOML) and checks it; errors name the file,
// the column and the field.
func ParseSchema(b []byte, name string) (*Schema, error) {
	var s Schema
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		var sme *toml.StrictMissingError
		if errors.As(err, &sme) {
			return nil, fmt.Errorf("data: schema %s: unknown field(s):\n%s", name, sme.String())
		}
		return nil, fmt.Errorf("data: schema %s: %v", name, err)
	}
	s.Name = name
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Schema) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("data: schema %s: %s", s.Name, fmt.Sprintf(format, args...))
	}
	switch s.Delimiter {
	case "", ",", ";", "\t":
	default:
		return bad("delimiter %q, want \",\", \";\", \"\\t\" or \"\" (detect)", s.Delimiter)
	}
	switch strings.ToLower(strings.ReplaceAll(s.Encoding, "-", "")) {
	case "", "utf8":
	default:
		return bad("encoding %q, only utf-8 is supported", s.Encoding)
	}
	if s.MissingTokens == nil {
		s.MissingTokens = DefaultMissingTokens
	}
	s.label = -1
	seen := map[string]bool{}
	for i := range s.Columns {
		c := &s.Columns[i]
		where := fmt.Sprintf("column[%d] %q", i, c.Name)
		if strings.TrimSpace(c.Name) == "" {
			return bad("column[%d]: name: empty", i)
		}
		if seen[c.Name] {
			return bad("%s: name: duplicate", where)
		}
		seen[c.Name] = true
		if c.Missing == "" {
			c.Missing = MissingError
		}
		allowed := []string{MissingError, MissingDrop}
		switch c.Type {
		case TypeNumeric:
			allowed = append(allowed, MissingMean, MissingIndicator)
			if c.Min != nil && c.Max != nil && !(*c.Min <= *c.Max) {
				return bad("%s: min %v > max %v", where, *c.Min, *c.Max)
			}
			for _, p := range []*float64{c.Min, c.Max} {
				if p != nil && (math.IsNaN(*p) || math.IsInf(*p, 0)) {
					return bad("%s: min/max %v not finite", where, *p)
				}
			}
		case TypeCategorical:
			allowed = append(allowed, MissingMode)
			if len(c.Values) < 1 {
				return bad("%s: values: a categorical column needs at least one value", where)
			}
			if err := distinct(c.Values); err != "" {
				return bad("%s: values: duplicate %q", where, err)
			}
		case TypeIgnored:
		case TypeLabel:
			if s.label >= 0 {
				return bad("%s: type: a second label column (the first is %q)", where, s.Columns[s.label].Name)
			}
			s.label = i
			if err := distinct(c.Classes); err != "" {
				return bad("%s: classes: duplicate %q", where, err)
			}
			if len(c.Classes) > MaxClasses {
				return bad("%s: classes: %d, at most %d", where, len(c.Classes), MaxClasses)
			}
		default:
			return bad("%s: type %q, want numeric, categorical, ignored or label", where, c.Type)
		}
		if !slices.Contains(allowed, c.Missing) {
			return bad("%s: missing %q, want one of %s for a %s column", where, c.Missing, strings.Join(allowed, ", "), c.Type)
		}
	}
	if s.label < 0 {
		return bad("no column of type \"label\"")
	}
	if s.Dim() < 1 {
		return bad("no feature column (numeric or categorical)")
	}
	return nil
}

func distinct(vs []string) string {
	seen := map[string]bool{}
	for _, v := range vs {
		if seen[v] {
			return v
		}
		seen[v] = true
	}
	return ""
}

// Standardizes reports whether numeric columns are z-scored (default true).
func (s *Schema) Standardizes() bool { return s.Standardize == nil || *s.Standardize }

// Label returns the label column.
func (s *Schema) Label() *Column { return &s.Columns[s.label] }

// Classes returns the number of classes the schema fixes (0: inferred from
// integer labels).
func (s *Schema) Classes() int { return len(s.Label().Classes) }

// Features returns the indices in Columns of the numeric and categorical
// columns, in schema order: the raw table's columns.
func (s *Schema) Features() []int {
	var f []int
	for i, c := range s.Columns {
		if c.Type == TypeNumeric || c.Type == TypeCategorical {
			f = append(f, i)
		}
	}
	return f
}

// Dim returns the length of the encoded feature vector.
func (s *Schema) Dim() int { return len(s.FeatureNames()) }

// FeatureNames names every coordinate of the encoded feature vector:
// "age", "age_missing", "sex=M", "sex=F", ….
func (s *Schema) FeatureNames() []string {
	var n []string
	for _, i := range s.Features() {
		c := s.Columns[i]
		if c.Type == TypeNumeric {
			n = append(n, c.Name)
			if c.Missing == MissingIndicator {
				n = append(n, c.Name+"_missing")
			}
			continue
		}
		for _, v := range c.Values {
			n = append(n, c.Name+"="+v)
		}
	}
	return n
}

// bound returns max(|Min|, |Max|) of a numeric column, or 0 if either is
// not declared.
func (c *Column) bound() float64 {
	if c.Min == nil || c.Max == nil {
		return 0
	}
	return max(math.Abs(*c.Min), math.Abs(*c.Max))
}
