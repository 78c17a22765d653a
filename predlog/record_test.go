package predlog

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// sampleRecord fills every field of a record.
func sampleRecord(id string, t time.Time) *Record {
	return &Record{
		RequestID:    id,
		Time:         t,
		Route:        "allocate",
		RouteVersion: "a1b2c3d4e5f6",
		Status:       200,
		LatencyMs:    1.25,
		Arms:         []Arm{{Gate: "experiment", Arm: "canary"}},
		Tasks: []Task{
			{Name: "features", Kind: "feature", Status: TaskOK, Code: 200, LatencyMs: 0.5},
			{Name: "rank", Kind: "http", Model: "driver-rank", Version: "7", Status: TaskOK, Code: 200, LatencyMs: 0.75, Retries: 1},
			{Name: "fraud", Kind: "http", Status: TaskError, Code: 503, Defaulted: true, Error: "upstream answered 503"},
		},
		Features: []Feature{
			{Task: "features", Entity: `{"driver_id":1001}`, View: "driver_stats", Name: "conv_rate", Value: "0.5", Status: "PRESENT", EventTime: ptr(t.Add(-time.Minute))},
			{Task: "features", Entity: `{"driver_id":1001}`, View: "driver_stats", Name: "acc_rate", Value: "null", Status: "NOT_FOUND"},
		},
		Outputs: []Output{{Path: "response.body.score", Value: "0.91"}, {Path: "response.body.label", Value: `"yes \"quoted\""`}},
		Request: `{"drivers":[1001]}`,
	}
}

func TestRecordJSONRoundTrip(t *testing.T) {
	now := time.Date(2026, 5, 1, 13, 4, 5, 123456000, time.UTC)
	f := func(r *Record) {
		t.Helper()
		b := r.AppendJSON(nil)
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %s", b)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || m["schema"] != SchemaVersion {
			t.Fatalf("schema field: %v %v", m["schema"], err)
		}
		var got Record
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v\n%s", got, *r, b)
		}
	}
	f(sampleRecord("r-1", now))
	f(&Record{RequestID: "r-2", Time: now, Route: "x", Status: 504, Error: "task \"m\" failed: route deadline exceeded",
		Arms: []Arm{}, Tasks: []Task{}, Features: []Feature{}, Outputs: []Output{}})
}

func ptr[T any](v T) *T { return &v }
