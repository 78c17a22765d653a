package router

import (
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/lazymetric"
)

// limiter admits at most max requests at once; up to queue more wait a
// bounded time for a slot, and the rest are shed at once.
type limiter struct {
	slots   chan struct{}
	queue   int64
	wait    time.Duration
	waiting atomic.Int64
	shed    *lazymetric.Counter
}

func newLimiter(l config.Limits, labels string, set *metrics.Set) *limiter {
	if l.MaxConcurrency <= 0 {
		return nil
	}
	return &limiter{
		slots: make(chan struct{}, l.MaxConcurrency),
		queue: int64(l.Queue),
		wait:  l.QueueTimeout.D,
		shed:  lazymetric.NewCounter(set, `lariat_requests_shed_total{`+labels+`}`),
	}
}

// acquire takes a slot, waiting in the queue when there is room in it. It
// reports false when the request must be shed.
func (l *limiter) acquire() bool {
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

func (l *limiter) release() { <-l.slots }

// InFlight returns the requests holding a slot.
func (l *limiter) inFlight() int { return len(l.slots) }

func writeShed(rc *fasthttp.RequestCtx, route string) {
	WriteError(rc, fasthttp.StatusServiceUnavailable, "route is at capacity; retry later", route, "")
	rc.Response.Header.SetBytesKV(hdrRetryAfter, retryAfterOne)
}
