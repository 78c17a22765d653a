package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/promexpo"
	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// metricValue reads one series from the admin /metrics page; 0 when the
// series is absent.
func metricValue(t testing.TB, tg *testGateway, series string) float64 {
	t.Helper()
	a := tg.adminGet(t, "/metrics")
	sc := bufio.NewScanner(strings.NewReader(a.body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return v
		}
	}
	return 0
}

// waitMetric waits (bounded) until a series reaches want.
func waitMetric(t *testing.T, tg *testGateway, series string, want float64) {
	t.Helper()
	var v float64
	if !testwait.Within(testwait.Timeout, func() bool { v = metricValue(t, tg, series); return v >= want }) {
		t.Fatalf("%s = %v after %s, want %v", series, v, testwait.Timeout, want)
	}
}

// binomialBounds returns the range k of n trials with probability p falls
// in except with a probability below 1e-9 (6 standard deviations).
func binomialBounds(n int, p float64) (lo, hi int) {
	mean, sd := float64(n)*p, math.Sqrt(float64(n)*p*(1-p))
	return int(math.Floor(mean - 6*sd)), int(math.Ceil(mean + 6*sd))
}

func TestSwitchRunsOnlyTheChosenBranch(t *testing.T) {
	fraud := upstreamtest.Start(t, nil)
	fraud.Set(func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetContentType("application/json")
		if bytes.Contains(rc.PostBody(), []byte(`"risky"`)) {
			rc.SetBodyString(`{"score":0.9}`)
			return
		}
		rc.SetBodyString(`{"score":0.1}`)
	})
	id := upstreamtest.Start(t, upstreamtest.JSON(`"id-model"`))
	beta := upstreamtest.Start(t, upstreamtest.JSON(`"beta-model"`))
	base := upstreamtest.Start(t, upstreamtest.JSON(`"base-model"`))
	after := upstreamtest.Start(t, upstreamtest.Echo())
	route := fmt.Sprintf(`
name: switch-route
endpoint: /switch
timeout: 2s
tasks:
  fraud:
    type: http
    inputs: {address: %s, body: '{{ .request }}'}
  by_country:
    type: switch
    inputs:
      cases:
        - name: indonesia
          when: .request.country == "ID" && .tasks.fraud.body.score < 0.5
          run: [id_model]
        - when: .headers.X-Beta
          run: [beta_model]
      default: [base_model]
  id_model: {type: http, inputs: {address: %s}, output: {path: response.body.model}}
  beta_model: {type: http, inputs: {address: %s}, output: {path: response.body.model}}
  base_model: {type: http, inputs: {address: %s}, output: {path: response.body.model}}
  summary:
    type: http
    after: [id_model, beta_model, base_model]
    inputs: {address: %s, body: '{"branch": {{ .tasks.by_country.body.branch }}}'}
    output: {path: response.body.summary}
`, fraud.URL("/f"), id.URL("/"), beta.URL("/"), base.URL("/"), after.URL("/"))
	tg := startGateway(t, map[string]string{"switch.yaml": route}, nil)
	f := func(body string, hdr []string, wantModel, wantBranch string, wantID, wantBeta, wantBase int64) {
		t.Helper()
		a := tg.post(t, "/switch", body, hdr...)
		want := fmt.Sprintf(`{"model":"%s","summary":{"branch": "%s"}}`, wantModel, wantBranch)
		if a.status != 200 || a.body != want {
			t.Fatalf("%s: answer %d %s, want %s", body, a.status, a.body, want)
		}
		if h := a.header.Get("X-Lariat-Branch"); h != "by_country="+wantBranch {
			t.Fatalf("%s: X-Lariat-Branch %q", body, h)
		}
		if n1, n2, n3 := id.Requests.Load(), beta.Requests.Load(), base.Requests.Load(); n1 != wantID || n2 != wantBeta || n3 != wantBase {
			t.Fatalf("%s: upstream requests id %d beta %d base %d, want %d %d %d", body, n1, n2, n3, wantID, wantBeta, wantBase)
		}
	}
	f(`{"country":"ID"}`, nil, "id-model", "indonesia", 1, 0, 0)
	f(`{"country":"ID","note":"risky"}`, nil, "base-model", "default", 1, 0, 1)
	f(`{"country":"ID","note":"risky"}`, []string{"X-Beta", "on"}, "beta-model", "case1", 1, 1, 1)
	f(`{"country":"MY"}`, nil, "base-model", "default", 1, 1, 2)
	f(`{"country":"ID"}`, []string{"X-Beta", "on"}, "id-model", "indonesia", 2, 1, 2)
	if n := fraud.Requests.Load(); n != 5 {
		t.Fatalf("fraud saw %d requests", n)
	}
	// A request that is not JSON is refused before any task runs.
	if a := tg.post(t, "/switch", `{"country":`); a.status != 400 {
		t.Fatalf("bad JSON: %d %s", a.status, a.body)
	}
}

func TestSplitProportionsAndStickiness(t *testing.T) {
	control := upstreamtest.Start(t, upstreamtest.JSON(`"control"`))
	canary := upstreamtest.Start(t, upstreamtest.JSON(`"canary"`))
	route := func(name, sticky string) string {
		return fmt.Sprintf(`
name: %s
endpoint: /%s
timeout: 2s
tasks:
  ab:
    type: split
    inputs:
      %s
      arms:
        - {name: control, weight: 90, run: [a]}
        - {name: canary, weight: 10, run: [b]}
  a: {type: http, inputs: {address: %s}, output: {path: response.body.arm}}
  b: {type: http, inputs: {address: %s}, output: {path: response.body.arm}}
`, name, name, sticky, control.URL("/"), canary.URL("/"))
	}
	tg := startGateway(t, map[string]string{
		"random.yaml": route("split-random", ""),
		"sticky.yaml": route("split-sticky", `sticky: '{{ .request.user.id }}'`),
	}, nil)
	canarySeries := `lariat_split_arm_total{route="split-random",task="ab",arm="canary"}`
	canary0 := metricValue(t, tg, canarySeries)

	const n = 2000
	arms := map[string]int{}
	for i := 0; i < n; i++ {
		a := tg.post(t, "/split-random", `{}`)
		arm, _ := strings.CutPrefix(a.header.Get("X-Lariat-Branch"), "ab=")
		if a.status != 200 || a.body != `{"arm":"`+arm+`"}` {
			t.Fatalf("answer %d %s branch %q", a.status, a.body, arm)
		}
		arms[arm]++
	}
	lo, hi := binomialBounds(n, 0.1)
	if arms["canary"] < lo || arms["canary"] > hi || arms["canary"]+arms["control"] != n {
		t.Fatalf("arms %v: canary outside [%d, %d]", arms, lo, hi)
	}
	// The upstreams of the arms not taken never saw the request.
	if c, k := control.Requests.Load(), canary.Requests.Load(); c != int64(arms["control"]) || k != int64(arms["canary"]) {
		t.Fatalf("upstreams saw control %d canary %d, arms %v", c, k, arms)
	}
	if v := metricValue(t, tg, canarySeries) - canary0; int(v) != arms["canary"] {
		t.Fatalf("lariat_split_arm_total canary %v, want %d", v, arms["canary"])
	}

	// Sticky: each user always gets the same arm.
	byUser := map[string]string{}
	canaries := 0
	const users = 500
	for round := 0; round < 3; round++ {
		for u := 0; u < users; u++ {
			user := "user-" + strconv.Itoa(u)
			a := tg.post(t, "/split-sticky", `{"user":{"id":"`+user+`"}}`)
			arm := a.header.Get("X-Lariat-Branch")
			if a.status != 200 || arm == "" {
				t.Fatalf("answer %d %s", a.status, a.body)
			}
			if prev, ok := byUser[user]; ok && prev != arm {
				t.Fatalf("%s got %s, then %s", user, prev, arm)
			}
			if round == 0 && arm == "ab=canary" {
				canaries++
			}
			byUser[user] = arm
		}
	}
	if lo, hi := binomialBounds(users, 0.1); canaries < lo || canaries > hi {
		t.Fatalf("%d of %d users on the canary, want [%d, %d]", canaries, users, lo, hi)
	}
}

func TestHedgeThroughGateway(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	// Every fifth call is slow (a slow replica); the others are fast.
	up.Set(func(n int64, rc *fasthttp.RequestCtx) {
		if n%5 == 1 {
			up.Delay(2*time.Second, upstreamtest.JSON(`{"from":"slow"}`))(n, rc)
			return
		}
		upstreamtest.JSON(`{"from":"fast"}`)(n, rc)
	})
	tg := startGateway(t, map[string]string{"h.yaml": httpRoute("hedged", "3s", up.URL("/p"), "timeout: 2500ms\nhedge_after: 400ms")}, nil)
	wonSeries, lostSeries := `lariat_hedges_total{route="hedged",task="m",result="won"}`, `lariat_hedges_total{route="hedged",task="m",result="lost"}`
	won0, lost0 := metricValue(t, tg, wonSeries), metricValue(t, tg, lostSeries)
	for i := 0; i < 8; i++ {
		if a := tg.post(t, "/hedged", `{}`); a.status != 200 || a.body != `{"from":"fast"}` {
			t.Fatalf("answer %d %s", a.status, a.body)
		}
	}
	// Calls 1 and 6 were slow and hedged (calls 2 and 7), and the hedges
	// won; the other 6 answered at once: 10 upstream requests.
	if n := up.Requests.Load(); n != 10 {
		t.Fatalf("upstream saw %d requests, want 10", n)
	}
	if won, lost := metricValue(t, tg, wonSeries)-won0, metricValue(t, tg, lostSeries)-lost0; won != 2 || lost != 0 {
		t.Fatalf("hedges won %v lost %v", won, lost)
	}
}

func TestFallbackThroughGateway(t *testing.T) {
	primary := upstreamtest.Start(t, nil)
	primary.Set(primary.Delay(time.Second, upstreamtest.JSON(`{"from":"primary"}`)))
	fallback := upstreamtest.Start(t, upstreamtest.JSON(`{"from":"fallback"}`))
	inputs := "body: '{{ .request }}'\nfallback: {address: " + fallback.URL("/f") + "}\nprimary_within: 200ms"
	tg := startGateway(t, map[string]string{"r.yaml": httpRoute("raced", "2s", primary.URL("/p"), inputs)}, nil)
	fbSeries := `lariat_fallback_answers_total{route="raced",task="m",answer="fallback"}`
	fb0 := metricValue(t, tg, fbSeries)
	a := tg.post(t, "/raced", `{"x":1}`)
	if a.status != 200 || a.body != `{"from":"fallback"}` || a.header.Get("X-Lariat-Models") != "m="+fallback.Addr {
		t.Fatalf("answer %d %s models %q", a.status, a.body, a.header.Get("X-Lariat-Models"))
	}
	primary.Set(upstreamtest.JSON(`{"from":"primary"}`))
	a = tg.post(t, "/raced", `{"x":2}`)
	if a.status != 200 || a.body != `{"from":"primary"}` || a.header.Get("X-Lariat-Models") != "" {
		t.Fatalf("answer %d %s models %q", a.status, a.body, a.header.Get("X-Lariat-Models"))
	}
	// The fallback is called together with the primary; once the primary
	// has won, its call may still be on its way: wait for it, boundedly.
	testwait.Within(testwait.Timeout, func() bool { return fallback.Requests.Load() >= 2 })
	if p, f := primary.Requests.Load(), fallback.Requests.Load(); p != 2 || f != 2 || fallback.LastBody() != `{"x":2}` {
		t.Fatalf("primary %d fallback %d requests, fallback body %s", p, f, fallback.LastBody())
	}
	if fb := metricValue(t, tg, fbSeries) - fb0; fb != 1 {
		t.Fatalf("fallback answers %v", fb)
	}
}

func TestShadowNeverOnTheCriticalPath(t *testing.T) {
	primary := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.5}`))
	shadow := upstreamtest.Start(t, nil)
	shadow.Set(shadow.Hang())
	// route is the route at /name whose task m calls primary and mirrors
	// every call to shadowURL.
	route := func(name, shadowURL string) string {
		return httpRoute(name, "500ms", primary.URL("/p"), "body: '{{ .request }}'\nshadow: {address: "+shadowURL+", sample: 1, compare: score, timeout: 10s, max_in_flight: 3}")
	}
	tg := startGateway(t, map[string]string{"s.yaml": route("shadowed", shadow.URL("/s"))}, nil)
	dropped := `lariat_shadow_total{route="shadowed",task="m",result="dropped"}`
	dropped0 := metricValue(t, tg, dropped)
	for i := 0; i < 10; i++ {
		if a := tg.post(t, "/shadowed", `{"i":1}`); a.status != 200 || a.body != `{"score":0.5}` {
			t.Fatalf("answer %d %s", a.status, a.body)
		}
	}
	waitMetric(t, tg, dropped, dropped0+7)
	testwait.Within(testwait.Timeout, func() bool { return shadow.InFlight.Load() >= 3 })
	// All ten answers came while three shadow calls hang.
	if n, in := shadow.Requests.Load(), shadow.InFlight.Load(); n != 3 || in != 3 {
		t.Fatalf("shadow saw %d requests, %d in flight; want 3 and 3", n, in)
	}
	// A shadow that answers is compared.
	shadow.Close()
	shadow2 := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.5}`))
	tg2 := startGateway(t, map[string]string{"s.yaml": route("shadowed2", shadow2.URL("/s"))}, nil)
	agree := `lariat_shadow_total{route="shadowed2",task="m",result="agree"}`
	agree0 := metricValue(t, tg2, agree)
	// One at a time: with max_in_flight 3, a fourth mirror started while
	// three are still on their way would be dropped, not compared.
	for i := 0; i < 4; i++ {
		if a := tg2.post(t, "/shadowed2", `{}`); a.status != 200 {
			t.Fatalf("answer %d %s", a.status, a.body)
		}
		waitMetric(t, tg2, agree, agree0+float64(i+1))
	}
}

// v2Fake is a V2 model server that validates requests strictly enough
// for these tests (known keys, FP32, shape × data) and answers each row's
// sum as "scores" [N,1]. It counts calls and rows.
type v2Fake struct {
	*upstreamtest.Server
	calls, rows atomic.Int64
	mu          sync.Mutex
	lastErr     string
	// onCall, when set, sees each valid call with the first column of its
	// input rows.
	onCall func(rc *fasthttp.RequestCtx, firstColumn []float64)
}

func startV2Fake(t *testing.T, path string) *v2Fake {
	f := &v2Fake{}
	f.Server = upstreamtest.Start(t, func(_ int64, rc *fasthttp.RequestCtx) {
		fail := func(msg string) {
			f.mu.Lock()
			f.lastErr = msg
			f.mu.Unlock()
			rc.SetStatusCode(400)
			rc.SetBodyString(`{"error":` + strconv.Quote(msg) + `}`)
		}
		if string(rc.Path()) != path {
			rc.SetStatusCode(404)
			return
		}
		var req struct {
			Inputs []struct {
				Name     string    `json:"name"`
				Shape    []int     `json:"shape"`
				Datatype string    `json:"datatype"`
				Data     []float64 `json:"data"`
			} `json:"inputs"`
			Outputs []struct {
				Name string `json:"name"`
			} `json:"outputs"`
		}
		dec := json.NewDecoder(bytes.NewReader(rc.PostBody()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || len(req.Inputs) == 0 {
			fail(fmt.Sprintf("invalid request: %v", err))
			return
		}
		in := req.Inputs[0]
		n := 1
		for _, d := range in.Shape {
			n *= d
		}
		if in.Name == "" || in.Datatype != "FP32" || len(in.Shape) != 2 || n != len(in.Data) {
			fail(fmt.Sprintf("input %s %s shape %v with %d elements", in.Name, in.Datatype, in.Shape, len(in.Data)))
			return
		}
		f.calls.Add(1)
		f.rows.Add(int64(in.Shape[0]))
		f.mu.Lock()
		onCall := f.onCall
		f.mu.Unlock()
		if onCall != nil {
			first := make([]float64, in.Shape[0])
			for r := range first {
				first[r] = in.Data[r*in.Shape[1]]
			}
			onCall(rc, first)
		}
		scores := make([]float64, in.Shape[0])
		for r := range scores {
			for k := 0; k < in.Shape[1]; k++ {
				scores[r] += in.Data[r*in.Shape[1]+k]
			}
		}
		b, _ := json.Marshal(map[string]any{"model_name": "ranker", "outputs": []any{
			map[string]any{"name": "scores", "datatype": "FP32", "shape": []int{in.Shape[0], 1}, "data": scores},
		}})
		rc.SetContentType("application/json")
		rc.SetBody(b)
	})
	return f
}

func inferGatewayRoute(name, featuresURL, modelURL, batch string) string {
	return fmt.Sprintf(`
name: %s
endpoint: /%s
timeout: 2s
tasks:
  features:
    type: http
    inputs: {address: %s, body: '{{ .request }}'}
  rank:
    type: infer
    inputs:
      address: %s
      model_name: ranker
      inputs:
        - name: stats
          datatype: FP32
          from: '{{ .tasks.features.body }}'
          columns: [conv_rate, acc_rate]
      outputs: [scores]
      rows: true
%s
    output: {path: response.body.ranking}
`, name, name, featuresURL, modelURL, batch)
}

// featureEcho answers an http "features" call with feature rows made
// from the request's drivers: conv_rate = id, acc_rate = id/10.
func featureEcho(_ int64, rc *fasthttp.RequestCtx) {
	var req struct {
		Drivers []int `json:"drivers"`
	}
	_ = json.Unmarshal(rc.PostBody(), &req)
	var rows []string
	for _, d := range req.Drivers {
		rows = append(rows, fmt.Sprintf(`{"driver_id":%d,"conv_rate":%d,"acc_rate":%g}`, d, d, float64(d)/10))
	}
	rc.SetContentType("application/json")
	rc.SetBodyString("[" + strings.Join(rows, ",") + "]")
}

func wantRanking(drivers ...int) string {
	var rows []string
	for _, d := range drivers {
		rows = append(rows, fmt.Sprintf(`{"scores":%g}`, float64(d)+float64(d)/10))
	}
	return `{"ranking":[` + strings.Join(rows, ",") + `]}`
}

func TestInferThroughGateway(t *testing.T) {
	features := upstreamtest.Start(t, featureEcho)
	model := startV2Fake(t, "/v2/models/ranker/infer")
	tg := startGateway(t, map[string]string{"i.yaml": inferGatewayRoute("infer", features.URL("/f"), model.URL(""), "")}, nil)
	a := tg.post(t, "/infer", `{"drivers":[1,2,30]}`)
	if a.status != 200 || a.body != wantRanking(1, 2, 30) || a.header.Get("X-Lariat-Models") != "rank=ranker" {
		t.Fatalf("answer %d %s models %q (model: %s)", a.status, a.body, a.header.Get("X-Lariat-Models"), model.lastErr)
	}
	// The model rejects what the gateway sends wrong: a 502 naming it.
	model.Close()
	a = tg.post(t, "/infer", `{"drivers":[1]}`)
	if a.status != 502 || !strings.Contains(a.body, `"task":"rank"`) {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
}

func TestBatchingThroughGateway(t *testing.T) {
	features := upstreamtest.Start(t, featureEcho)
	model := startV2Fake(t, "/v2/models/ranker/infer")
	tg := startGateway(t, map[string]string{"b.yaml": inferGatewayRoute("batched", features.URL("/f"), model.URL(""), "      batch: {max_size: 64, max_wait: 20ms}")}, nil)
	const clients, perClient = 16, 10
	var wg sync.WaitGroup
	errs := make(chan string, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				d1, d2 := c*100+i, c*100+i+50
				a := tg.post(t, "/batched", fmt.Sprintf(`{"drivers":[%d,%d]}`, d1, d2))
				if want := wantRanking(d1, d2); a.status != 200 || a.body != want {
					errs <- fmt.Sprintf("answer %d %s, want %s", a.status, a.body, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	calls, rows := model.calls.Load(), model.rows.Load()
	if rows != 2*clients*perClient || calls >= clients*perClient {
		t.Fatalf("model saw %d calls with %d rows for %d requests", calls, rows, clients*perClient)
	}
	t.Logf("%d requests in %d batched calls", clients*perClient, calls)
	m := tg.adminGet(t, "/metrics").body
	if want := `lariat_batch_rows_bucket{model="ranker",le="2"} `; !strings.Contains(m, want) {
		t.Fatalf("metrics lack %s:\n%s", want, m)
	}
	if err := promexpo.Check(m); err != nil {
		t.Fatal(err)
	}
}

// A bare header reference in a condition is false when the header is
// missing, blank, "false" or zero.
func TestSwitchHeaderTruthiness(t *testing.T) {
	beta := upstreamtest.Start(t, upstreamtest.JSON(`"beta"`))
	base := upstreamtest.Start(t, upstreamtest.JSON(`"base"`))
	route := fmt.Sprintf(`
name: flag
endpoint: /flag
timeout: 2s
tasks:
  pick:
    type: switch
    inputs:
      cases:
        - {name: beta, when: .headers.X-Beta, run: [beta_model]}
      default: [base_model]
  beta_model: {type: http, inputs: {address: %s}, output: {path: response.body}}
  base_model: {type: http, inputs: {address: %s}, output: {path: response.body}}
`, beta.URL("/"), base.URL("/"))
	tg := startGateway(t, map[string]string{"flag.yaml": route}, nil)
	f := func(want string, hdr ...string) {
		t.Helper()
		if a := tg.post(t, "/flag", `{}`, hdr...); a.status != 200 || a.body != want {
			t.Fatalf("headers %q: answer %d %s, want %s", hdr, a.status, a.body, want)
		}
	}
	f(`"base"`)
	for _, v := range []string{"", " ", "0", "0.0", "false", "FALSE", " False "} {
		f(`"base"`, "X-Beta", v)
	}
	for _, v := range []string{"1", "true", "on", "yes", "no", "beta"} {
		f(`"beta"`, "X-Beta", v)
	}
}

// Tensor data the request gets wrong is the request's fault: 400 naming
// the input. The same data from another task's answer is the upstream's
// (502).
func TestInferBadRequestDataIs400(t *testing.T) {
	model := startV2Fake(t, "/v2/models/ranker/infer")
	features := upstreamtest.Start(t, upstreamtest.Echo())
	f := func(batch string) {
		t.Helper()
		route := fmt.Sprintf(`
name: direct
endpoint: /direct
timeout: 2s
tasks:
  features:
    type: http
    inputs: {address: %s, body: '{{ .request }}'}
  from_request:
    type: infer
    inputs:
      address: %s
      model_name: ranker
      inputs:
        - {name: stats, datatype: FP32, shape: [-1, 2], from: '{{ .request.stats }}'}
      outputs: [scores]
%s
    output: {path: response.body.a}
  from_task:
    type: infer
    inputs:
      address: %s
      model_name: ranker
      inputs:
        - {name: echoed, datatype: FP32, shape: [-1, 2], from: '{{ .tasks.features.body.echo }}'}
      outputs: [scores]
%s
    output: {path: response.body.b}
`, features.URL("/"), model.URL(""), batch, model.URL(""), batch)
		tg := startGateway(t, map[string]string{"d.yaml": route}, nil)
		ok := `{"stats":[[1,2],[3,4]],"echo":[[1,2]]}`
		if a := tg.post(t, "/direct", ok); a.status != 200 {
			t.Fatalf("%s good data: %d %s (model: %s)", batch, a.status, a.body, model.lastErr)
		}
		for _, c := range []struct{ body, want string }{
			{`{"stats":[["x",2]],"echo":[[1,2]]}`, `input stats: element 0: \"x\" is not a FP32 value`},
			{`{"stats":[[1,2],[3]],"echo":[[1,2]]}`, `input stats: row 1 has 1 elements, row 0 has 2`},
			{`{"echo":[[1,2]]}`, `input stats: is missing or null`},
			{`{"stats":[1,2,3],"echo":[[1,2]]}`, `input stats: rows have 1 elements`},
		} {
			if a := tg.post(t, "/direct", c.body); a.status != 400 || !strings.Contains(a.body, c.want) || !strings.Contains(a.body, `"task":"from_request"`) {
				t.Fatalf("%s %s: answer %d %s, want 400 with %s", batch, c.body, a.status, a.body, c.want)
			}
		}
		if a := tg.post(t, "/direct", `{"stats":[[1,2]],"echo":[["x",2]]}`); a.status != 502 || !strings.Contains(a.body, `input echoed`) {
			t.Fatalf("%s bad data from a task: answer %d %s", batch, a.status, a.body)
		}
	}
	f("")
	f("      batch: {max_size: 8, max_wait: 1ms}")
}
