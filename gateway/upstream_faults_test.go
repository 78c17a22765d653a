package gateway

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/upstream"
	"github.com/valyala/fasthttp"
)

// The faults production brings, met with default settings: upstreams
// that close idle keep-alive connections, restart under load, get more
// load than they can serve, hang and trickle. Outcomes are asserted;
// latencies are only logged (bench/ measures them).

func plainRoute(name, address string) string {
	return fmt.Sprintf("name: %s\nendpoint: /%s\ntimeout: 2s\ntasks:\n  m: {type: http, inputs: {address: %s}, output: {path: response.body}}\n", name, name, address)
}

// TestUpstreamClosingIdleConnections: an upstream that closes kept-alive
// connections idle for 100ms (uvicorn does after 5s), called every 400ms
// through a route with default settings: every request gets 200. (The
// pool's handling of the dead connections is timed exactly under virtual
// time in upstream's tests; this one runs it on real sockets.)
func TestUpstreamClosingIdleConnections(t *testing.T) {
	skipIdleUnderRace(t)
	t.Parallel()
	const idle, pause = 100 * time.Millisecond, 400 * time.Millisecond
	up := upstreamtest.StartWith(t, upstreamtest.JSON(`{"ok":true}`), upstreamtest.Options{IdleTimeout: idle})
	tg := startGateway(t, map[string]string{"idle.yaml": plainRoute("idle", up.URL("/predict"))}, nil)
	for i := 0; i < 6; i++ {
		if i > 0 {
			time.Sleep(pause) // the connection idles past the upstream's timeout
		}
		if a := tg.post(t, "/idle", `{}`); a.status != 200 {
			t.Fatalf("request %d after %s idle: %d %s", i, pause, a.status, a.body)
		}
	}
	if n := up.Conns.Load(); n < 2 {
		t.Fatalf("upstream accepted %d connections; it should have closed idle ones", n)
	}
}

// skipIdleUnderRace skips the idle-connection tests under the race
// detector: they send one request at a time and mostly wait for
// connections to idle, so the race detector has nothing to find that the
// concurrent tests (TestUpstreamRestartUnderLoad resends dead
// connections under load) do not show.
func skipIdleUnderRace(t *testing.T) {
	if raceEnabled {
		t.Skip("sequential requests and idle waits: nothing for the race detector")
	}
}

// pythonServer is Python's http.server speaking HTTP/1.1 with a 200ms
// socket timeout: it closes a kept-alive connection idle for 200ms without
// a word, as many small model servers do (after longer).
const pythonServer = `
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 0.2
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        self.rfile.read(n)
        body = b'{"from":"python"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
`

// TestPythonServerClosingIdleConnections runs the same check against a
// real server: Python's http.server.
func TestPythonServerClosingIdleConnections(t *testing.T) {
	skipIdleUnderRace(t)
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	script := filepath.Join(t.TempDir(), "server.py")
	if err := os.WriteFile(script, []byte(pythonServer), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var port int
	if _, err := fmt.Fscan(out, &port); err != nil {
		t.Fatalf("python server did not start: %v", err)
	}
	tg := startGateway(t, map[string]string{"py.yaml": plainRoute("py", fmt.Sprintf("http://127.0.0.1:%d/predict", port))}, nil)
	for i := 0; i < 5; i++ {
		if i > 0 {
			time.Sleep(500 * time.Millisecond) // the connection idles past the server's timeout
		}
		if a := tg.post(t, "/py", `{}`); a.status != 200 || a.body != `{"from":"python"}` {
			t.Fatalf("request %d: %d %s", i, a.status, a.body)
		}
	}
}

// TestUpstreamRestartUnderLoad: four callers send steady load; the
// upstream restarts. No more requests fail than were in flight at the
// kill (at most one per caller), the first request after the upstream is
// back gets 200, and the breaker stays closed.
func TestUpstreamRestartUnderLoad(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	up.Set(up.Delay(5*time.Millisecond, upstreamtest.JSON(`{"ok":true}`)))
	tg := startGateway(t, map[string]string{"r.yaml": plainRoute("r", up.URL("/predict"))}, nil)
	const callers = 4
	var failed, served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if a := tg.post(t, "/r", `{}`); a.status == 200 {
					served.Add(1)
				} else {
					failed.Add(1)
					t.Logf("failed: %d %s", a.status, a.body)
				}
				time.Sleep(20 * time.Millisecond) // paced, not flat out
			}
		}()
	}
	testwait.Until(t, "steady load", func() bool { return served.Load() >= 4*callers })
	if err := up.Restart(); err != nil {
		t.Fatal(err)
	}
	if a := tg.post(t, "/r", `{}`); a.status != 200 {
		t.Fatalf("first request after the restart: %d %s", a.status, a.body)
	}
	after := served.Load()
	testwait.Until(t, "load served after the restart", func() bool { return served.Load() >= after+4*callers })
	close(stop)
	wg.Wait()
	t.Logf("served %d, failed %d", served.Load(), failed.Load())
	if failed.Load() > callers {
		t.Fatalf("%d requests failed; at most %d were in flight at the restart", failed.Load(), callers)
	}
	m := tg.adminGet(t, "/metrics").body
	if strings.Contains(m, `lariat_breaker_open{upstream="http://`+up.Addr+`"} 1`) {
		t.Fatal("the breaker of a restarted upstream opened")
	}
	if !strings.Contains(m, `lariat_breaker_settings{upstream="http://`+up.Addr+`",failures="5",open_for_seconds="5",half_open_requests="1"} 1`) {
		t.Fatalf("breaker settings not in metrics:\n%s", grepLines(m, "breaker"))
	}
}

// TestOverloadIsRefusedEarly: 1,000 requests at once to an upstream that
// answers in 300ms, with no limit written anywhere. Every answer is 200
// or a 503 with Retry-After naming the overload (or, on a machine too busy
// to serve even those admitted, the route deadline); no breaker opens; no
// request waits for a connection slot and then fails as the upstream's
// fault.
func TestOverloadIsRefusedEarly(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	up.Set(up.Delay(300*time.Millisecond, upstreamtest.JSON(`{"ok":true}`)))
	tg := startGateway(t, map[string]string{"o.yaml": plainRoute("o", up.URL("/predict"))}, nil)
	n := 1000
	if raceEnabled {
		// The race detector makes every request many times slower: fewer
		// at once still go past the upstream's initial limit (128).
		n = 300
	}
	var mu sync.Mutex
	statuses := map[int]int{}
	var wrong atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a := tg.post(t, "/o", `{}`)
			mu.Lock()
			statuses[a.status]++
			mu.Unlock()
			switch {
			case a.status == 200:
			case a.status == 503 && a.header.Get("Retry-After") != "" && strings.Contains(a.body, "at capacity"):
			case a.status == 504 && strings.Contains(a.body, "route deadline exceeded"):
				// A machine too busy to serve even the admitted requests
				// in time.
			default:
				if wrong.Add(1) <= 3 {
					t.Errorf("answer %d %s", a.status, a.body)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	t.Logf("statuses %v; upstream peak in flight %d", statuses, up.MaxInFlight.Load())
	if statuses[200] == 0 {
		t.Fatal("no request was served")
	}
	m := tg.adminGet(t, "/metrics").body
	if strings.Contains(m, `lariat_breaker_state_changes_total{upstream="http://`+up.Addr+`",to="open"}`) {
		t.Fatal("a breaker of a healthy upstream opened")
	}
	reasons := []string{"connect", "breaker_open"}
	if statuses[504] == 0 {
		// Route deadlines are counted as timeouts too.
		reasons = append(reasons, "timeout")
	}
	for _, reason := range reasons {
		if strings.Contains(m, `lariat_upstream_errors_total{route="o",task="m",reason="`+reason+`"}`) {
			t.Errorf("upstream errors of reason %s counted for a healthy upstream", reason)
		}
	}
}

// TestHangingUpstreamsHoldTheDeadline: 200 requests at once to routes
// whose upstreams hang, route timeout 200ms: every answer is a 504 (or a
// 503 once the upstream's concurrency limit is reached), and none waits
// for a stuck upstream (the bound is generous; bench/ measures the
// lateness).
func TestHangingUpstreamsHoldTheDeadline(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	up.Set(up.Hang())
	up2 := upstreamtest.Start(t, nil)
	up2.Set(up2.Hang())
	route := fmt.Sprintf(`
name: hang
endpoint: /hang
timeout: 200ms
tasks:
  a: {type: http, inputs: {address: %s}, output: {path: response.body.a}}
  b: {type: http, inputs: {address: %s, timeout: 50ms, retries: 5, backoff: {base: 1ms, max: 2ms}, breaker: {disabled: true}}, output: {path: response.body.b}}
`, up.URL("/a"), up2.URL("/b"))
	tg := startGateway(t, map[string]string{"h.yaml": route}, nil)
	var wg sync.WaitGroup
	var worst atomic.Int64
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			a := tg.post(t, "/hang", `{}`)
			took := time.Since(start)
			for {
				w := worst.Load()
				if int64(took) <= w || worst.CompareAndSwap(w, int64(took)) {
					break
				}
			}
			if a.status != 504 && !(a.status == 503 && strings.Contains(a.body, "at capacity")) {
				t.Errorf("answer %d %s, want 504 or 503", a.status, a.body)
			}
		}()
	}
	wg.Wait()
	t.Logf("slowest answer %s (deadline 200ms)", time.Duration(worst.Load()).Round(time.Millisecond))
	if w := time.Duration(worst.Load()); w > 3*time.Second {
		t.Fatalf("an answer took %s: something waited for a stuck upstream", w)
	}
}

// TestHungUpstreamIsCutOffByItsBreaker: with the route's defaults (no
// task timeout, the default breaker), an upstream that stops answering
// opens its breaker after five requests that waited out the route
// deadline; the requests after them get the task's default at once
// instead of each waiting out the deadline too, and the upstream is not
// called again before open_for has passed.
func TestHungUpstreamIsCutOffByItsBreaker(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	hang := up.Hang()
	var calls atomic.Int64
	up.Set(func(n int64, rc *fasthttp.RequestCtx) { calls.Add(1); hang(n, rc) })
	route := fmt.Sprintf(`
name: hung
endpoint: /hung
timeout: 200ms
tasks:
  a: {type: http, inputs: {address: %s}, on_error: {default: {score: 0}}, output: {path: response.body.a}}
`, up.URL("/a"))
	tg := startGateway(t, map[string]string{"h.yaml": route}, nil)
	for i := 0; i < 12; i++ {
		if a := tg.post(t, "/hung", `{}`); a.status != 200 || a.body != `{"a":{"score":0}}` {
			t.Fatalf("request %d: %d %s, want the default", i, a.status, a.body)
		}
	}
	if n := calls.Load(); n != 5 {
		t.Fatalf("the hung upstream got %d calls of 12 requests, want 5 (then its breaker opens)", n)
	}
	m := tg.adminGet(t, "/metrics").body
	if !strings.Contains(m, `lariat_breaker_open{upstream="`+strings.TrimSuffix(up.URL(""), "/")+`"} 1`) {
		t.Fatalf("breaker not open:\n%s", grepLines(m, "breaker"))
	}
}

// TestStalledUpstreamUnderLoadKeepsItsBreakerClosed: a model server
// that stalls for 100ms (a garbage collection pause) under 20 callers
// (each sending a request 10ms after its last answer),
// with a 50ms try timeout and the default breaker: the calls in flight
// time out, together, and count once each time, so the breaker stays
// closed and the calls after the stall are answered.
func TestStalledUpstreamUnderLoadKeepsItsBreakerClosed(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	var stallUntil atomic.Int64
	up.Set(func(n int64, rc *fasthttp.RequestCtx) {
		if d := time.Until(time.Unix(0, stallUntil.Load())); d > 0 {
			time.Sleep(d)
		}
		upstreamtest.JSON(`{"ok":true}`)(n, rc)
	})
	route := fmt.Sprintf("name: s\nendpoint: /s\ntimeout: 500ms\ntasks:\n  m: {type: http, inputs: {address: %s, timeout: 50ms, retries: 0}, output: {path: response.body}}\n", up.URL("/"))
	tg := startGateway(t, map[string]string{"s.yaml": route}, nil)
	var timedOut, okAfter, other atomic.Int64
	var stalled atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000 && time.Since(start) < 3*time.Second; i++ {
				after := stalled.Load() && time.Now().UnixNano() > stallUntil.Load()
				a := tg.post(t, "/s", `{}`)
				switch {
				case a.status == 504:
					timedOut.Add(1)
				case a.status == 200 && after:
					okAfter.Add(1)
				case a.status != 200:
					if other.Add(1) == 1 {
						t.Errorf("answer %d %s, want 200 or 504", a.status, a.body)
					}
				}
				if after && okAfter.Load() >= 100 {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	stallUntil.Store(time.Now().Add(100 * time.Millisecond).UnixNano())
	stalled.Store(true)
	wg.Wait()
	if timedOut.Load() == 0 || okAfter.Load() == 0 || other.Load() > 0 {
		t.Fatalf("%d timeouts, %d answers after the stall, %d other answers: want timeouts, answers and nothing else", timedOut.Load(), okAfter.Load(), other.Load())
	}
	if m := tg.adminGet(t, "/metrics").body; strings.Contains(m, `lariat_breaker_state_changes_total{upstream="http://`+up.Addr+`",to="open"}`) {
		t.Fatalf("the breaker opened on a 100ms stall (%d timeouts):\n%s", timedOut.Load(), grepLines(m, "breaker"))
	}
}

// TestTrickledAnswerTimesOut: an upstream that trickles its answer one
// byte per 50ms: 504, counted as a timeout, not a connection failure.
func TestTrickledAnswerTimesOut(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	up.Set(up.Trickle(`{"a":"`+strings.Repeat("x", 200)+`"}`, 50*time.Millisecond))
	route := fmt.Sprintf("name: trickle\nendpoint: /trickle\ntimeout: 300ms\ntasks:\n  m: {type: http, inputs: {address: %s}, output: {path: response.body}}\n", up.URL("/"))
	tg := startGateway(t, map[string]string{"t.yaml": route}, nil)
	if a := tg.post(t, "/trickle", `{}`); a.status != 504 {
		t.Fatalf("answer %d %s, want 504", a.status, a.body)
	}
	m := tg.adminGet(t, "/metrics").body
	if !strings.Contains(m, `lariat_upstream_errors_total{route="trickle",task="m",reason="timeout"} 1`) || strings.Contains(m, `route="trickle",task="m",reason="connect"`) {
		t.Fatalf("trickle not counted as a timeout:\n%s", grepLines(m, "trickle"))
	}
}

// TestUpstreamAskingForAPauseIsNotRetriedAtOnce: an overloaded upstream
// answers 503 with Retry-After: 5. A route allowed two retries sends it
// one try per request, not three.
func TestUpstreamAskingForAPauseIsNotRetriedAtOnce(t *testing.T) {
	up := upstreamtest.Start(t, func(_ int64, rc *fasthttp.RequestCtx) {
		rc.Response.Header.Set("Retry-After", "5")
		upstreamtest.Status(503)(0, rc)
	})
	route := fmt.Sprintf("name: pause\nendpoint: /pause\ntimeout: 1s\ntasks:\n  m: {type: http, inputs: {address: %s, timeout: 200ms, retries: 2, breaker: {disabled: true}}, output: {path: response.body}}\n", up.URL("/"))
	tg := startGateway(t, map[string]string{"p.yaml": route}, nil)
	for i := range 5 {
		if a := tg.post(t, "/pause", `{}`); a.status != 502 || !strings.Contains(a.body, "answered 503") {
			t.Fatalf("request %d: %d %s", i, a.status, a.body)
		}
	}
	if n := up.Requests.Load(); n != 5 {
		t.Fatalf("the upstream got %d requests for 5, want 5 (no retry)", n)
	}
}

// TestCallerDeadlineIsKept: a request stating the time its caller waits
// (X-Lariat-Deadline-Ms, as a gateway in front sends) is served within
// it when it is shorter than the route's timeout, and the upstream is
// told the shorter time; a longer or malformed one changes nothing.
func TestCallerDeadlineIsKept(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	up.Set(up.Delay(300*time.Millisecond, upstreamtest.JSON(`{"ok":true}`)))
	tg := startGateway(t, map[string]string{"d.yaml": httpRoute("d", "2s", up.URL("/"), "")}, nil)
	if a := tg.post(t, "/d", `{}`, "X-Lariat-Deadline-Ms", "100"); a.status != 504 {
		t.Fatalf("caller waiting 100ms for a 300ms upstream: %d %s", a.status, a.body)
	}
	if ms, err := strconv.Atoi(up.LastHeader("X-Lariat-Deadline-Ms")); err != nil || ms > 100 {
		t.Fatalf("upstream told %q ms, want at most 100", up.LastHeader("X-Lariat-Deadline-Ms"))
	}
	for _, v := range []string{"5000", "soon", "-1", ""} {
		if a := tg.post(t, "/d", `{}`, "X-Lariat-Deadline-Ms", v); a.status != 200 {
			t.Fatalf("caller deadline %q: %d %s", v, a.status, a.body)
		}
		if ms, err := strconv.Atoi(up.LastHeader("X-Lariat-Deadline-Ms")); err != nil || ms > 2000 || ms < 1000 {
			t.Fatalf("caller deadline %q: upstream told %q ms, want the route's 2s", v, up.LastHeader("X-Lariat-Deadline-Ms"))
		}
	}
}

// TestHugeAnswerIsRefused: an answer larger than the upstream body limit
// gets 502 naming the cause.
func TestHugeAnswerIsRefused(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Huge(100<<20))
	// A small limit, so that reaching it is quick also under the race
	// detector on a busy machine.
	tg := startGateway(t, map[string]string{"h.yaml": strings.Replace(plainRoute("huge", up.URL("/")), "timeout: 2s", "timeout: 20s", 1)}, nil,
		func(o *Options) { o.Env.Upstreams = upstream.NewPool(nil, upstream.Options{MaxBodySize: 1 << 20}) })
	if a := tg.post(t, "/huge", `{}`); a.status != 502 || !strings.Contains(a.body, "too large: larger than 1048576 bytes") {
		t.Fatalf("answer %d %s, want 502 naming the size", a.status, a.body)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestBrokenNeighbourKeepsTheServerUp: two routes call two models of one
// model server. One model answers 500 to every call (a broken version);
// the other answers well. The broken model's route fails on its own; the
// other route is answered throughout, and the server's breaker stays
// closed.
func TestBrokenNeighbourKeepsTheServerUp(t *testing.T) {
	up := upstreamtest.Start(t, func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetContentType("application/json")
		if string(rc.Path()) == "/broken" {
			rc.SetStatusCode(500)
			rc.SetBodyString(`{"error":"model raised"}`)
			return
		}
		rc.SetBodyString(`{"score":0.5}`)
	})
	route := "name: %s\nendpoint: /%s\ntimeout: 500ms\ntasks:\n  m: {type: http, inputs: {address: %s}, output: {path: response.body}}\n"
	tg := startGateway(t, map[string]string{
		"good.yaml":   fmt.Sprintf(route, "good", "good", up.URL("/good")),
		"broken.yaml": fmt.Sprintf(route, "broken", "broken", up.URL("/broken")),
	}, nil)
	for round := range 5 {
		if a := tg.post(t, "/good", `{}`); a.status != 200 || a.body != `{"score":0.5}` {
			t.Fatalf("round %d: the good model's route: %d %s", round, a.status, a.body)
		}
		for i := range 6 {
			if a := tg.post(t, "/broken", `{}`); a.status != 502 || !strings.Contains(a.body, "upstream answered 500") {
				t.Fatalf("round %d, broken call %d: %d %s, want its 500", round, i, a.status, a.body)
			}
		}
	}
	if m := tg.adminGet(t, "/metrics").body; !strings.Contains(m, `lariat_breaker_open{upstream="`+strings.TrimSuffix(up.URL(""), "/")+`"} 0`) {
		t.Fatalf("the server's breaker opened:\n%s", grepLines(m, "breaker"))
	}
}
