package tasks

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/upstream"
)

// BatchInputs turn on micro-batching for an infer task: concurrent calls
// to the same model with the same input signature are coalesced into one
// V2 call, their tensors concatenated along the batch dimension, and the
// outputs split back.
//
// A call waits at most MaxWait for others to join; one whose deadline is
// near (closer than MaxWait plus twice the recent batched-call time) is
// sent at once with the calls already waiting. The batched call's deadline
// is its latest member's; each member leaves it at its own deadline.
type BatchInputs struct {
	// MaxSize is the most batch rows in one call (32 when 0 or left out);
	// a request with more rows is sent alone.
	MaxSize int `yaml:"max_size" jsonschema:"minimum=0,maximum=65536"`
	// MaxWait is the longest a call waits for others to join (2ms when
	// left out); shorter than the route timeout. A call whose deadline is
	// near is sent at once.
	MaxWait config.Duration `yaml:"max_wait" jsonschema:"exclusiveMinimum=0"`
}

// batchIdle is how long a batcher goroutine waits for work before it
// exits; the next call starts it again.
const batchIdle = 500 * time.Millisecond

type batchSpec struct {
	maxSize int
	maxWait time.Duration
	// sig identifies what a batched call sends, besides its target.
	sig string
	t   *inferTask
	// tracer, when set, traces batched calls.
	tracer trace.Tracer
}

func (t *inferTask) compileBatch(s *Spec, in *BatchInputs) (*batchSpec, error) {
	b := &batchSpec{maxSize: 32, maxWait: 2 * time.Millisecond, t: t, tracer: s.Env.Tracer}
	switch {
	case t.proto != protoV2:
		return nil, s.Errorf(s.Task.NamePos, "inputs.batch needs protocol v2")
	case t.call.HedgeAfter > 0 || t.call.fallback != nil:
		return nil, s.Errorf(s.Task.NamePos, "inputs.batch cannot be combined with hedge_after or fallback")
	case !t.headers.static():
		return nil, s.Errorf(s.Task.NamePos, "inputs.batch: header values cannot hold templates, as a batched call carries many requests")
	case in.MaxSize < 0 || in.MaxSize > 65536:
		return nil, s.Errorf(s.Task.NamePos, "inputs.batch.max_size must be between 1 and 65536, got %d", in.MaxSize)
	}
	if in.MaxSize > 0 {
		b.maxSize = in.MaxSize
	}
	if in.MaxWait.Set {
		if in.MaxWait.D <= 0 || in.MaxWait.D >= s.Route.Timeout.D {
			return nil, s.Errorf(in.MaxWait.Pos, "inputs.batch.max_wait must be positive and shorter than the route timeout %s", s.Route.Timeout.D)
		}
		b.maxWait = in.MaxWait.D
	}
	var sig strings.Builder
	for _, ti := range t.inputs {
		if ti.perRow < 0 {
			return nil, s.Errorf(s.Task.NamePos, "inputs.batch: input %s needs a fixed row shape: give columns, or a shape whose first dimension is -1", ti.name)
		}
		fmt.Fprintf(&sig, "%q:%s:%v;", ti.name, ti.datatype, ti.inner)
	}
	fmt.Fprintf(&sig, "|%s|%v|", t.outputsJSON, t.codec.rows)
	for i, k := range t.headers.keys {
		fmt.Fprintf(&sig, "%q=%q;", k, t.headers.vals[i].Source())
	}
	fmt.Fprintf(&sig, "|%d|%s", b.maxSize, b.maxWait)
	b.sig = sig.String()
	return b, nil
}

// batchRowsBuckets are the upper bounds of lariat_batch_rows: 1, 2, 4, ... 1024 rows.
var batchRowsBuckets = metrics.ExponentialBuckets(1, 2, 11)

// batchers holds the micro-batchers of an Env by target and signature, so
// that the tasks of several routes (and of reloaded routes) calling the
// same model with the same signature share one. A batcher lives while
// some task holds it; the last task to let go (when its plan is retired)
// removes it and its series.
type batchers struct {
	mu sync.Mutex
	m  map[string]*batchEntry
	// rows counts the batchers exporting each lariat_batch_rows series.
	rows map[string]int
}

type batchEntry struct {
	b *batcher
	// holders are the specs of the tasks holding b; b uses one of them.
	holders []*batchSpec
}

// acquire returns the batcher of key for the task of spec, making it on
// first use.
func (bs *batchers) acquire(key string, spec *batchSpec, tg *target) *batcher {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.m == nil {
		bs.m, bs.rows = map[string]*batchEntry{}, map[string]int{}
	}
	if e := bs.m[key]; e != nil {
		e.holders = append(e.holders, spec)
		return e.b
	}
	b := &batcher{tg: tg, queue: make(chan *member, 16*spec.maxSize)}
	b.specp.Store(spec)
	b.rowsName = `lariat_batch_rows{model=` + strconv.Quote(tg.label()) + `}`
	b.rows = metrics.GetOrCreatePrometheusHistogramExt(b.rowsName, batchRowsBuckets)
	bs.rows[b.rowsName]++
	bs.m[key] = &batchEntry{b: b, holders: []*batchSpec{spec}}
	return b
}

// release lets go of the batcher of key held for the task of spec.
func (bs *batchers) release(key string, spec *batchSpec) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	e := bs.m[key]
	if e == nil {
		return
	}
	if i := slices.Index(e.holders, spec); i >= 0 {
		e.holders = slices.Delete(e.holders, i, i+1)
	}
	if len(e.holders) > 0 {
		// Keep nothing of a retired task alive: use a live holder's spec
		// (the same signature).
		e.b.specp.Store(e.holders[0])
		return
	}
	delete(bs.m, key)
	if bs.rows[e.b.rowsName]--; bs.rows[e.b.rowsName] == 0 {
		delete(bs.rows, e.b.rowsName)
		metrics.UnregisterMetric(e.b.rowsName)
	}
}

// len returns the number of batchers, for tests.
func (bs *batchers) len() int {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return len(bs.m)
}

// batcher coalesces the calls of one model with one signature. One
// goroutine collects calls into batches while there are any (it exits
// after batchIdle without any); each batch is sent on its own goroutine.
type batcher struct {
	specp   atomic.Pointer[batchSpec]
	tg      *target
	queue   chan *member
	running atomic.Bool
	// est is the recent duration of a batched call (ns), to tell when a
	// member's deadline is near.
	est      atomic.Int64
	rows     *metrics.PrometheusHistogram
	rowsName string
}

// spec returns the batch settings and task the batcher uses.
func (b *batcher) spec() *batchSpec { return b.specp.Load() }

// batcherFor returns the batcher of tg for this task, acquiring it once.
func (t *inferTask) batcherFor(tg *target) *batcher {
	if b := tg.batch.Load(); b != nil {
		return b
	}
	t.heldMu.Lock()
	defer t.heldMu.Unlock()
	if b := tg.batch.Load(); b != nil {
		return b
	}
	key := fmt.Sprintf("%p|%s://%s%s|%s", tg.Host, tg.Scheme, tg.HostHdr, tg.Path, t.batch.sig)
	b := t.held[key]
	if b == nil {
		b = t.env.batchers.acquire(key, t.batch, tg)
		if t.held == nil {
			t.held = map[string]*batcher{}
		}
		t.held[key] = b
	}
	tg.batch.Store(b)
	return b
}

// Cleanup lets go of the batchers and the upstream targets the task
// holds.
func (t *inferTask) Cleanup() {
	t.heldMu.Lock()
	defer t.heldMu.Unlock()
	for key := range t.held {
		t.env.batchers.release(key, t.batch)
	}
	clear(t.held)
	t.ep.release()
	t.call.release()
}

// member is one request's share of a batched call. The request and the
// batch each hold a reference; the last to let go pools it.
type member struct {
	buf  []byte // the tensors' elements, input after input
	ends []int  // end of each input's elements in buf
	rows int
	// prop holds the request's propagated headers (see appendPropagated):
	// only members with the same ones share a batched call.
	prop []byte
	// traceParent is the trace context of the request's task.
	traceParent []byte

	enqueued   time.Time
	deadline   time.Time
	tryTimeout time.Duration

	out    []byte // the request's result
	status int
	err    *upstream.Error

	done  chan struct{}
	timer *time.Timer
	refs  atomic.Int32
}

var memberPool = sync.Pool{New: func() any { return newMember() }}

func newMember() *member {
	m := &member{done: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
	m.timer.Stop()
	return m
}

// unpooledMembers, while above zero, stops the pooling of members: tests
// under testing/synctest raise it, since a member's channel and timer
// belong to the bubble that made them and must not reach another.
var unpooledMembers atomic.Int32

func acquireMember() *member {
	var m *member
	if unpooledMembers.Load() > 0 {
		m = newMember()
	} else {
		m = memberPool.Get().(*member)
	}
	m.buf, m.ends, m.out = m.buf[:0], m.ends[:0], m.out[:0]
	m.prop, m.traceParent = m.prop[:0], m.traceParent[:0]
	m.rows, m.status, m.err = 0, 0, nil
	select {
	case <-m.done:
	default:
	}
	m.refs.Store(1)
	return m
}

func (m *member) release() {
	if m.refs.Add(-1) == 0 && unpooledMembers.Load() == 0 {
		m.err = nil
		memberPool.Put(m)
	}
}

// finish hands the member's answer back to its request.
func (m *member) finish() {
	m.done <- struct{}{}
	m.release()
}

// enqueue adds m to the queue, starting the collecting goroutine if
// needed. It reports false when the queue is full.
func (b *batcher) enqueue(m *member) bool {
	select {
	case b.queue <- m:
	default:
		return false
	}
	if !b.running.Load() && b.running.CompareAndSwap(false, true) {
		go b.loop()
	}
	return true
}

// sendBy returns when the batch holding m must be sent: at, or now when
// m's deadline is near, i.e. waiting max_wait and then making a call of
// the usual duration (twice the recent average) might not fit before it.
func (b *batcher) sendBy(m *member, at time.Time) time.Time {
	est := time.Duration(b.est.Load())
	if est <= 0 {
		est = b.spec().maxWait
	}
	now := time.Now()
	if m.deadline.Sub(now) < b.spec().maxWait+2*est {
		return now
	}
	return at
}

func (b *batcher) loop() {
	timer := time.NewTimer(batchIdle)
	defer timer.Stop()
	// open holds the batches being collected, one per group of propagated
	// headers: calls of different groups arriving interleaved (one
	// tenant's, another's) each join their own batch.
	var open []*batchCall
	for {
		timer.Reset(batchIdle)
		var first *member
		select {
		case first = <-b.queue:
		case <-timer.C:
			b.running.Store(false)
			// A member queued while stopping restarts the loop here,
			// unless its caller already did.
			if len(b.queue) == 0 || !b.running.CompareAndSwap(false, true) {
				return
			}
			continue
		}
		// A member is read before join: once in a batch that is sent,
		// it belongs to its request again.
		flushAt := b.sendBy(first, first.enqueued.Add(b.spec().maxWait))
		open = b.join(open, first)
		for len(open) > 0 {
			d := time.Until(flushAt)
			if d <= 0 {
				break
			}
			timer.Reset(d)
			select {
			case m := <-b.queue:
				flushAt = b.sendBy(m, flushAt)
				open = b.join(open, m)
				continue
			case <-timer.C:
			}
			break
		}
		timer.Stop()
		for i, bc := range open {
			go b.send(bc)
			open[i] = nil
		}
		open = open[:0]
	}
}

// join adds m to the open batch of its header group, sending that batch
// first when m would take it past max_size and after when m fills it, and
// returns the open batches.
func (b *batcher) join(open []*batchCall, m *member) []*batchCall {
	maxSize := b.spec().maxSize
	i := slices.IndexFunc(open, func(bc *batchCall) bool { return bytes.Equal(bc.members[0].prop, m.prop) })
	if i >= 0 && open[i].rows+m.rows > maxSize {
		go b.send(open[i])
		open = slices.Delete(open, i, i+1)
		i = -1
	}
	if i < 0 {
		open = append(open, batchCallPool.Get().(*batchCall))
		i = len(open) - 1
	}
	bc := open[i]
	bc.add(m)
	if bc.rows >= maxSize {
		go b.send(bc)
		open = slices.Delete(open, i, i+1)
	}
	return open
}

// batchCall is one batched call being sent.
type batchCall struct {
	members []*member
	rows    int
	body    []byte
	scratch []byte
}

var batchCallPool = sync.Pool{New: func() any { return new(batchCall) }}

func (bc *batchCall) add(m *member) {
	bc.members = append(bc.members, m)
	bc.rows += m.rows
}

// send makes the batched call and hands each member its share.
func (b *batcher) send(bc *batchCall) {
	t := b.spec().t
	req := fasthttp.AcquireRequest()
	resp := upstream.AcquireResponse()
	defer func() {
		fasthttp.ReleaseRequest(req)
		upstream.ReleaseResponse(resp)
		clear(bc.members)
		bc.members, bc.rows = bc.members[:0], 0
		batchCallPool.Put(bc)
	}()
	tg := b.tg
	req.Header.SetMethod(fasthttp.MethodPost)
	tg.Retarget(req)
	req.Header.SetContentType("application/json")
	// Header values are static (checked at load): no exchange needed.
	_ = t.headers.apply(req, nil, &bc.scratch)
	// Every member has the same propagated headers.
	setPropagatedFrom(req, t.propagate, bc.members[0].prop)
	span := b.startSpan(bc, req)

	body := append(bc.body[:0], `{"inputs":[`...)
	for i, ti := range t.inputs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, ti.prefix...)
		wrote := false
		for _, m := range bc.members {
			lo := 0
			if i > 0 {
				lo = m.ends[i-1]
			}
			if seg := m.buf[lo:m.ends[i]]; len(seg) > 0 {
				if wrote {
					body = append(body, ',')
				}
				body = append(body, seg...)
				wrote = true
			}
		}
		body = append(body, `],"shape":[`...)
		body = strconv.AppendInt(body, int64(bc.rows), 10)
		for _, d := range ti.inner {
			body = append(body, ',')
			body = strconv.AppendInt(body, int64(d), 10)
		}
		body = append(body, "]}"...)
	}
	body = append(body, ']')
	body = append(body, t.outputsJSON...)
	body = append(body, '}')
	bc.body = body
	req.SetBodyRaw(body)

	// The call lasts until the latest member's deadline: a member whose
	// deadline comes first leaves at it (see runBatched), and its short
	// budget does not cut the others' answers.
	deadline, timeout := bc.members[0].deadline, bc.members[0].tryTimeout
	for _, m := range bc.members[1:] {
		if m.deadline.After(deadline) {
			deadline = m.deadline
		}
		timeout = min(timeout, m.tryTimeout)
	}
	start := time.Now()
	status, err := tg.Try(req, resp, deadline, timeout)
	b.observe(time.Since(start))
	b.rows.Update(float64(bc.rows))
	if err == nil {
		if serr := b.split(bc, resp.Body()); serr != nil {
			err = &upstream.Error{Reason: upstream.ReasonInvalid, Host: tg.HostHdr, Err: serr}
		}
	}
	if span != nil {
		endBatchSpan(span, status, err)
	}
	if err != nil && len(bc.members) > 1 {
		// A refusal of the batch's content may be another member's.
		shared := *err
		shared.Shared = true
		err = &shared
	}
	for _, m := range bc.members {
		m.status = status
		m.err = err
		m.finish()
	}
}

// split maps each member's rows of the batched answer into its result.
func (b *batcher) split(bc *batchCall, body []byte) error {
	codec := b.spec().t.codec
	ds := decodePool.Get().(*decodeScratch)
	defer releaseDecode(ds)
	if err := codec.gather(ds, body); err != nil {
		return err
	}
	for i := range ds.outs {
		if o := &ds.outs[i]; o.rank == 0 || o.shape[0] != bc.rows {
			return fmt.Errorf("%w: output %s has shape %v for a batch of %d", errAnswer, o.name, o.shape[:o.rank], bc.rows)
		}
	}
	lo := 0
	for _, m := range bc.members {
		var err error
		if m.out, err = codec.appendMapped(m.out[:0], ds, lo, m.rows); err != nil {
			return err
		}
		lo += m.rows
	}
	return nil
}

// observe folds a call's duration into the estimate.
func (b *batcher) observe(d time.Duration) {
	old := b.est.Load()
	if old <= 0 {
		b.est.Store(int64(d))
		return
	}
	b.est.Store(old + (int64(d)-old)/8)
}

// renderMember renders the task's tensors for x into m.
func (t *inferTask) renderMember(m *member, x *Exchange) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for i, ti := range t.inputs {
		v := render(ti, x, bp)
		start := len(m.buf)
		var ec elemCount
		var err error
		if m.buf, ec, err = ti.appendElems(m.buf, v, false); err != nil {
			return err
		}
		if ec.rows > 0 && ec.per != ti.perRow {
			return ti.dataError(fmt.Errorf("input %s: rows have %d elements, want %d", ti.name, ec.per, ti.perRow))
		}
		if ec.rows == 0 {
			m.buf = m.buf[:start]
		}
		if i == 0 {
			m.rows = ec.rows
		} else if ec.rows != m.rows {
			return ti.dataError(fmt.Errorf("input %s has %d rows, input %s has %d: a batched call needs the same batch size in every input", ti.name, ec.rows, t.inputs[0].name, m.rows))
		}
		m.ends = append(m.ends, len(m.buf))
	}
	return nil
}

// runBatched sends the task's call in a batch. done reports whether the
// task is finished, with err; otherwise the call goes alone, first being
// the number of tries already made.
func (t *inferTask) runBatched(x *Exchange, r *Result, tg *target) (first int, done bool, err error) {
	m := acquireMember()
	if err := t.renderMember(m, x); err != nil {
		m.release()
		return 0, true, err
	}
	if m.rows == 0 || m.rows > t.batch.maxSize {
		m.release()
		return 0, false, nil
	}
	m.prop = appendPropagated(m.prop, x, t.propagate)
	if len(r.TraceParent) > 0 {
		m.traceParent = append(m.traceParent, r.TraceParent...)
	} else {
		m.traceParent = append(m.traceParent, x.TraceParent...)
	}
	b := t.batcherFor(tg)
	m.deadline, m.tryTimeout, m.enqueued = x.Deadline, t.call.TryTimeout, time.Now()
	m.refs.Store(2)
	if !b.enqueue(m) {
		m.refs.Store(1)
		m.release()
		t.overflow.Inc()
		return 0, false, nil
	}
	r.Attempts++
	m.timer.Reset(time.Until(x.Deadline))
	select {
	case <-m.done:
		m.timer.Stop()
	case <-m.timer.C:
		// The batch still holds m and lets it go when it ends.
		m.release()
		return 0, true, ErrDeadline
	}
	r.Status = m.status
	if m.err != nil {
		err := m.err
		m.release()
		if err.Shared && err.RefusedContent() && x.Budget().Remaining() > t.call.TryTimeout {
			// The batch was refused for content that may be another
			// request's: this one goes alone, and is answered, or
			// refused for its own content.
			t.refusedBatch.Inc()
			return 1, false, nil
		}
		t.call.CountFailure(err.Reason)
		if t.call.Retry(x.Budget(), 0, err) {
			return 1, false, nil
		}
		return 0, true, err
	}
	r.Body = append(r.Body[:0], m.out...)
	m.release()
	if sh := t.call.shadow; sh != nil && sh.sampled() {
		req := fasthttp.AcquireRequest()
		if t.buildRequest(req, x, r, tg) == nil {
			sh.send(req, r.Body)
		}
		fasthttp.ReleaseRequest(req)
	}
	return 0, true, nil
}

// appendPropagated appends the propagated headers of x to dst, each as a
// presence byte, then the value's length (4 bytes) and the value.
func appendPropagated(dst []byte, x *Exchange, propagate []propagated) []byte {
	for _, h := range propagate {
		if !x.HeaderSet(h.slot) {
			dst = append(dst, 0)
			continue
		}
		v := x.Headers[h.slot]
		dst = append(dst, 1)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// setPropagatedFrom sets the propagated headers encoded in prop (see
// appendPropagated) on req.
func setPropagatedFrom(req *fasthttp.Request, propagate []propagated, prop []byte) {
	for _, h := range propagate {
		if len(prop) == 0 {
			return
		}
		present := prop[0] == 1
		prop = prop[1:]
		if !present {
			continue
		}
		n := int(binary.BigEndian.Uint32(prop))
		req.Header.SetBytesKV(h.name, prop[4:4+n])
		prop = prop[4+n:]
	}
}

// startSpan starts the span of a batched call, linked to the span of each
// request it carries, and propagates its context upstream. With tracing
// off, the trace context of the first request that has one is propagated.
func (b *batcher) startSpan(bc *batchCall, req *fasthttp.Request) trace.Span {
	tr := b.spec().tracer
	if tr == nil {
		for _, m := range bc.members {
			if len(m.traceParent) > 0 {
				req.Header.SetBytesV("traceparent", m.traceParent)
				break
			}
		}
		return nil
	}
	links := make([]trace.Link, 0, len(bc.members))
	for _, m := range bc.members {
		if sc, ok := ParseTraceParent(m.traceParent); ok {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	_, span := tr.Start(context.Background(), "batch "+b.tg.label(),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("server.address", b.tg.HostHdr),
			attribute.Int("lariat.batch.requests", len(bc.members)),
			attribute.Int("lariat.batch.rows", bc.rows),
		))
	bc.scratch = AppendTraceParent(bc.scratch[:0], span.SpanContext())
	req.Header.SetBytesV("traceparent", bc.scratch)
	return span
}

func endBatchSpan(span trace.Span, status int, err *upstream.Error) {
	if status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

var _ Cleaner = (*inferTask)(nil)
