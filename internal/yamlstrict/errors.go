package yamlstrict

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Pos is a position in a YAML file. Line and Col start at 1; zero means
// unknown.
type Pos struct {
	File string
	Line int
	Col  int
}

// String formats p as file:line:col.
func (p Pos) String() string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// PosOf returns the position of node n in file.
func PosOf(file string, n *yaml.Node) Pos {
	if n == nil {
		return Pos{File: file}
	}
	return Pos{File: file, Line: n.Line, Col: n.Column}
}

// Error is a problem in a YAML file at a known position.
type Error struct {
	Pos Pos
	// Path is the field path of the offending value, e.g.
	// "inputs.cases[0].when", when the decoder knows it. The message
	// names it where it helps the reader.
	Path string
	Msg  string
}

// Error formats e as file:line:col: message.
func (e *Error) Error() string {
	return e.Pos.String() + ": " + e.Msg
}

// Errorf returns an *Error at pos.
func Errorf(pos Pos, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// Errors is a list of problems, sorted by position when formatted.
type Errors []*Error

// Error joins all problems, one per line.
func (es Errors) Error() string {
	var sb strings.Builder
	for i, e := range es.Sorted() {
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(e.Error())
	}
	return sb.String()
}

// Unwrap returns the problems, so that errors.As finds an *Error in es.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Sorted returns the problems ordered by file, line and column.
func (es Errors) Sorted() Errors {
	out := append(Errors(nil), es...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return out
}

// Add appends err to es. A nil err is ignored; an Errors is flattened; any
// other error is kept at pos.
func (es *Errors) Add(pos Pos, err error) {
	if err == nil {
		return
	}
	var list Errors
	if errors.As(err, &list) {
		*es = append(*es, list...)
		return
	}
	var e *Error
	if errors.As(err, &e) {
		*es = append(*es, e)
		return
	}
	*es = append(*es, &Error{Pos: pos, Msg: err.Error()})
}

// Err returns es as an error, or nil when it is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Prefix returns err with prefix added to the message of every *Error in
// it; other errors are returned unchanged.
func Prefix(err error, prefix string) error {
	var list Errors
	if errors.As(err, &list) {
		out := make(Errors, len(list))
		for i, e := range list {
			out[i] = &Error{Pos: e.Pos, Path: e.Path, Msg: prefix + e.Msg}
		}
		return out
	}
	var e *Error
	if errors.As(err, &e) {
		return &Error{Pos: e.Pos, Path: e.Path, Msg: prefix + e.Msg}
	}
	return err
}
