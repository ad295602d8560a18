package confdoc

import (
	"reflect"
	"strings"
	"testing"
)

type testFile struct {
	Name   string   `toml:"name"`
	Listen []string `toml:"listen"`
	Rounds struct {
		Rounds       *int     `toml:"rounds"`
		Noise        *float64 `toml:"noise"`
		StageTimeout *string  `toml:"stage_timeout"`
		RetryLimit   *int     `toml:"retry_limit"`
	} `toml:"rounds"`
	Member []struct {
		PeerID string `toml:"peer_id"`
	} `toml:"member"`
	DPClip float64 `toml:"dp_clip"`
}

var tf = File{Name: "t", Schema: reflect.TypeOf(testFile{}), Docs: Docs{
	"name": {Text: "n"}, "listen": {Text: "l"}, "rounds": {Text: "r"}, "rounds.rounds": {Text: "rr", Example: "30"},
	"rounds.noise": {Text: "σ"}, "rounds.stage_timeout": {Text: "t", Type: "duration, a string such as \"5s\""},
	"member": {Text: "m"}, "member.peer_id": {Text: "p"}, "dp_clip": {Text: "c"}, "gone": {Text: "stale"},
}}

func TestKeysAndUndocumented(t *testing.T) {
	var paths []string
	for _, k := range Keys(tf.Schema) {
		paths = append(paths, k.Path+":"+k.Kind)
	}
	want := "name:string listen:array of strings rounds:table rounds.rounds:integer rounds.noise:number rounds.stage_timeout:string rounds.retry_limit:integer member:array of tables member.peer_id:string dp_clip:number"
	if strings.Join(paths, " ") != want {
		t.Fatalf("keys %v", paths)
	}
	missing, stale := tf.Undocumented()
	if strings.Join(missing, ",") != "rounds.retry_limit" || strings.Join(stale, ",") != "gone" {
		t.Fatalf("missing %v, stale %v", missing, stale)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"[rounds]\nrounds = \"x\"\n", `f.toml:2: rounds.rounds: expected an integer, e.g. 30, got a string`},
		{"[rounds]\nstage_timeout = 5\n", `f.toml:2: rounds.stage_timeout: expected a duration, a string such as "5s", got an integer`},
		{"listen = \"x\"\n", `f.toml:1: listen: expected an array of strings, got a string`},
		{"[rounds]\nretry_limt = 1\nnoize = 2\n", "f.toml:2: unknown key \"rounds.retry_limt\" in [rounds]; did you mean \"rounds.retry_limit\"?\nf.toml:3: unknown key \"rounds.noize\" in [rounds]; did you mean \"rounds.noise\"?"},
		{"noise = 1\n", `f.toml:1: unknown key "noise"; did you mean "rounds.noise"?`},
		{"colour = 1\n", `f.toml:1: unknown key "colour"`},
		{"[[member]]\npeer = \"x\"\n", `f.toml:2: unknown key "member.peer" in [[member]]; did you mean "member.peer_id"?`},
		{"[rounds\n", "f.toml:1:"},
	} {
		var v testFile
		err := tf.Decode("f.toml", []byte(c.doc), &v)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.doc, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "confdoc.") {
			t.Errorf("%q: Go type names in %q", c.doc, err)
		}
	}
}

func TestRenameDashed(t *testing.T) {
	out, warns := tf.RenameDashed("s.toml", []byte("name = \"a\"\n  dp-clip = 1\nnot-a-key = 2\n[rounds]\nstage-timeout = \"1s\"\n"))
	if string(out) != "name = \"a\"\n  dp_clip = 1\nnot-a-key = 2\n[rounds]\nstage-timeout = \"1s\"\n" {
		t.Fatalf("rewrote %q", out)
	}
	if len(warns) != 1 || warns[0] != `s.toml:2: key "dp-clip" is deprecated; write "dp_clip"` {
		t.Fatalf("warnings %q", warns)
	}
}

func TestMarkdownListsEveryKey(t *testing.T) {
	md := Markdown("# ref\n", []File{tf})
	for _, k := range []string{"| `name` |", "| `rounds` |", "### `[rounds]`", "### `[[member]]`", "| `peer_id` |", "| `retry_limit` |"} {
		if !strings.Contains(md, k) {
			t.Errorf("reference lacks %q:\n%s", k, md)
		}
	}
}
