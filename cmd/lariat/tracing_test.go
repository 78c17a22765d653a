package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// exportedResource runs the tracer of the serve command against an OTLP/HTTP
// receiver on 127.0.0.1, ends one span, and returns the resource attributes
// the receiver got with it.
func exportedResource(t *testing.T) map[string]string {
	t.Helper()
	got := make(chan *coltrace.ExportTraceServiceRequest, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "want an OTLP trace export", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		select {
		case got <- &req:
		default:
		}
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	f := tracingFlags{exporter: "otlp-http", ratio: 1}
	tracer, stop, err := f.tracer("lariat")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tracer.Start(context.Background(), "route")
	span.End()
	stop() // flushes the batch
	select {
	case req := <-got:
		attrs := map[string]string{}
		for _, rs := range req.ResourceSpans {
			for _, kv := range rs.Resource.Attributes {
				attrs[kv.Key] = kv.Value.GetStringValue()
			}
		}
		return attrs
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver got no spans")
		return nil
	}
}

func TestTracingResourceFromEnvironment(t *testing.T) {
	f := func(serviceName, resourceAttrs string, want map[string]string) {
		t.Helper()
		t.Setenv("OTEL_SERVICE_NAME", serviceName)
		t.Setenv("OTEL_RESOURCE_ATTRIBUTES", resourceAttrs)
		got := exportedResource(t)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("OTEL_SERVICE_NAME=%q OTEL_RESOURCE_ATTRIBUTES=%q: %s = %q, want %q (all: %v)", serviceName, resourceAttrs, k, got[k], v, got)
			}
		}
	}
	f("", "", map[string]string{"service.name": "lariat", "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "go"})
	f("checkout-gateway", "", map[string]string{"service.name": "checkout-gateway"})
	f("", "service.name=from-attrs,deployment.environment.name=staging,service.namespace=ml",
		map[string]string{"service.name": "from-attrs", "deployment.environment.name": "staging", "service.namespace": "ml"})
	// OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
	f("checkout-gateway", "service.name=from-attrs,k8s.pod.name=lariat-0",
		map[string]string{"service.name": "checkout-gateway", "k8s.pod.name": "lariat-0"})
}

func TestTracingResourceRejectsBadAttributes(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign")
	f := tracingFlags{exporter: "otlp-http", ratio: 1}
	_, _, err := f.tracer("lariat")
	if err == nil || !strings.Contains(err.Error(), "OTEL_RESOURCE_ATTRIBUTES") {
		t.Fatalf("got %v, want an error naming OTEL_RESOURCE_ATTRIBUTES", err)
	}
}
