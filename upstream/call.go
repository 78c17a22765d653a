package upstream

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/lazymetric"
)

// Cancel tells the calls of one request that it is over: tries still
// running stop at their next chance, backoff sleeps end at once, and no
// further try starts. The zero value is ready; Reset readies it for the
// next request once nothing uses it.
type Cancel struct {
	done atomic.Bool
	mu   sync.Mutex
	// wake is made by the first sleeper and closed by Cancel, so that a
	// request that never retries allocates nothing.
	wake chan struct{}
}

// Cancel marks the request as over.
func (c *Cancel) Cancel() {
	c.done.Store(true)
	c.mu.Lock()
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
	c.mu.Unlock()
}

// Canceled reports whether the request is over.
func (c *Cancel) Canceled() bool { return c.done.Load() }

// Reset readies c for a new request.
func (c *Cancel) Reset() {
	c.done.Store(false)
	c.mu.Lock()
	c.wake = nil
	c.mu.Unlock()
}

// Sleep waits d, or less when the request ends; it reports whether the
// whole wait passed with the request still on.
func (c *Cancel) Sleep(d time.Duration) bool {
	c.mu.Lock()
	if c.done.Load() {
		c.mu.Unlock()
		return false
	}
	if c.wake == nil {
		c.wake = make(chan struct{})
	}
	wake := c.wake
	c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !c.done.Load()
	case <-wake:
		return false
	}
}

// Budget is what a call may spend: the route deadline, and the request's
// cancellation.
type Budget struct {
	Deadline time.Time
	Cancel   *Cancel
}

// Remaining returns the time left before the deadline.
func (b Budget) Remaining() time.Duration { return time.Until(b.Deadline) }

// RetryOn says which failures are retried.
type RetryOn struct {
	Connect, Timeout bool
	// Any5xx retries every 5xx status; Codes lists single statuses.
	Any5xx bool
	Codes  []int
}

// DefaultRetryOn is what a task retries when it says nothing.
var DefaultRetryOn = RetryOn{Connect: true, Timeout: true, Codes: []int{429, 502, 503, 504}}

func (p *RetryOn) retries(r Reason, status int) bool {
	switch r {
	case ReasonConnect:
		return p.Connect
	case ReasonTimeout:
		return p.Timeout
	case ReasonStatus:
		if p.Any5xx && status >= 500 && status <= 599 {
			return true
		}
		for _, c := range p.Codes {
			if c == status {
				return true
			}
		}
	}
	return false
}

// Policy says how a task calls its upstream.
type Policy struct {
	// TryTimeout bounds each try.
	TryTimeout time.Duration
	// Retries is how many more tries a retryable failure may get. A retry
	// starts only when a whole try still fits before the route deadline.
	Retries int
	// Backoff is the first wait before a retry, doubling up to BackoffMax,
	// with equal jitter.
	Backoff, BackoffMax time.Duration
	RetryOn             RetryOn
	// HedgeAfter, when set, sends one more identical try when the first
	// has not answered after this long; the first answer wins.
	HedgeAfter time.Duration
	// FallbackTimeout bounds each call to the fallback; a fallback target
	// is raced against the primary when the call is given one.
	FallbackTimeout time.Duration
	// PrimaryWithin is how long the primary's answer is preferred over
	// the fallback's (0: the first answer wins).
	PrimaryWithin time.Duration
}

// Outcome reports what a call did.
type Outcome struct {
	// Tries counts the tries of the retry loop (a raced try counts once).
	// Call starts from its value, so a caller that already made tries
	// elsewhere (a batch) keeps its retry budget.
	Tries int
	// Attempts counts the calls sent (a raced try may send several).
	Attempts int
	// Status is the last upstream status seen.
	Status int
	// Answered is the target whose answer was taken (the fallback's, when
	// it won); nil when the call failed.
	Answered *Target
	// Reason is why the call failed.
	Reason Reason
}

// Caller makes the calls of one task under its policy, counting what
// happens in metrics labelled with the task.
type Caller struct {
	Policy
	// Decode appends the task's result for an answer body to dst. It must
	// be safe for concurrent use.
	Decode func(dst, body []byte) ([]byte, error)

	errs       [ReasonOther + 1]*lazymetric.Counter
	retries    *lazymetric.Counter
	hedgeWon   *lazymetric.Counter
	hedgeLost  *lazymetric.Counter
	fbPrimary  *lazymetric.Counter
	fbFallback *lazymetric.Counter
}

// NewCaller returns a caller; labels identify the task in metrics, as
// `route="...",task="..."`, which are created in set (nil: the default
// set) on first use, so that an idle task costs no series.
func NewCaller(p Policy, labels string, set *metrics.Set) *Caller {
	c := &Caller{Policy: p}
	for _, r := range reasons {
		c.errs[r] = lazymetric.NewCounter(set, `lariat_upstream_errors_total{`+labels+`,reason="`+r.Metric()+`"}`)
	}
	c.retries = lazymetric.NewCounter(set, `lariat_task_retries_total{`+labels+`}`)
	c.hedgeWon = lazymetric.NewCounter(set, `lariat_hedges_total{`+labels+`,result="won"}`)
	c.hedgeLost = lazymetric.NewCounter(set, `lariat_hedges_total{`+labels+`,result="lost"}`)
	c.fbPrimary = lazymetric.NewCounter(set, `lariat_fallback_answers_total{`+labels+`,answer="primary"}`)
	c.fbFallback = lazymetric.NewCounter(set, `lariat_fallback_answers_total{`+labels+`,answer="fallback"}`)
	return c
}

// CountFailure counts a failed try of the task by reason, in
// lariat_upstream_errors_total.
func (c *Caller) CountFailure(r Reason) {
	if r > ReasonNone && int(r) < len(c.errs) && c.errs[r] != nil {
		c.errs[r].Inc()
	}
}

// CountRetry counts a retry of the task, in lariat_task_retries_total.
func (c *Caller) CountRetry() { c.retries.Inc() }

func (c *Caller) countHedge(won bool) {
	if won {
		c.hedgeWon.Inc()
	} else {
		c.hedgeLost.Inc()
	}
}

func (c *Caller) countFallback(fallback bool) {
	if fallback {
		c.fbFallback.Inc()
	} else {
		c.fbPrimary.Inc()
	}
}

// Call sends req to tg until an answer is decoded into dst, retrying
// what the policy allows while the route budget can hold a whole try; a
// non-nil fallback is raced against the primary on every try. It returns
// the result and fills out. req is not modified but for the deadline
// header.
func (c *Caller) Call(b Budget, req *fasthttp.Request, tg, fallback *Target, dst []byte, out *Outcome) ([]byte, error) {
	for ; ; out.Tries++ {
		if b.Cancel != nil && b.Cancel.Canceled() {
			return dst, c.fail(out, &Error{Reason: ReasonCanceled, Host: tg.HostHdr})
		}
		if b.Remaining() <= 0 {
			return dst, c.fail(out, &Error{Reason: ReasonDeadline, Host: tg.HostHdr})
		}
		var res []byte
		var err *Error
		if c.HedgeAfter > 0 || fallback != nil {
			res, err = c.race(b, req, tg, fallback, dst, out)
		} else {
			res, err = c.once(b, req, tg, dst, out)
		}
		if err == nil {
			out.Tries++
			out.Reason = ReasonNone
			return res, nil
		}
		if !c.Retry(b, out.Tries, err) {
			out.Tries++
			return dst, c.fail(out, err)
		}
	}
}

func (c *Caller) fail(out *Outcome, err *Error) error {
	out.Reason = err.Reason
	out.Answered = nil
	return err
}

// Retry decides whether a failure after attempt+1 tries gets another
// try, and sleeps the backoff before it when it does: the policy must
// retry the failure, the request must still be on after the backoff, and
// the time left must hold a whole try. An upstream that asked for a
// longer pause (Retry-After on a 429 or 503) gets it: the retry waits
// that long, or is not made when the pause does not fit.
func (c *Caller) Retry(b Budget, attempt int, err *Error) bool {
	if attempt >= c.Retries || !c.RetryOn.retries(err.Reason, err.Status) {
		return false
	}
	wait := max(c.backoff(attempt), err.RetryAfter)
	if b.Remaining() < wait+c.TryTimeout {
		return false
	}
	if b.Cancel != nil {
		if !b.Cancel.Sleep(wait) {
			return false
		}
	} else {
		time.Sleep(wait)
	}
	// The sleep may have overslept on a busy machine.
	if b.Remaining() < c.TryTimeout {
		return false
	}
	c.CountRetry()
	return true
}

// backoff returns the wait before retry attempt+1: exponential from
// Backoff, capped at BackoffMax, with equal jitter (half fixed, half
// random).
func (c *Caller) backoff(attempt int) time.Duration {
	d := c.Backoff << min(attempt, 20)
	if d > c.BackoffMax || d <= 0 {
		d = c.BackoffMax
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// once makes one try on the calling goroutine.
func (c *Caller) once(b Budget, req *fasthttp.Request, tg *Target, dst []byte, out *Outcome) ([]byte, *Error) {
	resp := AcquireResponse()
	defer ReleaseResponse(resp)
	out.Attempts++
	status, err := tg.Try(req, resp, b.Deadline, c.TryTimeout)
	out.Status = status
	if err != nil {
		c.CountFailure(err.Reason)
		return dst, err
	}
	return c.answer(tg, resp.Body(), dst, out)
}

// answer decodes an answer of tg into dst.
func (c *Caller) answer(tg *Target, body, dst []byte, out *Outcome) ([]byte, *Error) {
	res, err := c.Decode(dst[:0], body)
	if err != nil {
		c.CountFailure(ReasonInvalid)
		return dst, &Error{Reason: ReasonInvalid, Host: tg.HostHdr, Err: err}
	}
	out.Answered = tg
	return res, nil
}
