package sink

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/predlog"
)

// TestDecodeRecord checks that decodeRecord reads what AppendJSON writes
// as json.Unmarshal does, and rejects what is not a record.
func TestDecodeRecord(t *testing.T) {
	f := func(r *predlog.Record) {
		t.Helper()
		line := r.AppendJSON(nil)
		var want predlog.Record
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", line, err)
		}
		var got predlog.Record
		if err := decodeRecord(line, &got); err != nil {
			t.Fatalf("decodeRecord(%s): %v", line, err)
		}
		if !reflect.DeepEqual(got.AppendJSON(nil), want.AppendJSON(nil)) || !reflect.DeepEqual(exported(&got), exported(&want)) {
			t.Fatalf("decodeRecord(%s)\n got %+v\nwant %+v", line, got, want)
		}
	}
	now := time.Date(2026, 5, 1, 13, 4, 5, 123456789, time.UTC)
	f(sampleRecord("r-1", now))
	f(&predlog.Record{RequestID: "empty", Time: now})
	r := sampleRecord("r-2", now.In(time.FixedZone("x", 3600)))
	r.Error = "task \"b\" failed: \u2028\ttab é \x01"
	r.Request = "{\n  \"pretty\": [1, 2],\n  \"s\": \"a b\"\n}"
	r.Features[1].Value = ""
	r.Outputs = append(r.Outputs, predlog.Output{Path: "response.body", Value: `{"m1": {"score": 0.91}}`})
	f(r)

	bad := func(line, want string) {
		t.Helper()
		var got predlog.Record
		if err := decodeRecord([]byte(line), &got); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("decodeRecord(%s) = %v, want %q", line, err, want)
		}
	}
	bad(`{"request_id":"x"`, "not a JSON object")
	bad(`["x"]`, "not a JSON object")
	bad(`{"status":"200"}`, "field status: want a Number")
	bad(`{"time":"yesterday"}`, "field time")
	bad(`{"tasks":{}}`, "field tasks: want a list")
	bad(`{"tasks":[1]}`, "want objects in the list")
	bad(`{"tasks":[{"defaulted":"yes"}]}`, "field defaulted: want true or false")
}

// exported returns the exported fields of r.
func exported(r *predlog.Record) predlog.Record {
	return predlog.Record{RequestID: r.RequestID, Time: r.Time, Route: r.Route, RouteVersion: r.RouteVersion, Status: r.Status,
		LatencyMs: r.LatencyMs, Error: r.Error, Arms: r.Arms, Tasks: r.Tasks, Features: r.Features, Outputs: r.Outputs, Request: r.Request}
}

func BenchmarkDecodeRecord(b *testing.B) {
	line := sampleRecord("r-1", time.Now()).AppendJSON(nil)
	var r predlog.Record
	b.Run("decodeRecord", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := decodeRecord(line, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r = predlog.Record{}
			if err := json.Unmarshal(line, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
