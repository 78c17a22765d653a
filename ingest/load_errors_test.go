package ingest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

const statsHeader = "driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,rating,vehicle_type,is_active\n"

// TestLoadRejectedRows checks each kind of rejected row with its exact
// message; good rows around them are written.
func TestLoadRejectedRows(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	stats := testSchema(t, v, "driver_stats")
	trips := testSchema(t, v, "driver_trips")
	f := func(s *Schema, name, data string, wantErrs ...string) {
		t.Helper()
		p := writeFile(t, name, data)
		st := mustLoad(t, r, s, p)
		var got []string
		for _, e := range st.Errors {
			got = append(got, strings.TrimPrefix(e.Error(), filepath.Dir(p)+"/"))
		}
		if strings.Join(got, "\n") != strings.Join(wantErrs, "\n") {
			t.Fatalf("%s: errors\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(wantErrs, "\n"))
		}
		// Rows of one key and event time load again are skipped, not written.
		if st.Rejected != int64(len(wantErrs)) || st.Written+st.Skipped != st.Read-st.Rejected {
			t.Fatalf("%s: read %d written %d skipped %d rejected %d", name, st.Read, st.Written, st.Skipped, st.Rejected)
		}
	}
	good := "1,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,true\n"

	f(stats, "type.csv", statsHeader+good+
		"2,2026-05-01T10:00:00Z,abc,0.5,3,4.5,sedan,true\n"+
		"3,2026-05-01T10:00:00Z,0.5,0.5,1.5,4.5,sedan,true\n"+
		"4,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,yes\n"+
		"abc,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,true\n"+
		"6,2026-05-01T10:00:00Z,0.5,1e39,3,4.5,sedan,true\n"+good,
		`type.csv:3: column "conv_rate": "abc" is not a FLOAT`,
		`type.csv:4: column "avg_daily_trips": "1.5" is not an INT64`,
		`type.csv:5: column "is_active": "yes" is not a BOOL`,
		`type.csv:6: column "driver_id": "abc" is not an INT64`,
		`type.csv:7: column "acc_rate": "1e39" is not a FLOAT`)

	f(stats, "values.csv", statsHeader+
		",2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,true\n"+
		"2,,0.5,0.5,3,4.5,sedan,true\n"+
		"3,yesterday,0.5,0.5,3,4.5,sedan,true\n"+
		"4,2026-13-01T10:00:00Z,0.5,0.5,3,4.5,sedan,true\n"+good,
		`values.csv:2: column "driver_id": missing value`,
		`values.csv:3: column "event_timestamp": missing value`,
		`values.csv:4: column "event_timestamp": "yesterday" is not a timestamp (want RFC 3339 or epoch seconds)`,
		`values.csv:5: column "event_timestamp": "2026-13-01T10:00:00Z" is not a timestamp (want RFC 3339 or epoch seconds)`)

	f(stats, "malformed.csv", statsHeader+good+
		"2,2026-05-01T10:00:00Z,0.5\n"+
		"3,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,se\"dan,true\n"+
		"4,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,\"multi\nline\",true\n"+
		"5,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,maybe\n",
		`malformed.csv:3: malformed CSV: 3 fields, the header has 8`,
		`malformed.csv:4: malformed CSV: bare " in non-quoted-field`,
		`malformed.csv:7: column "is_active": "maybe" is not a BOOL`)

	f(trips, "lists.csv", "driver_id,event_timestamp,recent_trip_km,recent_ratings,recent_zones\n"+
		`1,2026-05-01T10:00:00Z,"[1.5]",[1],"[""a""]"`+"\n"+
		`2,2026-05-01T10:00:00Z,"[1.5]","[""x""]","[""a""]"`+"\n"+
		`3,2026-05-01T10:00:00Z,1.5,[1],"[""a""]"`+"\n"+
		`4,2026-05-01T10:00:00Z,"[1.5]",[1],"[1]"`+"\n",
		`lists.csv:3: column "recent_ratings": ["x"] is not an INT32_LIST (element 0: invalid INT32 "x")`,
		`lists.csv:4: column "recent_trip_km": 1.5 is not a FLOAT_LIST (want a JSON array for FLOAT_LIST, got Number)`,
		`lists.csv:5: column "recent_zones": [1] is not a STRING_LIST (element 0: want a JSON string, got Number)`)

	jgood := `{"driver_id":1,"event_timestamp":"2026-05-01T10:00:00Z","conv_rate":0.5,"acc_rate":0.5,"avg_daily_trips":3,"rating":4.5,"vehicle_type":"sedan","is_active":true}` + "\n"
	f(stats, "bad.jsonl", jgood+
		"{x}\n"+
		"[1,2]\n"+
		`{"driver_id":3,"event_timestamp":"2026-05-01T10:00:00Z","acc_rate":0.5,"avg_daily_trips":3,"rating":4.5,"vehicle_type":"sedan","is_active":true}`+"\n"+
		`{"driver_id":4,"event_timestamp":"2026-05-01T10:00:00Z","conv_rate":"abc","acc_rate":0.5,"avg_daily_trips":3,"rating":4.5,"vehicle_type":"sedan","is_active":true}`+"\n"+
		`{"driver_id":5,"event_timestamp":"2026-05-01T10:00:00Z","conv_rate":0.5,"acc_rate":0.5,"avg_daily_trips":3,"rating":4.5,"vehicle_type":5,"is_active":true}`+"\n"+
		`{"driver_id":null,"event_timestamp":"2026-05-01T10:00:00Z","conv_rate":0.5,"acc_rate":0.5,"avg_daily_trips":3,"rating":4.5,"vehicle_type":"x","is_active":true}`+"\n"+
		`{"driver_id":7,"event_timestamp":true,"conv_rate":0.5,"acc_rate":0.5,"avg_daily_trips":3,"rating":4.5,"vehicle_type":"x","is_active":true}`+"\n"+
		`{"driver_id":8.5,"event_timestamp":1777629600,"conv_rate":0.5,"acc_rate":0.5,"avg_daily_trips":3,"rating":4.5,"vehicle_type":"x","is_active":true}`+"\n"+
		jgood,
		`bad.jsonl:2: malformed JSON: invalid character 'x' looking for beginning of object key string`,
		`bad.jsonl:3: malformed JSON: want an object, got an array`,
		`bad.jsonl:4: missing column "conv_rate"`,
		`bad.jsonl:5: column "conv_rate": "abc" is not a FLOAT`,
		`bad.jsonl:6: column "vehicle_type": 5 is not a STRING`,
		`bad.jsonl:7: column "driver_id": missing value`,
		`bad.jsonl:8: column "event_timestamp": true is not a timestamp (want RFC 3339 or epoch seconds)`,
		`bad.jsonl:9: column "driver_id": 8.5 is not an INT64`)
}

func TestLoadLongJSONLine(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	line := `{"driver_id":1,"event_timestamp":"2026-05-01T10:00:00Z","conv_rate":0.5,"acc_rate":0.5,"avg_daily_trips":3,"rating":4.5,"vehicle_type":"sedan","is_active":true}`
	long := `{"driver_id":2,"event_timestamp":"2026-05-01T10:00:00Z","conv_rate":0.5,"acc_rate":0.5,"avg_daily_trips":3,"rating":4.5,"vehicle_type":"` +
		strings.Repeat("x", 600<<10) + `","is_active":true}`
	p := writeFile(t, "long.jsonl", line+"\n"+long+"\n"+strings.Replace(line, `"driver_id":1`, `"driver_id":3`, 1))
	st, err := load(t, r, s, p, LoadOptions{MaxLineBytes: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, st, 3, 2, 0, 1)
	if want := p + ":2: malformed JSON: line longer than 524288 bytes"; st.Errors[0].Error() != want {
		t.Fatalf("error %q, want %q", st.Errors[0], want)
	}
	// Within the limit, a line longer than the read buffer is read whole;
	// the rows already stored with the same event time are skipped.
	st, err = load(t, r, s, p, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, st, 3, 1, 2, 0)
	if got := fetchRows(t, v, r.c, "driver_stats", "2"); len(got) < 600<<10 {
		t.Fatalf("long row not read back: %d bytes", len(got))
	}
}

// TestLoadFileErrors checks the errors that end a load, with exact messages.
func TestLoadFileErrors(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	f := func(name, data, want string) {
		t.Helper()
		p := writeFile(t, name, data)
		st, err := load(t, r, s, p, LoadOptions{})
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		if got := strings.ReplaceAll(err.Error(), filepath.Dir(p)+"/", ""); got != want {
			t.Fatalf("%s: error\n%q\nwant\n%q", name, got, want)
		}
		if st == nil || st.Written != 0 {
			t.Fatalf("%s: stats %+v", name, st)
		}
	}
	f("empty.csv", "", "empty.csv: empty file")
	f("blank.jsonl", "\n  \n", "blank.jsonl: empty file")
	f("empty.parquet", "", "empty.parquet: empty file")
	f("nocol.csv", "driver_id,event_timestamp,acc_rate,avg_daily_trips,rating,vehicle_type,is_active\n1,2,3,4,5,6,7\n",
		`nocol.csv:1: missing column "conv_rate"`)
	f("dup.csv", strings.TrimSuffix(statsHeader, "\n")+",conv_rate\n", `dup.csv:1: duplicate column "conv_rate"`)
	f("junk.parquet", "not a parquet file at all", "junk.parquet: cannot read parquet file: invalid magic header of parquet file: \"not \"")
	f("data.txt", "x", `data.txt: unknown format "txt"; want csv, jsonl or parquet`)

	if _, err := load(t, r, s, filepath.Join(t.TempDir(), "missing.csv"), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "cannot open input") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := NewSchema(v, "nope", SchemaOptions{}); err == nil || err.Error() != `unknown feature view "nope"; known views: all_types, `+
		`customer_profile, customer_recent, device_stats, driver_customer, driver_stats, driver_trips, global_stats, zone_stats` {
		t.Fatalf("unknown view: %v", err)
	}
	p := writeFile(t, "e.csv", "")
	if _, err := load(t, r, s, p, LoadOptions{}); !errors.Is(err, ErrEmptyFile) {
		t.Fatalf("empty file error %v is not ErrEmptyFile", err)
	}
}

func TestLoadAbortAfter(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	var sb strings.Builder
	sb.WriteString(statsHeader)
	for i := 1; i <= 20; i++ {
		conv := "0.5"
		if i%2 == 0 {
			conv = "bad"
		}
		fmt.Fprintf(&sb, "%d,2026-05-01T10:00:00Z,%s,0.5,3,4.5,sedan,true\n", i, conv)
	}
	p := writeFile(t, "many.csv", sb.String())
	st, err := load(t, r, s, p, LoadOptions{AbortAfter: 3, ShowErrors: 2})
	if !errors.Is(err, ErrTooManyErrors) {
		t.Fatalf("error %v, want ErrTooManyErrors", err)
	}
	if want := p + ": too many rejected rows: stopped after 3"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	// Rows 1..6 read: 3 good ones written before the abort.
	checkCounts(t, st, 6, 3, 0, 3)
	if len(st.Errors) != 2 || st.Errors[0].Pos.Line != 3 || st.Errors[1].Pos.Line != 5 {
		t.Fatalf("errors kept %v", st.Errors)
	}
}

func TestParquetErrors(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	type textStats struct {
		DriverID  *int64  `parquet:"driver_id,optional"`
		TS        string  `parquet:"event_timestamp"`
		ConvRate  string  `parquet:"conv_rate"`
		AccRate   float64 `parquet:"acc_rate"`
		Trips     int32   `parquet:"avg_daily_trips"`
		Rating    float32 `parquet:"rating"`
		Vehicle   string  `parquet:"vehicle_type"`
		IsActive  bool    `parquet:"is_active"`
		Unrelated []int64 `parquet:"unrelated"`
	}
	id := func(n int64) *int64 { return &n }
	p := filepath.Join(t.TempDir(), "text.parquet")
	writeParquet(t, p, []textStats{
		{DriverID: id(1), TS: "2026-05-01 10:00:00", ConvRate: "0.5", AccRate: 0.25, Trips: 3, Rating: 4.5, Vehicle: "sedan", IsActive: true, Unrelated: []int64{1}},
		{DriverID: id(2), TS: "2026-05-01 10:00:00", ConvRate: "abc", Vehicle: "x"},
		{DriverID: nil, TS: "2026-05-01 10:00:00", ConvRate: "0.5", Vehicle: "x"},
		{DriverID: id(4), TS: "soon", ConvRate: "0.5", Vehicle: "x"},
	})
	st := mustLoad(t, r, s, p)
	checkCounts(t, st, 4, 1, 0, 3)
	var got []string
	for _, e := range st.Errors {
		got = append(got, strings.TrimPrefix(e.Error(), filepath.Dir(p)+"/"))
	}
	want := []string{
		`text.parquet: row group 0, row 1: column "conv_rate": "abc" is not a FLOAT`,
		`text.parquet: row group 0, row 2: column "driver_id": missing value`,
		`text.parquet: row group 0, row 3: column "event_timestamp": "soon" is not a timestamp (want RFC 3339 or epoch seconds)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := fetchRows(t, v, r.c, "driver_stats", "1"); got != `[{"driver_id":1,"conv_rate":0.5,"acc_rate":0.25,"avg_daily_trips":3,"rating":4.5,"vehicle_type":"sedan","is_active":true}]` {
		t.Fatalf("read back %s", got)
	}

	f := func(name string, write func(p string), want string) {
		t.Helper()
		p := filepath.Join(t.TempDir(), name)
		write(p)
		_, err := load(t, r, s, p, LoadOptions{})
		if err == nil || strings.TrimPrefix(err.Error(), filepath.Dir(p)+"/") != want {
			t.Fatalf("%s: error %v, want %q", name, err, want)
		}
	}
	f("bool.parquet", func(p string) {
		type row struct {
			DriverID int64   `parquet:"driver_id"`
			TS       int64   `parquet:"event_timestamp"`
			ConvRate bool    `parquet:"conv_rate"`
			AccRate  float64 `parquet:"acc_rate"`
			Trips    int64   `parquet:"avg_daily_trips"`
			Rating   float64 `parquet:"rating"`
			Vehicle  string  `parquet:"vehicle_type"`
			IsActive bool    `parquet:"is_active"`
		}
		writeParquet(t, p, []row{{}})
	}, `bool.parquet: column "conv_rate": parquet type BOOLEAN cannot be read as FLOAT`)
	f("missing.parquet", func(p string) {
		type row struct {
			DriverID int64 `parquet:"driver_id"`
		}
		writeParquet(t, p, []row{{}})
	}, `missing.parquet: missing column "event_timestamp"`)
	f("list.parquet", func(p string) {
		type row struct {
			DriverID []int64 `parquet:"driver_id"`
		}
		writeParquet(t, p, []row{{}})
	}, `list.parquet: column "driver_id": a repeated field cannot be read as INT64`)
}

func TestLoadCanceled(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	s := testSchema(t, v, "driver_stats")
	var sb strings.Builder
	sb.WriteString(statsHeader)
	for i := 0; i < 20000; i++ {
		sb.WriteString("1,2026-05-01T10:00:00Z,0.5,0.5,3,4.5,sedan,true\n")
	}
	p := writeFile(t, "c.csv", sb.String())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, err := Load(ctx, r.w, s, p, LoadOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if st.Read >= 20000 {
		t.Fatalf("read %d rows after cancel", st.Read)
	}
}
