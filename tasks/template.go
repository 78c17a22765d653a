package tasks

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/internal/jsonutil"
)

// Mode says how a template inserts values.
type Mode uint8

const (
	// ModeJSON inserts every value as JSON: request and task values as their
	// raw JSON (a string keeps its quotes, an object stays an object),
	// header values as quoted JSON strings, and a missing value as null.
	// Used for request bodies.
	ModeJSON Mode = iota
	// ModeText inserts values as plain text: a JSON string without its
	// quotes, a number or boolean as written, an object or array as its
	// JSON, and a missing value as nothing. Used for header values.
	ModeText
	// ModeURL is ModeText with every byte outside A-Z a-z 0-9 - _ . ~
	// percent-encoded, so a value cannot change the URL's structure. Used
	// for the path and query of addresses.
	ModeURL
)

type refKind uint8

const (
	refNone        refKind = iota
	refRequest             // {{ .request }}
	refRequestPath         // {{ .request.a.b }}
	refHeader              // {{ .headers.X-Name }}
	refTaskBody            // {{ .tasks.t.body }}
	refTaskPath            // {{ .tasks.t.body.a.b }}
	refTaskStatus          // {{ .tasks.t.status }}
)

type part struct {
	lit  []byte
	kind refKind
	path string // gjson path for refRequestPath and refTaskPath
	slot int    // header slot or task index
}

// Template is a compiled input string. It holds literal text and references
// to the request, its headers and other tasks' results, resolved when the
// route loads; rendering does no parsing beyond gjson path lookups.
type Template struct {
	src   string
	mode  Mode
	parts []part
	// readsJSON is set when rendering looks into the request body as JSON.
	readsJSON bool
}

// Source returns the template as written.
func (t *Template) Source() string { return t.src }

// Static reports whether the template has no references.
func (t *Template) Static() bool {
	for _, p := range t.parts {
		if p.kind != refNone {
			return false
		}
	}
	return true
}

// ReadsRequestJSON reports whether rendering needs the request body to be
// valid JSON.
func (t *Template) ReadsRequestJSON() bool { return t.readsJSON }

// Scope resolves the names a template refers to while a route compiles.
type Scope interface {
	// TaskRef resolves a reference to another task, records the
	// dependency and returns the task's index.
	TaskRef(name string) (int, error)
	// HeaderRef returns the slot of a request header the route copies
	// for its tasks.
	HeaderRef(name string) int
	// RequestRef records that a template reads the request body as JSON.
	RequestRef()
}

// CompileTemplate parses src. References to tasks and headers are resolved
// through scope.
func CompileTemplate(src string, mode Mode, scope Scope) (*Template, error) {
	t := &Template{src: src, mode: mode}
	rest := src
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{lit: []byte(rest)})
			}
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: []byte(rest[:i])})
		}
		end := strings.Index(rest[i+2:], "}}")
		if end < 0 {
			return nil, fmt.Errorf("unclosed {{ at offset %d", len(src)-len(rest)+i)
		}
		expr := strings.TrimSpace(rest[i+2 : i+2+end])
		p, err := compileRef(expr, scope)
		if err != nil {
			return nil, err
		}
		if p.kind == refRequest || p.kind == refRequestPath {
			t.readsJSON = true
			scope.RequestRef()
		}
		t.parts = append(t.parts, p)
		rest = rest[i+2+end+2:]
	}
	return t, nil
}

const refHelp = "use .request, .request.<path>, .headers.<Name>, .tasks.<task>.body[.<path>] or .tasks.<task>.status"

func compileRef(expr string, scope Scope) (part, error) {
	if expr == "" {
		return part{}, fmt.Errorf("empty {{ }}: %s", refHelp)
	}
	if !strings.HasPrefix(expr, ".") || strings.ContainsAny(expr, " \t|()") {
		return part{}, fmt.Errorf("unsupported template expression %q: %s", expr, refHelp)
	}
	root, rest, _ := strings.Cut(expr[1:], ".")
	switch root {
	case "request":
		if rest == "" {
			if strings.HasSuffix(expr, ".") {
				return part{}, fmt.Errorf("template expression %q ends with a dot", expr)
			}
			return part{kind: refRequest}, nil
		}
		if err := checkPath(rest); err != nil {
			return part{}, fmt.Errorf("template expression %q: %w", expr, err)
		}
		return part{kind: refRequestPath, path: rest}, nil
	case "headers":
		if rest == "" || strings.ContainsAny(rest, ".:") {
			return part{}, fmt.Errorf("template expression %q: name one header, as .headers.X-Name", expr)
		}
		return part{kind: refHeader, slot: scope.HeaderRef(rest)}, nil
	case "tasks":
		name, field, _ := strings.Cut(rest, ".")
		if name == "" {
			return part{}, fmt.Errorf("template expression %q: name a task, as .tasks.<task>.body", expr)
		}
		field, path, _ := strings.Cut(field, ".")
		var p part
		switch {
		case field == "body" && path == "":
			p.kind = refTaskBody
		case field == "body":
			if err := checkPath(path); err != nil {
				return part{}, fmt.Errorf("template expression %q: %w", expr, err)
			}
			p.kind, p.path = refTaskPath, path
		case field == "status" && path == "":
			p.kind = refTaskStatus
		default:
			return part{}, fmt.Errorf("template expression %q: a task reference ends in .body, .body.<path> or .status", expr)
		}
		idx, err := scope.TaskRef(name)
		if err != nil {
			return part{}, err
		}
		p.slot = idx
		return p, nil
	}
	return part{}, fmt.Errorf("unknown template value %q: %s", expr, refHelp)
}

func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
		return fmt.Errorf("invalid path %q", p)
	}
	return nil
}

// Append renders the template for x and appends the result to dst.
func (t *Template) Append(dst []byte, x *Exchange) []byte {
	for i := range t.parts {
		p := &t.parts[i]
		switch p.kind {
		case refNone:
			dst = append(dst, p.lit...)
		case refRequest:
			dst = t.appendJSON(dst, x.Body)
		case refRequestPath:
			dst = t.appendResult(dst, gjson.Get(jsonutil.B2S(x.Body), p.path))
		case refHeader:
			dst = t.appendString(dst, x.Headers[p.slot], x.HeaderSet(p.slot))
		case refTaskBody:
			dst = t.appendJSON(dst, x.Results[p.slot].Body)
		case refTaskPath:
			dst = t.appendResult(dst, gjson.Get(jsonutil.B2S(x.Results[p.slot].Body), p.path))
		case refTaskStatus:
			dst = strconv.AppendInt(dst, int64(x.Results[p.slot].Status), 10)
		}
	}
	return dst
}

func (t *Template) appendJSON(dst, raw []byte) []byte {
	switch t.mode {
	case ModeJSON:
		if len(raw) == 0 {
			return append(dst, "null"...)
		}
		return append(dst, raw...)
	default:
		return t.appendResult(dst, gjson.ParseBytes(raw))
	}
}

func (t *Template) appendResult(dst []byte, r gjson.Result) []byte {
	switch t.mode {
	case ModeJSON:
		if !r.Exists() {
			return append(dst, "null"...)
		}
		return append(dst, r.Raw...)
	case ModeText:
		if r.Type == gjson.String {
			return append(dst, r.Str...)
		}
		return append(dst, r.Raw...)
	default:
		if r.Type == gjson.String {
			return appendURLEscaped(dst, r.Str)
		}
		return appendURLEscaped(dst, r.Raw)
	}
}

func (t *Template) appendString(dst, v []byte, set bool) []byte {
	switch t.mode {
	case ModeJSON:
		if !set {
			return append(dst, "null"...)
		}
		return jsonutil.AppendBytes(dst, v)
	case ModeText:
		return append(dst, v...)
	default:
		return appendURLEscaped(dst, jsonutil.B2S(v))
	}
}

func appendURLEscaped(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&0xf])
	}
	return dst
}
