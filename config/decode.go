package config

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
// node. Errors should be *Error values positioned with PosOf(file, n).
type Unmarshaler interface {
	UnmarshalNode(file string, n *yaml.Node) error
}

var (
	nodeType        = reflect.TypeFor[yaml.Node]()
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[Unmarshaler]()
)

// Decode decodes the YAML node n of file into v, which must be a non-nil
// pointer. It is strict: a mapping key that v has no field for is an error
// naming the key and the keys that are allowed. Struct fields are matched by
// their `yaml:"name"` tag. A *yaml.Node field keeps the raw node, a
// json.RawMessage field receives the value converted to JSON, and a type
// implementing Unmarshaler decodes itself. An embedded struct tagged
// `yaml:",inline"` contributes its keys to the enclosing mapping. Every
// error is an *Error or Errors with the position of the offending node.
func Decode(file string, n *yaml.Node, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic("BUG: config.Decode needs a non-nil pointer")
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

func (d *decoder) tooBig(n *yaml.Node) bool {
	d.visits++
	if d.visits == maxVisits {
		d.errorf(n, "document too large once aliases are expanded (over %d values)", maxVisits)
	}
	return d.visits >= maxVisits
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, Errorf(PosOf(d.file, n), format, args...))
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 32; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return n.Content[0]
	}
	return n
}

// where describes a field path for messages, e.g. ` in "inputs.body"`.
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

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	if n == nil || d.tooBig(n) {
		return
	}
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if v.Kind() == reflect.Pointer {
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
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
		if err := v.Addr().Interface().(Unmarshaler).UnmarshalNode(d.file, n); err != nil {
			d.errs.Add(PosOf(d.file, n), err)
		}
		return
	}
	if v.Type() == rawMessageType {
		b, err := NodeToJSON(d.file, n)
		if err != nil {
			d.errs.Add(PosOf(d.file, n), err)
			return
		}
		v.SetBytes(b)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structValue(n, v, path)
	case reflect.Map:
		d.mapValue(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "expected a list%s, got %s", where(path), describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "expected a string%s, got %s", where(path), describe(n))
			return
		}
		if n.ShortTag() == "!!null" {
			v.SetString("")
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errorf(n, "expected true or false%s, got %s", where(path), describe(n))
			return
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := intOf(n)
		if err != nil || v.OverflowInt(i) {
			d.errorf(n, "expected an integer%s, got %s", where(path), describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, err := intOf(n)
		if err != nil || i < 0 || v.OverflowUint(uint64(i)) {
			d.errorf(n, "expected a non-negative integer%s, got %s", where(path), describe(n))
			return
		}
		v.SetUint(uint64(i))
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
			d.errorf(n, "expected a number%s, got %s", where(path), describe(n))
			return
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(n, "expected a finite number%s, got %s", where(path), describe(n))
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("BUG: config.Decode cannot decode into %s", v.Type()))
	}
}

func intOf(n *yaml.Node) (int64, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, fmt.Errorf("not an integer")
	}
	return strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
}

// describe names what a node is, for messages.
func describe(n *yaml.Node) string {
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

type fieldInfo struct {
	index []int
	name  string
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
				inner.index = append([]int{i}, inner.index...)
				out = append(out, inner)
			}
			continue
		}
		if name == "-" || name == "" || !f.IsExported() {
			continue
		}
		out = append(out, fieldInfo{index: f.Index, name: name})
	}
	return out
}

// mappingPairs returns the key/value pairs of a mapping, expanding YAML
// merge keys (<<) so that explicit keys override merged ones.
func (d *decoder) mappingPairs(n *yaml.Node) [][2]*yaml.Node {
	var merged, own [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			src := resolveAlias(val)
			var srcs []*yaml.Node
			if src.Kind == yaml.SequenceNode {
				for _, s := range src.Content {
					srcs = append(srcs, resolveAlias(s))
				}
			} else {
				srcs = append(srcs, src)
			}
			for _, s := range srcs {
				if s.Kind != yaml.MappingNode {
					d.errorf(val, "merge key << needs a mapping, got %s", describe(s))
					continue
				}
				merged = append(merged, d.mappingPairs(s)...)
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

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected a mapping%s, got %s", where(path), describe(n))
		return
	}
	fields := structFields(v.Type())
	seen := make(map[string]bool, len(fields))
	for _, p := range d.mappingPairs(n) {
		k, val := p[0], p[1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "expected a key%s, got %s", where(path), describe(k))
			continue
		}
		var fi *fieldInfo
		for i := range fields {
			if fields[i].name == k.Value {
				fi = &fields[i]
				break
			}
		}
		if fi == nil {
			names := make([]string, len(fields))
			for i, f := range fields {
				names[i] = f.name
			}
			d.errorf(k, "unknown key %q%s%s", k.Value, where(path), suggest(k.Value, names))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "duplicate key %q%s", k.Value, where(path))
			continue
		}
		seen[k.Value] = true
		d.value(val, v.FieldByIndex(fi.index), join(path, k.Value))
	}
}

func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected a mapping%s, got %s", where(path), describe(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("BUG: config.Decode supports maps with string keys only")
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]bool{}
	for _, p := range d.mappingPairs(n) {
		k, val := p[0], p[1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "expected a key%s, got %s", where(path), describe(k))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "duplicate key %q%s", k.Value, where(path))
			continue
		}
		seen[k.Value] = true
		ev := reflect.New(v.Type().Elem()).Elem()
		d.value(val, ev, join(path, k.Value))
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), ev)
	}
}

// suggest returns ` (did you mean "x"?)` for the closest known name, or the
// list of allowed names when none is close.
func suggest(got string, known []string) string {
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

// Suggest is suggest for other packages: it returns a hint naming the
// closest of known to got.
func Suggest(got string, known []string) string { return suggest(got, known) }

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

// NodeToJSON converts a YAML node to compact JSON, keeping mapping order.
func NodeToJSON(file string, n *yaml.Node) ([]byte, error) {
	return appendJSON(nil, file, n, 0)
}

// maxJSONValue bounds the JSON a YAML value converts to.
const maxJSONValue = 1 << 20

func appendJSON(dst []byte, file string, n *yaml.Node, depth int) ([]byte, error) {
	n = resolveAlias(n)
	if depth > 64 {
		return nil, Errorf(PosOf(file, n), "value is nested too deeply")
	}
	if len(dst) > maxJSONValue {
		return nil, Errorf(PosOf(file, n), "value is larger than %d bytes once aliases are expanded", maxJSONValue)
	}
	switch n.Kind {
	case yaml.MappingNode:
		dst = append(dst, '{')
		d := decoder{file: file}
		for i, p := range d.mappingPairs(n) {
			if p[0].Kind != yaml.ScalarNode {
				return nil, Errorf(PosOf(file, p[0]), "expected a key, got %s", describe(p[0]))
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonutil.AppendString(dst, p[0].Value)
			dst = append(dst, ':')
			var err error
			if dst, err = appendJSON(dst, file, p[1], depth+1); err != nil {
				return nil, err
			}
		}
		if err := d.errs.Err(); err != nil {
			return nil, err
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
