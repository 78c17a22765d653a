package config

import (
	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/internal/yamlstrict"
)

// Route files are decoded by yamlstrict; these names let the packages that
// build on routes speak of positions and errors without importing it.
type (
	// Pos is a position in a route file.
	Pos = yamlstrict.Pos
	// Error is a problem in a route file at a known position.
	Error = yamlstrict.Error
	// Errors is a list of problems, sorted by position when formatted.
	Errors = yamlstrict.Errors
	// Unmarshaler is implemented by types that decode themselves from a
	// YAML node.
	Unmarshaler = yamlstrict.Unmarshaler
	// String is a YAML string that remembers where it was written.
	String = yamlstrict.String
)

// PosOf returns the position of node n in file.
func PosOf(file string, n *yaml.Node) Pos { return yamlstrict.PosOf(file, n) }

// Errorf returns an *Error at pos.
func Errorf(pos Pos, format string, args ...any) *Error {
	return yamlstrict.Errorf(pos, format, args...)
}

// Prefix returns err with prefix added to the message of every *Error in
// it; other errors are returned unchanged.
func Prefix(err error, prefix string) error { return yamlstrict.Prefix(err, prefix) }

// Decode decodes the YAML node n of file into v strictly, as
// yamlstrict.Decode does: task kinds decode their inputs with it.
func Decode(file string, n *yaml.Node, v any) error { return yamlstrict.Decode(file, n, v) }

// Suggest returns a hint naming the closest of known to got.
func Suggest(got string, known []string) string { return yamlstrict.Suggest(got, known) }

// NodeToJSON converts a YAML node to compact JSON, keeping mapping order.
func NodeToJSON(file string, n *yaml.Node) ([]byte, error) { return yamlstrict.NodeToJSON(file, n) }
