package schemagen

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/config"
)

// undocumented has a key without a doc comment.
type undocumented struct {
	// A is documented.
	A string `yaml:"a"`
	B string `yaml:"b"`
}

// badKeyword has a tag keyword the generator does not know.
type badKeyword struct {
	// A is documented.
	A string `yaml:"a" jsonschema:"maxLenght=3"`
}

// badNumber has a bound that is not a number.
type badNumber struct {
	// A is documented.
	A int `yaml:"a" jsonschema:"minimum=one"`
}

// sample shows what the tags and doc comments turn into: MaxWait is read
// as max_wait.
//
// This paragraph is for Go readers only.
type sample struct {
	// Mode is the mode: a, or b,c (a comma in a tag value is escaped).
	Mode config.String `yaml:"mode" jsonschema:"required,enum=a,enum=b\\,c,default=a"`
	// MaxWait is how long to wait; not with Mode c.
	MaxWait config.Duration `yaml:"max_wait" jsonschema:"exclusiveMinimum=0"`
	// Count counts, 0 to 255.
	Count uint8 `yaml:"count"`
	// On turns it on.
	On bool `yaml:"on"`
	// Maybe is unset when left out.
	Maybe *bool `yaml:"maybe"`
	// Tags are name to value.
	Tags map[string]config.String `yaml:"tags" jsonschema:"keys.pattern=^[a-z]+$"`
	// List holds numbers.
	List   []int `yaml:"list" jsonschema:"uniqueItems,items.minimum=1"`
	hidden int
	// Skipped is not a key.
	Skipped string `yaml:"-"`
}

func generate(t *testing.T, typ reflect.Type) (string, error) {
	t.Helper()
	d, err := newDocs()
	if err != nil {
		t.Fatal(err)
	}
	g := &gen{docs: d, defs: &object{}, defTypes: map[string]reflect.Type{}}
	s, err := g.structSchema(typ)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	writeJSON(&b, obj("root", s, "$defs", g.defs), "")
	return b.String(), nil
}

func TestGenerateErrors(t *testing.T) {
	f := func(typ reflect.Type, want string) {
		t.Helper()
		_, err := generate(t, typ)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", typ, err, want)
		}
	}
	f(reflect.TypeFor[undocumented](), `schemagen.undocumented.B (key "b") has no doc comment`)
	f(reflect.TypeFor[badKeyword](), `unknown jsonschema keyword "maxLenght"`)
	f(reflect.TypeFor[badNumber](), `minimum=one: not a number`)
	f(reflect.TypeFor[struct{ A int }](), `has no name`)
}

func TestGenerateSample(t *testing.T) {
	got, err := generate(t, reflect.TypeFor[sample]())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"description": "sample shows what the tags and doc comments turn into: max_wait is read as max_wait."`,
		`"required": [
      "mode"
    ]`,
		`"mode": {
        "description": "The mode: a, or b,c (a comma in a tag value is escaped).",
        "type": "string",
        "enum": [
          "a",
          "b,c"
        ],
        "default": "a"
      }`,
		`"max_wait": {
        "description": "How long to wait; not with Mode c.",
        "anyOf": [
          {
            "type": "number",
            "maximum": 86400000,
            "exclusiveMinimum": 0
          },`,
		`"count": {
        "description": "count counts, 0 to 255.",
        "type": "integer",
        "minimum": 0,
        "maximum": 255
      }`,
		`"on": {
        "description": "on turns it on.",
        "type": "boolean",
        "default": false
      }`,
		`"maybe": {
        "description": "Unset when left out.",
        "type": "boolean"
      }`,
		`"tags": {
        "description": "Name to value.",
        "type": "object",
        "propertyNames": {
          "pattern": "^[a-z]+$"
        },
        "additionalProperties": {
          "type": "string"
        }
      }`,
		`"list": {
        "description": "list holds numbers.",
        "type": "array",
        "items": {
          "type": "integer",
          "minimum": 1
        },
        "uniqueItems": true
      }`,
		`"durationString": {`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the schema lacks\n%s\nin\n%s", want, got)
		}
	}
	for _, bad := range []string{"hidden", "Skipped", "Go readers"} {
		if strings.Contains(got, bad) {
			t.Errorf("the schema holds %q:\n%s", bad, got)
		}
	}
}

func TestDefName(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := lowerFirst(in); got != want {
			t.Errorf("lowerFirst(%q) = %q, want %q", in, got, want)
		}
	}
	f("HTTPInputs", "httpInputs")
	f("JWTAuth", "jwtAuth")
	f("Task", "task")
	f("TensorInput", "tensorInput")
	f("ABC", "abc")
	f("sample", "sample")
}
