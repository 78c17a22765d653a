package router

import (
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/lazymetric"
	"github.com/lariat-gw/lariat/upstream"
)

// DefaultRouteLimit is the adaptive concurrency limit of a route whose
// file sets no limits. It follows the route's own latency as the
// upstream limits follow theirs: when requests in flight make every
// request slower (the gateway's CPU, or every upstream of the route,
// saturated), the limit comes down and the requests beyond it are
// answered 503 with Retry-After at once, so those admitted keep their
// latency instead of all of them queueing.
var DefaultRouteLimit = upstream.LimitSettings{Initial: 256, Min: 16, Max: 4096, Tolerance: 1.5}

// limiter admits requests to a route: either a static limit (at most max
// requests at once; up to queue more wait a bounded time for a slot, and
// the rest are shed at once) or, when the route sets none, an adaptive
// one.
type limiter struct {
	adaptive *upstream.Limiter

	slots   chan struct{}
	queue   int64
	wait    time.Duration
	waiting atomic.Int64
	shed    *lazymetric.Counter
}

// newLimiter returns the limiter of a route (series labels labels): the
// static limit l when it sets one, else the adaptive limit with settings
// adaptive (nil when that is disabled).
func newLimiter(l config.Limits, adaptive upstream.LimitSettings, labels string, set *metrics.Set) *limiter {
	shed := lazymetric.NewCounter(set, `lariat_requests_shed_total{`+labels+`}`)
	if l.MaxConcurrency <= 0 {
		a := upstream.NewAdaptiveLimiter(adaptive)
		if a == nil {
			return nil
		}
		return &limiter{adaptive: a, shed: shed}
	}
	return &limiter{
		slots: make(chan struct{}, l.MaxConcurrency),
		queue: int64(l.Queue),
		wait:  l.QueueTimeout.D,
		shed:  shed,
	}
}

// acquire takes a slot, waiting in the queue when there is room in it. It
// reports false when the request must be shed.
func (l *limiter) acquire() bool {
	if l.adaptive != nil {
		if l.adaptive.Acquire() {
			return true
		}
		l.shed.Inc()
		return false
	}
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	if l.waiting.Add(1) > l.queue {
		l.waiting.Add(-1)
		l.shed.Inc()
		return false
	}
	defer l.waiting.Add(-1)
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-t.C:
		l.shed.Inc()
		return false
	}
}

// release ends a request admitted at admitted whose answer is in rc (nil
// when it was not served). The latency of an answer served in full feeds
// the adaptive limit. Other answers say nothing of how loaded the route
// is, and do not: a 503 was refused by a limit further down, which does
// its own accounting; a task that took its default did so at once (its
// breaker open, or refused further down) or at the deadline (its
// upstream hangs), and other 5xx failed alike; the upstreams' breakers
// and limits act on those.
func (l *limiter) release(rc *fasthttp.RequestCtx, admitted time.Time) {
	if l.adaptive == nil {
		<-l.slots
		return
	}
	if rc == nil || rc.Response.StatusCode() >= fasthttp.StatusInternalServerError || len(rc.Response.Header.PeekBytes(hdrIncomplete)) > 0 {
		l.adaptive.Release(0, upstream.ReasonCanceled, 0)
	} else {
		l.adaptive.Release(time.Since(admitted), upstream.ReasonNone, rc.Response.StatusCode())
	}
}

func writeShed(rc *fasthttp.RequestCtx, route string) {
	WriteError(rc, fasthttp.StatusServiceUnavailable, "route is at capacity; retry later", route, "")
	rc.Response.Header.SetBytesKV(hdrRetryAfter, retryAfterOne)
}
