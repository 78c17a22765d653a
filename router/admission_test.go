package router

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
)

// TestRouteLimitChoice: a route with limits keeps its static limit; one
// without gets the adaptive limit; a disabled adaptive limit means none.
func TestRouteLimitChoice(t *testing.T) {
	set := metrics.NewSet()
	static := newLimiter(config.Limits{MaxConcurrency: 3}, DefaultRouteLimit, `route="r"`, set)
	if static == nil || static.adaptive != nil || cap(static.slots) != 3 {
		t.Fatalf("route with max_concurrency 3 got %+v", static)
	}
	adaptive := newLimiter(config.Limits{}, DefaultRouteLimit, `route="r"`, set)
	if adaptive == nil || adaptive.adaptive == nil || adaptive.adaptive.Limit() != DefaultRouteLimit.Initial {
		t.Fatalf("route without limits got %+v", adaptive)
	}
	off := DefaultRouteLimit
	off.Disabled = true
	if l := newLimiter(config.Limits{}, off, `route="r"`, set); l != nil {
		t.Fatalf("disabled adaptive limit gave %+v", l)
	}
}

// TestRouteLimitFollowsSaturation: a route whose requests slow down in
// proportion once more than capacity are in flight (a saturated CPU, or
// every upstream of the route saturated). After a light start, 200
// callers at once: the limit comes down below them, the requests beyond
// it are shed at once and counted, and those admitted keep a latency
// within the limit's tolerance of the unloaded one. 503 answers (refused
// further down) do not feed it.
func TestRouteLimitFollowsSaturation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			capacity = 32
			base     = 10 * time.Millisecond
		)
		set := metrics.NewSet()
		l := newLimiter(config.Limits{}, DefaultRouteLimit, `route="r"`, set)
		var inflight atomic.Int64
		var shed, served atomic.Int64
		var servedTime atomic.Int64
		// run keeps n callers busy for dur; each admitted request takes
		// base, stretched by how far the requests in flight exceed the
		// capacity.
		run := func(n int, dur time.Duration, status int) {
			shed.Add(keepBusy(l, n, dur, base, func(_ int, rc *fasthttp.RequestCtx) {
				admitted := time.Now()
				k := inflight.Add(1)
				time.Sleep(base * time.Duration(max(k, capacity)) / capacity)
				inflight.Add(-1)
				rc.Response.SetStatusCode(status)
				served.Add(1)
				servedTime.Add(int64(time.Since(admitted)))
			}))
		}
		run(8, time.Second, fasthttp.StatusOK)
		if shed.Load() != 0 {
			t.Fatalf("%d requests shed under light load", shed.Load())
		}
		run(200, 5*time.Second, fasthttp.StatusOK)
		limit := l.adaptive.Limit()
		if limit >= 200 {
			t.Fatalf("limit %d after saturation by 200 callers, want below 200", limit)
		}
		if shed.Load() == 0 {
			t.Fatal("no request shed at saturation")
		}
		// The last seconds of saturation, measured alone.
		served.Store(0)
		servedTime.Store(0)
		run(200, 3*time.Second, fasthttp.StatusOK)
		mean := time.Duration(servedTime.Load() / served.Load())
		if tol := time.Duration(float64(base) * DefaultRouteLimit.Tolerance * 1.5); mean > tol {
			t.Fatalf("admitted requests took %v on average at saturation, want within %v (unloaded %v)", mean, tol, base)
		}
		if got := set.GetOrCreateCounter(`lariat_requests_shed_total{route="r"}`).Get(); got == 0 {
			t.Fatal("shed requests not counted")
		}
		// Slow 503 answers (refused by a limit further down) leave it.
		before := l.adaptive.Limit()
		run(200, 2*time.Second, fasthttp.StatusServiceUnavailable)
		if got := l.adaptive.Limit(); got != before {
			t.Fatalf("503 answers moved the limit from %d to %d", before, got)
		}
	})
}

// TestRouteLimitIgnoresFailedAnswers: answers that are not the route's
// served in full say nothing of how loaded the route is and leave its
// limit alone: tasks that took their defaults (at the deadline when their
// upstream hangs, or at once when refused further down) and 5xx. After a
// second of answers in 10ms to 100 callers, 200 callers get only such
// answers for 5s, slow ones, then fast ones.
func TestRouteLimitIgnoresFailedAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(config.Limits{}, DefaultRouteLimit, `route="r"`, metrics.NewSet())
		type kind struct {
			took       time.Duration
			status     int
			incomplete bool
		}
		var shed atomic.Int64
		serve := func(callers int, dur time.Duration, kinds ...kind) {
			shed.Add(keepBusy(l, callers, dur, time.Millisecond, func(i int, rc *fasthttp.RequestCtx) {
				k := kinds[i%len(kinds)]
				time.Sleep(k.took)
				rc.Response.Reset()
				rc.Response.SetStatusCode(k.status)
				if k.incomplete {
					rc.Response.Header.SetBytesKV(hdrIncomplete, []byte("m"))
				}
			}))
		}
		serve(100, time.Second, kind{10 * time.Millisecond, fasthttp.StatusOK, false})
		before := l.adaptive.Limit()
		for _, kinds := range [][]kind{
			{{200 * time.Millisecond, fasthttp.StatusOK, true}, {200 * time.Millisecond, fasthttp.StatusGatewayTimeout, false}},
			{{100 * time.Microsecond, fasthttp.StatusOK, true}, {100 * time.Microsecond, fasthttp.StatusBadGateway, false}},
		} {
			serve(200, 5*time.Second, kinds...)
			if got := l.adaptive.Limit(); got != before || shed.Load() > 0 {
				t.Fatalf("answers %+v moved the limit from %d to %d, %d requests shed", kinds, before, got, shed.Load())
			}
		}
	})
}

// keepBusy keeps n callers sending requests through l for dur. A request
// shed makes its caller wait pause before the next; caller i's admitted
// requests are served by serve, which leaves the answer in rc, and
// released. It returns how many requests were shed.
func keepBusy(l *limiter, n int, dur, pause time.Duration, serve func(i int, rc *fasthttp.RequestCtx)) int64 {
	var shed atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(dur)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rc fasthttp.RequestCtx
			for time.Now().Before(end) {
				if !l.acquire() {
					shed.Add(1)
					time.Sleep(pause)
					continue
				}
				admitted := time.Now()
				serve(i, &rc)
				l.release(&rc, admitted)
			}
		}()
	}
	wg.Wait()
	return shed.Load()
}
