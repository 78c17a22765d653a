package sink

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/lariat-gw/lariat/predlog"
)

var sinkErrorsRe = regexp.MustCompile(`(?m)^lariat_prediction_log_dropped_total\{reason="sink_error"\} (\d+)$`)

// droppedSinkErrors reads lariat_prediction_log_dropped_total{reason="sink_error"}.
func droppedSinkErrors(t *testing.T) uint64 {
	t.Helper()
	var buf bytes.Buffer
	metrics.WritePrometheus(&buf, false)
	m := sinkErrorsRe.FindSubmatch(buf.Bytes())
	if m == nil {
		t.Fatalf("no sink_error drop counter in:\n%s", buf.Bytes())
	}
	n, err := strconv.ParseUint(string(m[1]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sampleRecord fills every field of a record.
func sampleRecord(id string, t time.Time) *predlog.Record {
	return &predlog.Record{
		RequestID:    id,
		Time:         t,
		Route:        "allocate",
		RouteVersion: "a1b2c3d4e5f6",
		Status:       200,
		LatencyMs:    1.25,
		Arms:         []predlog.Arm{{Gate: "experiment", Arm: "canary"}},
		Tasks: []predlog.Task{
			{Name: "features", Kind: "feature", Status: predlog.TaskOK, Code: 200, LatencyMs: 0.5},
			{Name: "rank", Kind: "http", Model: "driver-rank", Version: "7", Status: predlog.TaskOK, Code: 200, LatencyMs: 0.75, Retries: 1},
			{Name: "fraud", Kind: "http", Status: predlog.TaskError, Code: 503, Defaulted: true, Error: "upstream answered 503"},
		},
		Features: []predlog.Feature{
			{Task: "features", Entity: `{"driver_id":1001}`, View: "driver_stats", Name: "conv_rate", Value: "0.5", Status: "PRESENT", EventTime: ptr(t.Add(-time.Minute))},
			{Task: "features", Entity: `{"driver_id":1001}`, View: "driver_stats", Name: "acc_rate", Value: "null", Status: "NOT_FOUND"},
		},
		Outputs: []predlog.Output{{Path: "response.body.score", Value: "0.91"}, {Path: "response.body.label", Value: `"yes \"quoted\""`}},
		Request: `{"drivers":[1001]}`,
	}
}

func ptr[T any](v T) *T { return &v }

// drainInterval is how often the log's writer takes the queued records.
const drainInterval = 20 * time.Millisecond
