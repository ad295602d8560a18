package worker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/data"
)

// Three sites, three differently written files (BOM + ';' + decimal commas,
// tab, plain ','): the same schema gives every site the same feature vector.
func TestSchemaDatasetSameFeatureVectorAtEverySite(t *testing.T) {
	dir := t.TempDir()
	schema, err := os.ReadFile("../data/testdata/cohort_schema.toml")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("schema.toml", string(schema))
	sites := map[string]string{
		"a": "\ufeffpatient_id;age;sbp;sex;outcome\r\n1;54;\"132,5\";M;yes\r\n2;NA;120;F;no\r\n3;61;;M;yes\r\n4;47;141;?;no\r\n5;39;118;F;\r\n6;70;150;F;yes\r\n",
		"b": "outcome\tsex\tsbp\tage\tpatient_id\nno\tF\t125\t33\t7\nyes\tM\t160\t66\t8\nno\tM\tNA\t41\t9\nyes\tF\t170\t72\t10\n",
		"c": "age,sbp,sex,outcome,patient_id\n58,140,M,yes,11\n29,115,F,no,12\n,130,F,no,13\n80,180,M,yes,14\n",
	}
	s, err := data.LoadSchema(filepath.Join(dir, "schema.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// The federation's statistics (in a federation, the output of the
	// secure statistics round); here the sum of the three sites' sums.
	var total []float64
	for name, text := range sites {
		raw, err := data.LoadTable(write(name+".csv", text), s)
		if err != nil {
			t.Fatal(err)
		}
		sums, _ := data.Sums(s, raw, nil)
		if total == nil {
			total = make([]float64, len(sums))
		}
		for j, v := range sums {
			total[j] += v
		}
	}
	st, err := data.StatsFromSums(s, total)
	if err != nil {
		t.Fatal(err)
	}
	if err := data.WriteStats(filepath.Join(dir, "stats.json"), st); err != nil {
		t.Fatal(err)
	}
	for name := range sites {
		cfgText := strings.Replace(validTOML, `dataset = "csv:data/cohort.csv?label=outcome"`,
			`dataset = "csv:`+name+`.csv?test=0.25"`+"\nschema = \"schema.toml\"\nstats = \"stats.json\"", 1)
		c, err := ParseConfig(name+".toml", []byte(cfgText), dir)
		if err != nil {
			t.Fatal(err)
		}
		train, test, err := c.LoadDataset()
		if err != nil {
			t.Fatalf("site %s: %v", name, err)
		}
		if train.Dim != 5 || test.Dim != 5 || train.Classes != 2 {
			t.Fatalf("site %s: dims %d/%d classes %d, want 5/5 and 2", name, train.Dim, test.Dim, train.Classes)
		}
		if err := train.Validate(); err != nil {
			t.Fatalf("site %s: %v", name, err)
		}
	}
}

func TestSchemaConfigErrorsNameField(t *testing.T) {
	dir := t.TempDir()
	// A schema without a statistics file is valid: the worker then takes
	// the statistics the federation computes (stats.go).
	if _, err := ParseConfig("w.toml", []byte(strings.Replace(validTOML, "store = \"store\"", "store = \"store\"\nschema = \"s.toml\"", 1)), dir); err != nil {
		t.Errorf("schema without stats: %v", err)
	}
	for _, tc := range []struct{ extra, want string }{
		{"stats = \"st.json\"", "stats: set without schema"},
	} {
		text := strings.Replace(validTOML, "store = \"store\"", "store = \"store\"\n"+tc.extra, 1)
		if _, err := ParseConfig("w.toml", []byte(text), dir); err == nil || !strings.Contains(err.Error(), "w.toml: "+tc.want) {
			t.Errorf("%s: error %v, want %q", tc.extra, err, tc.want)
		}
	}
	text := strings.Replace(validTOML, `dataset = "csv:data/cohort.csv?label=outcome"`, `dataset = "digits"`+"\nschema = \"s.toml\"\nstats = \"st.json\"", 1)
	if _, err := ParseConfig("w.toml", []byte(text), dir); err == nil || !strings.Contains(err.Error(), "w.toml: schema: needs dataset") {
		t.Errorf("schema with digits: error %v", err)
	}
}

// A site file breaking the schema in five rows: the worker's start reports
// all five at once.
func TestSchemaDatasetReportsAllProblemsAtStart(t *testing.T) {
	dir := t.TempDir()
	schema, _ := os.ReadFile("../data/testdata/cohort_schema.toml")
	os.WriteFile(filepath.Join(dir, "schema.toml"), schema, 0o600)
	os.WriteFile(filepath.Join(dir, "stats.json"), []byte(`{"rows":1,"count":[1,1,1],"mean":[50,130,0],"var":[1,1,0],"freq":[null,null,[0.5,0.5]]}`), 0o600)
	os.WriteFile(filepath.Join(dir, "bad.csv"), []byte("patient_id,age,sbp,sex,outcome\n1,x,130,M,yes\n2,54,30,M,no\n3,54,130,Z,no\n4,54,130,F,perhaps\n5,-3,130,F,no\n"), 0o600)
	text := strings.Replace(validTOML, `dataset = "csv:data/cohort.csv?label=outcome"`, `dataset = "csv:bad.csv"`+"\nschema = \"schema.toml\"\nstats = \"stats.json\"", 1)
	c, err := ParseConfig("w.toml", []byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.LoadDataset()
	var se *data.SchemaError
	if !errors.As(err, &se) || se.Total != 5 {
		t.Fatalf("error %v, want 5 problems", err)
	}
	for _, want := range []string{"line 2, column \"age\"", "line 3, column \"sbp\"", "line 4, column \"sex\"", "line 5, column \"outcome\"", "line 6, column \"age\"", "w.toml: dataset:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("report lacks %q:\n%v", want, err)
		}
	}
}
