package ingest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lariat-gw/lariat/featurefetch"
)

// The typed encoders below write feast.types.Value messages byte for byte as
// featurefetch.AppendValue does for the equivalent JSON (the tests check it);
// they let text cells and Parquet values skip a JSON round trip.

// appendVarintValue appends a Value whose member typ (INT32, INT64, BOOL,
// UNIX_TIMESTAMP) holds u.
func appendVarintValue(dst []byte, typ featurefetch.ValueType, u uint64) []byte {
	dst = protowire.AppendTag(dst, protowire.Number(typ), protowire.VarintType)
	return protowire.AppendVarint(dst, u)
}

func appendDoubleValue(dst []byte, f float64) []byte {
	dst = protowire.AppendTag(dst, protowire.Number(featurefetch.TypeDouble), protowire.Fixed64Type)
	return protowire.AppendFixed64(dst, math.Float64bits(f))
}

func appendFloatValue(dst []byte, f float32) []byte {
	dst = protowire.AppendTag(dst, protowire.Number(featurefetch.TypeFloat), protowire.Fixed32Type)
	return protowire.AppendFixed32(dst, math.Float32bits(f))
}

// appendBytesValue appends a Value whose member typ (BYTES or STRING) holds b.
func appendBytesValue(dst []byte, typ featurefetch.ValueType, b []byte) []byte {
	dst = protowire.AppendTag(dst, protowire.Number(typ), protowire.BytesType)
	return protowire.AppendBytes(dst, b)
}

// listWriter appends a *_LIST Value element by element: numeric elements
// packed, as protobuf encoders (and featurefetch) write them.
type listWriter struct {
	elem     featurefetch.ValueType
	lenAt    int
	packedAt int // -1 when not packed
}

func beginList(dst []byte, typ featurefetch.ValueType) ([]byte, listWriter) {
	lw := listWriter{elem: typ - 10, packedAt: -1}
	dst = protowire.AppendTag(dst, protowire.Number(typ), protowire.BytesType)
	lw.lenAt = len(dst)
	dst = append(dst, 0)
	if lw.elem != featurefetch.TypeBytes && lw.elem != featurefetch.TypeString {
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = append(dst, 0)
		lw.packedAt = len(dst) - 1
	}
	return dst, lw
}

func (lw *listWriter) appendVarint(dst []byte, u uint64) []byte {
	return protowire.AppendVarint(dst, u)
}

func (lw *listWriter) appendDouble(dst []byte, f float64) []byte {
	return protowire.AppendFixed64(dst, math.Float64bits(f))
}

func (lw *listWriter) appendFloat(dst []byte, f float32) []byte {
	return protowire.AppendFixed32(dst, math.Float32bits(f))
}

func (lw *listWriter) appendBytes(dst, b []byte) []byte {
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	return protowire.AppendBytes(dst, b)
}

// end fixes the length prefixes.
func (lw *listWriter) end(dst []byte) []byte {
	if lw.packedAt >= 0 {
		dst = fixLength(dst, lw.packedAt)
	}
	return fixLength(dst, lw.lenAt)
}

// fixLength rewrites the one-byte length placeholder at lenAt as the varint
// length of what follows it, moving the body when the varint needs more bytes.
func fixLength(dst []byte, lenAt int) []byte {
	bodyAt := lenAt + 1
	n := len(dst) - bodyAt
	size := protowire.SizeVarint(uint64(n))
	if size == 1 {
		dst[lenAt] = byte(n)
		return dst
	}
	dst = append(dst, make([]byte, size-1)...)
	copy(dst[bodyAt+size-1:], dst[bodyAt:bodyAt+n])
	protowire.AppendVarint(dst[lenAt:lenAt], uint64(n))
	return dst
}

// errNotValue is returned by the text converters; the caller names the
// column and the expected type.
var errNotValue = errors.New("not a value of the type")

// appendTextValue appends the text cell converted to typ as a serialized
// Value. Scalars use the usual text forms (integers, floats, true/false/1/0,
// base64 for BYTES, epoch seconds or a timestamp for UNIX_TIMESTAMP); lists
// are JSON arrays, converted by featurefetch.AppendValue. The caller handles
// empty cells (null).
func appendTextValue(dst []byte, typ featurefetch.ValueType, cell string) ([]byte, error) {
	switch typ {
	case featurefetch.TypeString:
		if !utf8.ValidString(cell) {
			return dst, errors.New("string is not valid UTF-8")
		}
		return appendBytesValue(dst, typ, s2b(cell)), nil
	case featurefetch.TypeBytes:
		n, ok := base64Len(cell)
		if !ok {
			return dst, errNotValue
		}
		start := len(dst)
		dst = protowire.AppendTag(dst, protowire.Number(typ), protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(n))
		bodyAt := len(dst)
		var err error
		if dst, err = base64.StdEncoding.AppendDecode(dst, s2b(cell)); err != nil || len(dst)-bodyAt != n {
			return dst[:start], errNotValue
		}
		return dst, nil
	case featurefetch.TypeInt32, featurefetch.TypeInt64:
		v, err := parseInt(cell, typ)
		if err != nil {
			return dst, err
		}
		return appendVarintValue(dst, typ, uint64(v)), nil
	case featurefetch.TypeDouble:
		f, err := strconv.ParseFloat(cell, 64)
		if err != nil {
			return dst, errNotValue
		}
		return appendDoubleValue(dst, f), nil
	case featurefetch.TypeFloat:
		f, err := strconv.ParseFloat(cell, 32)
		if err != nil {
			return dst, errNotValue
		}
		return appendFloatValue(dst, float32(f)), nil
	case featurefetch.TypeBool:
		b, err := strconv.ParseBool(cell)
		if err != nil {
			return dst, errNotValue
		}
		var u uint64
		if b {
			u = 1
		}
		return appendVarintValue(dst, typ, u), nil
	case featurefetch.TypeUnixTimestamp:
		t, err := parseTimestamp(cell)
		if err != nil {
			return dst, errNotValue
		}
		return appendVarintValue(dst, typ, uint64(t.Unix())), nil
	}
	if typ.IsList() {
		return featurefetch.AppendValue(dst, typ, s2b(cell))
	}
	return dst, fmt.Errorf("unsupported value type %s", typ)
}

// base64Len returns the decoded length of padded standard base64.
func base64Len(s string) (int, bool) {
	if len(s)%4 != 0 {
		return 0, false
	}
	n := len(s) / 4 * 3
	if strings.HasSuffix(s, "==") {
		n -= 2
	} else if strings.HasSuffix(s, "=") {
		n--
	}
	return n, true
}

func parseInt(s string, typ featurefetch.ValueType) (int64, error) {
	v, err := featurefetch.ParseInt(s, typ)
	if err != nil {
		return 0, errNotValue
	}
	return v, nil
}

// entityFromText converts a text cell to an entity key value of typ. The
// value may share cell's memory.
func entityFromText(typ featurefetch.ValueType, cell string) (featurefetch.EntityValue, error) {
	ev := featurefetch.EntityValue{Type: typ}
	switch typ {
	case featurefetch.TypeInt32, featurefetch.TypeInt64:
		v, err := parseInt(cell, typ)
		if err != nil {
			return ev, err
		}
		ev.Int = v
	case featurefetch.TypeString:
		ev.Str = cell
	case featurefetch.TypeBytes:
		b, err := base64.StdEncoding.DecodeString(cell)
		if err != nil {
			return ev, errNotValue
		}
		ev.Str = string(b)
	default:
		return ev, fmt.Errorf("value type %s cannot be used in an entity key", typ)
	}
	return ev, nil
}

// errBadTimestamp describes the accepted timestamp forms.
var errBadTimestamp = errors.New("is not a timestamp (want RFC 3339 or epoch seconds)")

// parseTimestamp parses an event time: RFC 3339 with "T" or a space between
// date and time, optional fraction, and "Z", an offset or no zone (UTC); a
// date alone (midnight UTC); or epoch seconds with an optional fraction.
func parseTimestamp(s string) (time.Time, error) {
	if len(s) == 0 {
		return time.Time{}, errBadTimestamp
	}
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		if t, ok := parseEpoch(s); ok {
			return t, nil
		}
		return time.Time{}, errBadTimestamp
	}
	if len(s) == 10 {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return time.Time{}, errBadTimestamp
		}
		return t, nil
	}
	if len(s) < 19 || len(s) > 64 {
		return time.Time{}, errBadTimestamp
	}
	in := s
	if s[10] != 'T' || !hasZone(s) || s[len(s)-1] == 'z' {
		var buf [72]byte
		b := append(buf[:0], s...)
		if b[10] == ' ' || b[10] == 't' {
			b[10] = 'T'
		}
		if n := len(b); b[n-1] == 'z' {
			b[n-1] = 'Z'
		} else if !hasZone(s) {
			b = append(b, 'Z')
		}
		in = string(b)
	}
	t, err := time.Parse(time.RFC3339Nano, in)
	if err != nil {
		return time.Time{}, errBadTimestamp
	}
	return t, nil
}

// hasZone reports whether a date-time string ends with a zone: "Z" or ±hh:mm.
func hasZone(s string) bool {
	n := len(s)
	if s[n-1] == 'Z' || s[n-1] == 'z' {
		return true
	}
	return n >= 25 && (s[n-6] == '+' || s[n-6] == '-') && s[n-3] == ':'
}

// maxEpochSeconds keeps parsed times within years 1..9999, as RFC 3339 does.
const maxEpochSeconds = 253402300799

// parseEpoch parses decimal epoch seconds with an optional fraction of up
// to 9 digits.
func parseEpoch(s string) (time.Time, bool) {
	intPart, frac, hasFrac := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || sec > maxEpochSeconds || sec < -62135596800 || intPart == "-" {
		return time.Time{}, false
	}
	var nsec int64
	if hasFrac {
		if len(frac) == 0 || len(frac) > 9 {
			return time.Time{}, false
		}
		for i := 0; i < 9; i++ {
			d := int64(0)
			if i < len(frac) {
				c := frac[i]
				if c < '0' || c > '9' {
					return time.Time{}, false
				}
				d = int64(c - '0')
			}
			nsec = nsec*10 + d
		}
		if strings.HasPrefix(intPart, "-") && nsec > 0 {
			sec--
			nsec = 1e9 - nsec
		}
	}
	return time.Unix(sec, nsec).UTC(), true
}

// timeInRange reports whether t lies within years 1..9999.
func timeInRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// notAType formats "<shown> is not a FLOAT" (or "an INT64").
func notAType(shown string, typ featurefetch.ValueType) string {
	name := typ.String()
	article := "a"
	if strings.HasPrefix(name, "INT") {
		article = "an"
	}
	return shown + " is not " + article + " " + name
}

// quoteCell quotes a text cell for messages, shortened to 64 bytes.
func quoteCell(s string) string {
	if len(s) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// shortJSON shows raw JSON in messages, shortened to 64 bytes.
func shortJSON(raw string) string {
	if len(raw) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(raw[cut]) {
			cut--
		}
		return raw[:cut] + "..."
	}
	return raw
}

// typeHint adds what the type expects to a type error, when that is not obvious.
func typeHint(typ featurefetch.ValueType, detail error) string {
	switch {
	case typ.IsList() && detail != nil && !errors.Is(detail, errNotValue):
		return " (" + detail.Error() + ")"
	case typ.IsList():
		return " (want a JSON array)"
	case typ == featurefetch.TypeBytes:
		return " (want base64)"
	case typ == featurefetch.TypeUnixTimestamp:
		return " (want epoch seconds or RFC 3339)"
	case typ == featurefetch.TypeString && detail != nil && !errors.Is(detail, errNotValue):
		return " (" + detail.Error() + ")"
	}
	return ""
}

// b2s returns a string sharing b's memory; valid while b is unchanged.
func b2s(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// s2b returns a byte slice sharing s's memory; it must only be read.
func s2b(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
