package bench_test

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/bench"
)

// startServer serves h on a fresh 127.0.0.1 port and returns the base URL.
func startServer(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot listen: %s", err)
	}
	srv := &fasthttp.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
		<-done
	})
	return "http://" + ln.Addr().String()
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot listen: %s", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func mustRun(t *testing.T, cfg bench.Config) *bench.Result {
	t.Helper()
	res, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %s", err)
	}
	return res
}

// countAtLeast counts the recorded values of l that are >= ms.
func countAtLeast(t *testing.T, l *bench.Latency, ms float64) int64 {
	t.Helper()
	h, err := l.Histogram()
	if err != nil {
		t.Fatal(err)
	}
	return countHist(h, int64(ms*1000))
}

func countHist(h *hdrhistogram.Histogram, us int64) int64 {
	var n int64
	for _, b := range h.Distribution() {
		if b.From >= us {
			n += b.Count
		}
	}
	return n
}

func timelineTotal(res *bench.Result) (reqs, errs int64) {
	for _, s := range res.Timeline {
		reqs += s.Requests
		errs += s.Errors
	}
	return reqs, errs
}

func TestClosedLoopAnswersEveryRequest(t *testing.T) {
	var served atomic.Int64
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		served.Add(1)
		ctx.SetBodyString(`{"ok":true}`)
	})
	res := mustRun(t, bench.Config{
		URL:         url + "/predict",
		Mode:        bench.ModeClosed,
		Connections: 8,
		Requests:    500,
		Duration:    10 * time.Second,
	})
	if res.Requests != 500 || served.Load() != 500 || res.OK != 500 {
		t.Fatalf("requests %d, served %d, ok %d; want 500 each", res.Requests, served.Load(), res.OK)
	}
	if res.Errors.Total != 0 {
		t.Fatalf("errors: %+v", res.Errors)
	}
	if res.StatusCodes["200"] != 500 || len(res.StatusCodes) != 1 {
		t.Fatalf("status codes: %v", res.StatusCodes)
	}
	if res.Latency.Count != 500 {
		t.Fatalf("latency count %d, want 500", res.Latency.Count)
	}
	l := res.Latency
	if !(l.MinMs <= l.P50Ms && l.P50Ms <= l.P90Ms && l.P90Ms <= l.P99Ms && l.P99Ms <= l.P999Ms && l.P999Ms <= l.MaxMs) {
		t.Fatalf("percentiles out of order: %+v", l)
	}
	if reqs, errs := timelineTotal(res); reqs != 500 || errs != 0 {
		t.Fatalf("timeline has %d requests, %d errors; want 500, 0", reqs, errs)
	}
	if res.ServiceTime != nil || res.Generator != nil {
		t.Fatalf("closed mode has open-mode fields")
	}
	if res.Method != "GET" || res.Interrupted {
		t.Fatalf("method %q interrupted %v", res.Method, res.Interrupted)
	}
}

func TestClosedLoopStopsAtDuration(t *testing.T) {
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {})
	res := mustRun(t, bench.Config{URL: url, Connections: 2, Duration: 300 * time.Millisecond})
	if res.Requests == 0 || res.Errors.Total != 0 {
		t.Fatalf("requests %d errors %+v", res.Requests, res.Errors)
	}
	if res.ElapsedS < 0.3 {
		t.Fatalf("elapsed %.3fs, want at least the duration", res.ElapsedS)
	}
}

// A server that stalls everything for 300ms once. At 200 rps, about 60
// requests are scheduled during the stall and wait for its end, so at least
// 20% of 300 requests see part of the stall: the open-loop p99 must show it.
// A generator timing from the actual send (the service time) sees only the
// requests that were in flight when the stall began, one per connection.
func TestOpenLoopShowsStall(t *testing.T) {
	const stall = 300 * time.Millisecond
	var mu sync.Mutex
	var n atomic.Int64
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		defer mu.Unlock()
		if n.Add(1) == 40 {
			time.Sleep(stall)
		}
	})
	const conns = 2
	res := mustRun(t, bench.Config{
		URL:         url,
		Mode:        bench.ModeOpen,
		Rate:        200,
		Connections: conns,
		Duration:    1500 * time.Millisecond,
	})
	if res.Requests != 300 || res.Generator.Planned != 300 || res.Generator.Unsent != 0 {
		t.Fatalf("requests %d planned %d unsent %d; want 300, 300, 0", res.Requests, res.Generator.Planned, res.Generator.Unsent)
	}
	if res.Errors.Total != 0 {
		t.Fatalf("errors: %+v", res.Errors)
	}
	t.Logf("p99: latency %.1fms, service time %.1fms; generator %+v", res.Latency.P99Ms, res.ServiceTime.P99Ms, *res.Generator)
	// Requests scheduled in the first 100ms of the stall (about 20, 6.7%)
	// waited at least 200ms.
	if res.Latency.P99Ms < 200 {
		t.Fatalf("open-loop p99 %.1fms does not show the %s stall", res.Latency.P99Ms, stall)
	}
	// Requests scheduled in the first 200ms of the stall waited >= 100ms.
	slow := countAtLeast(t, &res.Latency, 100)
	if slow < 30 {
		t.Fatalf("%d requests at >= 100ms, want at least 30", slow)
	}
	naive := countAtLeast(t, res.ServiceTime, 100)
	if naive > conns {
		t.Fatalf("service time has %d requests at >= 100ms, want at most %d", naive, conns)
	}
	if naive >= slow || res.ServiceTime.P99Ms >= res.Latency.P99Ms {
		t.Fatalf("service time (%d slow, p99 %.1fms) not below latency (%d slow, p99 %.1fms)",
			naive, res.ServiceTime.P99Ms, slow, res.Latency.P99Ms)
	}
	// The backlog was sent late, and the report says so.
	if res.Generator.Late < 30 || res.Generator.LagMaxMs < 200 {
		t.Fatalf("generator: %+v, want the stall's backlog counted as late", res.Generator)
	}
	// The timeline shows when it happened.
	var worst float64
	for _, s := range res.Timeline {
		worst = max(worst, s.P99Ms)
	}
	if worst < 200 {
		t.Fatalf("no second of the timeline shows the stall: %+v", res.Timeline)
	}
	if len(res.Warnings()) == 0 {
		t.Fatalf("no warning about late sends")
	}
}

func TestOpenLoopRequestsBound(t *testing.T) {
	var served atomic.Int64
	url := startServer(t, func(ctx *fasthttp.RequestCtx) { served.Add(1) })
	res := mustRun(t, bench.Config{
		URL:         url,
		Mode:        bench.ModeOpen,
		Rate:        500,
		Connections: 4,
		Requests:    50,
	})
	if res.Requests != 50 || served.Load() != 50 {
		t.Fatalf("requests %d served %d, want 50", res.Requests, served.Load())
	}
	g := res.Generator
	if g.Planned != 50 || g.Unsent != 0 {
		t.Fatalf("generator %+v", g)
	}
	if res.ServiceTime == nil || res.ServiceTime.Count != 50 {
		t.Fatalf("service time %+v", res.ServiceTime)
	}
}

// TestRefusalsAreTimedApart: 429 and 503 answers are counted in the
// refused histograms, from the scheduled and from the actual send time,
// and the admitted ones apart from them.
func TestRefusalsAreTimedApart(t *testing.T) {
	var n atomic.Int64
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		switch n.Add(1) % 4 {
		case 1:
			ctx.SetStatusCode(fasthttp.StatusTooManyRequests)
		case 2:
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		case 3:
			ctx.SetStatusCode(fasthttp.StatusBadGateway)
		}
	})
	res := mustRun(t, bench.Config{URL: url, Mode: bench.ModeOpen, Rate: 500, Connections: 1, Requests: 40})
	if res.Requests != 40 {
		t.Fatalf("requests %d", res.Requests)
	}
	if res.LatencyOK == nil || res.LatencyShed == nil || res.ServiceTimeShed == nil {
		t.Fatalf("admitted %+v, refused %+v, refused service time %+v", res.LatencyOK, res.LatencyShed, res.ServiceTimeShed)
	}
	if res.LatencyOK.Count != 10 || res.LatencyShed.Count != 20 || res.ServiceTimeShed.Count != 20 {
		t.Fatalf("admitted %d, refused %d (service time %d); want 10, 20, 20", res.LatencyOK.Count, res.LatencyShed.Count, res.ServiceTimeShed.Count)
	}
	var text strings.Builder
	if err := res.WriteText(&text); err != nil || !strings.Contains(text.String(), "refused svc") {
		t.Fatalf("text report has no refused service time (%v):\n%s", err, text.String())
	}
}

func TestErrorsByKind(t *testing.T) {
	t.Run("status", func(t *testing.T) {
		var n, failed atomic.Int64
		url := startServer(t, func(ctx *fasthttp.RequestCtx) {
			if n.Add(1)%3 == 0 {
				failed.Add(1)
				ctx.SetStatusCode(fasthttp.StatusInternalServerError)
			}
		})
		res := mustRun(t, bench.Config{URL: url, Connections: 4, Requests: 90})
		e := res.Errors
		if e.Status != failed.Load() || e.Status != 30 || e.Total != 30 || e.Timeout+e.Connection+e.Other != 0 {
			t.Fatalf("errors %+v, want 30 status errors", e)
		}
		if res.StatusCodes["500"] != 30 || res.StatusCodes["200"] != 60 || res.OK != 60 {
			t.Fatalf("status codes %v ok %d", res.StatusCodes, res.OK)
		}
		// Error responses are timed too.
		if res.Latency.Count != 90 {
			t.Fatalf("latency count %d, want 90", res.Latency.Count)
		}
		if _, errs := timelineTotal(res); errs != 30 {
			t.Fatalf("timeline errors %d, want 30", errs)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		url := startServer(t, func(ctx *fasthttp.RequestCtx) {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		})
		t.Cleanup(func() { close(release) }) // runs before the server's cleanup
		res := mustRun(t, bench.Config{URL: url, Connections: 3, Requests: 6, Timeout: 100 * time.Millisecond})
		e := res.Errors
		if e.Timeout != 6 || e.Total != 6 {
			t.Fatalf("errors %+v, want 6 timeouts", e)
		}
		if res.Latency.Count != 6 || res.Latency.MinMs < 100 {
			t.Fatalf("timeouts must be timed at >= the timeout: %+v", res.Latency)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		res := mustRun(t, bench.Config{URL: "http://" + closedPort(t) + "/", Connections: 2, Requests: 10})
		e := res.Errors
		if e.Connection != 10 || e.Total != 10 {
			t.Fatalf("errors %+v, want 10 connection errors", e)
		}
		if res.Latency.Count != 0 || len(res.StatusCodes) != 0 || len(e.Samples) == 0 {
			t.Fatalf("latency %+v status %v samples %q", res.Latency, res.StatusCodes, e.Samples)
		}
	})

	t.Run("connection closed", func(t *testing.T) {
		// A server that accepts and closes without answering.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				buf := make([]byte, 512)
				_, _ = c.Read(buf)
				c.Close()
			}
		}()
		res := mustRun(t, bench.Config{URL: "http://" + ln.Addr().String(), Connections: 1, Requests: 5, Timeout: time.Second})
		if e := res.Errors; e.Connection != 5 || e.Total != 5 {
			t.Fatalf("errors %+v, want 5 connection errors", e)
		}
	})

	t.Run("malformed response", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				buf := make([]byte, 512)
				_, _ = c.Read(buf)
				_, _ = c.Write([]byte("this is not http\r\n\r\n"))
				c.Close()
			}
		}()
		res := mustRun(t, bench.Config{URL: "http://" + ln.Addr().String(), Connections: 1, Requests: 3, Timeout: time.Second})
		if e := res.Errors; e.Other != 3 || e.Total != 3 {
			t.Fatalf("errors %+v, want 3 other errors", e)
		}
	})
}

func TestBodyFileCycles(t *testing.T) {
	bodies, err := bench.LoadBodies(filepath.Join("testdata", "bodies.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		got = append(got, string(ctx.PostBody()))
		mu.Unlock()
		if string(ctx.Request.Header.ContentType()) != "application/json" || !ctx.IsPost() {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
		}
	})
	res := mustRun(t, bench.Config{URL: url, Bodies: bodies, Connections: 1, Requests: 7})
	if res.Errors.Total != 0 || res.Method != "POST" {
		t.Fatalf("errors %+v method %s", res.Errors, res.Method)
	}
	a, b, c := `{"user":"a","n":1}`, `{"user":"b","n":2}`, `{"user":"c","n":3}`
	want := []string{a, b, c, a, b, c, a}
	if !slices.Equal(got, want) {
		t.Fatalf("bodies sent:\n%q\nwant\n%q", got, want)
	}
}

func TestTemplateBodies(t *testing.T) {
	var mu sync.Mutex
	ids := map[int]bool{}
	var bad atomic.Int64
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		var v struct {
			ID int `json:"id"`
			N  int `json:"n"`
		}
		if err := json.Unmarshal(ctx.PostBody(), &v); err != nil || v.N < 1 || v.N > 5 {
			bad.Add(1)
			return
		}
		if string(ctx.Request.Header.Peek("X-Tenant")) != "t1" || string(ctx.Request.Header.ContentType()) != "application/json; v=2" {
			bad.Add(1)
		}
		mu.Lock()
		ids[v.ID] = true
		mu.Unlock()
	})
	res := mustRun(t, bench.Config{
		URL:         url,
		Method:      "put",
		Body:        `{"id":{{seq}},"n":{{ rand 1 5 }}}`,
		Headers:     []bench.Header{{Name: "X-Tenant", Value: "t1"}, {Name: "Content-Type", Value: "application/json; v=2"}},
		Connections: 3,
		Requests:    60,
	})
	if res.Errors.Total != 0 || bad.Load() != 0 || res.Method != "PUT" {
		t.Fatalf("errors %+v, bad bodies %d, method %s", res.Errors, bad.Load(), res.Method)
	}
	for i := range 60 {
		if !ids[i] {
			t.Fatalf("sequence number %d never sent; got %v", i, ids)
		}
	}
}

func TestInterrupt(t *testing.T) {
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := bench.Run(ctx, bench.Config{URL: url, Mode: bench.ModeOpen, Rate: 100, Connections: 2, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Generator.Unsent == 0 || res.Requests == 0 {
		t.Fatalf("interrupted %v requests %d generator %+v", res.Interrupted, res.Requests, res.Generator)
	}
}

func TestProgress(t *testing.T) {
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {})
	f := func(redraw bool, want string) {
		t.Helper()
		var buf syncBuffer
		mustRun(t, bench.Config{
			Name: "p", URL: url, Connections: 1, Duration: 350 * time.Millisecond,
			Progress: &buf, ProgressRedraw: redraw, ProgressInterval: 100 * time.Millisecond,
		})
		out := buf.String()
		if !strings.Contains(out, want) || !strings.Contains(out, "p: elapsed ") || !strings.Contains(out, "errors 0") {
			t.Fatalf("progress output %q lacks %q", out, want)
		}
	}
	f(true, "\r\033[K")
	f(false, "\n")
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestConfigValidate(t *testing.T) {
	f := func(cfg bench.Config, want string) {
		t.Helper()
		err := cfg.Validate()
		if want == "" {
			if err != nil {
				t.Fatalf("unexpected error: %s", err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one containing %q", err, want)
		}
	}
	u := "http://127.0.0.1:9/x"
	f(bench.Config{URL: u, Requests: 1}, "")
	f(bench.Config{URL: u, Mode: bench.ModeOpen, Rate: 10, Duration: time.Second}, "")
	f(bench.Config{URL: u}, "set a duration or a number of requests")
	f(bench.Config{URL: u, Mode: bench.ModeOpen, Requests: 1}, "open mode needs a rate")
	f(bench.Config{URL: u, Rate: 5, Requests: 1}, "a rate applies only to open mode")
	f(bench.Config{URL: u, Mode: "burst", Requests: 1}, `unknown mode "burst"`)
	f(bench.Config{URL: "ftp://127.0.0.1/x", Requests: 1}, "scheme must be http or https")
	f(bench.Config{URL: "http:///x", Requests: 1}, "missing host")
	f(bench.Config{URL: u, Requests: 1, Body: "{}", Bodies: [][]byte{[]byte("{}")}}, "not both")
	f(bench.Config{URL: u, Requests: 1, Body: "{{nope}}"}, "unknown placeholder")
	f(bench.Config{URL: u, Requests: 1, Connections: -1}, "connections must be positive")
	f(bench.Config{URL: u, Requests: -1}, "must not be negative")
	f(bench.Config{URL: u, Requests: 1, Headers: []bench.Header{{Name: "Bad Name", Value: "v"}}}, "invalid header")
	f(bench.Config{URL: u, Requests: 1, Timeout: time.Second, Deadline: 2 * time.Second}, "longer than the request timeout")
	f(bench.Config{URL: u, Requests: 1, Deadline: -time.Second}, "must not be negative")
}

func TestDeadlineCounts(t *testing.T) {
	// Of every 4 requests: one never answered (a timeout), one answered 500,
	// two answered 200. The deadline equals the timeout, so every answer
	// meets it and no timing is asserted.
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		n, _ := strconv.Atoi(string(ctx.PostBody()))
		switch n % 4 {
		case 0:
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		case 1:
			ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		}
	})
	res := mustRun(t, bench.Config{URL: url, Body: "{{seq}}", Connections: 4, Requests: 20,
		Timeout: time.Second, Deadline: time.Second})
	d := res.Deadline
	if d == nil {
		t.Fatal("no deadline counts")
	}
	if d.LimitMs != 1000 || d.Met != 10+5 || d.MetOK != 10 || d.Missed != 5 || d.Fraction() != 0.75 {
		t.Fatalf("deadline %+v, want 15 met, 10 ok, 5 missed", d)
	}
	if res.Errors.Timeout != 5 || res.Errors.Status != 5 {
		t.Fatalf("errors %+v", res.Errors)
	}
	var text strings.Builder
	if err := res.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "deadline    15 of 20 (75.00%) answered within 1.00s, 10 of them ok") {
		t.Fatalf("summary:\n%s", text.String())
	}

	// Without a deadline there are no counts.
	res = mustRun(t, bench.Config{URL: url, Body: "1", Connections: 1, Requests: 2})
	if res.Deadline != nil {
		t.Fatalf("deadline counts without a deadline: %+v", res.Deadline)
	}
}

func TestParseHeader(t *testing.T) {
	f := func(in string, want bench.Header, wantErr bool) {
		t.Helper()
		got, err := bench.ParseHeader(in)
		if (err != nil) != wantErr || got != want {
			t.Fatalf("ParseHeader(%q) = %+v, %v", in, got, err)
		}
	}
	f("X-Key: v", bench.Header{Name: "X-Key", Value: "v"}, false)
	f("Authorization:Bearer a:b", bench.Header{Name: "Authorization", Value: "Bearer a:b"}, false)
	f("nocolon", bench.Header{}, true)
	f(": v", bench.Header{}, true)
	f("A B: v", bench.Header{}, true)
}

func TestMerge(t *testing.T) {
	var n atomic.Int64
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1)%10 == 0 {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		}
	})
	cfg := bench.Config{URL: url, Mode: bench.ModeOpen, Rate: 500, Connections: 2, Timeout: time.Second, Deadline: time.Second}
	a, b := cfg, cfg
	a.Requests, b.Requests = 100, 50
	ra, rb := mustRun(t, a), mustRun(t, b)
	m, err := bench.Merge("lariat", ra, rb)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "lariat" || m.Requests != 150 || m.OK != ra.OK+rb.OK || m.Latency.Count != 150 || m.ServiceTime.Count != 150 {
		t.Fatalf("merged: requests %d ok %d latency %d", m.Requests, m.OK, m.Latency.Count)
	}
	if m.Errors.Status != 15 || m.StatusCodes["503"] != 15 || m.StatusCodes["200"] != 135 {
		t.Fatalf("merged errors %+v codes %v", m.Errors, m.StatusCodes)
	}
	if m.Deadline.Met+m.Deadline.Missed != 150 || m.Generator.Planned != 150 || m.RequestsLimit != 150 {
		t.Fatalf("merged deadline %+v generator %+v", m.Deadline, m.Generator)
	}
	if reqs, errs := timelineTotal(m); reqs != 150 || errs != 15 || len(m.Timeline) != len(ra.Timeline)+len(rb.Timeline) {
		t.Fatalf("merged timeline: %d requests, %d errors, %d seconds", reqs, errs, len(m.Timeline))
	}
	if m.ElapsedS != ra.ElapsedS+rb.ElapsedS || m.Latency.MaxMs != max(ra.Latency.MaxMs, rb.Latency.MaxMs) {
		t.Fatalf("merged elapsed %v max %v", m.ElapsedS, m.Latency.MaxMs)
	}
	if h, err := m.Latency.Histogram(); err != nil || h.TotalCount() != 150 {
		t.Fatalf("merged histogram: %v", err)
	}

	closed := mustRun(t, bench.Config{URL: url, Connections: 2, Requests: 5})
	if _, err := bench.Merge("x", ra, closed); err == nil || !strings.Contains(err.Error(), "not the same load") {
		t.Fatalf("merging different loads: %v", err)
	}
	if _, err := bench.Merge("x"); err == nil {
		t.Fatal("merging nothing succeeded")
	}
}

func TestConnsAreKeptAcrossRuns(t *testing.T) {
	var opened atomic.Int64
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {},
		ConnState: func(_ net.Conn, st fasthttp.ConnState) {
			if st == fasthttp.StateNew {
				opened.Add(1)
			}
		},
	}
	go srv.Serve(ln) //nolint:errcheck // ends at Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	url := "http://" + ln.Addr().String() + "/x"

	conns, err := bench.NewConns(url, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conns.Close()
	for i := 0; i < 3; i++ {
		res := mustRun(t, bench.Config{URL: url, Connections: 4, Requests: 40, Conns: conns})
		if res.OK != 40 {
			t.Fatalf("run %d: %d ok", i, res.OK)
		}
	}
	if n := opened.Load(); n < 1 || n > 4 {
		t.Fatalf("%d connections opened over three runs, want at most 4", n)
	}

	f := func(cfg bench.Config, want string) {
		t.Helper()
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one containing %q", err, want)
		}
	}
	f(bench.Config{URL: "http://127.0.0.1:1/x", Requests: 1, Conns: conns}, "the connection pool is for")
	f(bench.Config{URL: url, Requests: 1, Connections: 5, Conns: conns}, "fewer than the run's 5")
	if _, err := bench.NewConns("ftp://x", 1, nil); err == nil {
		t.Fatal("NewConns accepted an ftp URL")
	}
	if _, err := bench.NewConns(url, 0, nil); err == nil {
		t.Fatal("NewConns accepted a size of 0")
	}
}
