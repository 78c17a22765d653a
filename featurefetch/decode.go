package featurefetch

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lariat-gw/lariat/internal/jsonutil"
)

var errBadValue = errors.New("malformed feast.types.Value")

// AppendValueJSON decodes a serialized feast.types.Value and appends it as JSON:
// numbers for integer and float types (NaN and infinities as null), strings,
// base64 strings for bytes, epoch seconds for UNIX_TIMESTAMP, arrays for lists.
// An empty Value or null_val appends null and reports isNull. On error nothing
// is appended.
func AppendValueJSON(dst, value []byte) (out []byte, isNull bool, err error) {
	// Value is a oneof: when several members are present the last one wins.
	var (
		num     protowire.Number = 0
		wtyp    protowire.Type
		payload []byte
		varint  uint64
	)
	b := value
	for len(b) > 0 {
		n, t, l := protowire.ConsumeTag(b)
		if l < 0 {
			return dst, false, fmt.Errorf("%w: bad tag", errBadValue)
		}
		b = b[l:]
		var m int
		switch t {
		case protowire.VarintType:
			varint, m = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, m = protowire.ConsumeFixed32(b)
			varint = uint64(v)
		case protowire.Fixed64Type:
			varint, m = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			payload, m = protowire.ConsumeBytes(b)
		default:
			m = protowire.ConsumeFieldValue(n, t, b)
		}
		if m < 0 {
			return dst, false, fmt.Errorf("%w: field %d: %w", errBadValue, n, protowire.ParseError(m))
		}
		b = b[m:]
		num, wtyp = n, t
	}
	if num == 0 || num == protowire.Number(TypeNull) {
		return append(dst, "null"...), true, nil
	}
	typ := ValueType(num)
	want := wireTypeOf(typ)
	if want < 0 {
		return dst, false, fmt.Errorf("%w: unsupported field %d", errBadValue, num)
	}
	if wtyp != want {
		return dst, false, fmt.Errorf("%w: field %d has wire type %d, want %d", errBadValue, num, wtyp, want)
	}
	if typ.IsList() {
		start := len(dst)
		out, err := appendListJSON(dst, typ.elem(), payload)
		if err != nil {
			return out[:start], false, err
		}
		return out, false, nil
	}
	switch typ {
	case TypeBytes:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, payload)
		return append(dst, '"'), false, nil
	case TypeString:
		return jsonutil.AppendString(dst, jsonutil.B2S(payload)), false, nil
	}
	return appendScalarJSON(dst, typ, varint), false, nil
}

// wireTypeOf returns the wire type of Value's oneof member typ, or -1.
func wireTypeOf(typ ValueType) protowire.Type {
	switch typ {
	case TypeBytes, TypeString:
		return protowire.BytesType
	case TypeInt32, TypeInt64, TypeBool, TypeUnixTimestamp:
		return protowire.VarintType
	case TypeDouble:
		return protowire.Fixed64Type
	case TypeFloat:
		return protowire.Fixed32Type
	}
	if typ.IsList() {
		return protowire.BytesType
	}
	return -1
}

// appendScalarJSON appends a numeric or bool scalar read as a varint or fixed value.
func appendScalarJSON(dst []byte, typ ValueType, v uint64) []byte {
	switch typ {
	case TypeInt32:
		return strconv.AppendInt(dst, int64(int32(v)), 10)
	case TypeInt64, TypeUnixTimestamp:
		return strconv.AppendInt(dst, int64(v), 10)
	case TypeBool:
		if v != 0 {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case TypeDouble:
		return appendJSONFloat(dst, math.Float64frombits(v), 64)
	case TypeFloat:
		return appendJSONFloat(dst, float64(math.Float32frombits(uint32(v))), 32)
	}
	return append(dst, "null"...)
}

// appendListJSON decodes a *List message ({repeated T val = 1}) into a JSON array.
// Numeric elements may be packed or not, as protobuf parsers must accept both.
func appendListJSON(dst []byte, elem ValueType, msg []byte) ([]byte, error) {
	dst = append(dst, '[')
	first := len(dst) // a comma goes before every element after the first
	elemWire := wireTypeOf(elem)
	for len(msg) > 0 {
		n, t, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return dst, fmt.Errorf("%w: bad list tag", errBadValue)
		}
		msg = msg[l:]
		if n != 1 {
			m := protowire.ConsumeFieldValue(n, t, msg)
			if m < 0 {
				return dst, fmt.Errorf("%w: list field %d: %w", errBadValue, n, protowire.ParseError(m))
			}
			msg = msg[m:]
			continue
		}
		if t == protowire.BytesType && elemWire != protowire.BytesType {
			// Packed numeric elements.
			packed, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return dst, fmt.Errorf("%w: packed list: %w", errBadValue, protowire.ParseError(m))
			}
			msg = msg[m:]
			for len(packed) > 0 {
				v, k := consumeScalar(elemWire, packed)
				if k < 0 {
					return dst, fmt.Errorf("%w: packed list element: %w", errBadValue, protowire.ParseError(k))
				}
				packed = packed[k:]
				if len(dst) > first {
					dst = append(dst, ',')
				}
				dst = appendScalarJSON(dst, elem, v)
			}
			continue
		}
		if t != elemWire {
			return dst, fmt.Errorf("%w: list element has wire type %d, want %d", errBadValue, t, elemWire)
		}
		if t == protowire.BytesType {
			p, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return dst, fmt.Errorf("%w: list element: %w", errBadValue, protowire.ParseError(m))
			}
			msg = msg[m:]
			if len(dst) > first {
				dst = append(dst, ',')
			}
			if elem == TypeBytes {
				dst = append(dst, '"')
				dst = base64.StdEncoding.AppendEncode(dst, p)
				dst = append(dst, '"')
			} else {
				dst = jsonutil.AppendString(dst, jsonutil.B2S(p))
			}
			continue
		}
		v, m := consumeScalar(t, msg)
		if m < 0 {
			return dst, fmt.Errorf("%w: list element: %w", errBadValue, protowire.ParseError(m))
		}
		msg = msg[m:]
		if len(dst) > first {
			dst = append(dst, ',')
		}
		dst = appendScalarJSON(dst, elem, v)
	}
	return append(dst, ']'), nil
}

func consumeScalar(t protowire.Type, b []byte) (uint64, int) {
	switch t {
	case protowire.VarintType:
		return protowire.ConsumeVarint(b)
	case protowire.Fixed32Type:
		v, n := protowire.ConsumeFixed32(b)
		return uint64(v), n
	case protowire.Fixed64Type:
		return protowire.ConsumeFixed64(b)
	}
	return 0, -1
}

// DecodeTimestamp decodes a serialized google.protobuf.Timestamp.
func DecodeTimestamp(b []byte) (time.Time, error) {
	sec, nsec, err := decodeTimestamp(b)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(sec, int64(nsec)).UTC(), nil
}

func decodeTimestamp(b []byte) (sec int64, nsec int32, err error) {
	for len(b) > 0 {
		n, t, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, 0, errors.New("malformed timestamp: bad tag")
		}
		b = b[l:]
		if t == protowire.VarintType && (n == 1 || n == 2) {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, 0, fmt.Errorf("malformed timestamp: %w", protowire.ParseError(m))
			}
			b = b[m:]
			if n == 1 {
				sec = int64(v)
			} else {
				nsec = int32(v)
			}
			continue
		}
		m := protowire.ConsumeFieldValue(n, t, b)
		if m < 0 {
			return 0, 0, fmt.Errorf("malformed timestamp: %w", protowire.ParseError(m))
		}
		b = b[m:]
	}
	if nsec < 0 || nsec > 999_999_999 {
		return 0, 0, fmt.Errorf("malformed timestamp: nanos %d out of range", nsec)
	}
	return sec, nsec, nil
}

// appendRFC3339 appends the UTC time as RFC 3339 with "Z" and 0, 3, 6 or 9
// fraction digits, as protobuf's JSON mapping of Timestamp does.
func appendRFC3339(dst []byte, unixNano int64) []byte {
	t := time.Unix(0, unixNano).UTC()
	dst = t.AppendFormat(dst, "2006-01-02T15:04:05")
	ns := t.Nanosecond()
	switch {
	case ns == 0:
	case ns%1_000_000 == 0:
		dst = appendFraction(dst, ns/1_000_000, 3)
	case ns%1_000 == 0:
		dst = appendFraction(dst, ns/1_000, 6)
	default:
		dst = appendFraction(dst, ns, 9)
	}
	return append(dst, 'Z')
}

func appendFraction(dst []byte, v, digits int) []byte {
	dst = append(dst, '.')
	var buf [9]byte
	for i := digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[:digits]...)
}

// appendJSONFloat formats like encoding/json: shortest representation for the
// bit size, exponent form outside [1e-6, 1e21). NaN and infinities become null.
func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if out, ok := appendShortDecimal(dst, f, bits); ok {
		return out
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// Turn e-09 into e-9.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// pow10 holds the powers of ten up to 1e6, exact in a float32 and a
// float64.
var pow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6}

// shortDecimals is how many fraction digits appendShortDecimal handles at
// most, for float64 and float32 values: at these, the scaled value stays
// an exact integer for values below 9e9 and 16,777.
const (
	shortDecimals64 = 6
	shortDecimals32 = 3
)

// appendShortDecimal appends f when it has a short decimal form, faster
// than strconv's shortest formatting and with the same result. With k the
// most fraction digits handled, it looks for the one decimal m/10^k that
// reads back as f (the division of two exact floats is correctly
// rounded, as reading the decimal is); the shortest form is m with its
// trailing zeros dropped, since any shorter decimal that reads back is
// also one with k digits. Feature values are mostly such decimals
// (prices, rates, counts). It reports false when there is none, or more
// than one (values past 9e9), and leaves those to strconv.
func appendShortDecimal(dst []byte, f float64, bits int) ([]byte, bool) {
	abs := math.Abs(f)
	if abs == 0 {
		if math.Signbit(f) {
			return dst, false
		}
		return append(dst, '0'), true
	}
	k, limit := shortDecimals64, float64(1<<53)
	if bits == 32 {
		k, limit = shortDecimals32, 1<<24
	}
	m := math.Round(abs * float64(pow10[k]))
	if m < 1 || m+1 >= limit {
		return dst, false
	}
	back, below, above := readsBack(m, k, abs, bits), readsBack(m-1, k, abs, bits), readsBack(m+1, k, abs, bits)
	switch {
	case back && !below && !above:
	case below && !back && !above:
		m--
	case above && !back && !below:
		m++
	default:
		return dst, false
	}
	n := uint64(m)
	for k > 0 && n%10 == 0 {
		n /= 10
		k--
	}
	if f < 0 {
		dst = append(dst, '-')
	}
	if k == 0 {
		return strconv.AppendUint(dst, n, 10), true
	}
	p := pow10[k]
	dst = strconv.AppendUint(dst, n/p, 10)
	dst = append(dst, '.')
	var frac [shortDecimals64]byte
	r := n % p
	for i := k - 1; i >= 0; i-- {
		frac[i] = byte('0' + r%10)
		r /= 10
	}
	return append(dst, frac[:k]...), true
}

// readsBack reports whether the decimal m/10^k is read as abs at the bit
// size.
func readsBack(m float64, k int, abs float64, bits int) bool {
	if bits == 32 {
		return float32(m)/float32(pow10[k]) == float32(abs)
	}
	return m/float64(pow10[k]) == abs
}
