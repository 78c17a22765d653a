package yamlstrict

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/internal/jsonutil"
)

// Unmarshaler is implemented by types that decode themselves from a YAML
// node. Errors should be *Error values positioned with PosOf(file, n); the
// decoder adds the field path.
type Unmarshaler interface {
	UnmarshalNode(file string, n *yaml.Node) error
}

// String is a YAML string that remembers where it was written, so that
// checks after decoding can point at the value.
type String struct {
	Value string
	Pos   Pos
}

// JSONSchema returns the JSON Schema of a string setting, for schema
// generators.
func (String) JSONSchema() map[string]any { return map[string]any{"type": "string"} }

var (
	nodeType        = reflect.TypeFor[yaml.Node]()
	posType         = reflect.TypeFor[Pos]()
	stringType      = reflect.TypeFor[String]()
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[Unmarshaler]()
)

// Decode decodes the YAML node n of file into v, which must be a non-nil
// pointer. It is strict: a mapping key that v has no field for is an error
// naming the key and the keys that are allowed, and so is a key written
// twice. Struct fields are matched by their `yaml:"name"` tag. A yaml.Node
// field keeps the raw node, a json.RawMessage field receives the value
// converted to JSON, a String field the value and its position, and a type
// implementing Unmarshaler decodes itself. A Pos field tagged `yaml:",pos"`
// receives the position of the mapping the struct is decoded from, and one
// tagged `yaml:"name,pos"` the position of the value of key name (decoded
// by the field of that name). An embedded struct tagged `yaml:",inline"`
// contributes its keys to the enclosing mapping. Aliases are expanded
// within a budget, so that a small file cannot expand into a huge tree.
// Every problem is collected: the error is an Errors of *Error values, each
// with the position and field path of the offending node.
func Decode(file string, n *yaml.Node, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic("BUG: yamlstrict.Decode needs a non-nil pointer")
	}
	d := decoder{file: file}
	d.value(n, rv.Elem(), "")
	return d.errs.Err()
}

type decoder struct {
	file string
	errs Errors
	// visits bounds the work of a decode: YAML aliases can make a small
	// file expand into a huge tree.
	visits int
}

// maxVisits bounds the nodes one decode walks, aliases expanded.
const maxVisits = 200_000

func (d *decoder) tooBig(n *yaml.Node, path string) bool {
	d.visits++
	if d.visits == maxVisits {
		d.errorf(n, path, "document too large once aliases are expanded (over %d values)", maxVisits)
	}
	return d.visits >= maxVisits
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	e := Errorf(PosOf(d.file, n), format, args...)
	e.Path = path
	d.errs = append(d.errs, e)
}

// add keeps the errors err holds, giving those without a field path path.
func (d *decoder) add(n *yaml.Node, path string, err error) {
	var es Errors
	es.Add(PosOf(d.file, n), err)
	for _, e := range es {
		if e.Path == "" && path != "" {
			c := *e
			c.Path = path
			e = &c
		}
		d.errs = append(d.errs, e)
	}
}

// Resolve follows aliases and unwraps a document node to its content.
func Resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 32; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return n.Content[0]
	}
	return n
}

// where describes a field path for messages, e.g. ` for "inputs.body"`.
func where(path string) string {
	if path == "" {
		return ""
	}
	return fmt.Sprintf(" for %q", path)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = Resolve(n)
	if n == nil || d.tooBig(n, path) {
		return
	}
	switch v.Type() {
	case nodeType:
		v.Set(reflect.ValueOf(*n))
		return
	case stringType:
		v.Field(1).Set(reflect.ValueOf(PosOf(d.file, n)))
		d.value(n, v.Field(0), path)
		return
	case rawMessageType:
		b, err := NodeToJSON(d.file, n)
		if err != nil {
			d.add(n, path, err)
			return
		}
		v.SetBytes(b)
		return
	}
	if v.Kind() == reflect.Pointer {
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		d.add(n, path, v.Addr().Interface().(Unmarshaler).UnmarshalNode(d.file, n))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structValue(n, v, path)
	case reflect.Map:
		d.mapValue(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "expected a list%s, got %s", where(path), Describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "expected a string%s, got %s", where(path), Describe(n))
			return
		}
		if isNull(n) {
			v.SetString("")
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errorf(n, path, "expected true or false%s, got %s", where(path), Describe(n))
			return
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := intOf(n)
		if err != nil || v.OverflowInt(i) {
			d.errorf(n, path, "expected an integer%s, got %s", where(path), Describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, err := intOf(n)
		if err != nil || i < 0 || v.OverflowUint(uint64(i)) {
			d.errorf(n, path, "expected a non-negative integer%s, got %s", where(path), Describe(n))
			return
		}
		v.SetUint(uint64(i))
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
			d.errorf(n, path, "expected a number%s, got %s", where(path), Describe(n))
			return
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(n, path, "expected a finite number%s, got %s", where(path), Describe(n))
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("BUG: yamlstrict.Decode cannot decode into %s", v.Type()))
	}
}

func intOf(n *yaml.Node) (int64, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, fmt.Errorf("not an integer")
	}
	return strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
}

// Describe names what a node is, for messages: "a mapping", "a list",
// "null", a quoted string or a scalar as written.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "an unsupported node"
}

// Key is a mapping key that a struct field holds, as Decode reads it.
type Key struct {
	Name string
	// Field is the field; its Index is within Owner, the struct that
	// declares it (an embedded struct's type for its inline keys).
	Field reflect.StructField
	Owner reflect.Type
	// Index is the index sequence of the field in the decoded struct.
	Index []int
}

// Keys lists the keys of struct type t, with those of embedded structs
// tagged `yaml:",inline"` flattened in, in field order. Pos fields are left
// out. Schema generators read a struct through it, so that they describe
// the keys Decode accepts.
func Keys(t reflect.Type) []Key {
	var out []Key
	for _, f := range structFields(t) {
		if !f.pos {
			out = append(out, f.Key)
		}
	}
	return out
}

type fieldInfo struct {
	Key
	// pos marks a Pos field tagged `yaml:"name,pos"` (Name may be empty).
	pos bool
}

func structFields(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		if !ok {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			// The embedded struct's keys are keys of this mapping.
			for _, inner := range structFields(f.Type) {
				inner.Index = append([]int{i}, inner.Index...)
				out = append(out, inner)
			}
			continue
		}
		key := Key{Name: name, Field: f, Owner: t, Index: f.Index}
		if opts == "pos" {
			if f.Type != posType || !f.IsExported() {
				panic(fmt.Sprintf("BUG: yamlstrict: field %s.%s tagged pos is not an exported Pos", t, f.Name))
			}
			out = append(out, fieldInfo{Key: key, pos: true})
			continue
		}
		if name == "-" || name == "" || !f.IsExported() {
			continue
		}
		out = append(out, fieldInfo{Key: key})
	}
	return out
}

// MappingPairs returns the key/value pairs of mapping n of file, expanding
// YAML merge keys (<<) so that explicit keys override merged ones. A merge
// of anything but mappings is an error.
func MappingPairs(file string, n *yaml.Node) ([][2]*yaml.Node, error) {
	d := decoder{file: file}
	pairs := d.mappingPairs(n, "")
	return pairs, d.errs.Err()
}

func (d *decoder) mappingPairs(n *yaml.Node, path string) [][2]*yaml.Node {
	var merged, own [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			src := Resolve(val)
			var srcs []*yaml.Node
			if src.Kind == yaml.SequenceNode {
				for _, s := range src.Content {
					srcs = append(srcs, Resolve(s))
				}
			} else {
				srcs = append(srcs, src)
			}
			for _, s := range srcs {
				if d.tooBig(s, path) {
					return nil
				}
				if s.Kind != yaml.MappingNode {
					d.errorf(val, path, "merge key << needs a mapping, got %s", Describe(s))
					continue
				}
				merged = append(merged, d.mappingPairs(s, path)...)
			}
			continue
		}
		own = append(own, [2]*yaml.Node{k, val})
	}
	if len(merged) == 0 {
		return own
	}
	seen := make(map[string]bool, len(own))
	for _, p := range own {
		seen[p[0].Value] = true
	}
	out := make([][2]*yaml.Node, 0, len(merged)+len(own))
	for _, p := range merged {
		if !seen[p[0].Value] {
			seen[p[0].Value] = true
			out = append(out, p)
		}
	}
	return append(out, own...)
}

// eachPair calls fn for every key of mapping n and its value, after
// checking that n is a mapping (null is an empty one), that keys are
// scalars and that none is written twice.
func (d *decoder) eachPair(n *yaml.Node, path string, fn func(k, val *yaml.Node)) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping%s, got %s", where(path), Describe(n))
		return
	}
	seen := map[string]bool{}
	for _, p := range d.mappingPairs(n, path) {
		k, val := p[0], p[1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "expected a key%s, got %s", where(path), Describe(k))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, join(path, k.Value), "duplicate key %q%s", k.Value, where(path))
			continue
		}
		seen[k.Value] = true
		fn(k, val)
	}
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string) {
	fields := structFields(v.Type())
	var names []string
	for _, f := range fields {
		switch {
		case f.pos && f.Name == "" && n.Kind == yaml.MappingNode:
			v.FieldByIndex(f.Index).Set(reflect.ValueOf(PosOf(d.file, n)))
		case !f.pos:
			names = append(names, f.Name)
		}
	}
	d.eachPair(n, path, func(k, val *yaml.Node) {
		var fi *fieldInfo
		for i := range fields {
			if fields[i].Name == k.Value && !fields[i].pos {
				fi = &fields[i]
				break
			}
		}
		if fi == nil {
			d.errorf(k, join(path, k.Value), "unknown key %q%s%s", k.Value, where(path), Suggest(k.Value, names))
			return
		}
		for _, f := range fields {
			if f.pos && f.Name == k.Value {
				v.FieldByIndex(f.Index).Set(reflect.ValueOf(PosOf(d.file, Resolve(val))))
			}
		}
		d.value(val, v.FieldByIndex(fi.Index), join(path, k.Value))
	})
}

func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, path string) {
	if v.Type().Key().Kind() != reflect.String {
		panic("BUG: yamlstrict.Decode supports maps with string keys only")
	}
	if v.IsNil() && n.Kind == yaml.MappingNode {
		v.Set(reflect.MakeMap(v.Type()))
	}
	d.eachPair(n, path, func(k, val *yaml.Node) {
		ev := reflect.New(v.Type().Elem()).Elem()
		d.value(val, ev, join(path, k.Value))
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), ev)
	})
}

// Suggest returns ` (did you mean "x"?)` for the name of known closest to
// got, or the list of known names when none is close.
func Suggest(got string, known []string) string {
	if len(known) == 0 {
		return ""
	}
	best, bestD := "", 1<<30
	for _, k := range known {
		if dist := editDistance(got, k); dist < bestD {
			best, bestD = k, dist
		}
	}
	if bestD <= 2 || (bestD <= len(got)/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	return " (allowed: " + strings.Join(sorted, ", ") + ")"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// NodeToJSON converts a YAML node of file to compact JSON, keeping mapping
// order. Aliases are expanded up to a bound on the size of the result.
func NodeToJSON(file string, n *yaml.Node) ([]byte, error) {
	return appendJSON(nil, file, n, 0)
}

// maxJSONValue bounds the JSON a YAML value converts to.
const maxJSONValue = 1 << 20

func appendJSON(dst []byte, file string, n *yaml.Node, depth int) ([]byte, error) {
	n = Resolve(n)
	if depth > 64 {
		return nil, Errorf(PosOf(file, n), "value is nested too deeply")
	}
	if len(dst) > maxJSONValue {
		return nil, Errorf(PosOf(file, n), "value is larger than %d bytes once aliases are expanded", maxJSONValue)
	}
	switch n.Kind {
	case yaml.MappingNode:
		dst = append(dst, '{')
		pairs, err := MappingPairs(file, n)
		if err != nil {
			return nil, err
		}
		for i, p := range pairs {
			if p[0].Kind != yaml.ScalarNode {
				return nil, Errorf(PosOf(file, p[0]), "expected a key, got %s", Describe(p[0]))
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonutil.AppendString(dst, p[0].Value)
			dst = append(dst, ':')
			if dst, err = appendJSON(dst, file, p[1], depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case yaml.SequenceNode:
		dst = append(dst, '[')
		for i, c := range n.Content {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendJSON(dst, file, c, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return append(dst, "null"...), nil
		case "!!bool":
			b, _ := strconv.ParseBool(strings.ToLower(n.Value))
			return strconv.AppendBool(dst, b), nil
		case "!!int":
			i, err := intOf(n)
			if err != nil {
				return nil, Errorf(PosOf(file, n), "invalid integer %s", n.Value)
			}
			return strconv.AppendInt(dst, i, 10), nil
		case "!!float":
			f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, Errorf(PosOf(file, n), "%s is not a JSON number", n.Value)
			}
			return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
		default:
			return jsonutil.AppendString(dst, n.Value), nil
		}
	}
	return nil, Errorf(PosOf(file, n), "unsupported YAML value")
}
