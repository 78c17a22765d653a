package gateway

import (
	"fmt"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
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
