package featurefetch

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spaolacci/murmur3"
	"github.com/tidwall/gjson"
	"google.golang.org/protobuf/encoding/protowire"
)

// EntityValue is one typed entity key value.
type EntityValue struct {
	// Type is TypeString, TypeBytes, TypeInt32 or TypeInt64; it must equal the
	// entity's declared type, or the key will not match Feast's.
	Type ValueType
	// Int holds TypeInt32 and TypeInt64 values.
	Int int64
	// Str holds TypeString (UTF-8) and TypeBytes (raw bytes) values.
	Str string
}

// ParseEntityValue converts a JSON entity value to typ. Integers accept JSON
// numbers and numeric strings ("1001", 1001 or 1001.0); STRING accepts strings and
// integers; BYTES accepts a base64 string.
func ParseEntityValue(typ ValueType, jsonValue []byte) (EntityValue, error) {
	if !gjson.ValidBytes(jsonValue) {
		return EntityValue{}, fmt.Errorf("invalid JSON value %.64q", jsonValue)
	}
	r := gjson.ParseBytes(jsonValue)
	ev := EntityValue{Type: typ}
	var err error
	switch typ {
	case TypeInt32, TypeInt64:
		ev.Int, err = parseJSONIntegral(r, typ)
	case TypeString:
		ev.Str, err = parseJSONKeyString(r)
	case TypeBytes:
		var b []byte
		b, err = parseJSONBytes(r)
		ev.Str = string(b)
	default:
		err = fmt.Errorf("value type %s cannot be used in an entity key", typ)
	}
	return ev, err
}

// AppendEntityKey appends the Redis key of one entity to dst: Feast's entity key
// serialization v3 of joinKeys and values (sorted by join key), then project.
// values[i] belongs to joinKeys[i]; the slices need not be sorted, though
// sorted ones (View.JoinKeys are) skip the sort. Every reader and writer of
// the online store builds its keys here, so that they agree byte for byte.
// It does not allocate for up to 8 join keys. On error dst is returned
// unchanged.
func AppendEntityKey(dst []byte, project string, joinKeys []string, values []EntityValue) ([]byte, error) {
	if len(joinKeys) != len(values) {
		return dst, fmt.Errorf("got %d join keys and %d values", len(joinKeys), len(values))
	}
	var orderBuf [8]int
	order := orderBuf[:0]
	if len(joinKeys) > len(orderBuf) {
		order = make([]int, 0, len(joinKeys))
	}
	for i := range joinKeys {
		order = append(order, i)
	}
	if !slices.IsSorted(joinKeys) {
		// Insertion sort: entities have a handful of join keys.
		for i := 1; i < len(order); i++ {
			for j := i; j > 0 && joinKeys[order[j]] < joinKeys[order[j-1]]; j-- {
				order[j], order[j-1] = order[j-1], order[j]
			}
		}
	}
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(joinKeys)))
	for _, i := range order {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(TypeString))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(joinKeys[i])))
		dst = append(dst, joinKeys[i]...)
	}
	for _, i := range order {
		ev := values[i]
		dst = binary.LittleEndian.AppendUint32(dst, uint32(ev.Type))
		switch ev.Type {
		case TypeInt32:
			dst = binary.LittleEndian.AppendUint32(dst, 4)
			dst = binary.LittleEndian.AppendUint32(dst, uint32(int32(ev.Int)))
		case TypeInt64:
			dst = binary.LittleEndian.AppendUint32(dst, 8)
			dst = binary.LittleEndian.AppendUint64(dst, uint64(ev.Int))
		case TypeString, TypeBytes:
			dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ev.Str)))
			dst = append(dst, ev.Str...)
		default:
			return dst[:start], fmt.Errorf("join key %q: value type %s cannot be used in an entity key", joinKeys[i], ev.Type)
		}
	}
	return append(dst, project...), nil
}

// The join keys and the one entity of entityless views.
var (
	dummyJoinKeys = []string{DummyJoinKey}
	dummyEntity   = []EntityValue{{Type: TypeString, Str: DummyEntityValue}}
)

// FieldHash returns the 4-byte hash field holding feature of view:
// murmur3_32("<view>:<feature>", seed 0), little-endian.
func FieldHash(view, feature string) string {
	var buf [4]byte
	return string(AppendFieldHash(buf[:0], view, feature))
}

// AppendFieldHash appends FieldHash(view, feature) to dst.
func AppendFieldHash(dst []byte, view, feature string) []byte {
	// The streaming hash, not murmur3.Sum32: Sum32's pointer arithmetic fails
	// the race detector's checkptr.
	h := murmur3.New32()
	_, _ = h.Write([]byte(view))
	_, _ = h.Write([]byte{':'})
	_, _ = h.Write([]byte(feature))
	return binary.LittleEndian.AppendUint32(dst, h.Sum32())
}

// TimestampField returns the hash field holding the event time of view's row: "_ts:<view>".
func TimestampField(view string) string {
	return "_ts:" + view
}

// AppendTimestamp appends t as a serialized google.protobuf.Timestamp.
func AppendTimestamp(dst []byte, t time.Time) []byte {
	sec, nsec := t.Unix(), int32(t.Nanosecond())
	if sec != 0 {
		dst = protowire.AppendTag(dst, 1, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(sec))
	}
	if nsec != 0 {
		dst = protowire.AppendTag(dst, 2, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(nsec)))
	}
	return dst
}

// AppendValue converts a JSON value to typ and appends it as a serialized
// feast.types.Value. JSON null appends nothing: an empty Value, Feast's null.
//
// Accepted JSON per type: BYTES a base64 string; STRING a string; INT32, INT64
// an integer or numeric string, also with a fraction of zeros (7.0); FLOAT, DOUBLE a number or numeric string; BOOL
// true/false; UNIX_TIMESTAMP epoch seconds or an RFC 3339 string; *_LIST an
// array of the element type (null elements are errors).
func AppendValue(dst []byte, typ ValueType, jsonValue []byte) ([]byte, error) {
	if !gjson.ValidBytes(jsonValue) {
		return dst, fmt.Errorf("invalid JSON value %.64q", jsonValue)
	}
	r := gjson.ParseBytes(jsonValue)
	if r.Type == gjson.Null {
		return dst, nil
	}
	start := len(dst)
	var err error
	if typ.IsList() {
		dst, err = appendListValue(dst, typ, r)
	} else {
		dst, err = appendScalarValue(dst, typ, r)
	}
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}

func appendScalarValue(dst []byte, typ ValueType, r gjson.Result) ([]byte, error) {
	num := protowire.Number(typ)
	switch typ {
	case TypeBytes:
		b, err := parseJSONBytes(r)
		if err != nil {
			return dst, err
		}
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendBytes(dst, b), nil
	case TypeString:
		if err := checkJSONString(r); err != nil {
			return dst, err
		}
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		return protowire.AppendString(dst, r.Str), nil
	case TypeInt32, TypeInt64, TypeBool, TypeUnixTimestamp:
		u, err := parseJSONVarint(r, typ)
		if err != nil {
			return dst, err
		}
		dst = protowire.AppendTag(dst, num, protowire.VarintType)
		return protowire.AppendVarint(dst, u), nil
	case TypeDouble:
		f, err := parseJSONFloat(r, 64)
		if err != nil {
			return dst, err
		}
		dst = protowire.AppendTag(dst, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(dst, math.Float64bits(f)), nil
	case TypeFloat:
		f, err := parseJSONFloat(r, 32)
		if err != nil {
			return dst, err
		}
		dst = protowire.AppendTag(dst, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(dst, math.Float32bits(float32(f))), nil
	}
	return dst, fmt.Errorf("unsupported value type %s", typ)
}

// appendListValue appends a *List message ({repeated T val = 1}) as the Value's
// oneof member; numeric elements are packed, as protobuf encoders write them.
func appendListValue(dst []byte, typ ValueType, r gjson.Result) ([]byte, error) {
	if !r.IsArray() {
		return dst, fmt.Errorf("want a JSON array for %s, got %s", typ, r.Type)
	}
	elem := typ.elem()
	dst = protowire.AppendTag(dst, protowire.Number(typ), protowire.BytesType)
	// Reserve one length byte; grow the prefix after encoding if needed.
	lenAt := len(dst)
	dst = append(dst, 0)
	bodyAt := len(dst)
	packed := elem != TypeBytes && elem != TypeString
	if packed {
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = append(dst, 0)
	}
	packedAt := len(dst)
	var err error
	i := 0
	r.ForEach(func(_, e gjson.Result) bool {
		if e.Type == gjson.Null {
			err = fmt.Errorf("element %d: null is not allowed in lists", i)
			return false
		}
		switch elem {
		case TypeBytes:
			var b []byte
			if b, err = parseJSONBytes(e); err == nil {
				dst = protowire.AppendTag(dst, 1, protowire.BytesType)
				dst = protowire.AppendBytes(dst, b)
			}
		case TypeString:
			if err = checkJSONString(e); err != nil {
				break
			}
			dst = protowire.AppendTag(dst, 1, protowire.BytesType)
			dst = protowire.AppendString(dst, e.Str)
		case TypeDouble:
			var f float64
			if f, err = parseJSONFloat(e, 64); err == nil {
				dst = protowire.AppendFixed64(dst, math.Float64bits(f))
			}
		case TypeFloat:
			var f float64
			if f, err = parseJSONFloat(e, 32); err == nil {
				dst = protowire.AppendFixed32(dst, math.Float32bits(float32(f)))
			}
		default:
			var u uint64
			if u, err = parseJSONVarint(e, elem); err == nil {
				dst = protowire.AppendVarint(dst, u)
			}
		}
		if err != nil {
			err = fmt.Errorf("element %d: %w", i, err)
			return false
		}
		i++
		return true
	})
	if err != nil {
		return dst, err
	}
	if packed {
		if dst, err = fixLength(dst, packedAt-1, packedAt); err != nil {
			return dst, err
		}
	}
	return fixLength(dst, lenAt, bodyAt)
}

// fixLength rewrites the one-byte length placeholder at lenAt as the varint
// length of dst[bodyAt:], moving the body when the varint needs more bytes.
func fixLength(dst []byte, lenAt, bodyAt int) ([]byte, error) {
	n := len(dst) - bodyAt
	size := protowire.SizeVarint(uint64(n))
	if size == 1 {
		dst[lenAt] = byte(n)
		return dst, nil
	}
	dst = append(dst, make([]byte, size-1)...)
	copy(dst[bodyAt+size-1:], dst[bodyAt:bodyAt+n])
	protowire.AppendVarint(dst[lenAt:lenAt], uint64(n))
	return dst, nil
}

// checkJSONString accepts JSON strings holding valid UTF-8, as protobuf strings must.
func checkJSONString(r gjson.Result) error {
	if r.Type != gjson.String {
		return fmt.Errorf("want a JSON string, got %s", r.Type)
	}
	if !utf8.ValidString(r.Str) {
		return fmt.Errorf("string is not valid UTF-8")
	}
	return nil
}

// parseJSONInt reads an integer of typ from a JSON number or string. Entity
// keys of requests take it: a key is an identifier, written as one.
func parseJSONInt(r gjson.Result, typ ValueType) (int64, error) {
	return parseJSONIntAs(r, typ, false)
}

// parseJSONIntegral is parseJSONInt that also takes integral floats (7.0),
// for values that data tools write: feature values and ingested rows.
func parseJSONIntegral(r gjson.Result, typ ValueType) (int64, error) {
	return parseJSONIntAs(r, typ, true)
}

func parseJSONIntAs(r gjson.Result, typ ValueType, integral bool) (int64, error) {
	var s string
	switch r.Type {
	case gjson.Number:
		s = r.Raw
	case gjson.String:
		s = r.Str
	default:
		return 0, fmt.Errorf("want an integer, got %s", r.Type)
	}
	var v int64
	var err error
	if integral {
		v, err = ParseInt(s, typ)
	} else {
		bits := 64
		if typ == TypeInt32 {
			bits = 32
		}
		v, err = strconv.ParseInt(s, 10, bits)
	}
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q", typ, s)
	}
	return v, nil
}

// ParseInt parses a decimal integer of typ (INT32 or INT64). An integral
// number written with a fraction of zeros ("7.0", "7."), as pandas writes an
// integer column that holds nulls, is accepted; "7.5" is not.
func ParseInt(s string, typ ValueType) (int64, error) {
	bits := 64
	if typ == TypeInt32 {
		bits = 32
	}
	if dot := strings.IndexByte(s, '.'); dot > 0 && s[dot-1] >= '0' && s[dot-1] <= '9' &&
		strings.Trim(s[dot+1:], "0") == "" {
		s = s[:dot]
	}
	return strconv.ParseInt(s, 10, bits)
}

func parseJSONKeyString(r gjson.Result) (string, error) {
	switch r.Type {
	case gjson.String:
		return r.Str, nil
	case gjson.Number:
		if _, err := strconv.ParseInt(r.Raw, 10, 64); err == nil {
			return r.Raw, nil
		}
	}
	return "", fmt.Errorf("want a string, got %s", r.Raw)
}

func parseJSONBytes(r gjson.Result) ([]byte, error) {
	if r.Type != gjson.String {
		return nil, fmt.Errorf("want a base64 string, got %s", r.Type)
	}
	b, err := base64.StdEncoding.DecodeString(r.Str)
	if err != nil {
		return nil, fmt.Errorf("invalid base64: %w", err)
	}
	return b, nil
}

func parseJSONFloat(r gjson.Result, bits int) (float64, error) {
	var s string
	switch r.Type {
	case gjson.Number:
		s = r.Raw
	case gjson.String:
		s = r.Str
	default:
		return 0, fmt.Errorf("want a number, got %s", r.Type)
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	return f, nil
}

// parseJSONVarint parses the varint-encoded scalar types: INT32, INT64, BOOL, UNIX_TIMESTAMP.
func parseJSONVarint(r gjson.Result, typ ValueType) (uint64, error) {
	switch typ {
	case TypeBool:
		switch r.Type {
		case gjson.True:
			return 1, nil
		case gjson.False:
			return 0, nil
		}
		return 0, fmt.Errorf("want true or false, got %s", r.Raw)
	case TypeUnixTimestamp:
		if r.Type == gjson.String {
			if t, err := time.Parse(time.RFC3339Nano, r.Str); err == nil {
				return uint64(t.Unix()), nil
			}
		}
		v, err := parseJSONIntegral(r, TypeInt64)
		if err != nil {
			return 0, fmt.Errorf("want epoch seconds or an RFC 3339 time, got %s", r.Raw)
		}
		return uint64(v), nil
	}
	v, err := parseJSONIntegral(r, typ)
	// int32 is sign-extended to 64 bits on the wire, like int64.
	return uint64(v), err
}
