package gateway

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/promexpo"
	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/upstream"
)

func TestLassoRouteUnchanged(t *testing.T) {
	data, err := os.ReadFile("testdata/lasso-route.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const answerBody = `{"allocation":{"driver_id":"d-42","eta_s":180},"model":"ja-control"}`
	fake := upstreamtest.Start(t, upstreamtest.JSON(answerBody))
	tg := startGateway(t, map[string]string{"lasso-route.yaml": string(data)},
		map[string]string{"ja-control.allocation.svc.cluster.local": fake.Addr})
	req := `{"order_id":"o-1","candidates":["d-42","d-7"]}`
	a := tg.post(t, "/ja-allocation", req)
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	if a.body != answerBody {
		t.Fatalf("body %s, want the upstream's %s", a.body, answerBody)
	}
	if got := fake.LastBody(); got != req {
		t.Fatalf("upstream received %s, want the request %s", got, req)
	}
	if h := fake.LastHeader("Host"); h != "ja-control.allocation.svc.cluster.local" {
		t.Fatalf("upstream Host header %q", h)
	}
}

func TestParallelCallsOverlap(t *testing.T) {
	rv := upstreamtest.NewRendezvous(2, 2*time.Second)
	m1 := upstreamtest.Start(t, rv.Join(upstreamtest.JSON(`{"score":1}`)))
	m2 := upstreamtest.Start(t, rv.Join(upstreamtest.JSON(`{"score":2}`)))
	tg := startGateway(t, map[string]string{"fanout.yaml": fanout2Route("5s", m1.URL("/predict"), m2.URL("/predict"), "")}, nil)
	a := tg.post(t, "/fanout2", `{"x":1}`)
	if a.status != 200 || a.body != `{"m1":{"score":1},"m2":{"score":2}}` {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if rv.Peak() < 2 {
		t.Fatalf("calls never overlapped: peak in flight %d", rv.Peak())
	}
}

func TestDependencyOrder(t *testing.T) {
	features := upstreamtest.Start(t, upstreamtest.JSON(`{"vector":[0.1,0.2]}`))
	var startedAfter int64 = -1
	model := upstreamtest.Start(t, nil)
	model.Set(func(n int64, rc *fasthttp.RequestCtx) {
		startedAfter = features.Completed()
		upstreamtest.Echo()(n, rc)
	})
	route := fmt.Sprintf(`
name: chain
endpoint: /chain
tasks:
  model:
    type: http
    inputs:
      address: %s
      body: '{"features": {{ .tasks.features.body.vector }}, "id": {{ .request.id }}}'
    output: {path: response.body}
  features:
    type: http
    inputs: {address: %s, body: '{}'}
`, model.URL("/m"), features.URL("/f"))
	tg := startGateway(t, map[string]string{"chain.yaml": route}, nil)
	a := tg.post(t, "/chain", `{"id":"abc"}`)
	if a.status != 200 || a.body != `{"features": [0.1,0.2], "id": "abc"}` {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if startedAfter != 1 {
		t.Fatalf("model started when features had completed %d calls, want 1", startedAfter)
	}
}

func TestPerTryTimeoutAndRetries(t *testing.T) {
	fake := upstreamtest.Start(t, nil)
	fake.Set(fake.Delay(300*time.Millisecond, upstreamtest.JSON(`{}`)))
	tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(fake.URL("/"), "timeout: 50ms\nretries: 2\nbackoff: {base: 5ms, max: 10ms}")}, nil)
	a := tg.post(t, "/one", `{}`)
	if a.status != 504 || !strings.Contains(a.body, `upstream timed out after`) || !strings.Contains(a.body, `"task":"m"`) {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if n := fake.Requests.Load(); n != 3 {
		t.Fatalf("upstream saw %d tries, want 3 (1 + 2 retries)", n)
	}
}

func TestRetryUntilSuccess(t *testing.T) {
	fake := upstreamtest.Start(t, upstreamtest.Sequence(upstreamtest.Status(503), upstreamtest.Status(502), upstreamtest.JSON(`{"ok":true}`)))
	tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(fake.URL("/"), "timeout: 100ms\nretries: 3\nbackoff: {base: 1ms, max: 2ms}")}, nil)
	a := tg.post(t, "/one", `{}`)
	if a.status != 200 || a.body != `{"ok":true}` {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if n := fake.Requests.Load(); n != 3 {
		t.Fatalf("upstream saw %d tries, want 3", n)
	}
}

// TestRefusedContentIsTheCallers: a model that refuses the request's
// content (400, 413, 415, 422) makes the answer that status, not 502, so
// the caller does not retry what will be refused again; the error names
// what the model said. Other failed statuses stay 502, and say it too.
func TestRefusedContentIsTheCallers(t *testing.T) {
	detail := `{"detail":[{"loc":["body","inputs"],"msg":"field required"}]}`
	for _, c := range []struct {
		upstream, want int
		body           string
	}{
		{422, 422, detail},
		{400, 400, `{"error":"bad input"}`},
		{500, 502, `{"error":"CUDA out of memory"}`},
		{404, 502, `not found`},
		{422, 422, strings.Repeat("x", 2000)},
	} {
		fake := upstreamtest.Start(t, func(_ int64, rc *fasthttp.RequestCtx) {
			rc.SetStatusCode(c.upstream)
			rc.SetBodyString(c.body)
		})
		tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(fake.URL("/"), "retries: 0")}, nil)
		a := tg.post(t, "/one", `{}`)
		msg := gjson.Get(a.body, "error").String()
		want := fmt.Sprintf("upstream answered %d: %s", c.upstream, c.body)
		if len(c.body) > 1000 {
			want = fmt.Sprintf("upstream answered %d: %s…", c.upstream, c.body[:upstream.MaxAnswerShown])
		}
		if a.status != c.want || !strings.HasSuffix(msg, want) {
			t.Errorf("upstream %d %.40q: answer %d %s, want %d ending %.80q", c.upstream, c.body, a.status, a.body, c.want, want)
		}
	}
}

func TestNoRetryOnClientError(t *testing.T) {
	fake := upstreamtest.Start(t, upstreamtest.Status(400))
	tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(fake.URL("/"), "timeout: 100ms\nretries: 3\nbackoff: {base: 1ms, max: 2ms}")}, nil)
	a := tg.post(t, "/one", `{}`)
	if a.status != 400 || !strings.Contains(a.body, "upstream answered 400") {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if n := fake.Requests.Load(); n != 1 {
		t.Fatalf("upstream saw %d tries, want 1: 400 is never retried", n)
	}
}

func TestRetryNotStartedWithoutBudget(t *testing.T) {
	fake := upstreamtest.Start(t, nil)
	fake.Set(fake.Delay(150*time.Millisecond, upstreamtest.Status(503)))
	// Route 1s, tries of 900ms: after a failed try at 150ms only 850ms
	// are left, which cannot hold another 900ms try.
	tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(fake.URL("/"), "timeout: 900ms\nretries: 3\nbackoff: {base: 1ms, max: 2ms}")}, nil)
	a := tg.post(t, "/one", `{}`)
	if a.status != 502 {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if n := fake.Requests.Load(); n != 1 {
		t.Fatalf("upstream saw %d tries, want 1", n)
	}
}

func TestRouteDeadlineWithHangingUpstream(t *testing.T) {
	fake := upstreamtest.Start(t, nil)
	fake.Set(fake.Hang())
	tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(fake.URL("/"), "")}, nil)
	a := tg.post(t, "/one", `{}`)
	if a.status != 504 || !strings.Contains(a.body, `"task":"m"`) {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	// No goroutine is left in the request path once the answer is out.
	waitNoGoroutinesIn(t, "lariat/router.(*exec)", "lariat/tasks.", "lariat/gateway.(*Gateway).handle")
}

func TestBreakerOpensAndFailsFast(t *testing.T) {
	fake := upstreamtest.Start(t, upstreamtest.Status(500))
	tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(fake.URL("/"), "breaker: {failures: 3, open_for: 1m}")}, nil)
	for i := 0; i < 3; i++ {
		if a := tg.post(t, "/one", `{}`); a.status != 502 || !strings.Contains(a.body, "upstream answered 500") {
			t.Fatalf("call %d: %d %s", i, a.status, a.body)
		}
	}
	for i := 0; i < 2; i++ {
		if a := tg.post(t, "/one", `{}`); a.status != 502 || !strings.Contains(a.body, "circuit breaker open") {
			t.Fatalf("call after trip: %d %s", a.status, a.body)
		}
	}
	if n := fake.Requests.Load(); n != 3 {
		t.Fatalf("upstream saw %d calls, want 3: an open breaker fails fast", n)
	}
}

func TestOnErrorDefault(t *testing.T) {
	ok := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.7}`))
	bad := upstreamtest.Start(t, upstreamtest.Status(500))
	route := fmt.Sprintf(`
name: def
endpoint: /def
tasks:
  good: {type: http, inputs: {address: %s}, output: {path: response.body.good}}
  bad:
    type: http
    inputs: {address: %s}
    output: {path: response.body.bad}
    on_error:
      default: {score: 0, fallback: true}
`, ok.URL("/"), bad.URL("/"))
	tg := startGateway(t, map[string]string{"d.yaml": route}, nil)
	a := tg.post(t, "/def", `{}`)
	if a.status != 200 || a.body != `{"good":{"score":0.7},"bad":{"score":0,"fallback":true}}` {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if h := a.header.Get("X-Lariat-Incomplete"); h != "bad" {
		t.Fatalf("X-Lariat-Incomplete = %q, want bad", h)
	}
}

func TestDeadlineUsesDefaults(t *testing.T) {
	fast := upstreamtest.Start(t, upstreamtest.JSON(`{"v":1}`))
	slow := upstreamtest.Start(t, nil)
	slow.Set(slow.Hang())
	route := fmt.Sprintf(`
name: dl
endpoint: /dl
timeout: 500ms
tasks:
  fast: {type: http, inputs: {address: %s}, output: {path: response.body.fast}}
  slow:
    type: http
    inputs: {address: %s}
    output: {path: response.body.slow}
    on_error: {default: null}
`, fast.URL("/"), slow.URL("/"))
	tg := startGateway(t, map[string]string{"d.yaml": route}, nil)
	a := tg.post(t, "/dl", `{}`)
	if a.status != 200 || a.body != `{"fast":{"v":1},"slow":null}` || a.header.Get("X-Lariat-Incomplete") != "slow" {
		t.Fatalf("answer %d %s %v", a.status, a.body, a.header)
	}
}

func TestWriteModes(t *testing.T) {
	f := func(name, writes, want string) {
		t.Helper()
		a1 := upstreamtest.Start(t, upstreamtest.JSON(`{"a":1,"k":"one"}`))
		a2 := upstreamtest.Start(t, upstreamtest.JSON(`{"b":2,"k":"two"}`))
		a3 := upstreamtest.Start(t, upstreamtest.JSON(`[3]`))
		modes := strings.Split(writes, ",")
		route := fmt.Sprintf(`
name: w
endpoint: /w
tasks:
  t1:
    type: http
    inputs: {address: %s}
    output: {path: response.body.x, write: %s}
  t2:
    type: http
    after: [t1]
    inputs: {address: %s}
    output: {path: response.body.x, write: %s}
  t3:
    type: http
    after: [t2]
    inputs: {address: %s}
    output: {path: response.body.x, write: %s}
`, a1.URL("/"), modes[0], a2.URL("/"), modes[1], a3.URL("/"), modes[2])
		tg := startGateway(t, map[string]string{"w.yaml": route}, nil)
		a := tg.post(t, "/w", `{}`)
		if a.status != 200 || a.body != want {
			t.Fatalf("%s: answer %d %s, want %s", name, a.status, a.body, want)
		}
	}
	f("overwrite", "overwrite,overwrite,overwrite", `{"x":[3]}`)
	f("ignoreIfExists", "ignoreIfExists,ignoreIfExists,ignoreIfExists", `{"x":{"a":1,"k":"one"}}`)
	f("append", "append,append,append", `{"x":[{"a":1,"k":"one"},{"b":2,"k":"two"},[3]]}`)
	f("merge", "merge,merge,ignoreIfExists", `{"x":{"a":1,"b":2,"k":"two"}}`)
	f("merge then overwrite", "merge,merge,overwrite", `{"x":[3]}`)
}

func TestOutputsToHeadersStatusAndNestedFields(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"code":201,"ver":"v7","data":{"id":5,"keep":true}}`))
	route := fmt.Sprintf(`
name: o
endpoint: /o
tasks:
  a:
    type: http
    inputs: {address: %s}
    output: {path: response.body, from: data}
  b:
    type: http
    after: [a]
    inputs: {address: %s}
    output: {path: response.body.id, from: ver}
  c:
    type: http
    after: [b]
    inputs: {address: %s}
    output: {path: response.headers.X-Model-Version, from: ver}
  d:
    type: http
    after: [c]
    inputs: {address: %s}
    output: {path: response.status, from: code}
  e:
    type: http
    after: [d]
    inputs: {address: %s}
    output: {path: response.body.meta.nested.code, from: code}
`, up.URL("/"), up.URL("/"), up.URL("/"), up.URL("/"), up.URL("/"))
	tg := startGateway(t, map[string]string{"o.yaml": route}, nil)
	a := tg.post(t, "/o", `{}`)
	if a.status != 201 || a.body != `{"keep":true,"id":"v7","meta":{"nested":{"code":201}}}` || a.header.Get("X-Model-Version") != "v7" {
		t.Fatalf("answer %d %s %v", a.status, a.body, a.header)
	}
}

func TestTemplatesHeadersAndTraceContext(t *testing.T) {
	fake := upstreamtest.Start(t, upstreamtest.Echo())
	route := fmt.Sprintf(`
name: h
endpoint: /h
tasks:
  m:
    type: http
    inputs:
      address: %s/users/{{ .request.user.id }}/score?country={{ .headers.X-Country }}
      headers: {X-User: '{{ .request.user.name }}', X-Country: '{{ .headers.X-Country }}'}
      body: '{"country": {{ .headers.X-Country }}, "user": {{ .request.user }}, "missing": {{ .request.nope }}}'
    output: {path: response.body}
`, fake.URL(""))
	tg := startGateway(t, map[string]string{"h.yaml": route}, nil)
	a := tg.post(t, "/h", `{"user":{"id":"a b","name":"Zoë"}}`, "X-Country", "ID", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if a.status != 200 || a.body != `{"country": "ID", "user": {"id":"a b","name":"Zoë"}, "missing": null}` {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if h := fake.LastHeader("X-User"); h != "Zoë" {
		t.Fatalf("X-User = %q", h)
	}
	if h := fake.LastHeader("Traceparent"); h != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Fatalf("traceparent not propagated: %q", h)
	}
	if h := fake.LastHeader("X-Lariat-Deadline-Ms"); h == "" || h > "1000" && len(h) >= 4 {
		t.Fatalf("X-Lariat-Deadline-Ms = %q", h)
	}
}

func TestAddressTemplateIsEscaped(t *testing.T) {
	var gotURI string
	fake := upstreamtest.Start(t, nil)
	fake.Set(func(n int64, rc *fasthttp.RequestCtx) {
		gotURI = string(rc.RequestURI())
		upstreamtest.JSON(`{}`)(n, rc)
	})
	route := fmt.Sprintf(`
name: esc
endpoint: /esc
tasks:
  m:
    type: http
    inputs: {address: '%s/u/{{ .request.id }}?q={{ .request.q }}'}
`, fake.URL(""))
	tg := startGateway(t, map[string]string{"e.yaml": route}, nil)
	if a := tg.post(t, "/esc", `{"id":"a b","q":"../a&b=c?d#e"}`); a.status != 200 {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if gotURI != "/u/a%20b?q=..%2Fa%26b%3Dc%3Fd%23e" {
		t.Fatalf("upstream URI %q: request data changed the URL's structure", gotURI)
	}
}

func TestRequestErrors(t *testing.T) {
	fake := upstreamtest.Start(t, upstreamtest.JSON(`{}`))
	tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(fake.URL("/"), "")}, nil, func(o *Options) { o.MaxBodySize = 1024 })
	f := func(method, path, body string, status int, msg string) {
		t.Helper()
		a := tg.do(t, method, path, body)
		if a.status != status || !strings.Contains(a.body, msg) || a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s %s: %d %s, want %d containing %q", method, path, a.status, a.body, status, msg)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(a.body), &v); err != nil {
			t.Fatalf("error body is not JSON: %s", a.body)
		}
	}
	f("POST", "/nope", `{}`, 404, `no route serves path \"/nope\"`)
	f("GET", "/one", ``, 405, `method GET is not allowed`)
	f("POST", "/one", `{"a":`, 400, `request body is not valid JSON`)
	f("POST", "/one", `{"a":"`+strings.Repeat("x", 2000)+`"}`, 413, `request body is larger than 1024 bytes`)
	f("POST", "/one", "{\"a\":\"\xff\xfe\"}", 400, `request body is not valid JSON`)
	// The gateway keeps serving.
	f("POST", "/one", `{}`, 200, `{}`)
}

// TestInvalidAnswersKeepTheBreakerClosed: a model server that answers
// some inputs with JSON it cannot encode (Python's json.dumps writes NaN
// for a score that is not a number) is up: each such answer fails its
// request, 502 naming the invalid JSON, and the breaker stays closed for
// the inputs it answers well.
func TestInvalidAnswersKeepTheBreakerClosed(t *testing.T) {
	up := upstreamtest.Start(t, func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetContentType("application/json")
		if gjson.GetBytes(rc.PostBody(), "nan").Bool() {
			rc.SetBodyString(`{"score": NaN}`)
			return
		}
		rc.SetBodyString(`{"score": 0.5}`)
	})
	tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(up.URL("/"), "")}, nil)
	for i := 0; i < 10; i++ {
		if a := tg.post(t, "/one", `{"nan":true}`); a.status != 502 || !strings.Contains(a.body, "invalid JSON") {
			t.Fatalf("answer %d with NaN: %d %s, want 502 naming the invalid JSON", i, a.status, a.body)
		}
	}
	if a := tg.post(t, "/one", `{"nan":false}`); a.status != 200 || a.body != `{"score": 0.5}` {
		t.Fatalf("a good input after 10 answers with NaN: %d %s, want the model's answer", a.status, a.body)
	}
}

func TestUpstreamGarbageAndReset(t *testing.T) {
	garbage := upstreamtest.Start(t, upstreamtest.Garbage())
	reset := upstreamtest.Start(t, upstreamtest.Reset())
	tg := startGateway(t, map[string]string{
		"g.yaml": oneTaskRoute(garbage.URL("/"), ""),
		"r.yaml": httpRoute("two", "1s", reset.URL("/"), "body: '{{ .request }}'\nretries: 1\nbackoff: {base: 1ms, max: 1ms}\ntimeout: 100ms"),
	}, nil)
	if a := tg.post(t, "/one", `{}`); a.status != 502 || !strings.Contains(a.body, "invalid JSON") {
		t.Fatalf("garbage: %d %s", a.status, a.body)
	}
	if a := tg.post(t, "/two", `{}`); a.status != 502 {
		t.Fatalf("reset: %d %s", a.status, a.body)
	}
	if n := reset.Requests.Load(); n != 2 {
		t.Fatalf("reset upstream saw %d tries, want 2 (connection errors are retried)", n)
	}
}

func TestAdminEndpoints(t *testing.T) {
	fake := upstreamtest.Start(t, upstreamtest.JSON(`{}`))
	tg := startGateway(t, map[string]string{
		"r.yaml":   oneTaskRoute(fake.URL("/"), ""),
		"bad.yaml": "name: bad\nendpoint: /bad\ntasks: {x: {type: nope}}\n",
	}, nil)
	tg.post(t, "/one", `{}`)
	if a := tg.adminGet(t, "/healthz"); a.status != 200 {
		t.Fatalf("healthz %d", a.status)
	}
	if a := tg.adminGet(t, "/readyz"); a.status != 200 || !strings.Contains(a.body, `"routes": 1`) {
		t.Fatalf("readyz %d %s", a.status, a.body)
	}
	a := tg.adminGet(t, "/routes")
	var v struct {
		Routes []RouteInfo `json:"routes"`
		Errors []string    `json:"errors"`
	}
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Routes) != 1 || v.Routes[0].Name != "one" || len(v.Errors) != 1 || !strings.Contains(v.Errors[0], `bad.yaml:3:19: task "x": unknown type "nope"`) {
		t.Fatalf("routes: %s", a.body)
	}
	m := tg.adminGet(t, "/metrics").body
	for _, want := range []string{
		`lariat_requests_total{route="one",status="200"}`,
		`lariat_request_duration_seconds_bucket{route="one"`,
		`lariat_task_duration_seconds_bucket{route="one",task="m"`,
		`lariat_config_last_reload_successful 0`,
	} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	if err := promexpo.Check(m); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownLetsRequestsFinish(t *testing.T) {
	fake := upstreamtest.Start(t, nil)
	fake.Set(fake.Delay(200*time.Millisecond, upstreamtest.JSON(`{"done":true}`)))
	tg := startGateway(t, map[string]string{"r.yaml": oneTaskRoute(fake.URL("/"), "")}, nil)
	got := make(chan answer, 1)
	go func() { got <- tg.post(t, "/one", `{}`) }()
	testwait.Until(t, "the request to reach the upstream", func() bool { return fake.InFlight.Load() > 0 })
	ctx, cancel := contextWithTimeout(3 * time.Second)
	defer cancel()
	if err := tg.g.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	a := <-got
	if a.status != 200 || a.body != `{"done":true}` {
		t.Fatalf("request in flight during shutdown: %d %s", a.status, a.body)
	}
}
