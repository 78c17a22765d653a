package tasks

import (
	"bytes"
	"errors"
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
	// JSON, and a missing value as nothing (AppendText reports it, so a
	// header can be left out). Used for header values.
	ModeText
	// ModeURL is ModeText with every byte outside A-Z a-z 0-9 - _ . ~
	// percent-encoded, so a value cannot change the URL's structure; a
	// value in the path must stay inside its segment (see AppendURL). Used
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
	refTaskMissing         // {{ .tasks.t.missing }}
)

type part struct {
	lit  []byte
	kind refKind
	path string // gjson path for refRequestPath and refTaskPath
	slot int    // header slot or task index
	expr string // the reference as written, for messages
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

// ReadsTasks reports whether the template references another task's
// result.
func (t *Template) ReadsTasks() bool {
	for _, p := range t.parts {
		if p.kind == refTaskBody || p.kind == refTaskPath || p.kind == refTaskStatus || p.kind == refTaskMissing {
			return true
		}
	}
	return false
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
		p.expr = expr
		if p.kind == refRequest || p.kind == refRequestPath {
			t.readsJSON = true
			scope.RequestRef()
		}
		t.parts = append(t.parts, p)
		rest = rest[i+2+end+2:]
	}
	return t, nil
}

const refHelp = "use .request, .request.<path>, .headers.<Name>, .tasks.<task>.body[.<path>], .tasks.<task>.status or .tasks.<task>.missing"

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
		case field == "missing" && path == "":
			p.kind = refTaskMissing
		default:
			return part{}, fmt.Errorf("template expression %q: a task reference ends in .body, .body.<path>, .status or .missing", expr)
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
		case refTaskMissing:
			dst = t.appendJSON(dst, x.Results[p.slot].Missing)
		}
	}
	return dst
}

// AppendText renders a ModeText template for x and appends the result to
// dst. ok is false when a value the template references is missing or
// null; what was appended is then incomplete.
func (t *Template) AppendText(dst []byte, x *Exchange) (out []byte, ok bool) {
	ok = true
	for i := range t.parts {
		p := &t.parts[i]
		if p.kind == refNone {
			dst = append(dst, p.lit...)
			continue
		}
		s, present := p.text(x)
		ok = ok && present
		if p.kind == refTaskStatus {
			dst = strconv.AppendInt(dst, int64(x.Results[p.slot].Status), 10)
			continue
		}
		dst = append(dst, s...)
	}
	return dst, ok
}

// AppendURL renders a ModeURL template (the path and query of an address)
// for x and appends the result to dst. Values are percent-encoded; a value
// in the path must also stay inside its segment: one holding '/', '?' or
// '#', or a percent-sequence of those or of '.', or one that makes its
// segment "." or "..", is refused. The error is a *RequestError when the
// value comes from the request.
func (t *Template) AppendURL(dst []byte, x *Exchange) ([]byte, error) {
	inPath := true
	seg := len(dst) // start of the current path segment
	var last *part  // the last value written in the current segment
	for i := range t.parts {
		p := &t.parts[i]
		if p.kind == refNone {
			lit := p.lit
			for inPath && len(lit) > 0 {
				k := bytes.IndexAny(lit, "/?#")
				if k < 0 {
					break
				}
				dst = append(dst, lit[:k]...)
				if last != nil && isDotSegment(dst[seg:]) {
					return dst, last.pathError("makes the path segment " + strconv.Quote(string(dst[seg:])))
				}
				last = nil
				dst = append(dst, lit[k])
				seg = len(dst)
				inPath = lit[k] == '/'
				lit = lit[k+1:]
			}
			dst = append(dst, lit...)
			continue
		}
		if p.kind == refTaskStatus {
			dst = strconv.AppendInt(dst, int64(x.Results[p.slot].Status), 10)
			continue
		}
		s, _ := p.text(x)
		if inPath {
			if c, ok := pathBreaker(s); ok {
				return dst, p.pathError("holds " + strconv.Quote(c) + ", which would change the URL path")
			}
			last = p
		}
		dst = appendURLEscaped(dst, s)
	}
	if last != nil && isDotSegment(dst[seg:]) {
		return dst, last.pathError("makes the path segment " + strconv.Quote(string(dst[seg:])))
	}
	return dst, nil
}

// text returns the plain-text value of reference p: a JSON string without
// its quotes, other JSON as written, a header as received. present is
// false when the value is missing or JSON null.
func (p *part) text(x *Exchange) (s string, present bool) {
	var r gjson.Result
	switch p.kind {
	case refHeader:
		return jsonutil.B2S(x.Headers[p.slot]), x.HeaderSet(p.slot)
	case refTaskStatus:
		return "", true
	case refRequest:
		r = gjson.ParseBytes(x.Body)
	case refRequestPath:
		r = gjson.Get(jsonutil.B2S(x.Body), p.path)
	case refTaskBody:
		r = gjson.ParseBytes(x.Results[p.slot].Body)
	case refTaskPath:
		r = gjson.Get(jsonutil.B2S(x.Results[p.slot].Body), p.path)
	case refTaskMissing:
		r = gjson.ParseBytes(x.Results[p.slot].Missing)
	}
	if r.Type == gjson.String {
		return r.Str, true
	}
	return r.Raw, r.Exists() && r.Type != gjson.Null
}

// fromRequest reports whether p reads the request (its body or headers).
func (p *part) fromRequest() bool {
	return p.kind == refRequest || p.kind == refRequestPath || p.kind == refHeader
}

func (p *part) pathError(what string) error {
	msg := "address: the value of {{ " + p.expr + " }} " + what
	if p.fromRequest() {
		return &RequestError{Msg: msg}
	}
	return errors.New(msg)
}

// pathBreaker returns the first '/', '?' or '#' in s, or a
// percent-sequence of one of those or of '.'.
func pathBreaker(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '/', '?', '#':
			return s[i : i+1], true
		case '%':
			if i+2 < len(s) {
				switch s[i+1 : i+3] {
				case "2F", "2f", "3F", "3f", "23", "2E", "2e":
					return s[i : i+3], true
				}
			}
		}
	}
	return "", false
}

// isDotSegment reports whether seg is "." or "..", dots possibly
// percent-encoded.
func isDotSegment(seg []byte) bool {
	n := 0
	for i := 0; i < len(seg); i++ {
		switch {
		case seg[i] == '.':
		case seg[i] == '%' && i+2 < len(seg) && seg[i+1] == '2' && (seg[i+2] == 'E' || seg[i+2] == 'e'):
			i += 2
		default:
			return false
		}
		n++
	}
	return n == 1 || n == 2
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
