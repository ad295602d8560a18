package worker

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const validTOML = `
name = "st-marys"
identity = "keys/st-marys.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/4101", "/ip4/127.0.0.1/udp/4101/quic-v1"]
dataset = "csv:data/cohort.csv?label=outcome"
store = "store"
log_level = "debug"

[policy]
max_epsilon = 8.0
min_cohort = 3
accepted_models = ["2nn", "mlp:32"]
`

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "worker.toml")
	if err := os.WriteFile(path, []byte(validTOML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "st-marys" || c.Policy.MaxEpsilon != 8 || c.Policy.MinCohort != 3 || !slices.Equal(c.Policy.AcceptedModels, []string{"2nn", "mlp:32"}) {
		t.Fatalf("parsed %+v", c)
	}
	if c.Identity != filepath.Join(dir, "keys/st-marys.key") || c.Store != filepath.Join(dir, "store") || c.Federation != filepath.Join(dir, "federation.toml") {
		t.Fatalf("paths not resolved against %s: %+v", dir, c)
	}
	if want := "csv:" + filepath.Join(dir, "data/cohort.csv") + "?label=outcome"; c.Dataset != want {
		t.Fatalf("dataset %q, want %q", c.Dataset, want)
	}
	if lvl, _ := c.SlogLevel(); lvl.String() != "DEBUG" {
		t.Fatalf("level %v", lvl)
	}

	// Defaults: no budget, cohort 2, any model, info.
	bare := strings.Replace(validTOML, "[policy]\nmax_epsilon = 8.0\nmin_cohort = 3\naccepted_models = [\"2nn\", \"mlp:32\"]\n", "", 1)
	bare = strings.Replace(bare, "log_level = \"debug\"\n", "", 1)
	c, err = ParseConfig("worker.toml", []byte(bare), "")
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsInf(c.Policy.MaxEpsilon, 1) || c.Policy.MinCohort != DefaultMinCohort || c.Policy.AcceptedModels != nil || c.LogLevel != "info" {
		t.Fatalf("defaults %+v", c.Policy)
	}

	if _, err := LoadConfig(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestConfigErrorsNameField(t *testing.T) {
	cases := []struct {
		old, new string
		want     string
	}{
		{"min_cohort = 3", "min_cohort = -1", "worker.toml: policy.min_cohort: -1 out of range [1, ∞)"},
		{"min_cohort = 3", "min_cohort = 0", "policy.min_cohort: 0 out of range"},
		{"max_epsilon = 8.0", "max_epsilon = 0.0", "policy.max_epsilon: 0 out of range"},
		{"max_epsilon = 8.0", "max_epsilon = nan", "policy.max_epsilon: NaN"},
		{`"mlp:32"]`, `"mlp:x"]`, "policy.accepted_models[1]"},
		{`name = "st-marys"`, `name = ""`, "worker.toml: name: missing"},
		{`identity = "keys/st-marys.key"`, ``, "identity: missing"},
		{`federation = "federation.toml"`, ``, "federation: missing"},
		{`store = "store"`, ``, "store: missing"},
		{`"/ip4/127.0.0.1/tcp/4101",`, `"/ip4/999.0.0.1/tcp/4101",`, "listen[0]"},
		{`listen = ["/ip4/127.0.0.1/tcp/4101", "/ip4/127.0.0.1/udp/4101/quic-v1"]`, `listen = []`, "listen: missing"},
		{`dataset = "csv:data/cohort.csv?label=outcome"`, `dataset = "parquet:x"`, "dataset: \"parquet:x\": unknown kind"},
		{`dataset = "csv:data/cohort.csv?label=outcome"`, `dataset = "idx:"`, "dataset: \"idx:\": idx needs a path"},
		{`log_level = "debug"`, `log_level = "loud"`, "log_level: \"loud\""},
		{`min_cohort = 3`, "min_cohort = 3\ncolour = 1", `worker.toml:13: unknown key "policy.colour" in [policy]`},
		{`min_cohort = 3`, `min_cohort = "three"`, "worker.toml:"},
		{"min_cohort = 3", "min_cohort = 3\nmax_cohort = 0", "worker.toml: policy.max_cohort: 0 out of range"},
		{"min_cohort = 3", "min_cohort = 3\nmax_cohort = 2", "policy.max_cohort: 2 out of range [max(min_cohort, 2) = 3"},
		{"min_cohort = 3", "min_cohort = 3\nmax_secagg_degree = 0", "policy.max_secagg_degree: 0 out of range"},
		{"min_cohort = 3", "min_cohort = 3\nmax_secagg_degree = 70000", "policy.max_secagg_degree: 70000 out of range"},
		{"min_cohort = 3", "min_cohort = 3\nevaluation = \"sometimes\"", `policy.evaluation: "sometimes" is not one of`},
	}
	for _, tc := range cases {
		src := strings.Replace(validTOML, tc.old, tc.new, 1)
		if src == validTOML {
			t.Fatalf("case %q did not change the file", tc.want)
		}
		_, err := ParseConfig("worker.toml", []byte(src), "/etc/sovereign")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s → %s: got %v, want %q", tc.old, tc.new, err, tc.want)
		}
	}
}

func TestConfigMonitoringKeys(t *testing.T) {
	c, err := ParseConfig("w.toml", []byte("metrics_listen = \"127.0.0.1:9465\"\nlog_format = \"json\"\n"+validTOML), "/srv")
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsListen != "127.0.0.1:9465" || c.LogFormat != "json" {
		t.Fatalf("parsed %+v", c)
	}
	for _, bad := range []struct{ line, want string }{
		{`metrics_listen = "9465"`, "w.toml: metrics_listen"},
		{`log_format = "xml"`, "w.toml: log_format"},
	} {
		if _, err := ParseConfig("w.toml", []byte(bad.line+"\n"+validTOML), "/srv"); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error naming %q", bad.line, err, bad.want)
		}
	}
}
