package otlp

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// recordSpans ends a small trace (a server span with a client child that
// has an event, a link and an error status) and returns it.
func recordSpans(t *testing.T) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	res := resource.NewSchemaless(attribute.String("service.name", "lariat-test"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res))
	tr := tp.Tracer("github.com/lariat-gw/lariat", trace.WithInstrumentationVersion("1.2.3"))
	link := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}, TraceFlags: 1, Remote: true})
	ctx, root := tr.Start(context.Background(), "route r", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tr.Start(ctx, "task m", trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(trace.Link{SpanContext: link}),
		trace.WithAttributes(attribute.String("s", "v"), attribute.Int("i", 7), attribute.Float64("f", 0.5), attribute.Bool("b", true), attribute.StringSlice("ss", []string{"x", "y"})))
	child.AddEvent("retry", trace.WithAttributes(attribute.Int("attempt", 2)))
	child.SetStatus(codes.Error, "upstream timed out")
	child.End()
	root.SetStatus(codes.Ok, "")
	root.End()
	return rec.Ended()
}

// checkExport checks that req holds the spans of recordSpans.
func checkExport(t *testing.T, req *coltrace.ExportTraceServiceRequest, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	if len(req.ResourceSpans) != 1 || len(req.ResourceSpans[0].ScopeSpans) != 1 {
		t.Fatalf("want one resource and one scope, got %v", req)
	}
	rs := req.ResourceSpans[0]
	if kv := rs.Resource.Attributes; len(kv) != 1 || kv[0].Key != "service.name" || kv[0].Value.GetStringValue() != "lariat-test" {
		t.Fatalf("resource %v", kv)
	}
	ss := rs.ScopeSpans[0]
	if ss.Scope.Name != "github.com/lariat-gw/lariat" || ss.Scope.Version != "1.2.3" || len(ss.Spans) != 2 {
		t.Fatalf("scope %v with %d spans", ss.Scope, len(ss.Spans))
	}
	byName := map[string]*tracepb.Span{}
	for _, s := range ss.Spans {
		byName[s.Name] = s
	}
	root, child := byName["route r"], byName["task m"]
	if root == nil || child == nil {
		t.Fatalf("spans %v", byName)
	}
	want := spans[0].SpanContext() // the child ended first
	if tid := want.TraceID(); string(child.TraceId) != string(tid[:]) || string(child.ParentSpanId) != string(root.SpanId) {
		t.Fatalf("child ids %x parent %x, want trace %s under %x", child.TraceId, child.ParentSpanId, tid, root.SpanId)
	}
	if root.Kind != tracepb.Span_SPAN_KIND_SERVER || child.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Fatalf("kinds %v %v", root.Kind, child.Kind)
	}
	if root.Status.Code != tracepb.Status_STATUS_CODE_OK || child.Status.Code != tracepb.Status_STATUS_CODE_ERROR || child.Status.Message != "upstream timed out" {
		t.Fatalf("statuses %v %v", root.Status, child.Status)
	}
	if child.StartTimeUnixNano == 0 || child.EndTimeUnixNano < child.StartTimeUnixNano {
		t.Fatalf("times %d %d", child.StartTimeUnixNano, child.EndTimeUnixNano)
	}
	attrs := map[string]string{}
	for _, kv := range child.Attributes {
		attrs[kv.Key] = kv.Value.String()
	}
	if len(attrs) != 5 || child.Attributes[1].Value.GetIntValue() != 7 || child.Attributes[2].Value.GetDoubleValue() != 0.5 ||
		!child.Attributes[3].Value.GetBoolValue() || len(child.Attributes[4].Value.GetArrayValue().GetValues()) != 2 {
		t.Fatalf("attributes %v", child.Attributes)
	}
	if len(child.Events) != 1 || child.Events[0].Name != "retry" || child.Events[0].Attributes[0].Value.GetIntValue() != 2 {
		t.Fatalf("events %v", child.Events)
	}
	if len(child.Links) != 1 || child.Links[0].TraceId[0] != 9 || child.Links[0].SpanId[0] != 8 || child.Links[0].Flags&0x301 != 0x301 {
		t.Fatalf("links %v", child.Links)
	}
}

// TestExportHTTP posts to an OTLP/HTTP receiver on 127.0.0.1, with the
// headers and gzip compression the environment asks for.
func TestExportHTTP(t *testing.T) {
	got := make(chan *coltrace.ExportTraceServiceRequest, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("Authorization") != "Bearer s3cret" || r.Header.Get("Content-Encoding") != "gzip" {
			http.Error(w, "unexpected request "+r.URL.Path, http.StatusBadRequest)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(zr)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- &req
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20s3cret")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	cfg, err := FromEnv(HTTPProtobuf)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	spans := recordSpans(t)
	if err := exp.ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	checkExport(t, <-got, spans)
	// A receiver that refuses is an error for the SDK to report.
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	})
	if err := exp.ExportSpans(context.Background(), spans); err == nil {
		t.Fatal("export to a refusing receiver succeeded")
	}
}

// traceService is a real gRPC OTLP receiver.
type traceService struct {
	coltrace.UnimplementedTraceServiceServer
	got  chan *coltrace.ExportTraceServiceRequest
	fail bool
}

func (s *traceService) Export(ctx context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	if s.fail {
		return nil, status.Error(grpccodes.Unavailable, "collector restarting")
	}
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("x-tenant")) != 1 || md.Get("x-tenant")[0] != "ml" {
		return nil, status.Error(grpccodes.Unauthenticated, "no x-tenant")
	}
	s.got <- req
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// TestExportGRPC exports to a gRPC OTLP receiver (grpc-go, plaintext
// HTTP/2) on 127.0.0.1, and reports its errors.
func TestExportGRPC(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &traceService{got: make(chan *coltrace.ExportTraceServiceRequest, 1)}
	gs := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(gs, svc)
	go gs.Serve(ln)
	defer gs.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=ml")
	cfg, err := FromEnv(GRPC)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "http://"+ln.Addr().String() {
		t.Fatalf("URL %s", cfg.URL)
	}
	exp, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	spans := recordSpans(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := exp.ExportSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	checkExport(t, <-svc.got, spans)
	svc.fail = true
	if err := exp.ExportSpans(ctx, spans); err == nil || !strings.Contains(err.Error(), "collector restarting") {
		t.Fatalf("export to a failing receiver: %v", err)
	}
}

// TestFromEnv reads endpoints the way the OpenTelemetry SDKs do.
func TestFromEnv(t *testing.T) {
	f := func(p Protocol, env map[string]string, wantURL string) {
		t.Helper()
		for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_INSECURE"} {
			t.Setenv(k, env[k])
		}
		c, err := FromEnv(p)
		if err != nil || c.URL != wantURL {
			t.Fatalf("%v %v: URL %q, %v; want %q", p, env, c.URL, err, wantURL)
		}
	}
	f(HTTPProtobuf, nil, "http://localhost:4318/v1/traces")
	f(GRPC, nil, "http://localhost:4317")
	f(HTTPProtobuf, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example:4318/"}, "https://otel.example:4318/v1/traces")
	f(HTTPProtobuf, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:9999/custom"}, "http://c:9999/custom")
	f(GRPC, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "https://collector:4317")
	f(GRPC, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_INSECURE": "true"}, "http://collector:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "novalue")
	if _, err := FromEnv(HTTPProtobuf); err == nil {
		t.Fatal("bad headers accepted")
	}
}
