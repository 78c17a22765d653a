package tasks

import (
	"context"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/lariat-gw/lariat/upstream"
	"go.opentelemetry.io/otel/trace"
)

// Exchange is what the tasks of one request share: the request as received
// (copied out of the server's buffers), the results of finished tasks, and
// the route deadline. The router owns it and reuses it across requests; a
// task must not keep references into it after Run returns.
type Exchange struct {
	// Body is the request body.
	Body []byte
	// Headers holds the request headers the route's templates reference,
	// by slot (see Scope.HeaderRef).
	Headers [][]byte
	// headerSet marks which header slots were present in the request.
	headerSet []bool
	// TraceParent and TraceState are the request's W3C trace-context
	// headers, propagated to upstream calls.
	TraceParent []byte
	TraceState  []byte
	// Results holds each task's result by task index. A task may read the
	// results of the tasks it depends on.
	Results []Result
	// Deadline is the route deadline.
	Deadline time.Time
	// Ctx is cancelled at the route deadline or when the request ends
	// early. It is set only for routes with a task kind that uses contexts
	// (Kind.UsesContext); otherwise it is nil.
	Ctx context.Context
	// LogFeatures asks feature tasks to fill Result.FeatureLog: the
	// prediction log records this request's feature values.
	LogFeatures bool

	cancel upstream.Cancel
}

// Reset prepares x for a request with nTasks tasks and nHeaders header
// slots, keeping the capacity of its buffers.
func (x *Exchange) Reset(nTasks, nHeaders int) {
	x.Body = x.Body[:0]
	x.TraceParent = x.TraceParent[:0]
	x.TraceState = x.TraceState[:0]
	if cap(x.Headers) < nHeaders {
		x.Headers = make([][]byte, nHeaders)
		x.headerSet = make([]bool, nHeaders)
	}
	x.Headers = x.Headers[:nHeaders]
	x.headerSet = x.headerSet[:nHeaders]
	for i := range x.Headers {
		x.Headers[i] = x.Headers[i][:0]
		x.headerSet[i] = false
	}
	if cap(x.Results) < nTasks {
		x.Results = make([]Result, nTasks)
	}
	x.Results = x.Results[:nTasks]
	for i := range x.Results {
		x.Results[i].reset()
	}
	x.Deadline = time.Time{}
	x.Ctx = nil
	x.LogFeatures = false
	x.cancel.Reset()
}

// SetHeader stores the value of header slot i.
func (x *Exchange) SetHeader(i int, v []byte) {
	x.Headers[i] = append(x.Headers[i][:0], v...)
	x.headerSet[i] = true
}

// HeaderSet reports whether header slot i was present in the request.
func (x *Exchange) HeaderSet(i int) bool { return x.headerSet[i] }

// Cancel marks the request as over: tasks still running stop at their next
// chance, end their backoff sleeps and start no further tries.
func (x *Exchange) Cancel() { x.cancel.Cancel() }

// Canceled reports whether the request is over.
func (x *Exchange) Canceled() bool { return x.cancel.Canceled() }

// Budget returns what the request's upstream calls may spend: the route
// deadline and the request's cancellation.
func (x *Exchange) Budget() upstream.Budget {
	return upstream.Budget{Deadline: x.Deadline, Cancel: &x.cancel}
}

// Remaining returns the time left before the route deadline.
func (x *Exchange) Remaining() time.Duration { return time.Until(x.Deadline) }

// Result is what a task produced.
type Result struct {
	// Body is the result as JSON.
	Body []byte
	// Status is the upstream status code, when the kind has one.
	Status int
	// Attempts counts the tries made.
	Attempts int
	// Model names the model version that answered ("name/version", or
	// the host of a fallback that answered), when the task resolved one.
	Model string
	// Err is why the task failed, or nil.
	Err error
	// Defaulted is set when Body is the task's on_error default.
	Defaulted bool
	// Upstream names the host the task called, for traces.
	Upstream string
	// Branch is the branch a Gate chose (-1: none); BranchName names it
	// for the X-Lariat-Branch header and metrics.
	Branch     int
	BranchName string
	// Missing lists, as a JSON array of join keys, the entities a feature
	// task found no row for; empty when none (.tasks.<task>.missing).
	Missing []byte
	// TraceParent, when set, is the W3C traceparent the task propagates
	// upstream (its own span when tracing is on); otherwise the request's
	// is propagated.
	TraceParent []byte
	// FeatureLog is, when Exchange.LogFeatures is set, a feature task's
	// values as served with their status and event time (the JSON of
	// featurefetch.Plan.FetchLogged).
	FeatureLog []byte

	// scratch is a buffer a kind may use while it runs.
	scratch []byte
}

func (r *Result) reset() {
	r.Body = r.Body[:0]
	r.Status = 0
	r.Attempts = 0
	r.Model = ""
	r.Err = nil
	r.Defaulted = false
	r.Upstream = ""
	r.Branch = -1
	r.BranchName = ""
	r.Missing = r.Missing[:0]
	r.TraceParent = r.TraceParent[:0]
	r.FeatureLog = r.FeatureLog[:0]
}

// Errors a task may return. The router maps ErrDeadline and ErrTimeout to
// 504, ErrOverloaded to 503, a RequestError to 400 and any other error to
// 502.
var (
	// ErrDeadline means the route deadline passed before the task finished.
	ErrDeadline = upstream.ErrDeadline
	// ErrTimeout means the upstream did not answer within the task's
	// timeout.
	ErrTimeout = upstream.ErrTimeout
	// ErrCanceled means the request ended before the task finished.
	ErrCanceled = upstream.ErrCanceled
	// ErrBreakerOpen means the upstream's circuit breaker is open.
	ErrBreakerOpen = upstream.ErrBreakerOpen
	// ErrOverloaded means the gateway refused the call to protect itself
	// or the upstream; the request may be retried later.
	ErrOverloaded = upstream.ErrOverloaded
)

// AppendTraceParent formats sc as a W3C traceparent header value.
func AppendTraceParent(dst []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tid[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sid[:])
	dst = append(dst, '-')
	flags := sc.TraceFlags()
	if flags < 0x10 {
		dst = append(dst, '0')
	}
	return strconv.AppendUint(dst, uint64(flags), 16)
}

// ParseTraceParent parses a W3C traceparent header value (version 00).
func ParseTraceParent(v []byte) (trace.SpanContext, bool) {
	// 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>
	if len(v) != 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if _, err := hex.Decode(tid[:], v[3:35]); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(sid[:], v[36:52]); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(flags[:], v[53:55]); err != nil {
		return trace.SpanContext{}, false
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags[0]), Remote: true})
	return sc, sc.IsValid()
}
