package data

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Stats are the federation-wide statistics of a schema's feature columns,
// computed from the sum over all sites of their sufficient statistics
// (Σ1, Σx, Σx² per numeric column, value counts per categorical column;
// see Sums). Every site standardises and imputes with the same Stats, so a
// value means the same thing at every site, and the exported model carries
// them so new data gets the same transform.
type Stats struct {
	// Rows is the number of rows summed over.
	Rows float64 `json:"rows"`
	// Per raw feature column (Schema.Features order):
	Count []float64   `json:"count"` // non-missing cells
	Mean  []float64   `json:"mean"`  // numeric columns (0 for categorical)
	Var   []float64   `json:"var"`   // population variance, numeric columns
	Freq  [][]float64 `json:"freq"`  // categorical: fraction of each value among non-missing cells
}

// SumsLen is the length of the sufficient-statistics vector of a schema:
// 1 (rows) plus, per feature column, 3 (numeric: n, Σx, Σx²) or 1 + the
// number of values (categorical: n, count of each value).
func SumsLen(s *Schema) int {
	n := 1
	for _, k := range s.Features() {
		if c := s.Columns[k]; c.Type == TypeNumeric {
			n += 3
		} else {
			n += 1 + len(c.Values)
		}
	}
	return n
}

// Sums returns the sufficient statistics of the rows idx (nil: all) of a raw
// table read by ReadTable: [rows, then per column n, Σx, Σx² or n, counts].
// Sums of sites add up to the sums of their pooled rows.
func Sums(s *Schema, raw *Dataset, idx []int) ([]float64, error) {
	feats := s.Features()
	if raw.Dim != len(feats) {
		return nil, fmt.Errorf("data: sums of %s: %d columns, the schema %s has %d feature columns", raw.Name, raw.Dim, s.Name, len(feats))
	}
	out := make([]float64, SumsLen(s))
	each := func(i int) {
		out[0]++
		row := raw.Row(i)
		o := 1
		for f, k := range feats {
			c := s.Columns[k]
			v := float64(row[f])
			if c.Type == TypeNumeric {
				if !math.IsNaN(v) {
					out[o]++
					out[o+1] += v
					out[o+2] += v * v
				}
				o += 3
				continue
			}
			if !math.IsNaN(v) && v >= 0 && int(v) < len(c.Values) {
				out[o]++
				out[o+1+int(v)]++
			}
			o += 1 + len(c.Values)
		}
	}
	if idx == nil {
		for i := 0; i < raw.N; i++ {
			each(i)
		}
	} else {
		for _, i := range idx {
			each(i)
		}
	}
	return out, nil
}

// SumIsCount reports, per coordinate of the sums vector, whether it is a
// count (an integer): rows, each column's n and each category's count.
func SumIsCount(s *Schema) []bool {
	out := []bool{true}
	for _, k := range s.Features() {
		if c := s.Columns[k]; c.Type == TypeNumeric {
			out = append(out, true, false, false)
			continue
		} else {
			for range 1 + len(c.Values) {
				out = append(out, true)
			}
		}
	}
	return out
}

// SumScales returns, per coordinate of the sums vector, a public divisor
// that maps the sums of a site with at most maxRows rows into [-1, 1]:
// maxRows for counts, B·maxRows for Σx and B²·maxRows for Σx², where B =
// max(|min|, |max|) of the column. Secure aggregation's fixed-point encoding
// needs such a public range; a numeric column without min and max cannot
// be summed securely and is an error naming it.
func SumScales(s *Schema, maxRows int) ([]float64, error) {
	if maxRows < 1 {
		return nil, fmt.Errorf("data: schema %s: max rows per site %d, want ≥ 1", s.Name, maxRows)
	}
	m := float64(maxRows)
	out := []float64{m}
	for _, k := range s.Features() {
		c := s.Columns[k]
		if c.Type == TypeNumeric {
			b := c.bound()
			if b == 0 {
				return nil, fmt.Errorf("data: schema %s: column %q: federated statistics need min and max (not both 0), the public range of the secure sum", s.Name, c.Name)
			}
			out = append(out, m, b*m, b*b*m)
			continue
		}
		for range 1 + len(c.Values) {
			out = append(out, m)
		}
	}
	return out, nil
}

// StatsFromSums turns a (federation-wide) sums vector into Stats. A column
// with no non-missing cell anywhere is an error naming it.
func StatsFromSums(s *Schema, sums []float64) (*Stats, error) {
	if len(sums) != SumsLen(s) {
		return nil, fmt.Errorf("data: schema %s: statistics vector of %d values, want %d", s.Name, len(sums), SumsLen(s))
	}
	for i, v := range sums {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("data: schema %s: statistics value %d = %v is not finite", s.Name, i, v)
		}
	}
	feats := s.Features()
	st := &Stats{Rows: sums[0], Count: make([]float64, len(feats)), Mean: make([]float64, len(feats)),
		Var: make([]float64, len(feats)), Freq: make([][]float64, len(feats))}
	o := 1
	for f, k := range feats {
		c := s.Columns[k]
		n := sums[o]
		st.Count[f] = n
		if n < 0.5 {
			return nil, fmt.Errorf("data: schema %s: column %q has no value anywhere in the federation", s.Name, c.Name)
		}
		if c.Type == TypeNumeric {
			mean := sums[o+1] / n
			st.Mean[f] = mean
			st.Var[f] = max(0, sums[o+2]/n-mean*mean)
			o += 3
			continue
		}
		fr := make([]float64, len(c.Values))
		for v := range fr {
			fr[v] = max(0, sums[o+1+v]/n)
		}
		st.Freq[f] = fr
		o += 1 + len(c.Values)
	}
	return st, nil
}

// Encode turns a raw table (ReadTable) into the feature vectors of the
// schema (see Schema.FeatureNames), the same at every site: a missing
// numeric cell becomes the federation mean (and, with policy "indicator",
// sets its indicator to 1), a missing categorical cell the federation mode;
// categories are one-hot in schema order. With standardize, each numeric
// value becomes (x − mean)/sd with the federation's mean and sd (a constant
// column is only centred). The raw table is not changed.
func Encode(s *Schema, raw *Dataset, st *Stats, standardize bool) (*Dataset, error) {
	feats := s.Features()
	if raw.Dim != len(feats) {
		return nil, fmt.Errorf("data: encode %s: %d columns, the schema %s has %d feature columns", raw.Name, raw.Dim, s.Name, len(feats))
	}
	if st == nil || len(st.Mean) != len(feats) || len(st.Var) != len(feats) || len(st.Freq) != len(feats) {
		return nil, fmt.Errorf("data: encode %s: statistics do not match the schema %s", raw.Name, s.Name)
	}
	mode := make([]int, len(feats))
	scale := make([]float64, len(feats))
	for f, k := range feats {
		c := s.Columns[k]
		if c.Type == TypeCategorical {
			if len(st.Freq[f]) != len(c.Values) {
				return nil, fmt.Errorf("data: encode %s: column %q: %d frequencies for %d values", raw.Name, c.Name, len(st.Freq[f]), len(c.Values))
			}
			for v, p := range st.Freq[f] {
				if p > st.Freq[f][mode[f]] {
					mode[f] = v
				}
			}
			continue
		}
		scale[f] = 1
		if sd := math.Sqrt(st.Var[f]); standardize && sd > 0 && !math.IsInf(1/sd, 0) {
			scale[f] = 1 / sd
		}
	}
	dim := s.Dim()
	out := &Dataset{Name: raw.Name, N: raw.N, Dim: dim, Classes: raw.Classes, C: 1, H: 1, W: dim,
		X: make([]float32, raw.N*dim), Y: append([]int32(nil), raw.Y...)}
	for i := 0; i < raw.N; i++ {
		in, o := raw.Row(i), out.Row(i)
		p := 0
		for f, k := range feats {
			c := s.Columns[k]
			v := float64(in[f])
			if c.Type == TypeNumeric {
				miss := math.IsNaN(v)
				if miss {
					v = st.Mean[f]
				}
				if standardize {
					v = (v - st.Mean[f]) * scale[f]
				}
				o[p] = float32(v)
				p++
				if c.Missing == MissingIndicator {
					if miss {
						o[p] = 1
					}
					p++
				}
				continue
			}
			cat := mode[f]
			if !math.IsNaN(v) && v >= 0 && int(v) < len(c.Values) {
				cat = int(v)
			}
			o[p+cat] = 1
			p += len(c.Values)
		}
	}
	return out, nil
}

// LoadStats reads federation statistics (JSON, as WriteStats writes them)
// and checks them against the schema: one entry per feature column, finite
// means, non-negative variances, one frequency per categorical value.
func LoadStats(path string, s *Schema) (*Stats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data: stats: %w", err)
	}
	return ParseStats(b, path, s)
}

// ParseStats decodes federation statistics (JSON) named name in errors and
// checks them against the schema as LoadStats does.
func ParseStats(b []byte, path string, s *Schema) (*Stats, error) {
	var st Stats
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("data: stats %s: %v", path, err)
	}
	feats := s.Features()
	if len(st.Count) != len(feats) || len(st.Mean) != len(feats) || len(st.Var) != len(feats) || len(st.Freq) != len(feats) {
		return nil, fmt.Errorf("data: stats %s: count/mean/var/freq must each have %d entries, one per feature column of the schema %s", path, len(feats), s.Name)
	}
	for f, k := range feats {
		c := s.Columns[k]
		if math.IsNaN(st.Mean[f]) || math.IsInf(st.Mean[f], 0) || !(st.Var[f] >= 0) || math.IsInf(st.Var[f], 0) {
			return nil, fmt.Errorf("data: stats %s: column %q: mean %v, var %v (want finite, var ≥ 0)", path, c.Name, st.Mean[f], st.Var[f])
		}
		if c.Type == TypeCategorical && len(st.Freq[f]) != len(c.Values) {
			return nil, fmt.Errorf("data: stats %s: column %q: %d frequencies for %d values", path, c.Name, len(st.Freq[f]), len(c.Values))
		}
	}
	if !(st.Rows >= 0) || math.IsInf(st.Rows, 0) {
		return nil, fmt.Errorf("data: stats %s: rows %v (want finite, ≥ 0)", path, st.Rows)
	}
	return &st, nil
}

// Placeholder returns statistics of the schema's shape (mean 0, variance 1,
// uniform frequencies, no rows) for a site that encodes its table before
// the federation's statistics are known; nothing may train on them.
func Placeholder(s *Schema) *Stats {
	feats := s.Features()
	st := &Stats{Count: make([]float64, len(feats)), Mean: make([]float64, len(feats)), Var: make([]float64, len(feats)), Freq: make([][]float64, len(feats))}
	for f, k := range feats {
		c := s.Columns[k]
		if c.Type == TypeNumeric {
			st.Var[f] = 1
			continue
		}
		st.Freq[f] = make([]float64, len(c.Values))
		for v := range st.Freq[f] {
			st.Freq[f][v] = 1 / float64(len(c.Values))
		}
	}
	return st
}

// WriteStats writes st as indented JSON.
func WriteStats(path string, st *Stats) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// LoadSchemaDataset is a site's data loading with a schema: the CSV at path
// is checked against the schema (every problem reported at once, see
// ReadTable), split with SplitTable, and both splits are encoded with the
// federation's statistics st (imputation, one-hot; standardised when
// standardize).
func LoadSchemaDataset(path string, s *Schema, st *Stats, testFrac float64, seed int64, standardize bool) (train, test *Dataset, err error) {
	rt, rs, err := LoadSchemaTables(path, s, testFrac, seed)
	if err != nil {
		return nil, nil, err
	}
	if train, err = Encode(s, rt, st, standardize); err != nil {
		return nil, nil, err
	}
	if test, err = Encode(s, rs, st, standardize); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// LoadSchemaTables is LoadSchemaDataset without the encoding: the raw
// train and test tables (ReadTable's form, NaN for a missing cell), for a
// site that sums them (Sums) before the federation's statistics exist.
func LoadSchemaTables(path string, s *Schema, testFrac float64, seed int64) (train, test *Dataset, err error) {
	raw, err := LoadTable(path, s)
	if err != nil {
		return nil, nil, err
	}
	return SplitTable(raw, testFrac, seed)
}

// ParseSchemaCSV reads the data set spec of a site under a schema,
// "csv:FILE[?test=FRAC&seed=N]": the file, its held-out fraction (default
// DefaultTestFrac) and split seed (default SplitSeed). With a schema only
// these two options apply (the schema gives the label, delimiter and
// missing values); an error names the option.
func ParseSchemaCSV(spec string) (path string, testFrac float64, seed int64, err error) {
	kind, rest, _ := strings.Cut(spec, ":")
	if kind != "csv" || rest == "" {
		return "", 0, 0, fmt.Errorf("with a schema the data must be csv:FILE, have %q", spec)
	}
	path, query := rest, ""
	if i := strings.LastIndex(rest, "?"); i >= 0 {
		path, query = rest[:i], rest[i+1:]
	}
	testFrac, seed = DefaultTestFrac, int64(SplitSeed)
	vals, err := url.ParseQuery(query)
	if err != nil {
		return "", 0, 0, fmt.Errorf("options %q: %v", query, err)
	}
	for k, vs := range vals {
		v := vs[len(vs)-1]
		switch k {
		case "test":
			if testFrac, err = strconv.ParseFloat(v, 64); err != nil || !(testFrac >= 0 && testFrac < 1) {
				return "", 0, 0, fmt.Errorf("option test=%q, want a fraction in [0, 1)", v)
			}
		case "seed":
			if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
				return "", 0, 0, fmt.Errorf("option seed=%q, want an integer", v)
			}
		default:
			return "", 0, 0, fmt.Errorf("option %q: with a schema only test and seed apply (the schema gives the label, delimiter and missing values)", k)
		}
	}
	return path, testFrac, seed, nil
}

// ScaledSums is a site's input to the secure statistics round: Sums of the
// rows idx (nil: all) of raw, each divided by its public range
// (SumScales for a site of at most maxRows rows), so every value lies in
// [-1, 1].
func ScaledSums(s *Schema, raw *Dataset, idx []int, maxRows int) ([]float32, error) {
	sums, err := Sums(s, raw, idx)
	if err != nil {
		return nil, err
	}
	scales, err := SumScales(s, maxRows)
	if err != nil {
		return nil, err
	}
	v := make([]float32, len(sums))
	for j, x := range sums {
		v[j] = float32(x / scales[j])
	}
	return v, nil
}
