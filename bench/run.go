package bench

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

const (
	// Histograms record microseconds from 1µs to an hour; longer values are
	// clamped to an hour.
	maxLatencyUs = int64(time.Hour / time.Microsecond)
	// histDigits is the precision of the run's histograms (0.1%).
	histDigits = 3
	// secondDigits is the precision of the per-second histograms behind the
	// timeline (1%): there is one per second of the run.
	secondDigits = 2
	// lateThreshold is how late an open-loop send must be to count as late.
	lateThreshold = time.Millisecond
	// minSleep: a slot due sooner than this is sent at once.
	minSleep = 20 * time.Microsecond
	// coarseMargin is how long before a slot the runtime timer wakes a
	// worker; a sleeper covers the rest.
	coarseMargin = 2 * time.Millisecond
	// maxSamples bounds the distinct error messages kept per worker.
	maxSamples = 3
	// sampleScan bounds how many errors per worker are looked at for samples.
	sampleScan = 32
	// maxStatus bounds the status codes counted one by one.
	maxStatus = 1000
	// maxWindow bounds an open-loop schedule (about 146 years), so that
	// adding the grace period cannot overflow.
	maxWindow = time.Duration(1 << 62)
)

func newHist(digits int) *hdrhistogram.Histogram {
	return hdrhistogram.New(1, maxLatencyUs, digits)
}

func recordDur(h *hdrhistogram.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < 1 {
		us = 1
	}
	if us > maxLatencyUs {
		us = maxLatencyUs
	}
	_ = h.RecordValue(us) // in range by construction
}

// Run sends the load cfg describes and returns its measurements. It returns
// an error only for an invalid cfg; request failures are counted in the
// Result. Cancelling ctx stops the run early: requests in flight finish (each
// bounded by cfg.Timeout) and the partial Result has Interrupted set.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	t, err := cfg.prepare()
	if err != nil {
		return nil, err
	}
	r := newRunner(t)
	return r.run(ctx), nil
}

// runner is one run's shared state.
type runner struct {
	t      *target
	client *fasthttp.HostClient

	start  time.Time
	window time.Duration // open loop: slots are scheduled in [0, window)
	limit  int64         // max requests, 0 for none

	seq      atomic.Int64 // next slot or request number
	stopped  atomic.Bool
	stopCh   chan struct{}
	stopOnce sync.Once
	intr     atomic.Bool

	workers []*worker
	tl      timeline
}

func newRunner(t *target) *runner {
	cfg := &t.cfg
	r := &runner{
		t:      t,
		limit:  cfg.Requests,
		stopCh: make(chan struct{}),
	}
	if cfg.Conns != nil {
		r.client = cfg.Conns.client
	} else {
		r.client = newClient(t.addr, t.isTLS, cfg.Connections, cfg.Dial)
	}
	if cfg.Mode == ModeOpen {
		r.window = maxWindow
		if cfg.Duration > 0 {
			r.window = min(r.window, cfg.Duration)
		}
		if w := float64(cfg.Requests) * t.interval; cfg.Requests > 0 && w < float64(maxWindow) {
			r.window = min(r.window, time.Duration(w)+1)
		}
	}
	r.workers = make([]*worker, cfg.Connections)
	seed := uint64(time.Now().UnixNano())
	for i := range r.workers {
		r.workers[i] = newWorker(r, i, seed)
	}
	return r
}

func (r *runner) stop() {
	r.stopOnce.Do(func() {
		r.stopped.Store(true)
		close(r.stopCh)
	})
}

func (r *runner) run(ctx context.Context) *Result {
	cfg := &r.t.cfg
	r.start = time.Now()
	var deadline *time.Timer
	switch {
	case cfg.Mode == ModeOpen:
		// After the window, slots still owed are sent during a grace period.
		deadline = time.AfterFunc(r.window+cfg.Timeout, r.stop)
	case cfg.Duration > 0:
		deadline = time.AfterFunc(cfg.Duration, r.stop)
	}
	if deadline != nil {
		defer deadline.Stop()
	}
	stopCtx := context.AfterFunc(ctx, func() {
		r.intr.Store(true)
		r.stop()
	})
	defer stopCtx()

	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Go(w.run)
	}
	var pwg sync.WaitGroup
	done := make(chan struct{})
	if cfg.Progress != nil {
		pwg.Go(func() { r.progress(done) })
	}
	wg.Wait()
	stopCtx()
	r.stop()
	close(done)
	pwg.Wait()
	if cfg.Conns == nil {
		r.client.CloseIdleConnections()
	}
	return r.result()
}

// worker owns one connection's worth of load: its request, response and
// histograms, so the hot path shares nothing but the slot counter.
type worker struct {
	started atomic.Int64 // requests sent, read by progress
	done    atomic.Int64 // requests completed, read by progress
	errs    atomic.Int64 // requests failed, read by progress
	_       [40]byte

	r    *runner
	req  *fasthttp.Request
	resp *fasthttp.Response
	body []byte
	rng  *rand.Rand

	timer   *time.Timer
	sleeper *sleeper

	lat *hdrhistogram.Histogram // from scheduled send time
	// latOK and latShed split lat: answers with a status below 400, and
	// 429/503 answers (load refused).
	latOK   *hdrhistogram.Histogram
	latShed *hdrhistogram.Histogram
	svc     *hdrhistogram.Histogram // from actual send time (open loop)
	// svcShed is svc of the 429/503 answers: how long the server took to
	// refuse once the request was on the wire (open loop).
	svcShed *hdrhistogram.Histogram
	lag     *hdrhistogram.Histogram // actual minus scheduled send time (open loop)

	sent       int64
	late       int64
	last       time.Duration // completion of the latest request
	status     [maxStatus]int64
	timeouts   int64
	met        int64 // responses within Config.Deadline
	metOK      int64 // of those, status < 400
	connErrs   int64
	otherErrs  int64
	errsSeen   int
	samples    []string
	sec        int
	secHist    *hdrhistogram.Histogram
	secReqs    int64
	secErrs    int64
	hasSecData bool
}

func newWorker(r *runner, id int, seed uint64) *worker {
	t := r.t
	w := &worker{
		r:       r,
		req:     &fasthttp.Request{},
		resp:    &fasthttp.Response{},
		rng:     rand.New(rand.NewPCG(seed, uint64(id))),
		lat:     newHist(histDigits),
		latOK:   newHist(histDigits),
		latShed: newHist(histDigits),
		secHist: newHist(secondDigits),
	}
	if t.cfg.Mode == ModeOpen {
		w.svc = newHist(histDigits)
		w.svcShed = newHist(histDigits)
		w.lag = newHist(secondDigits)
		w.timer = time.NewTimer(time.Hour)
		w.timer.Stop()
		w.sleeper = newSleeper()
	}
	req := w.req
	req.SetRequestURI(t.cfg.URL)
	req.Header.SetMethod(t.method)
	hasCT := false
	for _, h := range t.cfg.Headers {
		switch {
		case strings.EqualFold(h.Name, "Host"):
			req.Header.SetHost(h.Value)
			req.UseHostHeader = true
		case strings.EqualFold(h.Name, "Content-Type"):
			hasCT = true
			req.Header.SetContentType(h.Value)
		default:
			req.Header.Add(h.Name, h.Value)
		}
	}
	if (t.tmpl != nil || len(t.cfg.Bodies) > 0) && !hasCT {
		req.Header.SetContentType("application/json")
	}
	if t.tmpl != nil {
		w.body = make([]byte, 0, t.tmpl.size)
	}
	return w
}

func (w *worker) run() {
	if w.r.t.cfg.Mode == ModeOpen {
		w.runOpen()
	} else {
		w.runClosed()
	}
	w.flushSecond()
	if w.sleeper != nil {
		w.sleeper.close()
	}
}

func (w *worker) runClosed() {
	r := w.r
	for !r.stopped.Load() {
		i := r.seq.Add(1) - 1
		if r.limit > 0 && i >= r.limit {
			return
		}
		now := time.Since(r.start)
		w.do(uint64(i), now, now)
	}
}

// runOpen claims slots in order; slot i is due at i*interval after the start.
// A free worker takes the oldest unclaimed slot, so when every worker is busy
// the slots wait, and the wait counts in their latency.
func (w *worker) runOpen() {
	r := w.r
	interval := r.t.interval
	for {
		i := r.seq.Add(1) - 1
		if r.limit > 0 && i >= r.limit {
			return
		}
		sched := time.Duration(float64(i) * interval)
		if sched >= r.window {
			return
		}
		now := time.Since(r.start)
		if d := sched - now; d > coarseMargin {
			// A timer for the bulk of the wait (it may fire late),
			// then a precise sleep for the rest.
			w.timer.Reset(d - coarseMargin)
			select {
			case <-w.timer.C:
			case <-r.stopCh:
				w.timer.Stop()
				return
			}
			now = time.Since(r.start)
		}
		if d := sched - now; d > minSleep {
			w.sleeper.sleep(d)
			now = time.Since(r.start)
		}
		if r.stopped.Load() {
			return
		}
		w.do(uint64(i), sched, now)
	}
}

// do sends request seq, scheduled at sched and sent at sent (both relative to
// the run's start), and records the outcome.
func (w *worker) do(seq uint64, sched, sent time.Duration) {
	r := w.r
	t := r.t
	switch {
	case t.tmpl != nil:
		w.body = t.tmpl.Append(w.body[:0], seq, w.rng)
		w.req.SetBodyRaw(w.body)
	case len(t.cfg.Bodies) > 0:
		w.req.SetBodyRaw(t.cfg.Bodies[seq%uint64(len(t.cfg.Bodies))])
	}
	w.started.Add(1)
	err := r.client.DoTimeout(w.req, w.resp, t.cfg.Timeout)
	end := time.Since(r.start)

	w.sent++
	w.last = end
	kind := kindNone
	if err == nil {
		code := w.resp.StatusCode()
		if code < 0 || code >= maxStatus {
			code = 0 // counted as status "0", an error
		}
		w.status[code]++
		if code >= 400 || code < 100 {
			kind = kindStatus
		}
	} else {
		kind = classify(err)
		switch kind {
		case kindTimeout:
			w.timeouts++
		case kindConnection:
			w.connErrs++
		default:
			w.otherErrs++
		}
		w.sample(err)
	}
	timed := err == nil || kind == kindTimeout
	if timed {
		recordDur(w.lat, end-sched)
	}
	if err == nil {
		switch code := w.resp.StatusCode(); {
		case code < 400:
			recordDur(w.latOK, end-sched)
		case code == 429 || code == 503:
			recordDur(w.latShed, end-sched)
			if w.svcShed != nil {
				recordDur(w.svcShed, end-sent)
			}
		}
	}
	if err == nil && t.cfg.Deadline > 0 && end-sched <= t.cfg.Deadline {
		w.met++
		if kind == kindNone {
			w.metOK++
		}
	}
	if w.svc != nil {
		if timed {
			recordDur(w.svc, end-sent)
		}
		lag := sent - sched
		recordDur(w.lag, lag)
		if lag > lateThreshold {
			w.late++
		}
	}

	sec := int(end / time.Second)
	if sec != w.sec {
		w.flushSecond()
		w.sec = sec
	}
	w.hasSecData = true
	w.secReqs++
	if timed {
		recordDur(w.secHist, end-sched)
	}
	if kind != kindNone {
		w.secErrs++
		w.errs.Add(1)
	}
	w.done.Add(1)
}

func (w *worker) sample(err error) {
	if w.errsSeen >= sampleScan || len(w.samples) >= maxSamples {
		return
	}
	w.errsSeen++
	msg := err.Error()
	for _, s := range w.samples {
		if s == msg {
			return
		}
	}
	w.samples = append(w.samples, msg)
}

func (w *worker) flushSecond() {
	if !w.hasSecData {
		return
	}
	w.r.tl.add(w.sec, w.secHist, w.secReqs, w.secErrs)
	w.secHist.Reset()
	w.secReqs, w.secErrs, w.hasSecData = 0, 0, false
}

// timeline aggregates the workers' per-second data. Each worker flushes a
// second once, when its first request of a later second completes, so the
// lock is taken about once per worker per second.
type timeline struct {
	mu   sync.Mutex
	secs []secondAgg
}

type secondAgg struct {
	hist *hdrhistogram.Histogram
	reqs int64
	errs int64
}

func (tl *timeline) add(sec int, h *hdrhistogram.Histogram, reqs, errs int64) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for len(tl.secs) <= sec {
		tl.secs = append(tl.secs, secondAgg{})
	}
	s := &tl.secs[sec]
	if s.hist == nil {
		s.hist = newHist(secondDigits)
	}
	s.hist.Merge(h)
	s.reqs += reqs
	s.errs += errs
}

// p99 returns the 99th percentile of second sec, or -1 if it has no data yet.
func (tl *timeline) p99(sec int) time.Duration {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if sec < 0 || sec >= len(tl.secs) || tl.secs[sec].hist == nil || tl.secs[sec].hist.TotalCount() == 0 {
		return -1
	}
	return time.Duration(tl.secs[sec].hist.ValueAtPercentile(99)) * time.Microsecond
}
