package ingest

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// allTypesCase is one row of the all_types view, as CSV cells, as a JSON
// object and as featurefetch's read-back JSON.
type allTypesCase struct {
	id    int
	cells map[string]string // CSV cells; absent means empty (null)
	json  string            // JSON line
	want  string            // fetched row
}

var allTypesColumns = []string{"driver_id", "ts", "f_bytes", "f_string", "f_int32", "f_int64", "f_double", "f_float", "f_bool",
	"f_unix_timestamp", "f_bytes_list", "f_string_list", "f_int32_list", "f_int64_list", "f_double_list", "f_float_list",
	"f_bool_list", "f_unix_timestamp_list"}

var allTypesCases = []allTypesCase{
	{
		id: 1,
		cells: map[string]string{
			"driver_id": "1", "ts": "2026-05-01T10:00:00Z", "f_bytes": "AAEC/w==", "f_string": `héllo, "w"`, "f_int32": "-7",
			"f_int64": "9007199254740993", "f_double": "0.1", "f_float": "1.1", "f_bool": "true", "f_unix_timestamp": "1767225600",
			"f_bytes_list": `["AAE=","/w=="]`, "f_string_list": `["a","b,c"]`, "f_int32_list": "[1,-2]", "f_int64_list": "[3,4]",
			"f_double_list": "[0.5,1.5]", "f_float_list": "[0.25]", "f_bool_list": "[true,false]", "f_unix_timestamp_list": "[1,2]",
		},
		json: `{"driver_id":1,"ts":"2026-05-01T10:00:00Z","f_bytes":"AAEC/w==","f_string":"héllo, \"w\"","f_int32":-7,` +
			`"f_int64":9007199254740993,"f_double":0.1,"f_float":1.1,"f_bool":true,"f_unix_timestamp":1767225600,` +
			`"f_bytes_list":["AAE=","/w=="],"f_string_list":["a","b,c"],"f_int32_list":[1,-2],"f_int64_list":[3,4],` +
			`"f_double_list":[0.5,1.5],"f_float_list":[0.25],"f_bool_list":[true,false],"f_unix_timestamp_list":[1,2]}`,
		want: `{"driver_id":1,"f_bytes":"AAEC/w==","f_string":"héllo, \"w\"","f_int32":-7,"f_int64":9007199254740993,` +
			`"f_double":0.1,"f_float":1.1,"f_bool":true,"f_unix_timestamp":1767225600,"f_bytes_list":["AAE=","/w=="],` +
			`"f_string_list":["a","b,c"],"f_int32_list":[1,-2],"f_int64_list":[3,4],"f_double_list":[0.5,1.5],` +
			`"f_float_list":[0.25],"f_bool_list":[true,false],"f_unix_timestamp_list":[1,2]}`,
	},
	{
		// Nulls everywhere a feature allows it, other number forms.
		id: 2,
		cells: map[string]string{
			"driver_id": "2", "ts": "2026-05-01 10:00:00.5+02:00", "f_int32": "2147483647", "f_int64": "-9223372036854775808",
			"f_double": "-1e300", "f_float": "3.4e38", "f_bool": "False", "f_unix_timestamp": "2026-01-01T00:00:00Z",
			"f_bytes_list": "[]", "f_string_list": "[]", "f_int32_list": "[]", "f_double_list": "[]", "f_bool_list": "[]",
		},
		json: `{"driver_id":"2","ts":"2026-05-01 10:00:00.5+02:00","f_bytes":null,"f_string":null,"f_int32":2147483647,` +
			`"f_int64":"-9223372036854775808","f_double":-1e300,"f_float":3.4e38,"f_bool":false,` +
			`"f_unix_timestamp":"2026-01-01T00:00:00Z","f_bytes_list":[],"f_string_list":[],"f_int32_list":[],` +
			`"f_int64_list":null,"f_double_list":[],"f_float_list":null,"f_bool_list":[],"f_unix_timestamp_list":null}`,
		want: `{"driver_id":2,"f_bytes":null,"f_string":null,"f_int32":2147483647,"f_int64":-9223372036854775808,` +
			`"f_double":-1e+300,"f_float":3.4e+38,"f_bool":false,"f_unix_timestamp":1767225600,"f_bytes_list":[],` +
			`"f_string_list":[],"f_int32_list":[],"f_int64_list":null,"f_double_list":[],"f_float_list":null,` +
			`"f_bool_list":[],"f_unix_timestamp_list":null}`,
	},
}

func writeAllTypesCSV(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(allTypesColumns)
	for _, c := range allTypesCases {
		rec := make([]string, len(allTypesColumns))
		for i, col := range allTypesColumns {
			rec[i] = c.cells[col]
		}
		_ = w.Write(rec)
	}
	w.Flush()
	return writeFile(t, "all.csv", buf.String())
}

func writeAllTypesJSONL(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	for _, c := range allTypesCases {
		sb.WriteString(c.json)
		sb.WriteString("\n\n") // blank lines are skipped
	}
	return writeFile(t, "all.jsonl", sb.String())
}

func TestLoadAllTypesRoundTrip(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "all_types")
	for _, tc := range []struct {
		name string
		path func(*testing.T) string
	}{
		{"csv", writeAllTypesCSV},
		{"jsonl", writeAllTypesJSONL},
		{"parquet", writeAllTypesParquet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.c.Do(t.Context(), r.c.B().Flushall().Build()).Error(); err != nil {
				t.Fatal(err)
			}
			st := mustLoad(t, r, s, tc.path(t))
			checkCounts(t, st, 2, 2, 0, 0)
			got := fetchRows(t, v, r.c, "all_types", "[1,2]")
			want := "[" + allTypesCases[0].want + "," + allTypesCases[1].want + "]"
			if got != want {
				t.Fatalf("read back\n got %s\nwant %s", got, want)
			}
		})
	}
}

// parquetAllTypes is the all_types view as a Parquet row: lists both as
// plain repeated fields and as the LIST logical type, nullable scalars as
// optional fields.
type parquetAllTypes struct {
	DriverID           int64     `parquet:"driver_id"`
	TS                 time.Time `parquet:"ts,timestamp(microsecond)"`
	FBytes             []byte    `parquet:"f_bytes,optional"`
	FString            *string   `parquet:"f_string,optional"`
	FInt32             int32     `parquet:"f_int32"`
	FInt64             int64     `parquet:"f_int64"`
	FDouble            float64   `parquet:"f_double"`
	FFloat             float32   `parquet:"f_float"`
	FBool              bool      `parquet:"f_bool"`
	FUnixTimestamp     time.Time `parquet:"f_unix_timestamp,timestamp(millisecond)"`
	FBytesList         [][]byte  `parquet:"f_bytes_list,list"`
	FStringList        []string  `parquet:"f_string_list"`
	FInt32List         []int32   `parquet:"f_int32_list,list"`
	FInt64List         []int64   `parquet:"f_int64_list,list,optional"`
	FDoubleList        []float64 `parquet:"f_double_list"`
	FFloatList         []float32 `parquet:"f_float_list,list,optional"`
	FBoolList          []bool    `parquet:"f_bool_list,list"`
	FUnixTimestampList []int64   `parquet:"f_unix_timestamp_list,list,optional"`
}

func writeAllTypesParquet(t *testing.T) string {
	t.Helper()
	str := `héllo, "w"`
	rows := []parquetAllTypes{
		{
			DriverID: 1, TS: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC), FBytes: []byte{0, 1, 2, 255}, FString: &str,
			FInt32: -7, FInt64: 9007199254740993, FDouble: 0.1, FFloat: 1.1, FBool: true,
			FUnixTimestamp: time.Unix(1767225600, 0), FBytesList: [][]byte{{0, 1}, {255}}, FStringList: []string{"a", "b,c"},
			FInt32List: []int32{1, -2}, FInt64List: []int64{3, 4}, FDoubleList: []float64{0.5, 1.5}, FFloatList: []float32{0.25},
			FBoolList: []bool{true, false}, FUnixTimestampList: []int64{1, 2},
		},
		{
			DriverID: 2, TS: time.Date(2026, 5, 1, 8, 0, 0, 500_000_000, time.UTC), FInt32: 2147483647,
			FInt64: -9223372036854775808, FDouble: -1e300, FFloat: 3.4e38, FBool: false,
			FUnixTimestamp: time.Unix(1767225600, 0), FBytesList: [][]byte{}, FStringList: nil, FInt32List: []int32{},
			FDoubleList: nil, FBoolList: []bool{},
		},
	}
	p := filepath.Join(t.TempDir(), "all.parquet")
	writeParquet(t, p, rows)
	return p
}

func writeParquet[T any](t testing.TB, path string, rows []T) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// jsonEqual compares JSON documents.
func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("invalid JSON %s: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// TestLoadKeyTypes covers every entity key type, a composite key, an
// entityless view and a CSV header with a byte order mark.
func TestLoadKeyTypes(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	f := func(view, name, data, keys, want string) {
		t.Helper()
		st := mustLoad(t, r, testSchema(t, v, view), writeFile(t, name, data))
		if st.Rejected != 0 || st.Written == 0 {
			t.Fatalf("%s: %+v", view, st)
		}
		var ks []string
		if keys != "" {
			ks = strings.Split(keys, ";")
		}
		if got := fetchRows(t, v, r.c, view, ks...); got != want {
			t.Fatalf("%s:\n got %s\nwant %s", view, got, want)
		}
	}
	f("driver_customer", "dc.csv", "\ufeffcustomer_id,driver_id,event_timestamp,trips_together\nc1,1,2026-05-01T10:00:00Z,7\nc2,1,2026-05-01T10:00:00Z,8\n",
		`["c1","c2"];[1,1]`, `[{"customer_id":"c1","driver_id":1,"trips_together":7},{"customer_id":"c2","driver_id":1,"trips_together":8}]`)
	f("zone_stats", "z.jsonl", `{"zone_id":-3,"event_timestamp":1777629600,"demand":2.5}`+"\n",
		"-3", `[{"zone_id":-3,"demand":2.5}]`)
	f("device_stats", "d.csv", "device_id,event_timestamp,battery\nAAEC,2026-05-01T10:00:00Z,80\n",
		`"AAEC"`, `[{"device_id":"AAEC","battery":80}]`)
	f("global_stats", "g.jsonl", `{"event_timestamp":"2026-05-01T10:00:00Z","active_drivers":1234}`+"\n",
		"", `[{"active_drivers":1234}]`)
	f("customer_profile", "c.csv", "customer_id,event_timestamp,current_balance,tier\n1001,2026-05-01T10:00:00Z,5,\n",
		`"1001"`, `[{"customer_id":"1001","current_balance":5,"tier":null}]`)
}

func TestLoadRedisDown(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	p := writeFile(t, "x.csv", statsHeader+"1,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,true\n")
	r.srv.Stop()
	st, err := load(t, r, s, p, LoadOptions{WriteTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "cannot write rows to redis") {
		t.Fatalf("error %v", err)
	}
	checkCounts(t, st, 1, 0, 0, 0)
}

// TestLoadArrowGoParquet reads a file written by Arrow's Go Parquet writer
// with its default properties (testdata/arrowgen): a repeated root group,
// an integer column with a null stored as DOUBLE, and lists.
func TestLoadArrowGoParquet(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	const p = "testdata/arrow-go-v14.parquet"
	st := mustLoad(t, r, testSchema(t, v, "driver_stats"), p)
	checkCounts(t, st, 4, 3, 0, 1)
	if want := p + `: row group 0, row 3: column "avg_daily_trips": 7.5 is not an INT64`; len(st.Errors) != 1 || st.Errors[0].Error() != want {
		t.Fatalf("errors %v, want %s", st.Errors, want)
	}
	want := `[{"driver_id":1,"conv_rate":0.5,"acc_rate":0.75,"avg_daily_trips":12,"rating":4.5,"vehicle_type":"sedan","is_active":true},` +
		`{"driver_id":2,"conv_rate":null,"acc_rate":null,"avg_daily_trips":null,"rating":null,"vehicle_type":null,"is_active":null},` +
		`{"driver_id":3,"conv_rate":0.25,"acc_rate":0.5,"avg_daily_trips":7,"rating":3.25,"vehicle_type":"bike","is_active":false},` +
		`{"driver_id":4,"conv_rate":null,"acc_rate":null,"avg_daily_trips":null,"rating":null,"vehicle_type":null,"is_active":null}]`
	if got := fetchRows(t, v, r.c, "driver_stats", "[1,2,3,4]"); got != want {
		t.Fatalf("driver_stats read back\n got %s\nwant %s", got, want)
	}

	st = mustLoad(t, r, testSchema(t, v, "driver_trips"), p)
	checkCounts(t, st, 4, 4, 0, 0)
	want = `[{"driver_id":1,"recent_trip_km":[1.5,0],"recent_ratings":[5,0],"recent_zones":["a","b"]},` +
		`{"driver_id":2,"recent_trip_km":null,"recent_ratings":null,"recent_zones":null},` +
		`{"driver_id":3,"recent_trip_km":[],"recent_ratings":[],"recent_zones":[]},` +
		`{"driver_id":4,"recent_trip_km":[1.5,3],"recent_ratings":[5,-3],"recent_zones":["a","b"]}]`
	if got := fetchRows(t, v, r.c, "driver_trips", "[1,2,3,4]"); got != want {
		t.Fatalf("driver_trips read back\n got %s\nwant %s", got, want)
	}
}

// TestLoadIntegralFloats accepts integers written as floats, as pandas
// writes an integer column that holds nulls ("7.0" in CSV, 7.0 in JSON), and
// rejects floats with a fraction.
func TestLoadIntegralFloats(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	csvPath := writeFile(t, "pandas.csv", statsHeader+
		"1.0,2026-05-01T10:00:00Z,0.5,0.5,7.0,4.5,sedan,true\n"+
		"2,2026-05-01T10:00:00Z,0.5,0.5,,4.5,sedan,true\n"+
		"3,2026-05-01T10:00:00Z,0.5,0.5,-12.000,4.5,sedan,true\n"+
		"4,2026-05-01T10:00:00Z,0.5,0.5,7.5,4.5,sedan,true\n")
	st := mustLoad(t, r, s, csvPath)
	checkCounts(t, st, 4, 3, 0, 1)
	if want := csvPath + `:5: column "avg_daily_trips": "7.5" is not an INT64`; st.Errors[0].Error() != want {
		t.Fatalf("error %q, want %q", st.Errors[0], want)
	}
	jsonPath := writeFile(t, "pandas.jsonl",
		`{"driver_id":5.0,"event_timestamp":"2026-05-01T10:00:00Z","conv_rate":0.5,"acc_rate":0.5,"avg_daily_trips":8.0,"rating":4.5,"vehicle_type":"sedan","is_active":true}`+"\n"+
			`{"driver_id":6,"event_timestamp":"2026-05-01T10:00:00Z","conv_rate":0.5,"acc_rate":0.5,"avg_daily_trips":8.25,"rating":4.5,"vehicle_type":"sedan","is_active":true}`+"\n")
	st = mustLoad(t, r, s, jsonPath)
	checkCounts(t, st, 2, 1, 0, 1)
	got := fetchRows(t, v, r.c, "driver_stats", "[1,2,3,5]")
	for i, want := range []string{`"avg_daily_trips":7,`, `"avg_daily_trips":null,`, `"avg_daily_trips":-12,`, `"avg_daily_trips":8,`} {
		if !strings.Contains(got, `{"driver_id":`+[]string{"1", "2", "3", "5"}[i]+`,"conv_rate":0.5,"acc_rate":0.5,`+want) {
			t.Fatalf("read back %s, want driver %d with %s", got, i, want)
		}
	}
}
