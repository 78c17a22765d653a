package config

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestAliasBomb feeds the classic exponential alias expansion: the loader
// must stop with an error instead of walking billions of values.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: bomb\nendpoint: /bomb\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("x" + string(rune('0'+i)) + ": &x" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*x" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	b.WriteString("tasks:\n  m:\n    type: http\n    inputs: {address: 'http://x/'}\n    on_error: {default: *x9}\n")
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "once aliases are expanded") {
		t.Fatalf("error %v", err)
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
	root := mustNode(t, "address: http://x/\nretries: 2\ntimeout: 5ms\n")
	if err := Decode("f.yaml", root, &in); err != nil {
		t.Fatal(err)
	}
	if in.Address != "http://x/" || in.Retries != 2 || in.Timeout != "5ms" {
		t.Fatalf("decoded %+v", in)
	}
	err := Decode("f.yaml", mustNode(t, "retires: 2\n"), &in)
	if err == nil || err.Error() != `f.yaml:1:1: unknown key "retires" (did you mean "retries"?)` {
		t.Fatalf("error %v", err)
	}
}

func mustNode(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}
