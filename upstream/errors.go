package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Errors a call may end with. A call's *Error matches one of them with
// errors.Is; the router maps them to the answer's status.
var (
	// ErrDeadline means the route deadline passed before the call
	// finished (504).
	ErrDeadline = errors.New("route deadline exceeded")
	// ErrTimeout means the upstream did not answer within the try timeout
	// (504).
	ErrTimeout = errors.New("upstream timed out")
	// ErrCanceled means the request ended before the call finished.
	ErrCanceled = errors.New("request ended")
	// ErrBreakerOpen means the upstream's circuit breaker is open (502).
	ErrBreakerOpen = errors.New("circuit breaker open")
	// ErrOverloaded means the gateway refused the call to protect itself
	// or the upstream: the upstream's concurrency limit, its connection
	// pool or the gateway's memory for answers is exhausted (503).
	ErrOverloaded = errors.New("upstream at capacity")
	// ErrTooLarge means the upstream's answer exceeds the largest body the
	// gateway reads (502).
	ErrTooLarge = errors.New("upstream answer too large")
	// ErrConnect means the upstream could not be reached, or the
	// connection failed before a whole answer came (502).
	ErrConnect = errors.New("upstream connection failed")
	// ErrInvalid means the upstream answered with a body the task cannot
	// use (502).
	ErrInvalid = errors.New("invalid upstream answer")
)

// Reason classifies a failed try.
type Reason uint8

const (
	// ReasonNone: no failure.
	ReasonNone Reason = iota
	// ReasonConnect: refused, reset, or closed before a whole answer.
	ReasonConnect
	// ReasonTimeout: no answer within the try timeout.
	ReasonTimeout
	// ReasonStatus: the upstream answered with a status outside 2xx.
	ReasonStatus
	// ReasonInvalid: the answer's body is not what the task needs.
	ReasonInvalid
	// ReasonTooLarge: the answer is larger than the gateway reads.
	ReasonTooLarge
	// ReasonBreakerOpen: the breaker refused the try.
	ReasonBreakerOpen
	// ReasonOverloaded: refused locally (concurrency limit, connection
	// pool, answer memory).
	ReasonOverloaded
	// ReasonDeadline: the route deadline ran out.
	ReasonDeadline
	// ReasonCanceled: the request ended.
	ReasonCanceled
	// ReasonOther: a failure of the request itself (it could not be
	// built or sent).
	ReasonOther
)

// Metric returns the reason's label in lariat_upstream_errors_total.
// A route deadline that cuts a try short is counted as a timeout.
func (r Reason) Metric() string {
	switch r {
	case ReasonConnect:
		return "connect"
	case ReasonTimeout, ReasonDeadline:
		return "timeout"
	case ReasonStatus:
		return "status"
	case ReasonInvalid:
		return "invalid_response"
	case ReasonTooLarge:
		return "too_large"
	case ReasonBreakerOpen:
		return "breaker_open"
	case ReasonOverloaded:
		return "overloaded"
	case ReasonCanceled:
		return "canceled"
	}
	return "other"
}

// reasons lists every reason a failure can have, for metrics.
var reasons = []Reason{ReasonConnect, ReasonTimeout, ReasonStatus, ReasonInvalid, ReasonTooLarge, ReasonBreakerOpen, ReasonOverloaded, ReasonDeadline, ReasonCanceled, ReasonOther}

// Fault reports whether a failure is the upstream's own: refused or reset
// connections, timeouts of its own and 5xx. Only faults count against its
// breaker. Local refusals, the caller's deadline, cancelled requests, 4xx
// answers, oversized answers and answers that are not valid JSON are not
// faults: a server that answers is up, and a model that writes NaN for
// one input (as Python's json.dumps does) answers others well.
func Fault(r Reason, status int) bool {
	switch r {
	case ReasonConnect, ReasonTimeout:
		return true
	case ReasonStatus:
		return status >= 500
	}
	return false
}

// Error is a failed try or call.
type Error struct {
	Reason Reason
	// Host is the upstream as written in the route.
	Host string
	// Status is the upstream's status for ReasonStatus.
	Status int
	// Answer is the start of the upstream's answer for ReasonStatus (at
	// most MaxAnswerShown bytes, "…" after it when cut): what a model
	// says of the request it refused, or of its own failure.
	Answer string
	// Shared marks the failure of a try that carried other requests too
	// (a batch): a refused content may be theirs (see RefusedRequest).
	Shared bool
	// After is how long the try had run, for timeouts.
	After time.Duration
	// RetryAfter is the pause a 429 or 503 answer asked for in its
	// Retry-After header (0: none).
	RetryAfter time.Duration
	// Err is the underlying error, when there is one.
	Err error
}

func (e *Error) Error() string {
	switch e.Reason {
	case ReasonStatus:
		if e.Answer != "" {
			return fmt.Sprintf("%s: upstream answered %d: %s", e.Host, e.Status, e.Answer)
		}
		return fmt.Sprintf("%s: upstream answered %d", e.Host, e.Status)
	case ReasonTimeout:
		return fmt.Sprintf("%s: %s after %s", e.Host, ErrTimeout, e.After.Round(time.Millisecond))
	case ReasonDeadline:
		return ErrDeadline.Error()
	case ReasonCanceled:
		return ErrCanceled.Error()
	}
	if e.Err == nil {
		return e.Host + ": " + e.sentinel().Error()
	}
	return e.Host + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinel of the error's reason.
func (e *Error) Is(target error) bool { return target == e.sentinel() }

func (e *Error) sentinel() error {
	switch e.Reason {
	case ReasonConnect:
		return ErrConnect
	case ReasonTimeout:
		return ErrTimeout
	case ReasonInvalid:
		return ErrInvalid
	case ReasonTooLarge:
		return ErrTooLarge
	case ReasonBreakerOpen:
		return ErrBreakerOpen
	case ReasonOverloaded:
		return ErrOverloaded
	case ReasonDeadline:
		return ErrDeadline
	case ReasonCanceled:
		return ErrCanceled
	}
	return nil
}

// A try the route deadline cut short is the upstream's timeout, not the
// caller's budget running out, when it ran at least hangFactor times the
// usual latency of the calls it belongs to and at least minHang: then
// the upstream hangs or has slowed down many times over, and its breaker
// counts the timeout also when the task sets no timeout of its own. A
// shorter deadline (a caller's tight budget, or what is left of the
// route's after earlier tasks) is not held against the upstream.
const (
	hangFactor = 4
	minHang    = 10 * time.Millisecond
)

// UsualLatency follows the usual latency of one kind of call (one task's
// calls to its upstream): a moving average of the successful ones, which
// tells an upstream that hangs from a deadline too short to wait for it
// (see Hung). Calls of another kind to the same upstream (a slower model
// on the same server) keep their own. The zero value is ready to use.
type UsualLatency struct{ ns atomic.Int64 }

// Observe takes the latency of a successful call into the average
// (weight 1/8). Concurrent updates may lose one; the average needs no
// more.
func (u *UsualLatency) Observe(took time.Duration) {
	n := u.ns.Load()
	if n == 0 {
		u.ns.Store(int64(took))
		return
	}
	u.ns.Store(n + (int64(took)-n)/8)
}

// Hung reports whether a call cut short by the route deadline after ran,
// without an answer, ran long enough to be the upstream's timeout (see
// hangFactor).
func (u *UsualLatency) Hung(ran time.Duration) bool {
	return ran >= minHang && int64(ran) >= hangFactor*u.ns.Load()
}

// MaxAnswerShown bounds how much of a failed answer an Error keeps.
const MaxAnswerShown = 512

// shownAnswer returns the start of a failed answer's body for an Error:
// trimmed, cut to MaxAnswerShown bytes at a character boundary ("…"
// marks the cut), invalid UTF-8 replaced.
func shownAnswer(body []byte) string {
	body = bytes.TrimSpace(body)
	cut := len(body) > MaxAnswerShown
	if cut {
		body = body[:MaxAnswerShown]
		// Drop a character the cut split.
		for range utf8.UTFMax - 1 {
			if r, size := utf8.DecodeLastRune(body); r != utf8.RuneError || size != 1 {
				break
			}
			body = body[:len(body)-1]
		}
	}
	s := strings.ToValidUTF8(string(body), "\uFFFD")
	if cut {
		s += "…"
	}
	return s
}

// RefusedRequest reports whether the upstream refused the content of
// this request alone (400, 413, 415, 422 to a try that carried no other
// request): the caller's request, not the upstream, is at fault, and
// sending it again is refused again.
func (e *Error) RefusedRequest() bool {
	return !e.Shared && e.RefusedContent()
}

// RefusedContent reports whether the upstream refused the content of
// the try (400, 413, 415 or 422), which may be another request's when the
// try carried several (Shared).
func (e *Error) RefusedContent() bool {
	if e.Reason != ReasonStatus {
		return false
	}
	switch e.Status {
	case 400, 413, 415, 422:
		return true
	}
	return false
}

// ReasonOf returns the reason of a call's error (ReasonOther for errors
// that are not an *Error).
func ReasonOf(err error) Reason {
	if err == nil {
		return ReasonNone
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonOther
}
