package predlog

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/lariat-gw/lariat/internal/jsonutil"
)

// SchemaVersion names the layout of a Record. It is the "schema" field of
// every JSON record and the "lariat.schema" key-value metadata of every
// Parquet file. A change that removes or renames a field, or changes its
// meaning, gets a new version; new optional fields do not.
const SchemaVersion = "lariat.prediction.v1"

// Record is one answered request: what was asked (optionally), which route
// version, arm and model versions answered, with which feature values, and
// what came out. Field names are those of the Parquet columns and of the
// JSON object produced to Kafka.
type Record struct {
	// RequestID is the request's X-Request-Id, or the id the gateway
	// generated and returned in that header.
	RequestID string `parquet:"request_id" json:"request_id"`
	// Time is when the request arrived.
	Time time.Time `parquet:"time,timestamp(microsecond)" json:"time"`
	// Route is the route's name; RouteVersion the hash of its file.
	Route        string `parquet:"route" json:"route"`
	RouteVersion string `parquet:"route_version" json:"route_version"`
	// Status is the HTTP status of the answer.
	Status int32 `parquet:"status" json:"status"`
	// LatencyMs is the time from arrival to the answer, in milliseconds.
	LatencyMs float64 `parquet:"latency_ms" json:"latency_ms"`
	// Error is why the request failed, when it did.
	Error string `parquet:"error,optional" json:"error,omitempty"`
	// Arms lists the branch each switch or split task took.
	Arms []Arm `parquet:"arms,list" json:"arms"`
	// Tasks lists every task of the route, in file order.
	Tasks []Task `parquet:"tasks,list" json:"tasks"`
	// Features lists every feature value served, per entity.
	Features []Feature `parquet:"features,list" json:"features"`
	// Outputs holds the values of the route's log.outputs paths.
	Outputs []Output `parquet:"outputs,list" json:"outputs"`
	// Request is the request body, when the route's log.request is set
	// (a JSON string when the body is not JSON).
	Request JSON `parquet:"request,optional" json:"request,omitempty"`

	// times backs the EventTime pointers of Features, reused with r.
	times []time.Time
}

// TimeOf returns a pointer to a copy of t owned by r, for Feature.EventTime:
// it saves an allocation per feature value when records are reused.
func (r *Record) TimeOf(t time.Time) *time.Time {
	r.times = append(r.times, t)
	return &r.times[len(r.times)-1]
}

// Arm is the branch a gate (switch or split task) took.
type Arm struct {
	Gate string `parquet:"gate" json:"gate"`
	Arm  string `parquet:"arm" json:"arm"`
}

// Task statuses.
const (
	// TaskOK: the task finished without error.
	TaskOK = "ok"
	// TaskError: the task failed (Defaulted says whether its default
	// was used).
	TaskError = "error"
	// TaskSkipped: the task is in a branch its gate did not take.
	TaskSkipped = "skipped"
	// TaskDeadline: the route deadline passed before the task finished.
	TaskDeadline = "deadline"
	// TaskCanceled: another task failed the request before this one
	// finished.
	TaskCanceled = "canceled"
)

// Task is how one task of the route fared.
type Task struct {
	Name string `parquet:"name" json:"name"`
	Kind string `parquet:"kind" json:"kind"`
	// Model and Version name the model version that answered, when the
	// task resolved one from the registry.
	Model   string `parquet:"model,optional" json:"model,omitempty"`
	Version string `parquet:"version,optional" json:"version,omitempty"`
	// Status is ok, error, skipped, deadline or canceled.
	Status string `parquet:"status" json:"status"`
	// Code is the upstream's HTTP status, when there is one.
	Code      int32   `parquet:"code" json:"code"`
	LatencyMs float64 `parquet:"latency_ms" json:"latency_ms"`
	// Retries counts the tries after the first.
	Retries int32 `parquet:"retries" json:"retries"`
	// Defaulted is set when the task's on_error default was used.
	Defaulted bool   `parquet:"defaulted" json:"defaulted"`
	Error     string `parquet:"error,optional" json:"error,omitempty"`
}

// Feature is one feature value as served to one entity.
type Feature struct {
	// Task names the feature task that read it.
	Task string `parquet:"task" json:"task"`
	// Entity holds the entity's join keys, e.g. {"driver_id":1001}.
	Entity JSON   `parquet:"entity,json" json:"entity"`
	View   string `parquet:"view" json:"view"`
	Name   string `parquet:"name" json:"name"`
	// Value is the value served (a default when the stored one was
	// missing), as JSON.
	Value JSON `parquet:"value,json" json:"value"`
	// Status is Feast's field status: PRESENT, NOT_FOUND, NULL_VALUE,
	// OUTSIDE_MAX_AGE or INVALID.
	Status string `parquet:"status" json:"status"`
	// EventTime is the time the value was written for, when known.
	EventTime *time.Time `parquet:"event_time,optional,timestamp(microsecond)" json:"event_time,omitempty"`
}

// Output is the value of one selected output path of the answer.
type Output struct {
	Path  string `parquet:"path" json:"path"`
	Value JSON   `parquet:"value,json" json:"value"`
}

// JSON is a JSON text kept as written: a raw value in JSON records, a
// column of the JSON logical type in Parquet files.
type JSON string

// MarshalJSON returns the text itself (null when empty).
func (j JSON) MarshalJSON() ([]byte, error) {
	if j == "" {
		return []byte("null"), nil
	}
	return []byte(j), nil
}

// UnmarshalJSON keeps the raw text, compacted.
func (j *JSON) UnmarshalJSON(b []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	*j = JSON(buf.String())
	return nil
}

// reset empties r, keeping the capacity of its lists.
func (r *Record) reset() {
	*r = Record{
		Arms:     r.Arms[:0],
		Tasks:    r.Tasks[:0],
		Features: r.Features[:0],
		Outputs:  r.Outputs[:0],
		times:    r.times[:0],
	}
}

// AppendJSON appends r as one JSON object (no newline), with a leading
// "schema" field naming SchemaVersion.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"schema":"`+SchemaVersion+`","request_id":`...)
	b = jsonutil.AppendString(b, r.RequestID)
	b = append(b, `,"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","route":`...)
	b = jsonutil.AppendString(b, r.Route)
	b = append(b, `,"route_version":`...)
	b = jsonutil.AppendString(b, r.RouteVersion)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"latency_ms":`...)
	b = appendFloat(b, r.LatencyMs)
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = jsonutil.AppendString(b, r.Error)
	}
	b = append(b, `,"arms":[`...)
	for i := range r.Arms {
		a := &r.Arms[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"gate":`...)
		b = jsonutil.AppendString(b, a.Gate)
		b = append(b, `,"arm":`...)
		b = jsonutil.AppendString(b, a.Arm)
		b = append(b, '}')
	}
	b = append(b, `],"tasks":[`...)
	for i := range r.Tasks {
		t := &r.Tasks[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = jsonutil.AppendString(b, t.Name)
		b = append(b, `,"kind":`...)
		b = jsonutil.AppendString(b, t.Kind)
		if t.Model != "" {
			b = append(b, `,"model":`...)
			b = jsonutil.AppendString(b, t.Model)
		}
		if t.Version != "" {
			b = append(b, `,"version":`...)
			b = jsonutil.AppendString(b, t.Version)
		}
		b = append(b, `,"status":`...)
		b = jsonutil.AppendString(b, t.Status)
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(t.Code), 10)
		b = append(b, `,"latency_ms":`...)
		b = appendFloat(b, t.LatencyMs)
		b = append(b, `,"retries":`...)
		b = strconv.AppendInt(b, int64(t.Retries), 10)
		b = append(b, `,"defaulted":`...)
		b = strconv.AppendBool(b, t.Defaulted)
		if t.Error != "" {
			b = append(b, `,"error":`...)
			b = jsonutil.AppendString(b, t.Error)
		}
		b = append(b, '}')
	}
	b = append(b, `],"features":[`...)
	for i := range r.Features {
		f := &r.Features[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"task":`...)
		b = jsonutil.AppendString(b, f.Task)
		b = append(b, `,"entity":`...)
		b = appendRaw(b, f.Entity)
		b = append(b, `,"view":`...)
		b = jsonutil.AppendString(b, f.View)
		b = append(b, `,"name":`...)
		b = jsonutil.AppendString(b, f.Name)
		b = append(b, `,"value":`...)
		b = appendRaw(b, f.Value)
		b = append(b, `,"status":`...)
		b = jsonutil.AppendString(b, f.Status)
		if f.EventTime != nil {
			b = append(b, `,"event_time":"`...)
			b = f.EventTime.UTC().AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, `],"outputs":[`...)
	for i := range r.Outputs {
		o := &r.Outputs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"path":`...)
		b = jsonutil.AppendString(b, o.Path)
		b = append(b, `,"value":`...)
		b = appendRaw(b, o.Value)
		b = append(b, '}')
	}
	b = append(b, ']')
	if r.Request != "" {
		b = append(b, `,"request":`...)
		b = append(b, r.Request...)
	}
	return append(b, '}')
}

func appendRaw(b []byte, j JSON) []byte {
	if j == "" {
		return append(b, "null"...)
	}
	return append(b, j...)
}

func appendFloat(b []byte, f float64) []byte {
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}
