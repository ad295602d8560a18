package data

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func loadCohortSchema(t *testing.T) *Schema {
	t.Helper()
	s, err := LoadSchema("testdata/cohort_schema.toml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// An Excel-written file: BOM, ';', CRLF, a quoted decimal comma, NA / empty /
// '?' cells, a categorical column, string labels, a row dropped for a
// missing label.
func TestReadTableExcelCSV(t *testing.T) {
	s := loadCohortSchema(t)
	raw, err := LoadTable("testdata/cohort_excel.csv", s)
	if err != nil {
		t.Fatal(err)
	}
	if raw.N != 5 || raw.Dim != 3 || raw.Classes != 2 {
		t.Fatalf("N, Dim, Classes = %d, %d, %d; want 5, 3, 2", raw.N, raw.Dim, raw.Classes)
	}
	if want := []int32{1, 0, 1, 0, 1}; !slices.Equal(raw.Y, want) {
		t.Fatalf("labels %v, want %v", raw.Y, want)
	}
	if raw.X[1] != 132.5 || !math.IsNaN(float64(raw.X[3])) || !math.IsNaN(float64(raw.X[7])) || !math.IsNaN(float64(raw.X[11])) {
		t.Fatalf("raw cells %v: want 132.5 at [1] and NaN for NA, empty and ?", raw.X)
	}
	sums, err := Sums(s, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := StatsFromSums(s, sums)
	if err != nil {
		t.Fatal(err)
	}
	// age: 54, 61, 47, 70 → mean 58; sex: M, F, M, F → mode M (first on a tie).
	if math.Abs(st.Mean[0]-58) > 1e-12 || st.Count[0] != 4 {
		t.Fatalf("age mean %v count %v, want 58 and 4", st.Mean[0], st.Count[0])
	}
	enc, err := Encode(s, raw, st, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.FeatureNames(), []string{"age", "sbp", "sbp_missing", "sex=M", "sex=F"}; !slices.Equal(got, want) {
		t.Fatalf("feature names %v, want %v", got, want)
	}
	// Row 2 (line 3): age missing → 58; row 3: sbp missing → mean, indicator 1;
	// row 4: sex missing → mode M.
	sbpMean := float32((132.5 + 120 + 141 + 150) / 4)
	wantRows := [][]float32{
		{54, 132.5, 0, 1, 0},
		{58, 120, 0, 0, 1},
		{61, sbpMean, 1, 1, 0},
		{47, 141, 0, 1, 0},
		{70, 150, 0, 0, 1},
	}
	for i, w := range wantRows {
		if got := enc.Row(i); !slices.Equal(got, w) {
			t.Errorf("encoded row %d = %v, want %v", i, got, w)
		}
	}
	if err := enc.Validate(); err != nil {
		t.Fatal(err)
	}
	std, err := Encode(s, raw, st, true)
	if err != nil {
		t.Fatal(err)
	}
	var m, v float64
	for i := range std.N {
		m += float64(std.Row(i)[0]) / float64(std.N)
	}
	for i := range std.N {
		d := float64(std.Row(i)[0]) - m
		v += d * d / float64(std.N)
	}
	// The imputed row sits at the mean, so the standardised column has mean 0
	// and variance 4/5 of 1 (the statistics are over the 4 observed values).
	if math.Abs(m) > 1e-6 || math.Abs(v-0.8) > 1e-5 {
		t.Fatalf("standardised age: mean %v var %v, want 0 and 0.8", m, v)
	}
}

func TestReadTableDelimitersAndQuotes(t *testing.T) {
	s, err := ParseSchema([]byte(`
[[column]]
name = "x"
type = "numeric"
[[column]]
name = "note"
type = "ignored"
[[column]]
name = "y"
type = "label"
`), "inline.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"comma": "y,note,x\n1,\"a, b; c\",2.5\n0,plain,3\n",
		"semi":  "y;note;x\n1;\"a, b; c\";2.5\n0;plain;3\n",
		"tab":   "y\tnote\tx\n1\t\"a, b; c\"\t2.5\n0\tplain\t3\n",
	} {
		d, err := ReadTable(strings.NewReader(text), name, s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d.N != 2 || d.X[0] != 2.5 || d.X[1] != 3 || !slices.Equal(d.Y, []int32{1, 0}) || d.Classes != 2 {
			t.Fatalf("%s: got %+v", name, d)
		}
	}
}

// Five broken rows: one report naming all five lines and their columns.
func TestReadTableReportsEveryProblem(t *testing.T) {
	s := loadCohortSchema(t)
	text := "patient_id,age,sbp,sex,outcome\n" +
		"1,54,130,M,yes\n" +
		"2,abc,130,M,yes\n" + // line 3: age not a number
		"3,54,300,M,no\n" + // line 4: sbp above max
		"4,54,130,X,no\n" + // line 5: sex not allowed
		"5,54,130,F,maybe\n" + // line 6: unknown class
		"6,54,130\n" + // line 7: too few cells
		"7,60,140,F,no\n"
	_, err := ReadTable(strings.NewReader(text), "five.csv", s)
	var se *SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("error %v, want a *SchemaError", err)
	}
	if se.Total != 5 || se.Rows != 5 {
		t.Fatalf("%d problems in %d rows, want 5 in 5:\n%v", se.Total, se.Rows, err)
	}
	msg := err.Error()
	for _, want := range []string{
		`line 3, column "age": value "abc", expected a finite number`,
		`line 4, column "sbp": value "300", expected a number in [50, 260]`,
		`line 5, column "sex": value "X", expected one of "M", "F"`,
		`line 6, column "outcome": value "maybe", expected one of the classes "no", "yes"`,
		`line 7: value "3 cells", expected 5 cells as in the header`,
		"five.csv", "5 problem(s) in 5 row(s)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
}

func TestReadTableHeaderProblems(t *testing.T) {
	s := loadCohortSchema(t)
	_, err := ReadTable(strings.NewReader("age,extra,sex,outcome\n1,2,M,no\n"), "h.csv", s)
	var se *SchemaError
	if !errors.As(err, &se) || se.Total != 2 {
		t.Fatalf("error %v, want 2 header problems (extra column, missing sbp)", err)
	}
	for _, want := range []string{`column "extra"`, `column "sbp"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("report lacks %q: %v", want, err)
		}
	}
}

func TestParseSchemaErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`[[column]]` + "\nname=\"a\"\ntype=\"numeric\"\n", `no column of type "label"`},
		{"[[column]]\nname=\"a\"\ntype=\"number\"\n", `column[0] "a": type "number"`},
		{"[[column]]\nname=\"a\"\ntype=\"categorical\"\n[[column]]\nname=\"y\"\ntype=\"label\"\n", `column[0] "a": values`},
		{"[[column]]\nname=\"a\"\ntype=\"numeric\"\nmissing=\"mode\"\n[[column]]\nname=\"y\"\ntype=\"label\"\n", `missing "mode"`},
		{"delimiter=\"|\"\n[[column]]\nname=\"a\"\ntype=\"numeric\"\n[[column]]\nname=\"y\"\ntype=\"label\"\n", `delimiter "|"`},
		{"bogus=1\n", "bogus"},
	} {
		_, err := ParseSchema([]byte(tc.text), "s.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "s.toml") {
			t.Errorf("schema %q: error %v, want one naming s.toml and %q", tc.text, err, tc.want)
		}
	}
}

// The sums of sites add up to the pooled sums: the federation's statistics
// equal the pooled data's.
func TestSumsOfSitesEqualPooled(t *testing.T) {
	s := loadCohortSchema(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("patient_id,age,sbp,sex,outcome\n")
	for i := range 300 {
		age := "NA"
		if rng.IntN(10) > 0 {
			age = strings.TrimRight(strings.TrimRight(fmtF(rng.Float64()*100), "0"), ".")
		}
		sex := []string{"M", "F", ""}[rng.IntN(3)]
		b.WriteString(strconv.Itoa(i) + "," + age + "," + fmtF(90+rng.Float64()*80) + "," + sex + "," + []string{"no", "yes"}[rng.IntN(2)] + "\n")
	}
	raw, err := ReadTable(strings.NewReader(b.String()), "pooled.csv", s)
	if err != nil {
		t.Fatal(err)
	}
	pooled, _ := Sums(s, raw, nil)
	total := make([]float64, len(pooled))
	for site := range 3 {
		var idx []int
		for i := site; i < raw.N; i += 3 {
			idx = append(idx, i)
		}
		part, _ := Sums(s, raw, idx)
		for j, v := range part {
			total[j] += v
		}
	}
	for j := range pooled {
		if math.Abs(pooled[j]-total[j]) > 1e-9*math.Max(1, math.Abs(pooled[j])) {
			t.Fatalf("sum %d: sites %v, pooled %v", j, total[j], pooled[j])
		}
	}
}

func fmtF(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
