package gateway

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// TestFaultyUpstreams sends steady load to routes whose upstream hangs,
// fails, resets connections, returns garbage or answers after the
// deadline. Every answer must come within the route deadline plus a
// margin, with the right status; afterwards no goroutine or upstream
// connection may be left behind.
func TestFaultyUpstreams(t *testing.T) {
	const deadline = 200 * time.Millisecond
	// The margin absorbs scheduling on a loaded 2-core machine (and the
	// race detector); what is checked is that no answer waits for a stuck
	// upstream, whose calls would last 10s. bench/ measures lateness.
	const margin = 2 * time.Second
	kinds := map[string]func(s *upstreamtest.Server) upstreamtest.Behavior{
		"hang":    func(s *upstreamtest.Server) upstreamtest.Behavior { return s.Hang() },
		"error":   func(*upstreamtest.Server) upstreamtest.Behavior { return upstreamtest.Status(500) },
		"reset":   func(*upstreamtest.Server) upstreamtest.Behavior { return upstreamtest.Reset() },
		"garbage": func(*upstreamtest.Server) upstreamtest.Behavior { return upstreamtest.Garbage() },
		"slow": func(s *upstreamtest.Server) upstreamtest.Behavior {
			return s.Delay(400*time.Millisecond, upstreamtest.JSON(`{}`))
		},
	}
	// A reset the fake sends after the try timeout on a busy machine is a
	// timeout: 502 or 504 are both right for it.
	wantStatus := map[string][]int{"hang": {504}, "error": {502}, "reset": {502, 504}, "garbage": {502}, "slow": {504}}
	routes := map[string]string{}
	ups := map[string]*upstreamtest.Server{}
	for name, b := range kinds {
		up := upstreamtest.Start(t, nil)
		up.Set(b(up))
		ups[name] = up
		routes[name+".yaml"] = fmt.Sprintf(`
name: %s
endpoint: /%s
timeout: %dms
tasks:
  m:
    type: http
    inputs:
      address: %s
      retries: 2
      backoff: {base: 1ms, max: 5ms}
      timeout: 60ms
      breaker: {failures: 1000}
    output: {path: response.body}
`, name, name, deadline.Milliseconds(), up.URL("/"))
	}
	tg := startGateway(t, routes, nil)
	var mu sync.Mutex
	worst := map[string]time.Duration{}
	counts := map[string]int{}
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for name := range kinds {
		for c := 0; c < 2; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					start := time.Now()
					a := tg.post(t, "/"+name, `{}`)
					took := time.Since(start)
					mu.Lock()
					counts[name]++
					if took > worst[name] {
						worst[name] = took
					}
					mu.Unlock()
					if !slices.Contains(wantStatus[name], a.status) || !strings.Contains(a.body, `"task":"m"`) {
						wrong.Add(1)
						t.Errorf("%s: %d %s", name, a.status, a.body)
					}
				}
			}()
		}
	}
	wg.Wait()
	for name, w := range worst {
		t.Logf("%-8s requests %d, slowest answer %s (deadline %s, over by %s)", name, counts[name], w.Round(time.Millisecond), deadline, max(w-deadline, 0).Round(time.Millisecond))
		if w > deadline+margin {
			t.Errorf("%s: an answer took %s, past the deadline %s plus %s", name, w, deadline, margin)
		}
	}
	// Nothing left behind: close idle connections and count what is left.
	tg.g.Env().Upstreams.CloseIdle()
	testClient.CloseIdleConnections()
	waitNoGoroutinesIn(t, "lariat/router.(*exec)", "lariat/tasks.", "lariat/gateway.(*Gateway).handle")
	// The server notices closed client connections asynchronously.
	testwait.Within(testwait.Timeout, func() bool { return tg.g.server.GetOpenConnectionsCount() == 0 })
	if n := tg.g.server.GetOpenConnectionsCount(); n != 0 {
		t.Errorf("gateway still holds %d client connections", n)
	}
	if n := tg.g.Env().Upstreams.OpenConns(); n != 0 {
		t.Errorf("gateway still holds %d upstream connections", n)
	}
}

// TestBreakerOpensAndCloses trips a breaker on a failing upstream, then
// lets the upstream recover: after open_for the breaker lets a trial
// through and closes again.
func TestBreakerOpensAndCloses(t *testing.T) {
	var healthy atomic.Bool
	up := upstreamtest.Start(t, nil)
	up.Set(func(n int64, rc *fasthttp.RequestCtx) {
		if healthy.Load() {
			upstreamtest.JSON(`{"ok":true}`)(n, rc)
			return
		}
		upstreamtest.Status(503)(n, rc)
	})
	route := fmt.Sprintf("name: b\nendpoint: /b\ntasks:\n  m: {type: http, inputs: {address: %s, breaker: {failures: 2, open_for: 200ms}}, output: {path: response.body}}\n", up.URL("/"))
	tg := startGateway(t, map[string]string{"b.yaml": route}, nil)
	for i := 0; i < 2; i++ {
		tg.post(t, "/b", `{}`)
	}
	if a := tg.post(t, "/b", `{}`); !strings.Contains(a.body, "circuit breaker open") {
		t.Fatalf("breaker did not open: %s", a.body)
	}
	if m := tg.adminGet(t, "/metrics").body; !strings.Contains(m, `lariat_breaker_open{upstream="http://`+up.Addr+`"} 1`) {
		t.Fatal("breaker state not in metrics")
	}
	healthy.Store(true)
	var a answer
	if !testwait.Within(testwait.Timeout, func() bool { a = tg.post(t, "/b", `{}`); return a.status == 200 }) {
		t.Fatalf("breaker never closed: %d %s", a.status, a.body)
	}
	if m := tg.adminGet(t, "/metrics").body; !strings.Contains(m, `lariat_breaker_open{upstream="http://`+up.Addr+`"} 0`) {
		t.Fatal("breaker still open in metrics")
	}
}
