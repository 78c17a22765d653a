package router

import (
	"context"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/lariat-gw/lariat/tasks"
)

// Tracing (when the Env has a Tracer) adds one span per request, read from
// the incoming W3C trace context, and one child span per task, whose
// context is what the task propagates upstream. With no Tracer none of
// this runs.

var traceContext = propagation.TraceContext{}

// headerCarrier reads W3C trace-context headers from a fasthttp request.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(key string) string { return string(c.h.Peek(key)) }
func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }
func (c headerCarrier) Keys() []string        { return []string{"traceparent", "tracestate"} }

// startRequestSpan starts the route span of a request.
func (e *exec) startRequestSpan(rc *fasthttp.RequestCtx) {
	tr := e.p.tracer
	ctx := traceContext.Extract(context.Background(), headerCarrier{&rc.Request.Header})
	e.spanCtx, e.span = tr.Start(ctx, "route "+e.p.name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("lariat.route", e.p.name),
			attribute.String("http.route", e.p.Endpoint()),
			attribute.String("lariat.route_version", e.p.Route.Hash),
		))
}

// endRequestSpan ends the route span with the answer's status.
func (e *exec) endRequestSpan(status int, err error) {
	e.span.SetAttributes(attribute.Int("http.response.status_code", status))
	if len(e.incomplete) > 0 {
		e.span.SetAttributes(attribute.Int("lariat.incomplete_tasks", len(e.incomplete)))
	}
	if err != nil {
		e.span.RecordError(err)
		e.span.SetStatus(codes.Error, err.Error())
	}
	e.span.End()
}

// startTaskSpan starts task i's span and points the task's propagated
// trace context at it.
func (e *exec) startTaskSpan(i int, r *tasks.Result) trace.Span {
	n := &e.p.nodes[i]
	_, span := e.p.tracer.Start(e.spanCtx, "task "+n.name,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("lariat.route", e.p.name),
			attribute.String("lariat.task", n.name),
			attribute.String("lariat.kind", n.kind),
		))
	sc := span.SpanContext()
	r.TraceParent = tasks.AppendTraceParent(r.TraceParent[:0], sc)
	return span
}

// endTaskSpan records the task's outcome.
func endTaskSpan(span trace.Span, r *tasks.Result) {
	attrs := []attribute.KeyValue{attribute.Int("lariat.attempts", r.Attempts), attribute.Int("lariat.retries", max(r.Attempts-1, 0))}
	if r.Status != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", r.Status))
	}
	if r.Upstream != "" {
		attrs = append(attrs, attribute.String("server.address", r.Upstream))
	}
	if r.Model != "" {
		attrs = append(attrs, attribute.String("lariat.model_version", r.Model))
	}
	span.SetAttributes(attrs...)
	if r.Err != nil {
		span.RecordError(r.Err)
		span.SetStatus(codes.Error, r.Err.Error())
	}
	span.End()
}
