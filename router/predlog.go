package router

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/jsonutil"
	"github.com/lariat-gw/lariat/internal/stickyhash"
	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/tasks"
)

// logPlan is a route's compiled log block: which requests the prediction
// log records and what it keeps of them.
type logPlan struct {
	// threshold: a request is recorded when its 64-bit draw (random or
	// the hash of the sticky key) is below it; all when always is set.
	threshold uint64
	always    bool
	sticky    *tasks.Template
	request   bool
	features  bool
	outputs   []logOutput
}

type logOutput struct {
	path   string
	target target
	// field is the gjson path into the body; header the header name.
	field, header string
}

// compileLog compiles the route's log block (or its defaults). The sticky
// template may read the request and its headers, not tasks.
func compileLog(r *config.Route, c *compiler) (*logPlan, error) {
	l := r.Log
	lp := &logPlan{request: l != nil && l.Request, features: l.LogsFeatures()}
	rate := l.SampleRate()
	switch {
	case rate >= 1:
		lp.always = true
	case rate > 0:
		lp.threshold = uint64(rate * math.MaxUint64)
	}
	if l == nil {
		return lp, nil
	}
	if l.Sticky.Value != "" {
		t, err := tasks.CompileTemplate(l.Sticky.Value, tasks.ModeText, logScope{c})
		if err != nil {
			return nil, config.Errorf(l.Sticky.Pos, "log.sticky: %v", err)
		}
		lp.sticky = t
	}
	for _, o := range l.Outputs {
		lo := logOutput{path: o.Value}
		switch {
		case o.Value == "response.status":
			lo.target = targetStatus
		case strings.HasPrefix(o.Value, "response.headers."):
			lo.target, lo.header = targetHeader, strings.TrimPrefix(o.Value, "response.headers.")
		default:
			lo.target = targetBody
			segs := strings.Split(strings.TrimPrefix(o.Value, "response.body."), ".")
			for i, s := range segs {
				segs[i] = escapeGJSON(s)
			}
			lo.field = strings.Join(segs, ".")
		}
		lp.outputs = append(lp.outputs, lo)
	}
	return lp, nil
}

// escapeGJSON escapes the characters gjson gives a meaning in a path.
func escapeGJSON(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '*', '?', '|', '#', '@', '!', '=', '<', '>', '%', '.':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// logScope resolves the names of the log's sticky template: the request
// and its headers; tasks have not run when the sampling is decided.
type logScope struct{ c *compiler }

func (s logScope) TaskRef(name string) (int, error) {
	return 0, errString("cannot reference tasks: sampling is decided before they run")
}
func (s logScope) HeaderRef(name string) int { return (&scope{c: s.c}).HeaderRef(name) }
func (s logScope) RequestRef()               { s.c.plan.readJSON = true }

type errString string

func (e errString) Error() string { return string(e) }

var (
	hdrRequestID = []byte("X-Request-Id")
	strHex       = "0123456789abcdef"
)

// startLog gives the request its id and decides whether it is recorded.
func (e *exec) startLog(rc *fasthttp.RequestCtx) {
	lp := e.p.logPlan
	id := rc.Request.Header.PeekBytes(hdrRequestID)
	if validRequestID(id) {
		e.reqID = append(e.reqID[:0], id...)
	} else {
		e.reqID = appendNewID(e.reqID[:0])
	}
	switch {
	case lp.always:
		e.logged = true
	case lp.threshold == 0:
		e.logged = false
	default:
		var v uint64
		if lp.sticky != nil {
			e.logKey = lp.sticky.Append(e.logKey[:0], &e.x)
		}
		if lp.sticky != nil && len(e.logKey) > 0 {
			v = stickyhash.Sum64(logHashOffset, e.logKey)
		} else {
			v = rand.Uint64()
		}
		e.logged = v < lp.threshold
	}
	e.x.LogFeatures = e.logged && lp.features
}

// validRequestID accepts ids of 1 to 128 printable ASCII characters.
func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendNewID appends a random 128-bit id in hex.
func appendNewID(b []byte) []byte {
	for _, v := range [2]uint64{rand.Uint64(), rand.Uint64()} {
		for s := 60; s >= 0; s -= 4 {
			b = append(b, strHex[v>>uint(s)&15])
		}
	}
	return b
}

// logHashOffset is the FNV offset of the prediction log's sticky
// sampling hash, not the split arms' one, so that the two decide
// independently for the same key.
const logHashOffset = 0x9e3779b97f4a7c15

// endLog returns the request id and, when the request is sampled, hands
// its record to the prediction log.
func (e *exec) endLog(rc *fasthttp.RequestCtx, start time.Time, failed int, err error) {
	rc.Response.Header.SetBytesKV(hdrRequestID, e.reqID)
	if !e.logged {
		return
	}
	p := e.p
	lp := p.logPlan
	r := p.plog.Acquire()
	r.RequestID = string(e.reqID)
	r.Time = start
	r.Route = p.name
	r.RouteVersion = p.Route.Hash
	r.Status = int32(rc.Response.StatusCode())
	r.LatencyMs = float64(time.Since(start).Microseconds()) / 1000
	if failed >= 0 {
		r.Error = "task " + strconv.Quote(p.nodes[failed].name) + " failed: " + err.Error()
	}
	// Tasks that finished after the request was decided (the answer did
	// not wait for them) are waiting in e.done: taking them orders their
	// results before this read. reset drains e.done anyway.
	for len(e.done) > 0 {
		e.taskState[<-e.done] = stDone
	}
	// Tasks not done when the request ended were stopped by the deadline
	// (those defaulted by it are in e.incomplete) or by another task's
	// failure.
	deadline := errors.Is(err, tasks.ErrDeadline)
	for _, i := range e.incomplete {
		deadline = deadline || e.taskState[i] != stDone
	}
	for i := range p.nodes {
		n := &p.nodes[i]
		t := predlog.Task{Name: n.name, Kind: n.kind}
		switch {
		case e.skip[i]:
			t.Status = predlog.TaskSkipped
		case e.taskState[i] == stDone:
			res := &e.x.Results[i]
			switch {
			case res.Err == nil:
				t.Status = predlog.TaskOK
			case errors.Is(res.Err, tasks.ErrDeadline):
				t.Status, t.Error = predlog.TaskDeadline, res.Err.Error()
			default:
				t.Status, t.Error = predlog.TaskError, res.Err.Error()
			}
			t.Code = int32(res.Status)
			t.LatencyMs = float64(e.lat[i].Microseconds()) / 1000
			t.Retries = int32(max(res.Attempts-1, 0))
			t.Defaulted = res.Defaulted
			if k := strings.LastIndexByte(res.Model, '/'); k >= 0 {
				t.Model, t.Version = res.Model[:k], res.Model[k+1:]
			} else {
				t.Model = res.Model // a fallback host
			}
			if n.isGate && !res.Defaulted && res.BranchName != "" {
				r.Arms = append(r.Arms, predlog.Arm{Gate: n.name, Arm: res.BranchName})
			}
			if len(res.FeatureLog) > 0 && res.Err == nil {
				appendFeatures(r, n.name, res.FeatureLog)
			}
		case deadline:
			t.Status = predlog.TaskDeadline
			t.Defaulted = slices.Contains(e.incomplete, i)
		default:
			t.Status = predlog.TaskCanceled
		}
		r.Tasks = append(r.Tasks, t)
	}
	if len(lp.outputs) > 0 {
		body := rc.Response.Body()
		for k := range lp.outputs {
			o := &lp.outputs[k]
			var v string
			switch o.target {
			case targetStatus:
				v = strconv.Itoa(rc.Response.StatusCode())
			case targetHeader:
				if h := rc.Response.Header.Peek(o.header); h != nil {
					v = string(jsonutil.AppendString(nil, string(h)))
				}
			default:
				if res := gjson.Get(jsonutil.B2S(body), o.field); res.Exists() {
					v = strings.Clone(res.Raw)
				}
			}
			if v == "" {
				v = "null"
			}
			r.Outputs = append(r.Outputs, predlog.Output{Path: o.path, Value: predlog.JSON(v)})
		}
	}
	if lp.request {
		if gjson.ValidBytes(e.x.Body) {
			r.Request = predlog.JSON(e.x.Body)
		} else {
			r.Request = predlog.JSON(jsonutil.AppendString(nil, string(e.x.Body)))
		}
	}
	p.plog.Submit(r)
}

// appendFeatures adds the values of a feature task's FeatureLog (see
// featurefetch.Plan.FetchLogged) to r.
func appendFeatures(r *predlog.Record, task string, log []byte) {
	s := string(log)
	gjson.Parse(s).ForEach(func(_, v gjson.Result) bool {
		f := predlog.Feature{Task: task}
		v.ForEach(func(k, fv gjson.Result) bool {
			switch k.Str {
			case "entity":
				f.Entity = predlog.JSON(fv.Raw)
			case "view":
				f.View = fv.Str
			case "name":
				f.Name = fv.Str
			case "value":
				f.Value = predlog.JSON(fv.Raw)
			case "status":
				f.Status = fv.Str
			case "event_time":
				if t, err := time.Parse(time.RFC3339Nano, fv.Str); err == nil {
					f.EventTime = r.TimeOf(t)
				}
			}
			return true
		})
		r.Features = append(r.Features, f)
		return true
	})
}
