package main

//go:generate go test -run TestConfigReference -update-config-doc .

import (
	"flag"

	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/coordinator/service"
	"github.com/sovereign-fl/sovereign/internal/confdoc"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/sim"
	"github.com/sovereign-fl/sovereign/worker"
)

var updateConfigDoc = flag.Bool("update-config-doc", false, "rewrite docs/config.md from the code")

// configFiles are the configuration files of the reference, in its order.
func configFiles() []confdoc.File {
	return []confdoc.File{p2p.FederationDoc, service.ConfigDoc, studyDoc, worker.ConfigDoc, sim.ConfigDocWithDefaults()}
}

const configDocPath = "../../docs/config.md"

const configDocHeader = `# Configuration reference

<!-- Generated from the code by ` + "`go generate ./cmd/sovereign`" + ` (TestConfigReference); do not edit. -->

Every key of every TOML file Sovereign reads: its type, its default when absent, the values it
allows and an example. The loaders refuse unknown keys (suggesting the nearest known one) and
name the file, line, key and expected type of a value of the wrong type, e.g.

` + "```text" + `
coordinator.toml:14: rounds.rounds: expected an integer, e.g. 30, got a string
coordinator.toml:15: unknown key "rounds.retry_limt" in [rounds]; did you mean "rounds.retry_limit"?
` + "```" + `

Checks across keys (e.g. ` + "`min_workers`" + ` ≤ ` + "`workers_per_round`" + `) and against files (the identity matches
the federation file) happen after decoding and name the key too. A study file (one training
configuration among several on one federation) is not implemented yet; the coordinator's
` + "`[rounds]`" + ` table is the training configuration of the federation's one study. The data schema
(` + "`schema.toml`" + `) is described in [data-schema.md](data-schema.md).
`

// TestConfigReference: every key of every configuration file is documented,
// no documentation names a key that does not exist, and docs/config.md is
// what the code renders (go generate ./cmd/sovereign rewrites it).
func TestConfigReference(t *testing.T) {
	for _, f := range configFiles() {
		missing, stale := f.Undocumented()
		for _, k := range missing {
			t.Errorf("%s file: key %q has no documentation: add it to the file's confdoc.Docs", f.Name, k)
		}
		for _, k := range stale {
			t.Errorf("%s file: documentation for %q, which is not a key", f.Name, k)
		}
	}
	want := confdoc.Markdown(configDocHeader, configFiles())
	if *updateConfigDoc {
		if err := os.WriteFile(configDocPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(configDocPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("docs/config.md is not what the code renders; run `go generate ./cmd/sovereign` (first difference at line %d)", firstDiffLine(string(got), want))
	}
	for _, f := range configFiles() {
		for _, k := range confdoc.Keys(f.Schema) {
			if !k.Table && !strings.Contains(want, "| `"+leafOf(k.Path)+"` |") {
				t.Errorf("%s: %s is not in the rendered reference", f.Name, k.Path)
			}
		}
	}
}

func leafOf(p string) string { return p[strings.LastIndex(p, ".")+1:] }

func firstDiffLine(a, b string) int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// snippet is a TOML document setting path to the literal v.
func snippet(f confdoc.File, path, v string) string {
	keys := confdoc.Keys(f.Schema)
	i := strings.LastIndex(path, ".")
	if i < 0 {
		return path + " = " + v + "\n"
	}
	table := path[:i]
	for _, k := range keys {
		if k.Path == table && k.Kind == "array of tables" {
			return "[[" + table + "]]\n" + path[i+1:] + " = " + v + "\n"
		}
	}
	return "[" + table + "]\n" + path[i+1:] + " = " + v + "\n"
}

// TestConfigExamplesDecode: every documented example and default is a
// value of the key's type.
func TestConfigExamplesDecode(t *testing.T) {
	for _, f := range configFiles() {
		for path, d := range f.Docs {
			for _, lit := range []string{d.Example, d.Default} {
				if lit == "" {
					continue
				}
				v := reflect.New(f.Schema).Interface()
				if err := f.Decode(f.Name+".toml", []byte(snippet(f, path, lit)), v); err != nil {
					t.Errorf("%s: %s = %s does not decode: %v", f.Name, path, lit, err)
				}
			}
		}
	}
}

// TestConfigDefaultsAreTheCode: writing a documented default of the
// coordinator's [rounds] or of the worker file changes nothing.
func TestConfigDefaultsAreTheCode(t *testing.T) {
	base, err := service.Parse("coord.toml", []byte(minimalCoordinatorTOML+"[rounds]\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for path, d := range service.ConfigDoc.Docs {
		if !strings.HasPrefix(path, "rounds.") || d.Default == "" {
			continue
		}
		c, err := service.Parse("coord.toml", []byte(minimalCoordinatorTOML+snippet(service.ConfigDoc, path, d.Default)), t.TempDir())
		if err != nil {
			t.Errorf("%s = %s: %v", path, d.Default, err)
			continue
		}
		if !reflect.DeepEqual(c.Config, base.Config) {
			t.Errorf("%s = %s (the documented default) changes the configuration:\n%+v\nvs\n%+v", path, d.Default, c.Config, base.Config)
		}
		n++
	}
	if n < 20 {
		t.Fatalf("checked %d [rounds] defaults", n)
	}
	wbase, err := worker.ParseConfig("w.toml", []byte(minimalWorkerTOML), "/srv")
	if err != nil {
		t.Fatal(err)
	}
	n = 0
	for path, d := range worker.ConfigDoc.Docs {
		// log_format "" and "text" both mean text but differ as strings.
		if d.Default == "" || path == "log_format" {
			continue
		}
		doc := minimalWorkerTOML
		if leaf, ok := strings.CutPrefix(path, "policy."); ok {
			doc += "\n[policy]\n" + leaf + " = " + d.Default + "\n"
		} else {
			doc = path + " = " + d.Default + "\n" + doc
		}
		c, err := worker.ParseConfig("w.toml", []byte(doc), "/srv")
		if err != nil {
			t.Errorf("%s = %s: %v", path, d.Default, err)
			continue
		}
		if !reflect.DeepEqual(c, wbase) {
			t.Errorf("%s = %s (the documented default) changes the configuration:\n%+v\nvs\n%+v", path, d.Default, c, wbase)
		}
		n++
	}
	if n < 6 {
		t.Fatalf("checked %d worker defaults", n)
	}
}

const minimalCoordinatorTOML = `name = "coord-1"
identity = "coord-1.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/4001"]
data = "data"
`

const minimalWorkerTOML = `name = "st-marys"
identity = "st-marys.key"
federation = "federation.toml"
listen = ["/ip4/127.0.0.1/tcp/4101"]
dataset = "digits"
store = "store"
`

// TestConfigErrorsInWords: wrong types and unknown keys name the file, the
// line, the key and the expected type in words, with no Go type names,
// and unknown keys get the nearest known key.
func TestConfigErrorsInWords(t *testing.T) {
	cases := []struct {
		doc  string
		want []string
	}{
		{minimalCoordinatorTOML + "[rounds]\nrounds = \"ten\"\n", []string{"coord.toml:7:", "rounds.rounds", "expected an integer", "got a string"}},
		{minimalCoordinatorTOML + "[rounds]\nnoise = \"high\"\n", []string{"coord.toml:7:", "rounds.noise", "expected a number", "got a string"}},
		{minimalCoordinatorTOML + "[rounds]\ninput = [1, \"a\"]\n", []string{"coord.toml:7:", "rounds.input", "expected an array of integers"}},
		{minimalCoordinatorTOML + "[rounds]\nstage_timeout = 5\n", []string{"rounds.stage_timeout", "expected a duration", "got an integer"}},
		{minimalCoordinatorTOML + "[rounds]\nsecure_evaluation = \"yes\"\n", []string{"rounds.secure_evaluation", "expected a boolean"}},
		{minimalCoordinatorTOML + "[rounds]\nretry_limt = 3\n", []string{"coord.toml:7:", `unknown key "rounds.retry_limt" in [rounds]`, `did you mean "rounds.retry_limit"?`}},
		{minimalCoordinatorTOML + "noise = 1.0\n", []string{"coord.toml:6:", `unknown key "noise"`, `did you mean "rounds.noise"?`}},
		{minimalCoordinatorTOML + "[raft]\nheartbeat = \"1s\"\n", []string{"coord.toml:7:", `unknown key "raft.heartbeat"`, `did you mean "raft.heartbeat_timeout"?`}},
		{"name = 3\n" + minimalCoordinatorTOML[len("name = \"coord-1\"\n"):], []string{"coord.toml:1:", "name: expected a string", "got an integer"}},
	}
	for _, c := range cases {
		_, err := service.Parse("coord.toml", []byte(c.doc), t.TempDir())
		if err == nil {
			t.Errorf("%q accepted", c.doc)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not say %q", c.doc, err, w)
			}
		}
		for _, internal := range []string{"main.", "struct field", "of type", "*int", "float64"} {
			if strings.Contains(err.Error(), internal) {
				t.Errorf("%q: error %q shows Go internals (%q)", c.doc, err, internal)
			}
		}
	}
	// The worker and federation files speak the same way.
	_, err := worker.ParseConfig("w.toml", []byte(minimalWorkerTOML+"log_fromat = \"json\"\n"), "/srv")
	if err == nil || !strings.Contains(err.Error(), `did you mean "log_format"?`) || !strings.Contains(err.Error(), "w.toml:7:") {
		t.Errorf("worker: %v", err)
	}
	_, err = worker.ParseConfig("w.toml", []byte(minimalWorkerTOML+"[policy]\nmin_cohort = \"three\"\n"), "/srv")
	if err == nil || !strings.Contains(err.Error(), "policy.min_cohort: expected an integer") {
		t.Errorf("worker: %v", err)
	}
	_, err = p2p.ParseFederation("federation.toml", []byte("name = \"x\"\n[[member]]\nname = \"a\"\npeer = \"12D3\"\n"), "")
	if err == nil || !strings.Contains(err.Error(), `did you mean "member.peer_id"?`) {
		t.Errorf("federation: %v", err)
	}
}

// TestSimConfigSnakeCaseAndDashed: the sim file takes snake_case keys, and
// the old dashed ones with a deprecation warning naming the line.
func TestSimConfigSnakeCaseAndDashed(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		doc  string
		warn string
	}{
		{"dp_clip = 2.5\ndp_noise = 0.7\nserver_lr = 0.3\n", ""},
		{"dp-clip = 2.5\ndp-noise = 0.7\nserver-lr = 0.3\n", `sim.toml:1: key "dp-clip" is deprecated; write "dp_clip"`},
	} {
		path := filepath.Join(dir, "sim.toml")
		if err := os.WriteFile(path, []byte(c.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := sim.DefaultConfig()
		cmd := newSimCmd()
		var warn strings.Builder
		if err := applyConfigFile(cmd.Flags(), path, &cfg, &warn); err != nil {
			t.Fatalf("%q: %v", c.doc, err)
		}
		if cfg.DPClip != 2.5 || cfg.DPNoise != 0.7 || cfg.ServerLR != 0.3 {
			t.Fatalf("%q: read %+v", c.doc, cfg)
		}
		if c.warn == "" && warn.Len() != 0 {
			t.Errorf("%q: warned %q", c.doc, warn.String())
		}
		if c.warn != "" && !strings.Contains(warn.String(), strings.Replace(c.warn, "sim.toml", path, 1)) {
			t.Errorf("%q: warning %q, want %q", c.doc, warn.String(), c.warn)
		}
	}
	path := filepath.Join(dir, "bad.toml")
	os.WriteFile(path, []byte("dp_clipp = 1\n"), 0o600)
	cfg := sim.DefaultConfig()
	err := applyConfigFile(newSimCmd().Flags(), path, &cfg, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), `did you mean "dp_clip"?`) {
		t.Fatalf("unknown sim key: %v", err)
	}

}
