// Package confdoc documents and decodes Sovereign's TOML configuration
// files. Each file's schema is the Go struct its loader decodes into; a
// Docs map beside the struct describes every key (what it does, its
// default, its allowed range, an example). From the two, Markdown renders
// docs/config.md, Undocumented lists the keys a struct has but its Docs do
// not (a test fails on them), and Decode turns go-toml's errors into ones
// that name the file, line, key and the expected type in words, and
// suggest the nearest known key for an unknown one.
package confdoc

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Doc describes one key (or table) of a configuration file.
type Doc struct {
	// Text says what the key does.
	Text string
	// Default is the TOML literal the key takes when absent ("" if it has
	// none or the default is not a literal; then Note says it in words).
	Default string
	// Note is the default in words ("required", "off", "+∞ (no budget)").
	Note string
	// Range is the allowed values, e.g. "[1, 1000000]" or `"text" | "json"`.
	Range string
	// Example is a TOML literal of a typical value.
	Example string
	// Type overrides the type derived from the Go field, as a noun phrase
	// ("duration, a string such as \"5s\"", "array of multiaddr strings").
	Type string
	// Deprecated names the key that replaces this one.
	Deprecated string
}

// Docs maps key paths ("rounds.retry_limit", "policy", "member.addrs")
// to their documentation.
type Docs map[string]Doc

// File is one kind of configuration file: its schema and its docs.
type File struct {
	// Name is the file's kind ("coordinator", "worker", …) and Title the
	// section heading of the reference.
	Name, Title string
	// Intro is the Markdown paragraph under the heading.
	Intro string
	// Schema is the struct the file decodes into.
	Schema reflect.Type
	Docs   Docs
}

// Key is one key of a schema, found by walking its struct.
type Key struct {
	// Path is the dotted TOML path, e.g. "rounds.retry_limit".
	Path string
	// Kind is what the Go field holds, in words: string, integer, number,
	// boolean, array of strings, array of integers, table, array of tables.
	Kind string
	// Table is true for a table or an array of tables.
	Table bool
}

// Keys returns every key and table of schema t in declaration order.
func Keys(t reflect.Type) []Key {
	var out []Key
	walk(t, "", &out)
	return out
}

func walk(t reflect.Type, prefix string, out *[]Key) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			*out = append(*out, Key{Path: path, Kind: "table", Table: true})
			walk(ft, path, out)
		case ft.Kind() == reflect.Slice && deref(ft.Elem()).Kind() == reflect.Struct:
			*out = append(*out, Key{Path: path, Kind: "array of tables", Table: true})
			walk(deref(ft.Elem()), path, out)
		default:
			*out = append(*out, Key{Path: path, Kind: kindWords(ft)})
		}
	}
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func kindWords(t reflect.Type) string {
	t = deref(t)
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		switch kindWords(t.Elem()) {
		case "string":
			return "array of strings"
		case "integer":
			return "array of integers"
		case "number":
			return "array of numbers"
		case "boolean":
			return "array of booleans"
		}
		return "array"
	case reflect.Map, reflect.Struct:
		return "table"
	}
	return t.Kind().String()
}

// Undocumented returns the paths of f's schema that f.Docs does not
// describe (each with a non-empty Text), and the Docs entries that name
// no key of the schema, sorted.
func (f File) Undocumented() (missing, stale []string) {
	known := map[string]bool{}
	for _, k := range Keys(f.Schema) {
		known[k.Path] = true
		if d, ok := f.Docs[k.Path]; !ok || strings.TrimSpace(d.Text) == "" {
			missing = append(missing, k.Path)
		}
	}
	for p := range f.Docs {
		if !known[p] {
			stale = append(stale, p)
		}
	}
	sort.Strings(stale)
	return missing, stale
}

// typeWords is the type of key k as the reference and errors say it.
func (f File) typeWords(k Key) string {
	if d := f.Docs[k.Path]; d.Type != "" {
		return d.Type
	}
	return k.Kind
}

// article puts "a" or "an" before a noun phrase.
func article(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case 'a', 'e', 'i', 'o', 'u':
		return "an " + s
	}
	return "a " + s
}

// goTypeRE matches go-toml's type-mismatch message, whose struct field
// names Go types (anonymous struct types contain spaces).
var goTypeRE = regexp.MustCompile(`(?s)^cannot decode TOML (\w+(?: \w+)?) into struct field .* of type \S+$`)

var tomlKinds = map[string]string{
	"string": "a string", "integer": "an integer", "float": "a number", "bool": "a boolean", "boolean": "a boolean",
	"array": "an array", "table": "a table", "inline table": "a table", "datetime": "a date-time",
	"local datetime": "a date-time", "local date": "a date", "local time": "a time",
}

// Decode decodes the TOML document b into v (a pointer to f.Schema),
// refusing unknown keys. An error names src and the line, the key, what
// the key expects in words and what the file holds; an unknown key gets
// the nearest known one as a suggestion. Every unknown key is reported.
func (f File) Decode(src string, b []byte, v any) error {
	dec := toml.NewDecoder(strings.NewReader(string(b))).DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) {
		var lines []string
		for i := range sm.Errors {
			lines = append(lines, f.unknownKey(src, &sm.Errors[i]))
		}
		return errors.New(strings.Join(lines, "\n"))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if m := goTypeRE.FindStringSubmatch(msg); m != nil {
			got := tomlKinds[m[1]]
			if got == "" {
				got = "a TOML " + m[1]
			}
			want := "another type"
			if k, ok := f.lookup(key); ok {
				want = article(f.typeWords(k))
			}
			if ex := f.Docs[key].Example; ex != "" {
				want += ", e.g. " + ex
			}
			return fmt.Errorf("%s:%d: %s: expected %s, got %s", src, row, key, want, got)
		}
		if key != "" {
			return fmt.Errorf("%s:%d: %s: %s", src, row, key, msg)
		}
		return fmt.Errorf("%s:%d: %s\n%s", src, row, msg, de.String())
	}
	return fmt.Errorf("%s: %v", src, err)
}

func (f File) lookup(path string) (Key, bool) {
	for _, k := range Keys(f.Schema) {
		if k.Path == path {
			return k, true
		}
	}
	return Key{}, false
}

func (f File) unknownKey(src string, de *toml.DecodeError) string {
	row, _ := de.Position()
	key := de.Key()
	path := strings.Join(key, ".")
	where := ""
	if len(key) > 1 {
		table := strings.Join(key[:len(key)-1], ".")
		where = " in [" + table + "]"
		if k, ok := f.lookup(table); ok && k.Kind == "array of tables" {
			where = " in [[" + table + "]]"
		}
	}
	msg := fmt.Sprintf("%s:%d: unknown key %q%s", src, row, path, where)
	if s := f.Suggest(path); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return msg
}

// Suggest returns the known key nearest to path: the same name in another
// table, else the closest name (edit distance at most a third of its
// length, at least 2) in the same table, else in any table; "" if none is
// close.
func (f File) Suggest(path string) string {
	keys := Keys(f.Schema)
	parent, leaf := "", path
	if i := strings.LastIndex(path, "."); i >= 0 {
		parent, leaf = path[:i], path[i+1:]
	}
	leafOf := func(p string) (string, string) {
		if i := strings.LastIndex(p, "."); i >= 0 {
			return p[:i], p[i+1:]
		}
		return "", p
	}
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	for _, k := range keys {
		if _, l := leafOf(k.Path); norm(l) == norm(leaf) && k.Path != path {
			return k.Path
		}
	}
	// A known key in the same table that the unknown one begins (heartbeat
	// for heartbeat_timeout) or that begins it.
	if len(leaf) >= 4 {
		for _, k := range keys {
			if p, l := leafOf(k.Path); p == parent && !k.Table && (strings.HasPrefix(norm(l), norm(leaf)) || strings.HasPrefix(norm(leaf), norm(l))) {
				return k.Path
			}
		}
	}
	limit := max(2, len(leaf)/3)
	best, bestD, bestSame := "", limit+1, false
	for _, k := range keys {
		p, l := leafOf(k.Path)
		d := distance(norm(leaf), norm(l))
		same := p == parent
		if d < bestD || (d == bestD && same && !bestSame) {
			best, bestD, bestSame = k.Path, d, same
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			c := 1
			if ra[i-1] == rb[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

var dashedKeyRE = regexp.MustCompile(`^(\s*)([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+)(\s*=)`)

// RenameDashed rewrites, in a flat TOML document, each top-level key
// written with dashes (dp-clip) whose snake_case form (dp_clip) is a key of
// f, returning the new document (same lines, so positions stay right) and
// one deprecation warning per renamed key naming src and the line.
func (f File) RenameDashed(src string, b []byte) ([]byte, []string) {
	known := map[string]bool{}
	for _, k := range Keys(f.Schema) {
		known[k.Path] = true
	}
	lines := strings.Split(string(b), "\n")
	var warns []string
	inTable := false
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			inTable = true
		}
		if inTable {
			continue
		}
		m := dashedKeyRE.FindStringSubmatchIndex(line)
		if m == nil {
			continue
		}
		old := line[m[4]:m[5]]
		snake := strings.ReplaceAll(old, "-", "_")
		if !known[snake] {
			continue
		}
		lines[i] = line[:m[4]] + snake + line[m[5]:]
		warns = append(warns, fmt.Sprintf("%s:%d: key %q is deprecated; write %q", src, i+1, old, snake))
	}
	return []byte(strings.Join(lines, "\n")), warns
}

// Markdown renders the reference of files: per file, its introduction and
// one table per TOML table, with every key's type, default, range,
// example and meaning.
func Markdown(header string, files []File) string {
	var b strings.Builder
	b.WriteString(header)
	for _, f := range files {
		fmt.Fprintf(&b, "\n## %s\n\n", f.Title)
		if f.Intro != "" {
			b.WriteString(strings.TrimSpace(f.Intro) + "\n")
		}
		keys := Keys(f.Schema)
		// Group keys by their table, top level first, tables in order.
		var tables []string
		byTable := map[string][]Key{}
		isTable := map[string]Key{}
		for _, k := range keys {
			if k.Table {
				isTable[k.Path] = k
				tables = append(tables, k.Path)
				continue
			}
			p := ""
			if i := strings.LastIndex(k.Path, "."); i >= 0 {
				p = k.Path[:i]
			}
			byTable[p] = append(byTable[p], k)
		}
		for _, t := range append([]string{""}, tables...) {
			ks := byTable[t]
			if t != "" {
				tk := isTable[t]
				head := "[" + t + "]"
				if tk.Kind == "array of tables" {
					head = "[[" + t + "]]"
				}
				fmt.Fprintf(&b, "\n### `%s`\n\n", head)
				if d := f.Docs[t]; d.Text != "" {
					b.WriteString(cell(d.Text) + "\n")
				}
			}
			if len(ks) == 0 {
				continue
			}
			b.WriteString("\n| key | type | default | allowed | example | meaning |\n|---|---|---|---|---|---|\n")
			for _, k := range ks {
				d := f.Docs[k.Path]
				leaf := k.Path
				if t != "" {
					leaf = strings.TrimPrefix(k.Path, t+".")
				}
				def := d.Note
				if d.Default != "" {
					def = "`" + d.Default + "`"
					if d.Note != "" {
						def += " (" + d.Note + ")"
					}
				}
				ex := ""
				if d.Example != "" {
					ex = "`" + cell(d.Example) + "`"
				}
				text := d.Text
				if d.Deprecated != "" {
					text = "**Deprecated**: use `" + d.Deprecated + "`. " + text
				}
				fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", leaf, cell(f.typeWords(k)), cell(def), cell(d.Range), ex, cell(text))
			}
		}
	}
	return b.String()
}

// cell makes s fit one Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// Sorted returns the paths of f's keys (not tables), sorted.
func (f File) Sorted() []string {
	var out []string
	for _, k := range Keys(f.Schema) {
		if !k.Table {
			out = append(out, k.Path)
		}
	}
	slices.Sort(out)
	return out
}
