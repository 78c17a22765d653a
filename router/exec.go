package router

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/lariat-gw/lariat/internal/jsonutil"
	"github.com/lariat-gw/lariat/tasks"
	"github.com/lariat-gw/lariat/upstream"
)

const (
	stNotStarted uint8 = iota
	stRunning
	stDone
)

// exec is the state of one request on one plan. It is pooled; goroutines
// of tasks still running when the answer went out hold a reference, and the
// last one to finish returns it to the pool.
type exec struct {
	p         *Plan
	x         tasks.Exchange
	pending   []int32
	taskState []uint8
	// skip marks tasks of branches their gate did not take.
	skip []bool
	// vals[i] is what task i wrote: its result or its default.
	vals [][]byte
	// order lists finished tasks; respond sorts it by finish time.
	order []int
	// ended[i] is when task i's Run returned, written by the goroutine
	// that ran it and read after its completion is received.
	ended []time.Time
	// finished[i] is task i's finish time for write order: when it ended,
	// or the route deadline if that came first.
	finished   []time.Time
	incomplete []int
	ready      []int
	head       int
	notStarted uint64
	running    int
	done       chan int
	refs       atomic.Int32
	timer      *time.Timer
	cancel     context.CancelFunc
	spanCtx    context.Context
	span       trace.Span
	asm        assembler
	out        []byte
	// Prediction log state (see predlog.go): lat[i] is task i's run time.
	lat    []time.Duration
	reqID  []byte
	logKey []byte
	logged bool
}

func newExec(p *Plan) any {
	n := len(p.nodes)
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &exec{
		p:         p,
		pending:   make([]int32, n),
		taskState: make([]uint8, n),
		skip:      make([]bool, n),
		vals:      make([][]byte, n),
		ended:     make([]time.Time, n),
		finished:  make([]time.Time, n),
		done:      make(chan int, n),
		timer:     t,
		lat:       make([]time.Duration, n),
	}
}

func (p *Plan) acquire() *exec {
	e := p.pool.Get().(*exec)
	e.refs.Store(1)
	return e
}

// release drops one reference; the last returns e to the pool.
func (e *exec) release() {
	if e.refs.Add(-1) == 0 {
		e.p.pool.Put(e)
	}
}

func (e *exec) reset() {
	p := e.p
	e.x.Reset(len(p.nodes), len(p.headers))
	for i := range p.nodes {
		e.pending[i] = int32(len(p.nodes[i].deps))
		e.taskState[i] = stNotStarted
		e.skip[i] = false
		e.vals[i] = nil
	}
	e.order = e.order[:0]
	e.incomplete = e.incomplete[:0]
	e.ready = e.ready[:0]
	e.head = 0
	// Task goroutines of the previous request are all done (the exec came
	// back from the pool), so its spans may go.
	e.span, e.spanCtx = nil, nil
	e.running = 0
	e.notStarted = 0
	if len(p.nodes) <= 64 {
		e.notStarted = 1<<uint(len(p.nodes)) - 1
	}
	for len(e.done) > 0 {
		<-e.done
	}
}

var (
	hdrContentType   = []byte("application/json")
	hdrIncomplete    = []byte("X-Lariat-Incomplete")
	hdrRouteVersion  = []byte("X-Lariat-Route-Version")
	hdrModels        = []byte("X-Lariat-Models")
	hdrBranch        = []byte("X-Lariat-Branch")
	hdrRetryAfter    = []byte("Retry-After")
	retryAfterOne    = []byte("1")
	hdrMissing       = []byte("X-Lariat-Missing")
	strTraceParent   = []byte("traceparent")
	strTraceState    = []byte("tracestate")
	strDeadlineMs    = []byte(upstream.DeadlineHeader)
	errNotJSON       = "request body is not valid JSON (UTF-8)"
	requestsNotJSON  = metrics.NewCounter(`lariat_requests_rejected_total{reason="invalid_json"}`)
	requestsCanceled = metrics.NewCounter(`lariat_requests_rejected_total{reason="deadline"}`)
)

// Serve answers one request on the plan: it admits it (Admit), then
// serves it (ServeAdmitted). The route and method have been matched by the
// caller. It returns once the response is written to rc; nothing keeps rc
// afterwards.
func (p *Plan) Serve(rc *fasthttp.RequestCtx) {
	a, ok := p.Admit(rc)
	if !ok {
		return
	}
	p.ServeAdmitted(rc, &a)
}

// callerDeadline returns the request's deadline: routeDeadline, or the
// caller's when it states an earlier one in X-Lariat-Deadline-Ms (a
// caller that is itself a gateway sends it, as may an app): work past
// it would answer a caller that has given up. A malformed value is
// ignored.
func callerDeadline(rc *fasthttp.RequestCtx, start, routeDeadline time.Time) time.Time {
	v := rc.Request.Header.PeekBytes(strDeadlineMs)
	if len(v) == 0 {
		return routeDeadline
	}
	ms, err := strconv.ParseUint(jsonutil.B2S(v), 10, 32)
	if err != nil {
		return routeDeadline
	}
	if d := start.Add(time.Duration(ms) * time.Millisecond); d.Before(routeDeadline) {
		return d
	}
	return routeDeadline
}

// Admit decides, before any work is done for the request, whether it may
// be served: the caller's credentials (401), the tenant's quotas (429 with
// Retry-After) and the route's concurrency limit (503). When it reports
// false, the answer is written. An admitted request must be passed to
// ServeAdmitted, or its Admission released.
func (p *Plan) Admit(rc *fasthttp.RequestCtx) (Admission, bool) {
	var a Admission
	key := -1
	if p.auth != nil {
		var err error
		if key, err = p.auth.check(rc); err != nil {
			p.auth.denied.Inc()
			writeUnauthorized(rc, p.name, err)
			p.countStatus(fasthttp.StatusUnauthorized)
			return a, false
		}
		if !p.tenantAuth {
			// A route's own keys are not the tenant's.
			key = -1
		}
	}
	if p.tenant != nil && !p.tenant.admit(rc, p.name, key, &a) {
		p.countStatus(fasthttp.StatusTooManyRequests)
		return a, false
	}
	if p.limit != nil {
		if !p.limit.acquire() {
			a.Release()
			writeShed(rc, p.name)
			p.countStatus(fasthttp.StatusServiceUnavailable)
			return a, false
		}
		a.route, a.admitted = p.limit, time.Now()
	}
	return a, true
}

// ServeAdmitted serves a request Admit admitted and releases a.
func (p *Plan) ServeAdmitted(rc *fasthttp.RequestCtx, a *Admission) {
	p.inflight.Add(1)
	p.serve(rc)
	a.release(rc)
	if p.inflight.Add(-1) == 0 && p.retired.Load() {
		p.release()
	}
}

func (p *Plan) serve(rc *fasthttp.RequestCtx) {
	start := time.Now()
	e := p.acquire()
	e.reset()
	x := &e.x
	x.Body = append(x.Body, rc.PostBody()...)
	if p.readJSON && (!gjson.ValidBytes(x.Body) || !utf8.Valid(x.Body)) {
		requestsNotJSON.Inc()
		p.writeError(rc, fasthttp.StatusBadRequest, errNotJSON, "")
		e.release()
		return
	}
	for i, h := range p.headers {
		if v := rc.Request.Header.Peek(h); v != nil {
			x.SetHeader(i, v)
		}
	}
	x.TraceParent = append(x.TraceParent, rc.Request.Header.PeekBytes(strTraceParent)...)
	x.TraceState = append(x.TraceState, rc.Request.Header.PeekBytes(strTraceState)...)
	x.Deadline = callerDeadline(rc, start, start.Add(p.timeout))
	if p.tracer != nil {
		e.startRequestSpan(rc)
	}
	if p.useCtx {
		x.Ctx, e.cancel = context.WithDeadline(context.Background(), x.Deadline)
	}
	if p.plog != nil {
		e.startLog(rc)
	}

	failed, err := e.run()
	if failed >= 0 {
		status := fasthttp.StatusBadGateway
		var reqErr *tasks.RequestError
		var upErr *upstream.Error
		switch {
		case errors.Is(err, tasks.ErrDeadline), errors.Is(err, tasks.ErrTimeout):
			status = fasthttp.StatusGatewayTimeout
		case errors.Is(err, tasks.ErrOverloaded):
			status = fasthttp.StatusServiceUnavailable
		case errors.As(err, &reqErr):
			status = fasthttp.StatusBadRequest
		case errors.As(err, &upErr) && upErr.RefusedRequest():
			// The model refused the request's content: the caller's to
			// mend, and not to send again as it is.
			status = upErr.Status
		}
		msg := "task " + strconv.Quote(p.nodes[failed].name) + " failed: " + err.Error()
		p.writeError(rc, status, msg, p.nodes[failed].name)
		if status == fasthttp.StatusServiceUnavailable {
			rc.Response.Header.SetBytesKV(hdrRetryAfter, retryAfterOne)
		}
		if e.span != nil {
			e.endRequestSpan(status, err)
		}
	} else {
		e.respond(rc)
		if e.span != nil {
			e.endRequestSpan(rc.Response.StatusCode(), nil)
		}
	}
	x.Cancel()
	if e.cancel != nil {
		e.cancel()
		e.cancel = nil
	}
	if p.plog != nil {
		e.endLog(rc, start, failed, err)
	}
	p.durations.UpdateDuration(start)
	p.stats.observe(time.Since(start), rc.Response.StatusCode() >= 500)
	e.release()
}

// run executes the task graph. It returns the index of the task that failed
// the request and why, or -1.
func (e *exec) run() (int, error) {
	p := e.p
	e.ready = append(e.ready, p.roots...)
	finished := 0
	e.timer.Reset(time.Until(e.x.Deadline))
	defer e.timer.Stop()
	for finished < len(p.nodes) {
		for e.head < len(e.ready) {
			i := e.ready[e.head]
			e.head++
			e.notStarted &^= 1 << uint(i&63)
			if e.skip[i] {
				finished++
				e.skipped(i)
				continue
			}
			e.taskState[i] = stRunning
			if e.head == len(e.ready) && e.canInline(i) {
				e.runTask(i)
				finished++
				if f, err := e.complete(i); f >= 0 {
					return f, err
				}
				continue
			}
			e.running++
			e.refs.Add(1)
			e.p.workers.run(e, i)
		}
		if finished == len(p.nodes) {
			break
		}
		if e.running == 0 {
			// Nothing runs and nothing is ready: only possible after the
			// deadline stopped work (dependents of defaulted tasks).
			return e.expire()
		}
		select {
		case i := <-e.done:
			e.running--
			finished++
			if f, err := e.complete(i); f >= 0 {
				return f, err
			}
		case <-e.timer.C:
			// Tasks that finished just in time count: take them first.
			for len(e.done) > 0 {
				i := <-e.done
				e.running--
				if f, err := e.complete(i); f >= 0 {
					return f, err
				}
			}
			return e.expire()
		}
	}
	return -1, nil
}

// canInline reports whether task i may run on the handler goroutine: only
// when every task not yet started depends on it, so running it inline
// delays nothing.
func (e *exec) canInline(i int) bool {
	if e.p.descendants == nil {
		return false
	}
	return e.notStarted&^e.p.descendants[i] == 0
}

func (e *exec) runTask(i int) {
	n := &e.p.nodes[i]
	r := &e.x.Results[i]
	start := time.Now()
	if e.p.tracer != nil {
		span := e.startTaskSpan(i, r)
		r.Err = n.task.Run(&e.x, r)
		endTaskSpan(span, r)
	} else {
		r.Err = n.task.Run(&e.x, r)
	}
	end := time.Now()
	e.ended[i] = end
	d := end.Sub(start)
	e.lat[i] = d
	n.duration.Update(d.Seconds())
	n.stats.observe(d, r.Err != nil)
}

func (e *exec) runAsync(i int) {
	e.runTask(i)
	e.done <- i
	e.release()
}

// complete records that task i finished and readies its dependents. It
// returns i and the error when the failure fails the request.
func (e *exec) complete(i int) (int, error) {
	n := &e.p.nodes[i]
	r := &e.x.Results[i]
	e.taskState[i] = stDone
	e.finished[i] = e.ended[i]
	if e.finished[i].After(e.x.Deadline) {
		e.finished[i] = e.x.Deadline
	}
	if r.Err != nil {
		n.failures.Inc()
		if !n.hasDefault {
			return i, r.Err
		}
		n.defaults.Inc()
		r.Body = append(r.Body[:0], n.def...)
		r.Defaulted = true
		e.incomplete = append(e.incomplete, i)
	}
	if e.x.Remaining() <= 0 && len(n.dependents) > 0 {
		// The deadline passed while this task ran: dependents cannot run.
		e.vals[i] = r.Body
		e.order = append(e.order, i)
		return e.expire()
	}
	e.vals[i] = r.Body
	e.order = append(e.order, i)
	if n.isGate {
		branch := r.Branch
		if r.Defaulted {
			branch = -1
		}
		e.skipBranches(i, branch)
	}
	for _, d := range n.dependents {
		if e.pending[d]--; e.pending[d] == 0 {
			e.ready = append(e.ready, d)
		}
	}
	return -1, nil
}

// skipped finishes task i without running it: its gate took another
// branch. It writes no output; its dependents see it as done.
func (e *exec) skipped(i int) {
	n := &e.p.nodes[i]
	e.taskState[i] = stDone
	if n.isGate {
		e.skipBranches(i, -1)
	}
	for _, d := range n.dependents {
		if e.pending[d]--; e.pending[d] == 0 {
			e.ready = append(e.ready, d)
		}
	}
}

// skipBranches marks the tasks gated by gate g that are not in branch
// chosen (-1: none is chosen).
func (e *exec) skipBranches(g, chosen int) {
	for _, d := range e.p.nodes[g].dependents {
		if dn := &e.p.nodes[d]; dn.gate == g && dn.branch != chosen {
			e.skip[d] = true
		}
	}
}

// expire handles the route deadline: tasks not done take their defaults,
// or the request fails with 504 naming the first that has none.
func (e *exec) expire() (int, error) {
	requestsCanceled.Inc()
	e.x.Cancel()
	for i := range e.p.nodes {
		if e.taskState[i] == stDone || e.skip[i] {
			continue
		}
		n := &e.p.nodes[i]
		if !n.hasDefault {
			n.failures.Inc()
			return i, tasks.ErrDeadline
		}
	}
	for i := range e.p.nodes {
		if e.taskState[i] == stDone || e.skip[i] {
			continue
		}
		n := &e.p.nodes[i]
		n.failures.Inc()
		n.defaults.Inc()
		e.vals[i] = n.def
		e.finished[i] = e.x.Deadline
		e.order = append(e.order, i)
		e.incomplete = append(e.incomplete, i)
	}
	return -1, nil
}

// respond writes the assembled response.
func (e *exec) respond(rc *fasthttp.RequestCtx) {
	p := e.p
	e.sortOrder()
	resp := &rc.Response
	resp.Header.SetContentTypeBytes(hdrContentType)
	resp.Header.SetBytesK(hdrRouteVersion, p.Route.Hash)
	status := fasthttp.StatusOK
	l := &p.layout
	e.asm.reset(len(l.nodes))
	for hi := range l.outputs {
		o := &l.outputs[hi]
		if o.target == targetBody || !e.firstOf(hi) {
			continue
		}
		st, raw, _ := e.state(func(c *output) bool { return c.target == o.target && c.header == o.header })
		if st != stateRaw {
			continue
		}
		r := gjson.Parse(raw)
		if o.target == targetStatus {
			if s := int(r.Int()); r.Type == gjson.Number && s >= 100 && s <= 599 {
				status = s
			}
			continue
		}
		v := r.String()
		if validHeaderValue(v) {
			resp.Header.Set(o.header, v)
		}
	}
	if len(e.incomplete) > 0 {
		b := e.asm.buf()
		for k, i := range e.incomplete {
			if k > 0 {
				b = append(b, ',')
			}
			b = append(b, p.nodes[i].name...)
		}
		resp.Header.SetBytesKV(hdrIncomplete, b)
		e.asm.keep(b)
	}
	if models := e.taskList(answeredModel); len(models) > 0 {
		resp.Header.SetBytesKV(hdrModels, models)
	}
	if branches := e.taskList(e.takenBranch); len(branches) > 0 {
		resp.Header.SetBytesKV(hdrBranch, branches)
	}
	if missing := e.taskList(missedRows); len(missing) > 0 {
		resp.Header.SetBytesKV(hdrMissing, missing)
	}
	resp.SetStatusCode(status)
	e.out = e.out[:0]
	if e.isPresent(0) {
		e.out = e.appendNode(e.out, 0)
	} else {
		e.out = append(e.out, '{', '}')
	}
	resp.SetBody(e.out)
	p.countStatus(status)
}

// sortOrder puts the finished tasks in the order their writes apply: by
// finish time, ties (tasks that ran into the route deadline) in
// declaration order.
func (e *exec) sortOrder() {
	slices.SortFunc(e.order, func(a, b int) int {
		if c := e.finished[a].Compare(e.finished[b]); c != 0 {
			return c
		}
		return a - b
	})
}

// firstOf reports whether output hi is the first one of its header or
// status target, so each target is computed once.
func (e *exec) firstOf(hi int) bool {
	l := &e.p.layout
	o := &l.outputs[hi]
	for k := 0; k < hi; k++ {
		c := &l.outputs[k]
		if c.target == o.target && c.header == o.header {
			return false
		}
	}
	return true
}

// taskList lists, in finish order, the tasks done with a result of their
// own (not a default) that pick chooses, as "name" entries, or
// "name=value" where pick gives a value; nil when none is chosen. Tasks
// cut by the deadline may still be running: their results are not read.
func (e *exec) taskList(pick func(i int, r *tasks.Result) (value string, ok bool)) []byte {
	var b []byte
	for _, i := range e.order {
		r := &e.x.Results[i]
		if e.taskState[i] != stDone || r.Defaulted {
			continue
		}
		v, ok := pick(i, r)
		if !ok {
			continue
		}
		if b == nil {
			b = e.asm.buf()
		} else {
			b = append(b, ',')
		}
		b = append(b, e.p.nodes[i].name...)
		if v != "" {
			b = append(b, '=')
			b = append(b, v...)
		}
	}
	if b != nil {
		e.asm.keep(b)
	}
	return b
}

// answeredModel picks the tasks that called a model, with the version that
// answered (name/version).
func answeredModel(_ int, r *tasks.Result) (string, bool) { return r.Model, r.Model != "" }

// missedRows picks the tasks that found no feature row for some entity.
func missedRows(_ int, r *tasks.Result) (string, bool) { return "", len(r.Missing) > 0 }

// takenBranch picks the gates, with the branch each took.
func (e *exec) takenBranch(i int, r *tasks.Result) (string, bool) {
	return r.BranchName, e.p.nodes[i].isGate && r.BranchName != ""
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func (p *Plan) countStatus(status int) {
	if status < 0 || status >= len(p.statuses) {
		return
	}
	c := p.statuses[status].Load()
	if c == nil {
		// GetOrCreateCounter returns the same counter to racing callers.
		c = p.set.GetOrCreateCounter(`lariat_requests_total{` + p.labels + `,status="` + strconv.Itoa(status) + `"}`)
		p.statuses[status].Store(c)
	}
	c.Inc()
}

// writeError answers with status and a JSON error body naming the route
// and, when known, the task.
func (p *Plan) writeError(rc *fasthttp.RequestCtx, status int, msg, task string) {
	WriteError(rc, status, msg, p.name, task)
	p.countStatus(status)
}

// WriteError answers with status and the JSON body
// {"error": msg, "route": route, "task": task} (empty fields left out).
func WriteError(rc *fasthttp.RequestCtx, status int, msg, route, task string) {
	rc.Response.Reset()
	rc.SetStatusCode(status)
	rc.Response.Header.SetContentTypeBytes(hdrContentType)
	var arr [256]byte
	b := append(arr[:0], `{"error":`...)
	b = jsonutil.AppendString(b, msg)
	if route != "" {
		b = append(b, `,"route":`...)
		b = jsonutil.AppendString(b, route)
	}
	if task != "" {
		b = append(b, `,"task":`...)
		b = jsonutil.AppendString(b, task)
	}
	b = append(b, '}')
	rc.Response.SetBody(b)
}
