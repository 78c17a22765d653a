package yamlstrict

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func mustParse(t *testing.T, src string) *yaml.Node {
	t.Helper()
	root, err := Parse("f.yaml", []byte(src), "a test file")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

type limits struct {
	Max  int     `yaml:"max"`
	Rate float64 `yaml:"rate"`
}

type doc struct {
	At      Pos               `yaml:",pos"`
	Name    String            `yaml:"name"`
	Tags    map[string]string `yaml:"tags"`
	Items   []String          `yaml:"items"`
	ItemsAt Pos               `yaml:"items,pos"`
	Limits  *limits           `yaml:"limits"`
	On      bool              `yaml:"on"`
	Level   level             `yaml:"level"`
	Raw     yaml.Node         `yaml:"raw"`
}

// level decodes itself and fails on anything but low and high.
type level int

func (l *level) UnmarshalNode(file string, n *yaml.Node) error {
	switch n.Value {
	case "low":
		*l = 1
	case "high":
		*l = 2
	default:
		return Errorf(PosOf(file, n), "unknown level %s", Describe(n))
	}
	return nil
}

func TestDecode(t *testing.T) {
	src := "name: a\ntags: {x: '1'}\nitems:\n  - p\n  - q\nlimits: {max: 3, rate: 0.5}\non: true\nlevel: high\nraw: [1, 2]\n"
	var d doc
	if err := Decode("f.yaml", mustParse(t, src), &d); err != nil {
		t.Fatal(err)
	}
	if d.Name.Value != "a" || d.Name.Pos.String() != "f.yaml:1:7" || d.Tags["x"] != "1" || len(d.Items) != 2 ||
		d.Items[1].Value != "q" || d.Items[1].Pos.String() != "f.yaml:5:5" || d.Limits.Max != 3 || d.Limits.Rate != 0.5 ||
		!d.On || d.Level != 2 || d.Raw.Kind != yaml.SequenceNode {
		t.Fatalf("decoded %+v", d)
	}
	if d.At.String() != "f.yaml:1:1" || d.ItemsAt.String() != "f.yaml:4:3" {
		t.Fatalf("positions: mapping %s, items %s", d.At, d.ItemsAt)
	}
}

func TestDecodeErrors(t *testing.T) {
	f := func(src, want string, paths ...string) {
		t.Helper()
		var d doc
		err := Decode("f.yaml", mustParse(t, src), &d)
		if err == nil || err.Error() != want {
			t.Fatalf("%q:\n got %v\nwant %s", src, err, want)
		}
		var es Errors
		if !errors.As(err, &es) || len(es) != len(paths) {
			t.Fatalf("%q: %d errors, want %d", src, len(es), len(paths))
		}
		for i, e := range es {
			if e.Path != paths[i] {
				t.Errorf("%q: error %d has path %q, want %q", src, i, e.Path, paths[i])
			}
		}
	}
	f("nmae: a\n", `f.yaml:1:1: unknown key "nmae" (did you mean "name"?)`, "nmae")
	f("limits: {max: 1, color: red}\n", `f.yaml:1:18: unknown key "color" for "limits" (allowed: max, rate)`, "limits.color")
	f("name: a\nname: b\n", `f.yaml:2:1: duplicate key "name"`, "name")
	f("tags: {x: '1', x: '2'}\n", `f.yaml:1:16: duplicate key "x" for "tags"`, "tags.x")
	f("items: p\n", `f.yaml:1:8: expected a list for "items", got "p"`, "items")
	f("items: [[p]]\n", `f.yaml:1:9: expected a string for "items[0]", got a list`, "items[0]")
	f("limits: {max: many, rate: .nan}\non: yes please\n",
		"f.yaml:1:15: expected an integer for \"limits.max\", got \"many\"\n"+
			"f.yaml:1:27: expected a finite number for \"limits.rate\", got .nan\n"+
			"f.yaml:2:5: expected true or false for \"on\", got \"yes please\"",
		"limits.max", "limits.rate", "on")
	f("level: medium\n", `f.yaml:1:8: unknown level "medium"`, "level")
	f("<<: [1]\n", `f.yaml:1:5: merge key << needs a mapping, got 1`, "")
}

func TestDecodeMerge(t *testing.T) {
	var d struct {
		Base limits `yaml:"base"`
		Own  limits `yaml:"own"`
	}
	if err := Decode("f.yaml", mustParse(t, "base: &b {max: 1, rate: 2}\nown: {<<: *b, max: 5}\n"), &d); err != nil {
		t.Fatal(err)
	}
	if d.Own.Max != 5 || d.Own.Rate != 2 {
		t.Fatalf("merged %+v", d.Own)
	}
}

func TestDecodeInline(t *testing.T) {
	type shared struct {
		Retries int    `yaml:"retries"`
		Timeout string `yaml:"timeout"`
	}
	type inputs struct {
		shared  `yaml:",inline"`
		Address string `yaml:"address"`
	}
	var in inputs
	if err := Decode("f.yaml", mustParse(t, "address: http://x/\nretries: 2\ntimeout: 5ms\n"), &in); err != nil {
		t.Fatal(err)
	}
	if in.Address != "http://x/" || in.Retries != 2 || in.Timeout != "5ms" {
		t.Fatalf("decoded %+v", in)
	}
	err := Decode("f.yaml", mustParse(t, "retires: 2\n"), &in)
	if err == nil || err.Error() != `f.yaml:1:1: unknown key "retires" (did you mean "retries"?)` {
		t.Fatalf("error %v", err)
	}
}

// bomb returns the classic exponential expansion: level 0 is first, and
// each of the next levels is written by level from the anchor of the level
// below it ten times (refs), so 10^levels values fit in a few hundred bytes.
func bomb(levels int, first string, level func(refs string) string) string {
	var b strings.Builder
	b.WriteString("a0: &a0 " + first + "\n")
	for i := 1; i < levels; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", ")
		name := fmt.Sprintf("a%d", i)
		b.WriteString(name + ": &" + name + " " + level(refs) + "\n")
	}
	return b.String()
}

func TestAliasBudget(t *testing.T) {
	root := mustParse(t, bomb(9, "[x, x, x, x, x, x, x, x, x, x]", func(refs string) string { return "[" + refs + "]" }))
	var lists map[string]yaml.Node
	if err := Decode("f.yaml", root, &lists); err != nil {
		t.Fatalf("raw nodes are not expanded: %v", err)
	}
	var deep map[string][][][][][][][][][]string
	err := Decode("f.yaml", root, &deep)
	if err == nil || !strings.Contains(err.Error(), "document too large once aliases are expanded") {
		t.Fatalf("error %v", err)
	}
	if _, err := NodeToJSON("f.yaml", root); err == nil || !strings.Contains(err.Error(), "once aliases are expanded") {
		t.Fatalf("NodeToJSON error %v", err)
	}
}

// TestMergeBudget nests merge keys: each level merges the one below ten
// times, which must not take 10^levels steps.
// TestMergeBudget nests merge keys: each level merges the one below ten
// times, which must not take 10^levels steps.
func TestMergeBudget(t *testing.T) {
	src := bomb(10, "{max: 1}", func(refs string) string { return "{<<: [" + refs + "]}" })
	var v map[string]limits
	err := Decode("f.yaml", mustParse(t, src), &v)
	if err == nil || !strings.Contains(err.Error(), "document too large once aliases are expanded") {
		t.Fatalf("error %v", err)
	}
}

func TestParse(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		_, err := Parse("f.yaml", []byte(src), "a test file")
		if err == nil || err.Error() != want {
			t.Fatalf("%q:\n got %v\nwant %s", src, err, want)
		}
		var e *Error
		if !errors.As(err, &e) || e.Pos.File != "f.yaml" || e.Pos.Line == 0 {
			t.Fatalf("%q: no positioned *Error in %#v", src, err)
		}
	}
	f("", "f.yaml:1:1: the file is empty; want a test file")
	f("a: 1\n  b: 2\n", "f.yaml:2:1: invalid YAML: mapping values are not allowed in this context")
	f("a: 1\n---\nb: 2\n", "f.yaml:2:1: a test file holds one YAML document; found another")
	f("- a\n", "f.yaml:1:1: a test file must be a mapping, got a list")
	f("a: 1\n--- [\n", "f.yaml:2:1: invalid YAML: did not find expected node content")
}

func TestNodeToJSON(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		root := mustParse(t, "v: "+src+"\n")
		got, err := NodeToJSON("f.yaml", root.Content[1])
		if err != nil || string(got) != want {
			t.Fatalf("%s: got %s, %v; want %s", src, got, err, want)
		}
	}
	f("{b: 1, a: [true, null, 1.5, x, 0x10]}", `{"b":1,"a":[true,null,1.5,"x",16]}`)
	f("'1'", `"1"`)
	f(`"tab\there"`, `"tab\there"`)
}

func TestPrefixKeepsPositionAndPath(t *testing.T) {
	err := Prefix(Errors{{Pos: Pos{File: "f", Line: 2, Col: 3}, Path: "a.b", Msg: "bad"}}, "task x: ")
	var e *Error
	if !errors.As(err, &e) || e.Error() != "f:2:3: task x: bad" || e.Path != "a.b" {
		t.Fatalf("prefixed %#v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		unit time.Duration
		want time.Duration
		err  string
	}{
		{"140", time.Millisecond, 140 * time.Millisecond, ""},
		{" 1.5 ", time.Second, 1500 * time.Millisecond, ""},
		{"150ms", time.Millisecond, 150 * time.Millisecond, ""},
		{"90m", time.Second, 90 * time.Minute, ""},
		{"", time.Millisecond, 0, "empty duration"},
		{"-1", time.Millisecond, 0, "duration -1ms is out of range"},
		{"100000000", time.Millisecond, 0, "duration 100000000ms is out of range"},
		{"-2s", time.Second, 0, `duration "-2s" is negative`},
		{"soon", time.Millisecond, 0, `invalid duration "soon": use milliseconds (140) or a unit (150ms, 2s)`},
		{"soon", time.Second, 0, `invalid duration "soon": use a number of seconds or a unit (90m, 2h)`},
	} {
		got, err := ParseDuration(c.in, c.unit, 24*time.Hour)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("ParseDuration(%q, %v): %v, want error %q", c.in, c.unit, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseDuration(%q, %v) = %v, %v; want %v", c.in, c.unit, got, err, c.want)
		}
	}
}
