package config

import (
	"encoding/json"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/internal/yamlstrict"
)

// Duration is a span of time written either as a bare integer of
// milliseconds (140) or as a Go duration string ("150ms", "2s").
type Duration struct {
	D   time.Duration
	Pos Pos
	// Set reports whether the value was present in the file.
	Set bool
}

// maxDurationMillis is the longest duration written as a number of
// milliseconds: a day.
const maxDurationMillis = 24 * 60 * 60 * 1000

// JSONSchema returns the JSON Schema of a duration: milliseconds as a
// number (0 or more; a field's exclusiveMinimum tag makes it positive) or a
// duration string.
func (Duration) JSONSchema() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "number", "minimum": 0, "maximum": maxDurationMillis},
		map[string]any{"$ref": "#/$defs/durationString"},
	}}
}

// JSONSchemaDefs returns the definitions JSONSchema refers to: the
// duration strings ParseDuration accepts.
func (Duration) JSONSchemaDefs() map[string]any {
	return map[string]any{"durationString": map[string]any{
		"description": "A duration: a number of milliseconds written as a string (\"140\") or a Go duration (\"150ms\", \"2s\", \"1m30s\"; units ns, us, ms, s, m, h).",
		"type":        "string",
		"pattern":     `^\s*\+?(([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)\s*$`,
	}}
}

// UnmarshalNode implements Unmarshaler.
func (d *Duration) UnmarshalNode(file string, n *yaml.Node) error {
	d.Pos = PosOf(file, n)
	if n.Kind != yaml.ScalarNode {
		return Errorf(d.Pos, "expected a duration (milliseconds or a string such as \"150ms\"), got %s", yamlstrict.Describe(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return Errorf(d.Pos, "%v", err)
	}
	d.D, d.Set = v, true
	return nil
}

// ParseDuration parses s as a bare number of milliseconds or a Go duration
// string. Negative durations are rejected.
func ParseDuration(s string) (time.Duration, error) {
	return yamlstrict.ParseDuration(s, time.Millisecond, maxDurationMillis*time.Millisecond)
}

// WriteMode says how a task's output is written into the response document.
type WriteMode uint8

// Write modes.
const (
	// WriteOverwrite replaces any value already at the path (the default).
	WriteOverwrite WriteMode = iota
	// WriteIgnoreIfExists writes only when nothing is at the path yet: the
	// first task to finish wins.
	WriteIgnoreIfExists
	// WriteAppend appends the value as one element of an array at the path.
	WriteAppend
	// WriteMerge merges the keys of an object value into the object at the
	// path; later writers win on equal keys.
	WriteMerge
)

var writeModeNames = []string{"overwrite", "ignoreIfExists", "append", "merge"}

// String returns the mode's name as written in route files.
func (m WriteMode) String() string {
	if int(m) < len(writeModeNames) {
		return writeModeNames[m]
	}
	return "unknown"
}

// JSONSchema returns the JSON Schema of a write mode: its name.
func (WriteMode) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "enum": writeModeNames}
}

// UnmarshalNode implements Unmarshaler.
func (m *WriteMode) UnmarshalNode(file string, n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		for i, name := range writeModeNames {
			if n.Value == name {
				*m = WriteMode(i)
				return nil
			}
		}
	}
	return Errorf(PosOf(file, n), "unknown write mode %s%s", yamlstrict.Describe(n), Suggest(n.Value, writeModeNames))
}

// OnError says what happens when a task fails: fail the route (the default)
// or use a default value as the task's result.
type OnError struct {
	// Default is the JSON used as the task's result body when it fails,
	// when HasDefault is set.
	Default    json.RawMessage
	HasDefault bool
	Pos        Pos
	// DefaultPos is where the default value is written.
	DefaultPos Pos
}

// JSONSchema returns the JSON Schema of on_error: `fail` or
// `{default: <value>}`.
func (OnError) JSONSchema() map[string]any {
	return map[string]any{"oneOf": []any{
		map[string]any{"const": "fail"},
		map[string]any{
			"type":                 "object",
			"additionalProperties": false,
			"required":             []any{"default"},
			"properties": map[string]any{"default": map[string]any{
				"description": "Any JSON value, used as the task's result body when the task fails.",
			}},
		},
	}}
}

// UnmarshalNode implements Unmarshaler: `fail` or `{default: <value>}`.
func (o *OnError) UnmarshalNode(file string, n *yaml.Node) error {
	o.Pos = PosOf(file, n)
	if n.Kind == yaml.ScalarNode && n.Value == "fail" {
		return nil
	}
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "default" {
		b, err := NodeToJSON(file, n.Content[1])
		if err != nil {
			return err
		}
		o.Default, o.HasDefault = b, true
		o.DefaultPos = PosOf(file, n.Content[1])
		return nil
	}
	return Errorf(o.Pos, "on_error must be `fail` or `{default: <JSON value>}`, got %s", yamlstrict.Describe(n))
}
