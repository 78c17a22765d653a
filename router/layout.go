package router

import (
	"strings"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/jsonutil"
)

type target uint8

const (
	targetBody target = iota
	targetHeader
	targetStatus
)

// output is where one task's result goes.
type output struct {
	task   int
	target target
	node   int    // body node, for targetBody
	header string // header name, for targetHeader
	from   string // gjson path into the result, or ""
	mode   config.WriteMode
}

// bodyNode is one object field of the response body; node 0 is the body.
type bodyNode struct {
	key      []byte // `"name":`, empty for the body itself
	name     string
	children []int
}

// layout is the compiled shape of a route's response document.
type layout struct {
	outputs []output
	byTask  map[int]int
	nodes   []bodyNode
}

func newLayout(r *config.Route) (layout, error) {
	l := layout{byTask: map[int]int{}, nodes: []bodyNode{{}}}
	var errs config.Errors
	for i, t := range r.Tasks {
		if t.Output == nil {
			continue
		}
		o := output{task: i, from: t.Output.From.Value, mode: t.Output.Write}
		path := t.Output.Path.Value
		switch {
		case path == "response.status":
			o.target = targetStatus
		case strings.HasPrefix(path, "response.headers."):
			o.target = targetHeader
			o.header = strings.TrimPrefix(path, "response.headers.")
		default:
			o.target = targetBody
			o.node = l.node(strings.TrimPrefix(strings.TrimPrefix(path, "response.body"), "."))
		}
		if o.target != targetBody && (o.mode == config.WriteAppend || o.mode == config.WriteMerge) {
			errs = append(errs, config.Errorf(t.Output.Path.Pos, "task %q: write mode %s applies to response.body paths only", t.Name, o.mode))
		}
		if o.from != "" && (strings.HasPrefix(o.from, ".") || strings.HasSuffix(o.from, ".")) {
			errs = append(errs, config.Errorf(t.Output.From.Pos, "task %q: invalid output.from path %q", t.Name, o.from))
		}
		l.byTask[i] = len(l.outputs)
		l.outputs = append(l.outputs, o)
	}
	return l, errs.Err()
}

// node returns the index of the body node at the dotted field path,
// creating it and its parents.
func (l *layout) node(path string) int {
	cur := 0
	if path == "" {
		return cur
	}
	for _, name := range strings.Split(path, ".") {
		next := -1
		for _, c := range l.nodes[cur].children {
			if l.nodes[c].name == name {
				next = c
				break
			}
		}
		if next < 0 {
			key := append(jsonutil.AppendString(nil, name), ':')
			l.nodes = append(l.nodes, bodyNode{key: key, name: name})
			next = len(l.nodes) - 1
			l.nodes[cur].children = append(l.nodes[cur].children, next)
		}
		cur = next
	}
	return cur
}

func (l *layout) outputIndex(task int) int {
	if i, ok := l.byTask[task]; ok {
		return i
	}
	return -1
}

// valueState is the value being built at one path while writes apply.
type valueState uint8

const (
	stateNone valueState = iota
	stateRaw
	stateArray
)

// assembler builds the response document of one request. Its buffers are
// reused across requests.
type assembler struct {
	items   []string
	keys    []string
	present []int8
	bufs    [][]byte
	nbuf    int
}

func (a *assembler) reset(nNodes int) {
	a.items = a.items[:0]
	a.nbuf = 0
	if cap(a.present) < nNodes {
		a.present = make([]int8, nNodes)
	}
	a.present = a.present[:nNodes]
	clear(a.present)
}

func (a *assembler) buf() []byte {
	if a.nbuf == len(a.bufs) {
		a.bufs = append(a.bufs, nil)
	}
	b := a.bufs[a.nbuf][:0]
	return b
}

func (a *assembler) keep(b []byte) string {
	a.bufs[a.nbuf] = b
	a.nbuf++
	return jsonutil.B2S(b)
}

// valueOf returns what task i writes: its result body, through output.from.
func (e *exec) valueOf(o *output) (string, bool) {
	v := jsonutil.B2S(e.vals[o.task])
	if o.from == "" {
		return v, len(v) > 0
	}
	r := gjson.Get(v, o.from)
	return r.Raw, r.Exists()
}

// state applies, in completion order, the writes of every task whose output
// targets body node ni (or, with ni < 0, the given header or status
// output kind) and returns the resulting value.
func (e *exec) state(match func(o *output) bool) (valueState, string, int) {
	a := &e.asm
	st, raw, start := stateNone, "", len(a.items)
	for _, ti := range e.order {
		oi := e.p.nodes[ti].out
		if oi < 0 {
			continue
		}
		o := &e.p.layout.outputs[oi]
		if !match(o) {
			continue
		}
		v, ok := e.valueOf(o)
		if !ok {
			continue
		}
		switch o.mode {
		case config.WriteOverwrite:
			st, raw = stateRaw, v
			a.items = a.items[:start]
		case config.WriteIgnoreIfExists:
			if st == stateNone {
				st, raw = stateRaw, v
			}
		case config.WriteAppend:
			switch st {
			case stateNone:
				st = stateArray
			case stateRaw:
				st = stateArray
				if r := gjson.Parse(raw); r.IsArray() {
					r.ForEach(func(_, el gjson.Result) bool {
						a.items = append(a.items, el.Raw)
						return true
					})
				} else {
					a.items = append(a.items, raw)
				}
			}
			a.items = append(a.items, v)
		case config.WriteMerge:
			if st == stateArray {
				raw = a.keep(appendArray(a.buf(), a.items[start:]))
				a.items = a.items[:start]
				st = stateRaw
			}
			if st == stateRaw && isObject(raw) && isObject(v) {
				raw = a.keep(a.merge(a.buf(), raw, v, nil))
			} else {
				raw = v
			}
			st = stateRaw
		}
	}
	return st, raw, start
}

func isObject(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

func appendArray(dst []byte, items []string) []byte {
	dst = append(dst, '[')
	for i, it := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, it...)
	}
	return append(dst, ']')
}

// merge appends the keys of object x that neither y nor skip names
// override, then the keys of y (when y is not empty), without braces when
// y is empty and skip is set (the caller adds fields).
func (a *assembler) merge(dst []byte, x, y string, skip func(key string) bool) []byte {
	a.keys = a.keys[:0]
	if y != "" {
		gjson.Parse(y).ForEach(func(k, _ gjson.Result) bool {
			a.keys = append(a.keys, k.Str)
			return true
		})
	}
	wrapped := skip == nil
	if wrapped {
		dst = append(dst, '{')
	}
	n := 0
	emit := func(k, v gjson.Result) {
		if n > 0 || (!wrapped && len(dst) > 0 && dst[len(dst)-1] != '{') {
			dst = append(dst, ',')
		}
		dst = append(dst, k.Raw...)
		dst = append(dst, ':')
		dst = append(dst, v.Raw...)
		n++
	}
	gjson.Parse(x).ForEach(func(k, v gjson.Result) bool {
		for _, yk := range a.keys {
			if yk == k.Str {
				return true
			}
		}
		if skip != nil && skip(k.Str) {
			return true
		}
		emit(k, v)
		return true
	})
	if y != "" {
		gjson.Parse(y).ForEach(func(k, v gjson.Result) bool {
			if skip != nil && skip(k.Str) {
				return true
			}
			emit(k, v)
			return true
		})
	}
	if wrapped {
		dst = append(dst, '}')
	}
	return dst
}

// isPresent reports whether body node ni gets a value in this request.
func (e *exec) isPresent(ni int) bool {
	a := &e.asm
	switch a.present[ni] {
	case 1:
		return true
	case -1:
		return false
	}
	st, _, start := e.state(func(o *output) bool { return o.target == targetBody && o.node == ni })
	a.items = a.items[:start]
	ok := st != stateNone
	if !ok {
		for _, c := range e.p.layout.nodes[ni].children {
			if e.isPresent(c) {
				ok = true
				break
			}
		}
	}
	a.present[ni] = -1
	if ok {
		a.present[ni] = 1
	}
	return ok
}

// appendNode appends the value of body node ni. A node with fields written
// below it is an object: the keys of its own object value (if any) come
// first, minus those the fields override, then the fields in file order.
func (e *exec) appendNode(dst []byte, ni int) []byte {
	a := &e.asm
	nd := &e.p.layout.nodes[ni]
	st, raw, start := e.state(func(o *output) bool { return o.target == targetBody && o.node == ni })
	hasFields := false
	for _, c := range nd.children {
		if e.isPresent(c) {
			hasFields = true
			break
		}
	}
	if !hasFields {
		switch st {
		case stateRaw:
			dst = append(dst, raw...)
		case stateArray:
			dst = appendArray(dst, a.items[start:])
		}
		a.items = a.items[:start]
		return dst
	}
	a.items = a.items[:start]
	dst = append(dst, '{')
	if st == stateRaw && isObject(raw) {
		dst = a.merge(dst, raw, "", func(key string) bool {
			for _, c := range nd.children {
				if e.p.layout.nodes[c].name == key && e.isPresent(c) {
					return true
				}
			}
			return false
		})
	}
	for _, c := range nd.children {
		if !e.isPresent(c) {
			continue
		}
		if dst[len(dst)-1] != '{' {
			dst = append(dst, ',')
		}
		dst = append(dst, e.p.layout.nodes[c].key...)
		dst = e.appendNode(dst, c)
	}
	return append(dst, '}')
}
