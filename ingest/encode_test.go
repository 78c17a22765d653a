package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/featurefetch"
)

// TestTextValueMatchesAppendValue checks that text cells encode byte for
// byte as featurefetch.AppendValue encodes the same values given as JSON.
func TestTextValueMatchesAppendValue(t *testing.T) {
	f := func(typ featurefetch.ValueType, cell, jsonValue string) {
		t.Helper()
		got, err := appendTextValue(nil, typ, cell)
		if err != nil {
			t.Fatalf("%s %q: %v", typ, cell, err)
		}
		want, err := featurefetch.AppendValue(nil, typ, []byte(jsonValue))
		if err != nil {
			t.Fatalf("%s %s: %v", typ, jsonValue, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s %q: %x, AppendValue(%s) gives %x", typ, cell, got, jsonValue, want)
		}
	}
	f(featurefetch.TypeString, "héllo", `"héllo"`)
	f(featurefetch.TypeString, strings.Repeat("x", 300), `"`+strings.Repeat("x", 300)+`"`)
	f(featurefetch.TypeBytes, "AAEC/w==", `"AAEC/w=="`)
	f(featurefetch.TypeBytes, "AAE=", `"AAE="`)
	f(featurefetch.TypeBytes, "AAEC", `"AAEC"`)
	f(featurefetch.TypeInt32, "-7", "-7")
	f(featurefetch.TypeInt32, "2147483647", "2147483647")
	f(featurefetch.TypeInt64, "-9223372036854775808", `"-9223372036854775808"`)
	f(featurefetch.TypeInt64, "7.0", "7") // pandas' integer column with nulls
	f(featurefetch.TypeDouble, "0.1", "0.1")
	f(featurefetch.TypeDouble, "-1e300", "-1e300")
	f(featurefetch.TypeFloat, "1.1", "1.1")
	f(featurefetch.TypeFloat, "0", "0")
	f(featurefetch.TypeBool, "true", "true")
	f(featurefetch.TypeBool, "0", "false")
	f(featurefetch.TypeUnixTimestamp, "1767225600", "1767225600")
	f(featurefetch.TypeUnixTimestamp, "2026-01-01T00:00:00Z", "1767225600")
	f(featurefetch.TypeUnixTimestamp, "-5", "-5")
	f(featurefetch.TypeFloatList, "[0.5, 1.5]", "[0.5,1.5]")
	f(featurefetch.TypeStringList, `["a","b"]`, `["a","b"]`)

	// Rejected cells.
	for _, c := range []struct {
		typ  featurefetch.ValueType
		cell string
	}{
		{featurefetch.TypeInt32, "2147483648"}, {featurefetch.TypeInt64, "1.5"}, {featurefetch.TypeInt64, " 1"},
		{featurefetch.TypeFloat, "1e39"}, {featurefetch.TypeDouble, "x"}, {featurefetch.TypeBool, "yes"},
		{featurefetch.TypeBytes, "AAE"}, {featurefetch.TypeBytes, "A==="}, {featurefetch.TypeBytes, "!!!!"},
		{featurefetch.TypeString, "\xff"}, {featurefetch.TypeUnixTimestamp, "soon"}, {featurefetch.TypeInt32List, "[1,"},
	} {
		if got, err := appendTextValue([]byte("keep"), c.typ, c.cell); err == nil || string(got) != "keep" {
			t.Errorf("%s %q: %x, %v; want an error and dst unchanged", c.typ, c.cell, got, err)
		}
	}
}

// TestListWriterMatchesAppendValue checks the element-wise list encoder
// used for Parquet against featurefetch.AppendValue, including lists whose
// length prefix needs several bytes.
func TestListWriterMatchesAppendValue(t *testing.T) {
	f := func(typ featurefetch.ValueType, n int, add func(dst []byte, lw *listWriter, i int) ([]byte, string)) {
		t.Helper()
		dst, lw := beginList([]byte("pre"), typ)
		var elems []string
		for i := 0; i < n; i++ {
			var e string
			dst, e = add(dst, &lw, i)
			elems = append(elems, e)
		}
		dst = lw.end(dst)
		want, err := featurefetch.AppendValue([]byte("pre"), typ, []byte("["+strings.Join(elems, ",")+"]"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst, want) {
			t.Fatalf("%s of %d: %x, want %x", typ, n, dst, want)
		}
	}
	for _, n := range []int{0, 1, 3, 40, 5000} {
		f(featurefetch.TypeInt64List, n, func(dst []byte, lw *listWriter, i int) ([]byte, string) {
			return lw.appendVarint(dst, uint64(int64(i*1000-7))), strconv.Itoa(i*1000 - 7)
		})
		f(featurefetch.TypeDoubleList, n, func(dst []byte, lw *listWriter, i int) ([]byte, string) {
			return lw.appendDouble(dst, float64(i)/4), strconv.FormatFloat(float64(i)/4, 'g', -1, 64)
		})
		f(featurefetch.TypeFloatList, n, func(dst []byte, lw *listWriter, i int) ([]byte, string) {
			return lw.appendFloat(dst, float32(i)/8), strconv.FormatFloat(float64(float32(i)/8), 'g', -1, 32)
		})
		f(featurefetch.TypeBoolList, n, func(dst []byte, lw *listWriter, i int) ([]byte, string) {
			return lw.appendVarint(dst, uint64(i%2)), strconv.FormatBool(i%2 == 1)
		})
		f(featurefetch.TypeStringList, n, func(dst []byte, lw *listWriter, i int) ([]byte, string) {
			s := strings.Repeat("s", i%200)
			return lw.appendBytes(dst, []byte(s)), strconv.Quote(s)
		})
		f(featurefetch.TypeBytesList, n, func(dst []byte, lw *listWriter, i int) ([]byte, string) {
			return lw.appendBytes(dst, []byte{byte(i), 0xff}), fmt.Sprintf(`"%s"`, b64([]byte{byte(i), 0xff}))
		})
	}
}

func b64(b []byte) string {
	s, _ := json.Marshal(b)
	return strings.Trim(string(s), `"`)
}

func TestParseTimestamp(t *testing.T) {
	f := func(in string, want time.Time) {
		t.Helper()
		got, err := parseTimestamp(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !got.Equal(want) {
			t.Fatalf("%q: %s, want %s", in, got, want)
		}
	}
	at := func(sec, nsec int64) time.Time { return time.Unix(sec, nsec) }
	f("2026-05-01T10:00:00Z", at(1777629600, 0))
	f("2026-05-01T10:00:00", at(1777629600, 0))
	f("2026-05-01 10:00:00", at(1777629600, 0))
	f("2026-05-01 10:00:00+00:00", at(1777629600, 0))
	f("2026-05-01t10:00:00z", at(1777629600, 0))
	f("2026-05-01T12:00:00.123456789+02:00", at(1777629600, 123456789))
	f("2026-05-01 10:00:00.5", at(1777629600, 500_000_000))
	f("2026-05-01", at(1777593600, 0))
	f("1777629600", at(1777629600, 0))
	f("1777629600.25", at(1777629600, 250_000_000))
	f("-1.25", at(-2, 750_000_000))
	f("0", at(0, 0))
	for _, bad := range []string{"", "soon", "2026-05-01T25:00:00Z", "2026-05-01X10:00:00Z", "2026-05-01T10:00", "1e9", "1.", "1.1234567891",
		"-", "99999999999999", "2026-05-01T10:00:00+0200", "10000-01-01T00:00:00Z", "2026-5-1"} {
		if got, err := parseTimestamp(bad); err == nil {
			t.Errorf("%q: %s, want an error", bad, got)
		}
	}
}

// FuzzJSONLine feeds arbitrary lines to the JSON-lines row encoder: it must
// not panic, and the values of accepted rows must decode.
func FuzzJSONLine(f *testing.F) {
	f.Add(`{"driver_id":1,"ts":"2026-05-01T10:00:00Z","f_bytes":"AAE=","f_string":"x","f_int32":1,"f_int64":2,"f_double":0.5,` +
		`"f_float":1.5,"f_bool":true,"f_unix_timestamp":3,"f_bytes_list":[],"f_string_list":["a"],"f_int32_list":[1],` +
		`"f_int64_list":[2],"f_double_list":[0.5],"f_float_list":[1.5],"f_bool_list":[true],"f_unix_timestamp_list":[4]}`)
	f.Add(`{"driver_id":"1","ts":1777629600.5}`)
	f.Add(`[1,2]`)
	f.Add(`{"driver_id":null}`)
	v, err := featurefetch.ParseViews("fuzz.yaml", []byte(fuzzViews))
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewSchema(v, "all_types", SchemaOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line string) {
		b := newBatch(s, 1)
		src := newJSONLSource("fuzz", nil, s, 0)
		if err := src.row(b, Pos{}, []byte(line)); err != nil {
			if b.len() != 0 || len(b.buf) != 0 || len(b.ends) != 0 {
				t.Fatalf("rejected row left data in the batch: %v", err)
			}
			return
		}
		checkBatchDecodes(t, b)
	})
}

// FuzzCSVRow feeds arbitrary records to the CSV row encoder.
func FuzzCSVRow(f *testing.F) {
	f.Add("1,2026-05-01T10:00:00Z,AAE=,x,1,2,0.5,1.5,true,3,[],\"[\"\"a\"\"]\",[1],[2],[0.5],[1.5],[true],[4]")
	f.Add("1,2026-05-01,,,,,,,,,,,,,,,,")
	f.Add("\"")
	v, err := featurefetch.ParseViews("fuzz.yaml", []byte(fuzzViews))
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewSchema(v, "all_types", SchemaOptions{})
	if err != nil {
		f.Fatal(err)
	}
	header := "driver_id,ts,f_bytes,f_string,f_int32,f_int64,f_double,f_float,f_bool,f_unix_timestamp,f_bytes_list," +
		"f_string_list,f_int32_list,f_int64_list,f_double_list,f_float_list,f_bool_list,f_unix_timestamp_list\n"
	f.Fuzz(func(t *testing.T, record string) {
		src, err := newCSVSource("fuzz.csv", strings.NewReader(header+record), s)
		if err != nil {
			t.Fatal(err)
		}
		b := newBatch(s, 4)
		for i := 0; i < 100; i++ {
			err := src.next(b)
			if errors.Is(err, io.EOF) {
				break
			}
		}
		checkBatchDecodes(t, b)
	})
}

func checkBatchDecodes(t *testing.T, b *batch) {
	t.Helper()
	nf := b.s.nFeatures()
	for _, r := range b.rows {
		if _, err := featurefetch.DecodeTimestamp(b.buf[r.ts.start:r.ts.end]); err != nil {
			t.Fatalf("timestamp: %v", err)
		}
		start := r.ts.end
		for _, end := range b.ends[r.vals : int(r.vals)+nf] {
			if _, _, err := featurefetch.AppendValueJSON(nil, b.buf[start:end]); err != nil {
				t.Fatalf("value %x: %v", b.buf[start:end], err)
			}
			start = end
		}
	}
}

const fuzzViews = `project: fuzz
entities: [{name: driver_id, value_type: INT64}]
feature_views:
  - name: all_types
    entities: [driver_id]
    timestamp_field: ts
    features:
      - {name: f_bytes, dtype: BYTES}
      - {name: f_string, dtype: STRING}
      - {name: f_int32, dtype: INT32}
      - {name: f_int64, dtype: INT64}
      - {name: f_double, dtype: DOUBLE}
      - {name: f_float, dtype: FLOAT}
      - {name: f_bool, dtype: BOOL}
      - {name: f_unix_timestamp, dtype: UNIX_TIMESTAMP}
      - {name: f_bytes_list, dtype: BYTES_LIST}
      - {name: f_string_list, dtype: STRING_LIST}
      - {name: f_int32_list, dtype: INT32_LIST}
      - {name: f_int64_list, dtype: INT64_LIST}
      - {name: f_double_list, dtype: DOUBLE_LIST}
      - {name: f_float_list, dtype: FLOAT_LIST}
      - {name: f_bool_list, dtype: BOOL_LIST}
      - {name: f_unix_timestamp_list, dtype: UNIX_TIMESTAMP_LIST}
`
