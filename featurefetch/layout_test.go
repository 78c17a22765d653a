package featurefetch

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lariat-gw/lariat/internal/jsonutil"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// entityKeyVectors are the test vectors of Feast's entity key serialization
// v3 plus project (Feast's test_redis.py and onlinestore_test.go).
var entityKeyVectors = []struct {
	project, joinKey string
	typ              ValueType
	value            EntityValue
	json             string // the value as a request sends it
	hex              string // "driver_id" etc. written as hex too
}{
	{"proj", "driver_id", TypeInt64, EntityValue{Type: TypeInt64, Int: 1001}, `1001`,
		"01000000 02000000 09000000 6472697665725f6964 04000000 08000000 e903000000000000 70726f6a"},
	{"test", "entity", TypeInt32, EntityValue{Type: TypeInt32, Int: 1}, `1`,
		"01000000 02000000 06000000 656e74697479 03000000 04000000 01000000 74657374"},
}

func TestEntityKeyVectors(t *testing.T) {
	for _, v := range entityKeyVectors {
		got, err := AppendEntityKey(nil, v.project, []string{v.joinKey}, []EntityValue{v.value})
		if err != nil {
			t.Fatal(err)
		}
		if want := unhex(t, v.hex); !bytes.Equal(got, want) {
			t.Fatalf("%s key:\n got %x\nwant %x", v.joinKey, got, want)
		}
	}
}

// keyRecorder is a Store that records the keys of the hashes read and
// finds nothing.
type keyRecorder struct{ keys []string }

func (k *keyRecorder) ReadHashes(_ context.Context, reads []HashRead, _ time.Duration, dst []FieldValue) ([]FieldValue, error) {
	for _, r := range reads {
		k.keys = append(k.keys, r.Key)
		dst = append(dst, make([]FieldValue, len(r.Fields))...)
	}
	return dst, nil
}

// readKeys returns the Redis keys a plan over features reads for the
// entity keys (JSON, one per join key of the plan).
func readKeys(t *testing.T, v *Views, project string, features []string, keys ...string) []string {
	t.Helper()
	p, err := v.NewPlan(project, features, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw := make([][]byte, len(keys))
	for i, k := range keys {
		raw[i] = []byte(k)
	}
	var rec keyRecorder
	if _, err := p.Fetch(context.Background(), &rec, raw, nil); err != nil {
		t.Fatal(err)
	}
	return rec.keys
}

// TestReadAndWriteKeysAgree checks that the read path (Plan) asks for the
// keys the write path (AppendEntityKey, as ingestion and seeding call it)
// writes, and that both follow Feast's vectors: keys that differ would
// make every read miss without an error.
func TestReadAndWriteKeysAgree(t *testing.T) {
	for _, v := range entityKeyVectors {
		doc := fmt.Sprintf("project: %s\nentities: [{name: %s, value_type: %s}]\n"+
			"feature_views: [{name: v, entities: [%s], features: [{name: f, dtype: FLOAT}]}]\n",
			v.project, v.joinKey, v.typ, v.joinKey)
		views, err := ParseViews("v.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		got := readKeys(t, views, "", []string{"v:f"}, v.json)
		if want := string(unhex(t, v.hex)); len(got) != 1 || got[0] != want {
			t.Fatalf("%s: read key %x, want %x", v.joinKey, got, want)
		}
	}

	views, err := ParseViews("v.yaml", []byte(`project: p
entities:
  - {name: zone, value_type: INT32}
  - {name: a_key, value_type: BYTES}
  - {name: driver, value_type: STRING}
feature_views:
  - {name: multi, entities: [zone, a_key, driver], features: [{name: f, dtype: FLOAT}]}
  - {name: global, features: [{name: g, dtype: FLOAT}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	// Plan join keys are sorted: a_key, driver, zone.
	got := readKeys(t, views, "", []string{"multi:f", "global:g"}, `["AP8=", ""]`, `["héllo", "x\"y"]`, `[-7, 2147483647]`)
	f := func(i int, want []byte, ref string) {
		t.Helper()
		if got[i] != string(want) || got[i] != ref {
			t.Fatalf("key %d:\nread  %x\nwrite %x\nref   %x", i, got[i], want, ref)
		}
	}
	write := func(keys []string, vals ...EntityValue) []byte {
		t.Helper()
		k, err := AppendEntityKey(nil, "p", keys, vals)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if len(got) != 4 {
		t.Fatalf("read %d keys, want 4 (2 entities, 2 hashes each)", len(got))
	}
	f(0, write([]string{"zone", "a_key", "driver"}, EntityValue{Type: TypeInt32, Int: -7}, EntityValue{Type: TypeBytes, Str: "\x00\xff"}, EntityValue{Type: TypeString, Str: "héllo"}),
		refEntityKey("p", testKey{"zone", TypeInt32, int32(-7)}, testKey{"a_key", TypeBytes, []byte{0, 0xff}}, testKey{"driver", TypeString, "héllo"}))
	f(1, write(dummyJoinKeys, dummyEntity...), refEntityKey("p", testKey{DummyJoinKey, TypeString, DummyEntityValue}))
	f(2, write([]string{"zone", "a_key", "driver"}, EntityValue{Type: TypeInt32, Int: 2147483647}, EntityValue{Type: TypeBytes}, EntityValue{Type: TypeString, Str: `x"y`}),
		refEntityKey("p", testKey{"zone", TypeInt32, int32(2147483647)}, testKey{"a_key", TypeBytes, []byte{}}, testKey{"driver", TypeString, `x"y`}))
	f(3, write(dummyJoinKeys, dummyEntity...), refEntityKey("p", testKey{DummyJoinKey, TypeString, DummyEntityValue}))
}

func TestAppendEntityKeyAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	sorted := []string{"a_key", "driver", "zone"}
	unsorted := []string{"zone", "a_key", "driver"}
	vals := []EntityValue{{Type: TypeInt32, Int: -7}, {Type: TypeBytes, Str: "\x00\xff"}, {Type: TypeString, Str: "héllo"}}
	for _, keys := range [][]string{sorted, unsorted} {
		if n := testing.AllocsPerRun(100, func() {
			buf, _ = AppendEntityKey(buf[:0], "p", keys, vals)
		}); n != 0 {
			t.Errorf("AppendEntityKey(%v) allocates %v times", keys, n)
		}
	}
	// On error dst is returned unchanged.
	out, err := AppendEntityKey([]byte("x"), "p", []string{"a", "b"}, []EntityValue{{Type: TypeInt64}, {Type: TypeFloat}})
	if err == nil || string(out) != "x" {
		t.Fatalf("FLOAT value: %q, %v", out, err)
	}
}

func TestEntityKeySortsJoinKeys(t *testing.T) {
	got, err := AppendEntityKey(nil, "p", []string{"zone", "a_key", "driver"},
		[]EntityValue{{Type: TypeInt32, Int: -7}, {Type: TypeBytes, Str: "\x00\xff"}, {Type: TypeString, Str: "héllo"}})
	if err != nil {
		t.Fatal(err)
	}
	want := refEntityKey("p",
		testKey{"zone", TypeInt32, int32(-7)},
		testKey{"a_key", TypeBytes, []byte{0, 0xff}},
		testKey{"driver", TypeString, "héllo"})
	if string(got) != want {
		t.Fatalf("got %x\nwant %x", got, want)
	}
	if _, err := AppendEntityKey(nil, "p", []string{"x"}, []EntityValue{{Type: TypeFloat}}); err == nil {
		t.Fatal("a FLOAT entity value was accepted")
	}
	if _, err := AppendEntityKey(nil, "p", []string{"x", "y"}, []EntityValue{{Type: TypeInt64}}); err == nil {
		t.Fatal("mismatched join keys and values were accepted")
	}
}

func TestParseEntityValue(t *testing.T) {
	f := func(typ ValueType, in string, want EntityValue) {
		t.Helper()
		got, err := ParseEntityValue(typ, []byte(in))
		if err != nil {
			t.Fatalf("ParseEntityValue(%s, %s): %v", typ, in, err)
		}
		if got != want {
			t.Fatalf("ParseEntityValue(%s, %s) = %+v, want %+v", typ, in, got, want)
		}
	}
	f(TypeInt64, `1001`, EntityValue{Type: TypeInt64, Int: 1001})
	f(TypeInt64, `"1001"`, EntityValue{Type: TypeInt64, Int: 1001})
	f(TypeInt64, `-9223372036854775808`, EntityValue{Type: TypeInt64, Int: math.MinInt64})
	f(TypeInt32, `"-5"`, EntityValue{Type: TypeInt32, Int: -5})
	f(TypeInt64, `1001.0`, EntityValue{Type: TypeInt64, Int: 1001})
	f(TypeString, `"c1"`, EntityValue{Type: TypeString, Str: "c1"})
	f(TypeString, `42`, EntityValue{Type: TypeString, Str: "42"})
	f(TypeBytes, `"AP8="`, EntityValue{Type: TypeBytes, Str: "\x00\xff"})

	bad := func(typ ValueType, in string) {
		t.Helper()
		if got, err := ParseEntityValue(typ, []byte(in)); err == nil {
			t.Fatalf("ParseEntityValue(%s, %s) = %+v, want an error", typ, in, got)
		}
	}
	bad(TypeInt64, `1.5`)
	bad(TypeInt64, `"abc"`)
	bad(TypeInt64, `true`)
	bad(TypeInt32, `3000000000`)
	bad(TypeString, `1.5`)
	bad(TypeBytes, `"!!"`)
	bad(TypeFloat, `1`)
	bad(TypeInt64, ``)
}

// TestParseInt covers integral floats, as pandas writes integer columns that
// hold nulls, next to plain integers.
func TestParseInt(t *testing.T) {
	f := func(typ ValueType, in string, want int64) {
		t.Helper()
		got, err := ParseInt(in, typ)
		if err != nil || got != want {
			t.Fatalf("ParseInt(%q, %s) = %d, %v; want %d", in, typ, got, err, want)
		}
	}
	f(TypeInt64, "7", 7)
	f(TypeInt64, "7.0", 7)
	f(TypeInt64, "7.", 7)
	f(TypeInt64, "-12.000", -12)
	f(TypeInt64, "+3.0", 3)
	f(TypeInt64, "9223372036854775807.0", math.MaxInt64)
	f(TypeInt32, "-2147483648.0", math.MinInt32)

	bad := func(typ ValueType, in string) {
		t.Helper()
		if got, err := ParseInt(in, typ); err == nil {
			t.Fatalf("ParseInt(%q, %s) = %d, want an error", in, typ, got)
		}
	}
	bad(TypeInt64, "7.5")
	bad(TypeInt64, "7.01")
	bad(TypeInt64, ".0")
	bad(TypeInt64, "-.0")
	bad(TypeInt64, "7.0.0")
	bad(TypeInt64, "7e2")
	bad(TypeInt64, "7.0e2")
	bad(TypeInt64, "9223372036854775808.0")
	bad(TypeInt32, "2147483648.0")
	bad(TypeInt64, "")
}

func TestFieldHashVectors(t *testing.T) {
	f := func(view, feature, wantHex string) {
		t.Helper()
		if got := hex.EncodeToString([]byte(FieldHash(view, feature))); got != wantHex {
			t.Fatalf("FieldHash(%q, %q) = %s, want %s", view, feature, got, wantHex)
		}
	}
	f("feature_view_1", "feature_10", "266d5f39")
	f("feature_view_1", "feature_11", "c3379abf")
	f("feature_view_1", "feature_12", "7772b564")
	if TimestampField("driver_stats") != "_ts:driver_stats" {
		t.Fatal("TimestampField")
	}
}

func TestValueWireVectors(t *testing.T) {
	f := func(typ ValueType, in string, wantHex string) {
		t.Helper()
		got, err := AppendValue(nil, typ, []byte(in))
		if err != nil {
			t.Fatalf("AppendValue(%s, %s): %v", typ, in, err)
		}
		if g := hex.EncodeToString(got); g != strings.ReplaceAll(wantHex, " ", "") {
			t.Fatalf("AppendValue(%s, %s) = %s, want %s", typ, in, g, wantHex)
		}
	}
	f(TypeInt64, `308`, "20 b402")
	f(TypeString, `"ab"`, "12 02 6162")
	f(TypeDouble, `1`, "29 000000000000f03f")
	f(TypeFloat, `1`, "35 0000803f")
	f(TypeInt64, `0`, "20 00") // oneof members are written even when zero
	f(TypeInt64, `null`, "")

	if got := hex.EncodeToString(AppendTimestamp(nil, time.Unix(1, 2))); got != "08011002" {
		t.Fatalf("timestamp seconds=1 nanos=2 = %s", got)
	}
	if got := hex.EncodeToString(AppendTimestamp(nil, time.Unix(0, 0))); got != "" {
		t.Fatalf("zero timestamp = %s", got)
	}
}

// valueCases covers every scalar and list type: JSON input, the same value as
// Go data for the independent encoder, and the JSON the decoder must produce.
var valueCases = []struct {
	typ      ValueType
	in       string
	goVal    any
	wantJSON string
}{
	{TypeBytes, `"AAEC/w=="`, []byte{0, 1, 2, 255}, `"AAEC/w=="`},
	{TypeBytes, `""`, []byte{}, `""`},
	{TypeString, `"héllo \"q\" \n"`, "héllo \"q\" \n", `"héllo \"q\" \n"`},
	{TypeString, `""`, "", `""`},
	{TypeInt32, `-123`, int32(-123), `-123`},
	{TypeInt32, `2147483647`, int32(math.MaxInt32), `2147483647`},
	{TypeInt64, `"9007199254740993"`, int64(9007199254740993), `9007199254740993`},
	{TypeInt64, `7.0`, int64(7), `7`}, // an integer column with nulls, from pandas
	{TypeInt64, `-1`, int64(-1), `-1`},
	{TypeInt64, `0`, int64(0), `0`},
	{TypeDouble, `0.1`, 0.1, `0.1`},
	{TypeDouble, `-2.5e-300`, -2.5e-300, `-2.5e-300`},
	{TypeDouble, `1e21`, 1e21, `1e+21`},
	{TypeFloat, `0.53`, float32(0.53), `0.53`},
	{TypeFloat, `3`, float32(3), `3`},
	{TypeBool, `true`, true, `true`},
	{TypeBool, `false`, false, `false`},
	{TypeUnixTimestamp, `1767225600`, int64(1767225600), `1767225600`},
	{TypeUnixTimestamp, `"2026-01-01T00:00:00Z"`, int64(1767225600), `1767225600`},
	{TypeBytesList, `["AQ==",""]`, [][]byte{{1}, {}}, `["AQ==",""]`},
	{TypeStringList, `["a","","ü"]`, []string{"a", "", "ü"}, `["a","","ü"]`},
	{TypeStringList, `[]`, []string{}, `[]`},
	{TypeInt32List, `[1,-2,300]`, []int32{1, -2, 300}, `[1,-2,300]`},
	{TypeInt64List, `[1,"-2",1099511627776]`, []int64{1, -2, 1 << 40}, `[1,-2,1099511627776]`},
	{TypeDoubleList, `[0.5,-1.25]`, []float64{0.5, -1.25}, `[0.5,-1.25]`},
	{TypeFloatList, `[0.1,2]`, []float32{0.1, 2}, `[0.1,2]`},
	{TypeBoolList, `[true,false,true]`, []bool{true, false, true}, `[true,false,true]`},
	{TypeUnixTimestampList, `[0,1767225600]`, []int64{0, 1767225600}, `[0,1767225600]`},
	{TypeInt64List, `[]`, []int64{}, `[]`},
}

func TestAppendValueMatchesProtobuf(t *testing.T) {
	for _, c := range valueCases {
		got, err := AppendValue([]byte("prefix"), c.typ, []byte(c.in))
		if err != nil {
			t.Fatalf("AppendValue(%s, %s): %v", c.typ, c.in, err)
		}
		if !bytes.HasPrefix(got, []byte("prefix")) {
			t.Fatalf("AppendValue did not append to dst")
		}
		got = got[len("prefix"):]
		want := pbValue(t, c.typ, c.goVal)
		if !proto.Equal(pbUnmarshalValue(t, got), pbUnmarshalValue(t, want)) {
			t.Fatalf("AppendValue(%s, %s):\n got %x\nwant %x", c.typ, c.in, got, want)
		}
	}
}

func TestAppendValueJSON(t *testing.T) {
	for _, c := range valueCases {
		enc := pbValue(t, c.typ, c.goVal)
		got, isNull, err := AppendValueJSON([]byte("x"), enc)
		if err != nil {
			t.Fatalf("AppendValueJSON(%s %x): %v", c.typ, enc, err)
		}
		if isNull {
			t.Fatalf("AppendValueJSON(%s) reported null", c.typ)
		}
		if string(got[1:]) != c.wantJSON {
			t.Fatalf("AppendValueJSON(%s %x) = %s, want %s", c.typ, enc, got[1:], c.wantJSON)
		}
		if !json.Valid(got[1:]) {
			t.Fatalf("invalid JSON %s", got[1:])
		}
	}
}

func TestAppendValueJSONNullAndErrors(t *testing.T) {
	for _, enc := range [][]byte{nil, pbValue(t, TypeNull, TypeNull)} {
		got, isNull, err := AppendValueJSON(nil, enc)
		if err != nil || !isNull || string(got) != "null" {
			t.Fatalf("null Value %x: got %s %v %v", enc, got, isNull, err)
		}
	}
	// Unpacked repeated numbers must decode like packed ones.
	unpacked := unhex(t, "6a 06 08 01 08 02 08 7f") // int32_list_val {val:1 val:2 val:127}
	got, _, err := AppendValueJSON(nil, unpacked)
	if err != nil || string(got) != "[1,2,127]" {
		t.Fatalf("unpacked int32 list: %s %v", got, err)
	}
	// Last oneof member wins.
	got, _, err = AppendValueJSON(nil, unhex(t, "20 01 20 02"))
	if err != nil || string(got) != "2" {
		t.Fatalf("repeated member: %s %v", got, err)
	}
	bad := func(h string) {
		t.Helper()
		got, _, err := AppendValueJSON([]byte("keep"), unhex(t, h))
		if err == nil {
			t.Fatalf("AppendValueJSON(%s) = %s, want an error", h, got)
		}
		if string(got) != "keep" {
			t.Fatalf("AppendValueJSON(%s) changed dst on error: %s", h, got)
		}
	}
	bad("20")             // truncated varint
	bad("12 05 61")       // truncated bytes
	bad("a2 01 00")       // map_val (20): unsupported
	bad("25 00 00 80 3f") // int64_val as fixed32
	bad("6a 03 08 01 08") // truncated list element
	bad("72 02 0a 01")    // truncated packed int64 list
}

func TestAppendValueErrors(t *testing.T) {
	bad := func(typ ValueType, in string) {
		t.Helper()
		got, err := AppendValue([]byte("keep"), typ, []byte(in))
		if err == nil {
			t.Fatalf("AppendValue(%s, %s) = %x, want an error", typ, in, got)
		}
		if string(got) != "keep" {
			t.Fatalf("AppendValue(%s, %s) changed dst on error", typ, in)
		}
	}
	bad(TypeInt32, `1.5`)
	bad(TypeInt64List, `[1,2.5]`)
	bad(TypeInt32, `4294967296`)
	bad(TypeString, `1`)
	bad(TypeBool, `1`)
	bad(TypeBytes, `"%%"`)
	bad(TypeFloat, `"x"`)
	bad(TypeInt64List, `[1,null]`)
	bad(TypeInt64List, `1`)
	bad(TypeStringList, `["a",1]`)
	bad(TypeUnixTimestamp, `"yesterday"`)
	bad(TypeNull, `1`)
	bad(TypeInt64, `1 2`)
	bad(TypeInt64List, `[1,`)
	bad(TypeInt64, ``)
}

func TestLongListLengthPrefix(t *testing.T) {
	// More than 127 bytes of list body needs a multi-byte length varint.
	var in strings.Builder
	want := make([]int64, 200)
	in.WriteString("[")
	for i := range want {
		want[i] = int64(i * 1000)
		if i > 0 {
			in.WriteString(",")
		}
		in.WriteString(strings.TrimSpace(string(mustJSON(t, want[i]))))
	}
	in.WriteString("]")
	got, err := AppendValue(nil, TypeInt64List, []byte(in.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(pbUnmarshalValue(t, got), pbUnmarshalValue(t, pbValue(t, TypeInt64List, want))) {
		t.Fatalf("long list mismatch")
	}
	js, _, err := AppendValueJSON(nil, got)
	if err != nil || string(js) != in.String() {
		t.Fatalf("long list JSON: %v\n%s\n%s", err, js, in.String())
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTimestampRoundTrip(t *testing.T) {
	f := func(ts time.Time, wantJSON string) {
		t.Helper()
		enc := pbTimestamp(t, ts)
		if mine := AppendTimestamp(nil, ts); !bytes.Equal(mine, enc) {
			t.Fatalf("AppendTimestamp(%v) = %x, protobuf %x", ts, mine, enc)
		}
		got, err := DecodeTimestamp(enc)
		if err != nil || !got.Equal(ts) {
			t.Fatalf("DecodeTimestamp(%x) = %v, %v; want %v", enc, got, err, ts)
		}
		if js := string(appendRFC3339(nil, ts.UnixNano())); js != wantJSON {
			t.Fatalf("appendRFC3339(%v) = %s, want %s", ts, js, wantJSON)
		}
	}
	f(time.Unix(0, 0), "1970-01-01T00:00:00Z")
	f(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC), "2026-01-01T10:00:00Z")
	f(time.Date(2026, 1, 1, 10, 0, 0, 500_000_000, time.UTC), "2026-01-01T10:00:00.500Z")
	f(time.Date(2026, 1, 1, 10, 0, 0, 1_000, time.UTC), "2026-01-01T10:00:00.000001Z")
	f(time.Date(2026, 1, 1, 10, 0, 0, 7, time.UTC), "2026-01-01T10:00:00.000000007Z")
	f(time.Unix(-1, 0), "1969-12-31T23:59:59Z")

	if _, err := DecodeTimestamp(unhex(t, "10 ff ff ff ff 0f")); err == nil {
		t.Fatal("negative nanos accepted")
	}
	if _, err := DecodeTimestamp(unhex(t, "08")); err == nil {
		t.Fatal("truncated timestamp accepted")
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f\t\r\n", "ünï€😀", "\u2028\u2029", "<&>"} {
		got := jsonutil.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Fatalf("jsonutil.AppendString(%q) = %s: %v / %q", s, got, err, back)
		}
	}
	got := jsonutil.AppendString(nil, "bad\xffutf8")
	if string(got) != `"bad\ufffdutf8"` {
		t.Fatalf("invalid UTF-8: %s", got)
	}
}

func TestAppendJSONFloatMatchesEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 0.1, 1e-7, 1e20, 1e21, 123456789.125, math.SmallestNonzeroFloat64, math.MaxFloat64} {
		want, _ := json.Marshal(f)
		if got := appendJSONFloat(nil, f, 64); string(got) != string(want) {
			t.Fatalf("float64 %v: got %s want %s", f, got, want)
		}
	}
	for _, f := range []float32{0, 0.1, 0.53, 1e-7, 3.4e38} {
		want, _ := json.Marshal(f)
		if got := appendJSONFloat(nil, float64(f), 32); string(got) != string(want) {
			t.Fatalf("float32 %v: got %s want %s", f, got, want)
		}
	}
	if got := appendJSONFloat(nil, math.NaN(), 64); string(got) != "null" {
		t.Fatalf("NaN: %s", got)
	}
}

// TestShortDecimalsMatchEncodingJSON: the short-decimal path prints what
// encoding/json prints, over decimals of every length it handles, values
// on either side of them, integers up to the exact limits and values with
// random bits (most of which take strconv's path).
func TestShortDecimalsMatchEncodingJSON(t *testing.T) {
	check64 := func(f float64) {
		t.Helper()
		want, _ := json.Marshal(f)
		if got := appendJSONFloat(nil, f, 64); string(got) != string(want) {
			t.Fatalf("float64 %b: got %s want %s", f, got, want)
		}
	}
	check32 := func(f float32) {
		t.Helper()
		want, _ := json.Marshal(f)
		if got := appendJSONFloat(nil, float64(f), 32); string(got) != string(want) {
			t.Fatalf("float32 %b: got %s want %s", f, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for k := 0; k <= shortDecimals64+2; k++ {
		for range 5000 {
			m := rng.Int64N(1 << 54)
			if rng.IntN(2) == 0 {
				m = rng.Int64N(100000)
			}
			f := float64(m) / math.Pow(10, float64(k))
			for _, v := range []float64{f, -f, math.Nextafter(f, 0), math.Nextafter(f, math.Inf(1))} {
				check64(v)
				check32(float32(v))
			}
		}
	}
	for _, f := range []float64{1 << 53, 1<<53 - 1, 1<<53 + 2, 1 << 24, 1<<24 - 1, 1<<24 + 2, 1e15, 999999.9999995, 0.1 + 0.2, 1e-6, 1e-7, 5e-324, math.Copysign(0, -1)} {
		check64(f)
		check64(-f)
		check32(float32(f))
	}
	for range 50000 {
		// NaN and the infinities are null here, an error in encoding/json.
		if f := math.Float64frombits(rng.Uint64()); !math.IsNaN(f) && !math.IsInf(f, 0) {
			check64(f)
		}
		if f := math.Float32frombits(rng.Uint32()); !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) {
			check32(f)
		}
	}
}

func TestValueTypeNames(t *testing.T) {
	for typ, name := range valueTypeNames {
		if typ == TypeInvalid || typ == TypeNull {
			continue
		}
		got, err := ParseValueType(name)
		if err != nil || got != typ || typ.String() != name {
			t.Fatalf("ParseValueType(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ParseValueType("NULL"); err == nil {
		t.Fatal("NULL accepted as a column type")
	}
	if StatusOutsideMaxAge.String() != "OUTSIDE_MAX_AGE" || Status(9).String() != "Status(9)" {
		t.Fatal("Status names")
	}
}
