package gateway

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/valyala/fasthttp"
)

func TestTraceTreeForParallelTasks(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(t.Context())
	m1 := upstreamtest.Start(t, upstreamtest.JSON(`{"s":1}`))
	m2 := upstreamtest.Start(t, upstreamtest.JSON(`{"s":2}`))
	route := fmt.Sprintf(`
name: traced
endpoint: /traced
tasks:
  m1:
    type: http
    inputs: {address: %s}
    output: {path: response.body.m1}
  m2:
    type: http
    inputs: {address: %s}
    output: {path: response.body.m2}
`, m1.URL("/p"), m2.URL("/p"))
	tg := startGateway(t, map[string]string{"r.yaml": route}, nil, func(o *Options) { o.Env.Tracer = tp.Tracer("lariat") })
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if a := tg.post(t, "/traced", `{}`, "traceparent", parent); a.status != 200 {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("got %d spans, want 3 (route + 2 tasks)", len(spans))
	}
	var root tracetest.SpanStub
	for _, s := range spans {
		if s.Name == "route traced" {
			root = s
		}
	}
	if root.Name == "" || root.Parent.SpanID().String() != "00f067aa0ba902b7" || root.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("route span %+v does not continue the caller's trace", root)
	}
	seen := map[string]bool{}
	for _, s := range spans {
		if s.Name == root.Name {
			continue
		}
		if s.Parent.SpanID() != root.SpanContext.SpanID() {
			t.Fatalf("span %s is not a child of the route span", s.Name)
		}
		seen[s.Name] = true
		attrs := map[string]string{}
		for _, kv := range s.Attributes {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		if attrs["lariat.kind"] != "http" || attrs["http.response.status_code"] != "200" || attrs["lariat.retries"] != "0" || !strings.HasPrefix(attrs["server.address"], "127.0.0.1:") {
			t.Fatalf("span %s attributes %v", s.Name, attrs)
		}
	}
	if !seen["task m1"] || !seen["task m2"] {
		t.Fatalf("task spans %v", seen)
	}
	// Each upstream saw its own task span as parent, in the caller's trace.
	for _, up := range []*upstreamtest.Server{m1, m2} {
		tp := up.LastHeader("traceparent")
		if !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(tp, "00f067aa0ba902b7") {
			t.Fatalf("upstream traceparent %q", tp)
		}
	}
}

// TestBatchedCallsCarryTraceAndHeaders: micro-batched calls carry the
// propagated headers of their requests (requests with other values go in
// other batches), and with tracing on, each batched call has its own span
// linked to the span of every request it carries, whose context goes
// upstream.
func TestBatchedCallsCarryTraceAndHeaders(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(t.Context())
	features := upstreamtest.Start(t, featureEcho)
	model := startV2Fake(t, "/v2/models/ranker/infer")
	type call struct {
		tenant, traceParent string
		drivers             []float64
	}
	var mu sync.Mutex
	var calls []call
	model.mu.Lock()
	model.onCall = func(rc *fasthttp.RequestCtx, first []float64) {
		mu.Lock()
		calls = append(calls, call{string(rc.Request.Header.Peek("X-Tenant")), string(rc.Request.Header.Peek("traceparent")), first})
		mu.Unlock()
	}
	model.mu.Unlock()
	// A wide batching window, so that a busy machine still batches, and a
	// far deadline: a call waits for others unless its deadline is within
	// the window plus twice the recent call time, which a busy machine
	// stretches.
	route := strings.Replace(inferGatewayRoute("traced-batch", features.URL("/f"), model.URL(""), "      batch: {max_size: 64, max_wait: 1s}"),
		"timeout: 2s\n", "timeout: 30s\npropagate_headers: [X-Tenant]\n", 1)
	tg := startGateway(t, map[string]string{"b.yaml": route}, nil, func(o *Options) { o.Env.Tracer = tp.Tracer("lariat") })
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant, driver := "a", 1+i
			if i%2 == 1 {
				tenant, driver = "b", 100+i
			}
			if a := tg.post(t, "/traced-batch", fmt.Sprintf(`{"drivers":[%d]}`, driver), "X-Tenant", tenant); a.status != 200 || a.body != wantRanking(driver) {
				t.Errorf("answer %d %s", a.status, a.body)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(calls) == 0 || len(calls) >= 16 {
		t.Fatalf("%d model calls for 16 requests: want batching", len(calls))
	}
	taskSpans, batchSpans := map[string]bool{}, map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case "task rank":
			taskSpans[s.SpanContext.SpanID().String()] = true
		case "batch ranker":
			batchSpans[s.SpanContext.SpanID().String()] = s
		}
	}
	rows := 0
	for _, c := range calls {
		for _, d := range c.drivers {
			if (c.tenant == "a") != (d < 100) {
				t.Fatalf("a call with X-Tenant %q carried driver %v", c.tenant, d)
			}
		}
		rows += len(c.drivers)
		parts := strings.Split(c.traceParent, "-")
		if len(parts) != 4 {
			t.Fatalf("call traceparent %q", c.traceParent)
		}
		span, ok := batchSpans[parts[2]]
		if !ok {
			t.Fatalf("call traceparent %q is not a batch span", c.traceParent)
		}
		if len(span.Links) != len(c.drivers) {
			t.Fatalf("batch span of %d requests has %d links", len(c.drivers), len(span.Links))
		}
		for _, l := range span.Links {
			if !taskSpans[l.SpanContext.SpanID().String()] {
				t.Fatalf("batch span links to %s, not a task span", l.SpanContext.SpanID())
			}
		}
	}
	if rows != 16 {
		t.Fatalf("model saw %d rows, want 16", rows)
	}
}
