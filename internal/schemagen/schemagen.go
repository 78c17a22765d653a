// Package schemagen generates the JSON Schema of route files
// (config/route.schema.json) from the Go types route files decode into:
// config.Route and config.Task, and the Inputs type of every registered
// task kind. It runs at `go generate` time (see cmd/schemagen) and in the
// test that keeps the committed schema current.
//
// Descriptions are the first paragraph of the doc comments of the types
// and fields, read from the sources with go/parser; a field's Go name at
// the start of its comment (and the Go names of the other fields of its
// struct) read as its YAML key. Constraints sit next to the field, in a
// `jsonschema` tag: comma-separated keywords, `\,` for a comma in a value.
//
//	required                 the key must be present
//	pattern=RE               string pattern (ECMA-262 syntax)
//	enum=V (repeated)        allowed values; with pattern too, the enum
//	                         lists the usual spellings and the pattern
//	                         admits others (anyOf)
//	not=V                    the value must not be V
//	minimum=N, maximum=N, exclusiveMinimum=N, minLength=N,
//	minItems=N, maxItems=N, uniqueItems, minProperties=N
//	type=T1|T2               JSON types of a raw (json.RawMessage) value
//	default=V                JSON value, or a bare string
//	oneOf=G                  exactly one of the fields tagged with group G
//	                         must be present
//	needs=key                the field needs the key beside it
//	items.K=V, keys.K=V,     K=V for the elements of a list, the keys or
//	values.K=V               the values of a mapping
//	valuesFrom=F             a mapping kept raw (yaml.Node) whose values
//	                         decode like the elements of field F
//	kindName, kindInputs     the task's kind selector and its inputs: enum
//	                         of the registered kinds, and one if/then per
//	                         kind to its Inputs type
//
// Unsigned integer fields get their range, bool fields (not *bool) default
// false. A
// type that decodes itself declares its schema with methods
// `JSONSchema() map[string]any` and, for definitions it refers to,
// `JSONSchemaDefs() map[string]any`; numeric keywords of a field then
// apply to the numeric branches of its anyOf (a duration's number of
// milliseconds).
package schemagen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/yamlstrict"
	"github.com/lariat-gw/lariat/tasks"
)

// Generate returns the route-file schema for the task kinds registered in
// this program, formatted as committed (two-space indent, newline at the
// end).
func Generate() ([]byte, error) {
	d, err := newDocs()
	if err != nil {
		return nil, err
	}
	g := &gen{docs: d, defs: &object{}, defTypes: map[string]reflect.Type{}}
	for _, name := range tasks.KindNames() {
		k, _ := tasks.Lookup(name)
		g.kinds = append(g.kinds, k)
	}
	root, err := g.structSchema(reflect.TypeFor[config.Route]())
	if err != nil {
		return nil, err
	}
	out := &object{}
	out.set("$schema", "https://json-schema.org/draft/2020-12/schema")
	out.set("$id", config.SchemaID)
	out.set("title", config.SchemaTitle)
	for _, k := range root.keys {
		out.set(k, root.get(k))
	}
	out.set("$defs", g.defs)
	var b bytes.Buffer
	writeJSON(&b, out, "")
	b.WriteByte('\n')
	return b.Bytes(), nil
}

type gen struct {
	docs     *docs
	kinds    []tasks.Kind
	defs     *object
	defTypes map[string]reflect.Type
}

var (
	nodeType   = reflect.TypeFor[yaml.Node]()
	rawType    = reflect.TypeFor[json.RawMessage]()
	schemaHook = reflect.TypeFor[interface{ JSONSchema() map[string]any }]()
	defsHook   = reflect.TypeFor[interface{ JSONSchemaDefs() map[string]any }]()
	camelRe    = regexp.MustCompile(`\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b`)
)

// field is one YAML key of a struct, embedded inline structs flattened.
type field struct {
	reflect.StructField
	key   string
	owner reflect.Type // the struct that declares it
	tag   tag
}

// fields lists the YAML keys of struct type t, as the route decoder reads
// them, with their jsonschema tags.
func fields(t reflect.Type) ([]field, error) {
	var out []field
	for _, k := range yamlstrict.Keys(t) {
		tg, err := parseTag(k.Field.Tag.Get("jsonschema"))
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", k.Owner, k.Field.Name, err)
		}
		out = append(out, field{StructField: k.Field, key: k.Name, owner: k.Owner, tag: tg})
	}
	return out, nil
}

// structSchema returns the schema of struct type t: an object with
// exactly its YAML keys.
func (g *gen) structSchema(t reflect.Type) (*object, error) {
	td, err := g.docs.of(t)
	if err != nil {
		return nil, err
	}
	fs, err := fields(t)
	if err != nil {
		return nil, err
	}
	s := &object{}
	if d := describe(td.doc); d != "" {
		s.set("description", g.keyNames(t, d))
	}
	s.set("type", "object")
	s.set("additionalProperties", false)
	var required []any
	var groups []string
	oneOf := map[string][]any{}
	dependent := &object{}
	props := &object{}
	var kindInputs *field
	for i := range fs {
		f := &fs[i]
		fd, err := g.fieldDoc(f)
		if err != nil {
			return nil, err
		}
		p, err := g.valueSchema(f.Type, f.tag, f)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t, f.Name, err)
		}
		if f.tag.flag("kindName") {
			var names []any
			for _, k := range g.kinds {
				names = append(names, k.Name)
			}
			p.set("enum", names)
		}
		p.prepend("description", fd)
		props.set(f.key, p)
		if f.tag.flag("required") {
			required = append(required, f.key)
		}
		if grp := f.tag.value("oneOf"); grp != "" {
			if _, ok := oneOf[grp]; !ok {
				groups = append(groups, grp)
			}
			oneOf[grp] = append(oneOf[grp], f.key)
		}
		if need := f.tag.value("needs"); need != "" {
			dependent.set(f.key, []any{need})
		}
		if f.tag.flag("kindInputs") {
			kindInputs = f
		}
	}
	if len(required) > 0 {
		s.set("required", required)
	}
	if len(groups) > 1 {
		return nil, fmt.Errorf("%s: more than one oneOf group", t)
	}
	for _, grp := range groups {
		var alts []any
		for _, k := range oneOf[grp] {
			alts = append(alts, obj("required", []any{k}))
		}
		s.set("oneOf", alts)
	}
	if len(dependent.keys) > 0 {
		s.set("dependentRequired", dependent)
	}
	s.set("properties", props)
	if kindInputs != nil {
		allOf, err := g.kindBranches(kindInputs.key)
		if err != nil {
			return nil, err
		}
		s.set("allOf", allOf)
	}
	return s, nil
}

// kindBranches returns one if/then per kind: a task of that type has
// inputs of the kind's Inputs type.
func (g *gen) kindBranches(key string) ([]any, error) {
	var out []any
	for _, k := range g.kinds {
		ref, err := g.ref(k.Inputs)
		if err != nil {
			return nil, fmt.Errorf("task kind %s: %w", k.Name, err)
		}
		then := &object{}
		def := g.defs.get(ref.get("$ref").(string)[len("#/$defs/"):]).(*object)
		if def.get("required") != nil || def.get("oneOf") != nil {
			then.set("required", []any{key})
		}
		then.set("properties", obj(key, ref))
		out = append(out, obj(
			"if", obj("properties", obj("type", obj("const", k.Name)), "required", []any{"type"}),
			"then", then))
	}
	return out, nil
}

// fieldDoc is the description of field f: the first paragraph of its doc
// comment, with the Go names of its struct's fields read as YAML keys.
func (g *gen) fieldDoc(f *field) (string, error) {
	td, err := g.docs.of(f.owner)
	if err != nil {
		return "", err
	}
	d := describe(td.fields[f.Name])
	if d == "" {
		return "", fmt.Errorf("%s.%s (key %q) has no doc comment: it is the key's description in the schema", f.owner, f.Name, f.key)
	}
	// "Name is the name of ..." reads "The name of ...", "Run lists ..."
	// reads "run lists ...".
	if rest, ok := strings.CutPrefix(d, f.Name+" "); ok {
		d = f.key + " " + rest
		for _, verb := range []string{"is ", "are "} {
			if rest, ok := strings.CutPrefix(rest, verb); ok && rest != "" && !strings.ContainsAny(strings.Fields(rest)[0], "0123456789") {
				d = strings.ToUpper(rest[:1]) + rest[1:]
				break
			}
		}
	}
	return g.keyNames(f.owner, d), nil
}

// keyNames replaces the Go names of the fields of struct type t in text
// with their YAML keys: the names in camel case (MaxConcurrency), which
// cannot be English words (Name, Protocol).
func (g *gen) keyNames(t reflect.Type, text string) string {
	keys := map[string]string{}
	fs, _ := fields(t)
	for _, s := range fs {
		if s.owner == t {
			keys[s.Name] = s.key
		}
	}
	return camelRe.ReplaceAllStringFunc(text, func(w string) string {
		if k, ok := keys[w]; ok {
			return k
		}
		return w
	})
}

// ref returns {"$ref": ...} to the definition of struct type t, adding it
// on first use.
func (g *gen) ref(t reflect.Type) (*object, error) {
	name := defName(t)
	if prev, ok := g.defTypes[name]; ok && prev != t {
		// Two packages declare the same type name.
		name = lowerFirst(pkgName(t.PkgPath())) + t.Name()
	}
	if _, ok := g.defTypes[name]; !ok {
		g.defTypes[name] = t
		g.defs.set(name, nil) // keeps the order of first use
		s, err := g.structSchema(t)
		if err != nil {
			return nil, err
		}
		g.defs.set(name, s)
	}
	return obj("$ref", "#/$defs/"+name), nil
}

// valueSchema returns the schema of a value of type t under tag tg. f is
// the field, or nil for elements and map values.
func (g *gen) valueSchema(t reflect.Type, tg tag, f *field) (*object, error) {
	// A pointer is unset when left out: its zero value is no default.
	ptr := t.Kind() == reflect.Pointer
	if ptr {
		t = t.Elem()
	}
	switch {
	case t.Implements(schemaHook) || reflect.PointerTo(t).Implements(schemaHook):
		v := reflect.New(t).Elem().Interface().(interface{ JSONSchema() map[string]any })
		if t.Implements(defsHook) {
			for name, d := range reflect.New(t).Elem().Interface().(interface{ JSONSchemaDefs() map[string]any }).JSONSchemaDefs() {
				if g.defs.get(name) == nil {
					g.defs.set(name, convert(d))
				}
			}
		}
		s := toObject(v.JSONSchema())
		return s, tg.apply(s, t)
	case t == rawType:
		s := &object{}
		return s, tg.apply(s, t)
	case t == nodeType:
		s := obj("type", "object")
		if kp := tg.sub("keys"); len(kp) > 0 {
			pn := &object{}
			if err := kp.apply(pn, reflect.TypeFor[string]()); err != nil {
				return nil, err
			}
			s.set("propertyNames", pn)
		}
		if from := tg.value("valuesFrom"); from != "" && f != nil {
			sf, ok := f.owner.FieldByName(from)
			if !ok || sf.Type.Kind() != reflect.Slice {
				return nil, fmt.Errorf("valuesFrom=%s: no list field %s beside it", from, from)
			}
			vs, err := g.valueSchema(sf.Type.Elem(), tg.sub("values"), nil)
			if err != nil {
				return nil, err
			}
			s.set("additionalProperties", vs)
		}
		return s, tg.apply(s, t)
	}
	switch t.Kind() {
	case reflect.Struct:
		return g.ref(t)
	case reflect.String:
		s := obj("type", "string")
		return s, tg.apply(s, t)
	case reflect.Bool:
		s := obj("type", "boolean")
		if !ptr && !tg.has("default") {
			s.set("default", false)
		}
		return s, tg.apply(s, t)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s := obj("type", "integer")
		return s, tg.apply(s, t)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		s := obj("type", "integer", "minimum", 0)
		if t.Bits() < 64 {
			s.set("maximum", uint64(1)<<t.Bits()-1)
		} else {
			s.set("maximum", uint64(math.MaxUint64))
		}
		return s, tg.apply(s, t)
	case reflect.Float32, reflect.Float64:
		s := obj("type", "number")
		return s, tg.apply(s, t)
	case reflect.Slice:
		items, err := g.valueSchema(t.Elem(), tg.sub("items"), nil)
		if err != nil {
			return nil, err
		}
		s := obj("type", "array", "items", items)
		return s, tg.apply(s, t)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("map key type %s: only string keys", t.Key())
		}
		s := obj("type", "object")
		if kp := tg.sub("keys"); len(kp) > 0 {
			pn := &object{}
			if err := kp.apply(pn, t.Key()); err != nil {
				return nil, err
			}
			s.set("propertyNames", pn)
		}
		vs, err := g.valueSchema(t.Elem(), tg.sub("values"), nil)
		if err != nil {
			return nil, err
		}
		if len(vs.keys) > 0 {
			s.set("additionalProperties", vs)
		}
		return s, tg.apply(s, t)
	}
	return nil, fmt.Errorf("type %s has no JSON Schema mapping", t)
}

// defName is a type's definition name: its Go name with the leading
// capitals in lower case (HTTPInputs: httpInputs).
func defName(t reflect.Type) string { return lowerFirst(t.Name()) }

func lowerFirst(s string) string {
	r := []rune(s)
	i := 0
	for i < len(r) && r[i] >= 'A' && r[i] <= 'Z' {
		i++
	}
	if i > 1 && i < len(r) {
		i-- // the last capital starts the next word
	}
	return strings.ToLower(string(r[:i])) + string(r[i:])
}

func pkgName(path string) string { return path[strings.LastIndex(path, "/")+1:] }

// tag is a parsed `jsonschema` tag: keyword to values, in order.
type tag map[string][]string

func parseTag(s string) (tag, error) {
	t := tag{}
	if s == "" {
		return t, nil
	}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	parts = append(parts, cur.String())
	for _, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		if k == "" {
			return nil, fmt.Errorf("empty keyword in jsonschema tag %q", s)
		}
		t[k] = append(t[k], v)
	}
	return t, nil
}

func (t tag) has(k string) bool  { _, ok := t[k]; return ok }
func (t tag) flag(k string) bool { return t.has(k) }

func (t tag) value(k string) string {
	if v := t[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// sub returns the keywords under prefix ("items": items.pattern=...).
func (t tag) sub(prefix string) tag {
	out := tag{}
	for k, v := range t {
		if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
			out[rest] = v
		}
	}
	return out
}

// keywords the generator reads elsewhere, not schema keywords of the value.
var structural = map[string]bool{"required": true, "oneOf": true, "needs": true, "valuesFrom": true, "kindName": true, "kindInputs": true}

var numeric = map[string]bool{"minimum": true, "maximum": true, "exclusiveMinimum": true}

// apply adds the tag's keywords to s, the schema of a value of Go type t.
func (t tag) apply(s *object, typ reflect.Type) error {
	names := make([]string, 0, len(t))
	for k := range t {
		if !strings.Contains(k, ".") && !structural[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	isString := s.get("type") == "string"
	for _, k := range names {
		vals := t[k]
		switch k {
		case "pattern", "not", "type", "default", "uniqueItems":
		case "enum":
		case "minimum", "maximum", "exclusiveMinimum", "minLength", "minItems", "maxItems", "minProperties":
			n, err := strconv.ParseFloat(vals[0], 64)
			if err != nil {
				return fmt.Errorf("%s=%s: not a number", k, vals[0])
			}
			if alts, ok := s.get("anyOf").([]any); ok && numeric[k] {
				// A value written as a number or a string (a duration):
				// the bound is on the number.
				for _, a := range alts {
					if ao, ok := a.(*object); ok && (ao.get("type") == "number" || ao.get("type") == "integer") {
						if k == "exclusiveMinimum" {
							ao.del("minimum")
						}
						ao.set(k, n)
					}
				}
				continue
			}
			s.set(k, n)
		default:
			return fmt.Errorf("unknown jsonschema keyword %q", k)
		}
	}
	if v, ok := t["type"]; ok {
		var types []any
		for _, ty := range strings.Split(v[0], "|") {
			types = append(types, ty)
		}
		s.set("type", types)
	}
	if t.has("uniqueItems") {
		s.set("uniqueItems", true)
	}
	enum := t["enum"]
	var enumVals []any
	for _, e := range enum {
		enumVals = append(enumVals, literal(e, isString))
	}
	switch p := t.value("pattern"); {
	case p != "" && len(enum) > 0:
		s.del("type")
		s.set("anyOf", []any{obj("enum", enumVals), obj("type", "string", "pattern", p)})
	case p != "":
		s.set("pattern", p)
	case len(enum) > 0:
		s.set("enum", enumVals)
	}
	if v, ok := t["not"]; ok {
		s.set("not", obj("const", literal(v[0], isString)))
	}
	if v, ok := t["default"]; ok {
		s.set("default", literal(v[0], isString))
	}
	return nil
}

// literal is a tag value as JSON: a JSON value, or else a string (always
// a string for string fields).
func literal(v string, asString bool) any {
	if asString {
		return v
	}
	var out any
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return v
	}
	return out
}
