package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/lariat-gw/lariat/internal/otlp"
)

// tracingFlags configure OpenTelemetry tracing. Tracing is off unless an
// exporter is chosen; the exporters read the standard OTEL_EXPORTER_OTLP_*
// variables (endpoint, headers, TLS, timeout), and the resource
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
type tracingFlags struct {
	exporter string
	ratio    float64
}

func (f *tracingFlags) register(fs *flag.FlagSet) {
	exp := "none"
	if os.Getenv("OTEL_TRACES_EXPORTER") == "otlp" {
		exp = "otlp-http"
		if os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc" {
			exp = "otlp-grpc"
		}
	}
	ratio := 1.0
	if v, err := strconv.ParseFloat(os.Getenv("OTEL_TRACES_SAMPLER_ARG"), 64); err == nil {
		ratio = v
	}
	fs.StringVar(&f.exporter, "otel-exporter", exp, "trace exporter: none, otlp-http or otlp-grpc (endpoint from OTEL_EXPORTER_OTLP_ENDPOINT; default from OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_PROTOCOL)")
	fs.Float64Var(&f.ratio, "otel-sample-ratio", ratio, "share of new traces sampled, 0..1; requests with a sampled parent are always traced (default from OTEL_TRACES_SAMPLER_ARG)")
}

// tracer returns the tracer to give the gateway (nil when tracing is off)
// and a function that flushes and stops the exporter.
func (f *tracingFlags) tracer(service string) (trace.Tracer, func(), error) {
	switch f.exporter {
	case "", "none":
		return nil, func() {}, nil
	case "otlp-http", "otlp-grpc":
	default:
		return nil, nil, fmt.Errorf("unknown --otel-exporter %q: want none, otlp-http or otlp-grpc", f.exporter)
	}
	if f.ratio < 0 || f.ratio > 1 {
		return nil, nil, fmt.Errorf("--otel-sample-ratio %v is not within 0..1", f.ratio)
	}
	ctx := context.Background()
	res, err := newResource(ctx, service)
	if err != nil {
		return nil, nil, err
	}
	proto := otlp.HTTPProtobuf
	if f.exporter == "otlp-grpc" {
		proto = otlp.GRPC
	}
	cfg, err := otlp.FromEnv(proto)
	if err != nil {
		return nil, nil, err
	}
	exp, err := otlp.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot create trace exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(f.ratio))),
	)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return tp.Tracer("github.com/lariat-gw/lariat"), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
	}, nil
}

// newResource describes this process to the trace backend: service.name is
// service unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES (read by the
// SDK's own detector, which wins) set it, plus the SDK's name and version.
func newResource(ctx context.Context, service string) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("cannot read the OpenTelemetry resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	return res, nil
}
