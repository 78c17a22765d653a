// Package yamlstrict owns the strict decoding of the project's YAML files
// (route files, feature-view files, training job and study specs): one
// document per file, typed decoding into Go structs that rejects unknown
// and duplicate keys, a budget on alias expansion, and errors that carry
// file:line:col and the field path, all collected.
package yamlstrict

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse reads the one YAML document of data, from the file named file, and
// returns its root, which must be a mapping. what names the document in
// messages, with its article ("a route file"). Problems are returned as
// Errors: an empty file, invalid YAML (at its line), a second document,
// or a root that is not a mapping.
func Parse(file string, data []byte, what string) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{Errorf(Pos{File: file, Line: 1, Col: 1}, "the file is empty; want %s", what)}
		}
		return nil, Errors{syntaxError(file, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{Errorf(PosOf(file, &extra), "%s holds one YAML document; found another", what)}
	} else if !errors.Is(err, io.EOF) {
		return nil, Errors{syntaxError(file, err)}
	}
	root := Resolve(&doc)
	if root.Kind != yaml.MappingNode {
		return nil, Errors{Errorf(PosOf(file, root), "%s must be a mapping, got %s", what, Describe(root))}
	}
	return root, nil
}

var yamlLineRe = regexp.MustCompile(`line (\d+)`)

// syntaxError positions a parse error of the YAML library at its line.
func syntaxError(file string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			line = n
		}
		msg = strings.TrimPrefix(msg, m[0]+": ")
	}
	return Errorf(Pos{File: file, Line: line, Col: 1}, "invalid YAML: %s", msg)
}
