package schemagen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// object is a JSON object that keeps its keys in the order they were set,
// so the schema reads in a fixed, readable order (and properties in the
// order of the Go fields).
type object struct {
	keys []string
	vals map[string]any
}

// obj builds an object from key, value pairs.
func obj(kv ...any) *object {
	o := &object{}
	for i := 0; i+1 < len(kv); i += 2 {
		o.set(kv[i].(string), kv[i+1])
	}
	return o
}

func (o *object) set(k string, v any) {
	if o.vals == nil {
		o.vals = map[string]any{}
	}
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// prepend sets k as the first key.
func (o *object) prepend(k string, v any) {
	o.del(k)
	o.set(k, v)
	copy(o.keys[1:], o.keys[:len(o.keys)-1])
	o.keys[0] = k
}

func (o *object) get(k string) any { return o.vals[k] }

func (o *object) del(k string) {
	if _, ok := o.vals[k]; !ok {
		return
	}
	delete(o.vals, k)
	for i, key := range o.keys {
		if key == k {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
			break
		}
	}
}

// keyOrder is the order of the keywords of a schema a type's hook returns
// (a Go map has none); other keys follow, sorted.
var keyOrder = []string{"description", "$ref", "type", "const", "enum", "pattern", "minimum", "exclusiveMinimum", "maximum",
	"additionalProperties", "required", "oneOf", "anyOf", "properties", "items", "default"}

// toObject converts a hook's schema, maps nested, into objects.
func toObject(m map[string]any) *object {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		for i, o := range keyOrder {
			if o == k {
				return i
			}
		}
		return len(keyOrder)
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, rj := rank(keys[i]), rank(keys[j])
		if ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	o := &object{}
	for _, k := range keys {
		o.set(k, convert(m[k]))
	}
	return o
}

func convert(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return toObject(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = convert(e)
		}
		return out
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out
	}
	return v
}

// writeJSON writes v indented by two spaces per level, without escaping
// HTML characters (patterns and descriptions hold < > &).
func writeJSON(b *bytes.Buffer, v any, indent string) {
	switch v := v.(type) {
	case *object:
		if len(v.keys) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		for i, k := range v.keys {
			b.WriteString(indent + "  ")
			writeString(b, k)
			b.WriteString(": ")
			writeJSON(b, v.vals[k], indent+"  ")
			if i < len(v.keys)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "}")
	case []any:
		if len(v) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, e := range v {
			b.WriteString(indent + "  ")
			writeJSON(b, e, indent+"  ")
			if i < len(v)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "]")
	case string:
		writeString(b, v)
	case float64:
		b.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
	case int:
		b.WriteString(strconv.Itoa(v))
	case uint64:
		b.WriteString(strconv.FormatUint(v, 10))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case nil:
		b.WriteString("null")
	default:
		panic(fmt.Sprintf("BUG: schemagen cannot write a %T", v))
	}
}

func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	b.Truncate(b.Len() - 1) // Encode's newline
}
