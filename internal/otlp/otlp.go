// Package otlp exports OpenTelemetry trace spans to a collector over OTLP:
// HTTP with protobuf bodies (the default, port 4318) or gRPC (port 4317),
// configured by the standard OTEL_EXPORTER_OTLP_* variables.
//
// It exists to keep the gateway binary small: the OpenTelemetry OTLP
// exporters link gRPC, which links golang.org/x/net/trace and through it
// html/template, whose use of reflect.Value.MethodByName turns off the
// linker's dead-method elimination for the whole binary (about 25 MB of
// 41 MB). This package speaks the same protocol with the standard
// library's HTTP client (HTTP/2, with or without TLS, for gRPC) and the
// OTLP message types, which do not link gRPC.
package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Protocol is an OTLP transport.
type Protocol string

// The protocols an Exporter speaks.
const (
	HTTPProtobuf Protocol = "http/protobuf"
	GRPC         Protocol = "grpc"
)

// grpcExportPath is the gRPC method of the trace service.
const grpcExportPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// Config says where and how spans are sent. FromEnv fills it from the
// standard variables.
type Config struct {
	Protocol Protocol
	// URL is the full URL posted to: for HTTP it ends in /v1/traces, for
	// gRPC it is the collector's base URL.
	URL string
	// Headers are sent with every export.
	Headers map[string]string
	// Timeout bounds one export.
	Timeout time.Duration
	// Gzip compresses the bodies.
	Gzip bool
	// CAFile, when set, holds the PEM certificates that verify the
	// collector instead of the system's.
	CAFile string
}

// FromEnv reads the OTEL_EXPORTER_OTLP_* variables (the TRACES_ forms
// win) for protocol p.
func FromEnv(p Protocol) (Config, error) {
	c := Config{Protocol: p, Timeout: 10 * time.Second, Headers: map[string]string{}}
	get := func(name string) string {
		if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
			return v
		}
		return os.Getenv("OTEL_EXPORTER_OTLP_" + name)
	}
	insecure := strings.EqualFold(get("INSECURE"), "true")
	switch endpoint := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); {
	case endpoint != "":
		// A signal-specific endpoint is used as it is (for HTTP).
		c.URL = withScheme(endpoint, insecure || p == HTTPProtobuf)
	case os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "":
		c.URL = withScheme(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), insecure || p == HTTPProtobuf)
		if p == HTTPProtobuf {
			c.URL = strings.TrimSuffix(c.URL, "/") + "/v1/traces"
		}
	case p == GRPC:
		c.URL = "http://localhost:4317"
	default:
		c.URL = "http://localhost:4318/v1/traces"
	}
	if _, err := url.ParseRequestURI(c.URL); err != nil {
		return c, fmt.Errorf("invalid OTLP endpoint %q: %w", c.URL, err)
	}
	if h := get("HEADERS"); h != "" {
		for _, kv := range strings.Split(h, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return c, fmt.Errorf("invalid OTEL_EXPORTER_OTLP_HEADERS entry %q: want key=value", kv)
			}
			dv, err := url.QueryUnescape(strings.TrimSpace(v))
			if err != nil {
				return c, fmt.Errorf("invalid OTEL_EXPORTER_OTLP_HEADERS value of %q: %w", k, err)
			}
			c.Headers[strings.TrimSpace(k)] = dv
		}
	}
	if t := get("TIMEOUT"); t != "" {
		ms, err := strconv.Atoi(t)
		if err != nil || ms <= 0 {
			return c, fmt.Errorf("invalid OTEL_EXPORTER_OTLP_TIMEOUT %q: want milliseconds", t)
		}
		c.Timeout = time.Duration(ms) * time.Millisecond
	}
	switch comp := get("COMPRESSION"); comp {
	case "", "none":
	case "gzip":
		c.Gzip = true
	default:
		return c, fmt.Errorf("unsupported OTEL_EXPORTER_OTLP_COMPRESSION %q: want gzip or none", comp)
	}
	c.CAFile = get("CERTIFICATE")
	return c, nil
}

// withScheme adds a scheme to an endpoint given as host:port.
func withScheme(endpoint string, plain bool) string {
	if strings.Contains(endpoint, "://") {
		return endpoint
	}
	if plain {
		return "http://" + endpoint
	}
	return "https://" + endpoint
}

// Exporter sends spans to a collector. It implements
// sdktrace.SpanExporter.
type Exporter struct {
	c      Config
	client *http.Client

	mu      sync.Mutex
	stopped bool
}

var _ sdktrace.SpanExporter = (*Exporter)(nil)

// New returns an exporter for c.
func New(c Config) (*Exporter, error) {
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read OTEL_EXPORTER_OTLP_CERTIFICATE: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE %s holds no PEM certificate", c.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	if c.Protocol == GRPC {
		// gRPC needs HTTP/2, also without TLS (h2c).
		var p http.Protocols
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	return &Exporter{c: c, client: &http.Client{Transport: tr, Timeout: c.Timeout}}, nil
}

// ExportSpans sends spans in one request.
func (e *Exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	stopped := e.stopped
	e.mu.Unlock()
	if stopped || len(spans) == 0 {
		return nil
	}
	msg, err := exportRequest(spans)
	if err != nil {
		return err
	}
	if e.c.Protocol == GRPC {
		return e.sendGRPC(ctx, msg)
	}
	return e.sendHTTP(ctx, msg)
}

// Shutdown stops the exporter; later exports do nothing.
func (e *Exporter) Shutdown(context.Context) error {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.client.CloseIdleConnections()
	return nil
}

func (e *Exporter) sendHTTP(ctx context.Context, msg []byte) error {
	body, encoding, err := e.compress(msg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.c.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("otlp: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	e.setHeaders(req)
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("otlp: cannot export spans to %s: %w", e.c.URL, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("otlp: %s answered %d: %s", e.c.URL, resp.StatusCode, bytes.TrimSpace(text))
	}
	return nil
}

func (e *Exporter) sendGRPC(ctx context.Context, msg []byte) error {
	body, encoding, err := e.compress(msg)
	if err != nil {
		return err
	}
	// A gRPC message: a compressed flag, a big-endian length, the message.
	frame := make([]byte, 5, 5+len(body))
	if encoding != "" {
		frame[0] = 1
	}
	binary.BigEndian.PutUint32(frame[1:], uint32(len(body)))
	frame = append(frame, body...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(e.c.URL, "/")+grpcExportPath, bytes.NewReader(frame))
	if err != nil {
		return fmt.Errorf("otlp: %w", err)
	}
	req.Header.Set("Content-Type", "application/grpc+proto")
	req.Header.Set("TE", "trailers")
	if encoding != "" {
		req.Header.Set("Grpc-Encoding", encoding)
	}
	req.Header.Set("Grpc-Timeout", strconv.FormatInt(e.c.Timeout.Milliseconds(), 10)+"m")
	e.setHeaders(req)
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("otlp: cannot export spans to %s: %w", e.c.URL, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("otlp: %s answered HTTP %d", e.c.URL, resp.StatusCode)
	}
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" {
		status = resp.Header.Get("Grpc-Status")
	}
	if status != "0" {
		msg := resp.Trailer.Get("Grpc-Message")
		if msg == "" {
			msg = resp.Header.Get("Grpc-Message")
		}
		return fmt.Errorf("otlp: %s answered gRPC status %q: %s", e.c.URL, status, msg)
	}
	return nil
}

func (e *Exporter) setHeaders(req *http.Request) {
	req.Header.Set("User-Agent", "lariat-otlp")
	for k, v := range e.c.Headers {
		req.Header.Set(k, v)
	}
}

func (e *Exporter) compress(msg []byte) ([]byte, string, error) {
	if !e.c.Gzip {
		return msg, "", nil
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(msg); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return b.Bytes(), "gzip", nil
}

// exportRequest encodes an ExportTraceServiceRequest: field 1 repeated,
// one ResourceSpans per resource.
func exportRequest(spans []sdktrace.ReadOnlySpan) ([]byte, error) {
	var out []byte
	for _, rs := range resourceSpans(spans) {
		b, err := proto.Marshal(rs)
		if err != nil {
			return nil, fmt.Errorf("otlp: cannot encode spans: %w", err)
		}
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, b)
	}
	return out, nil
}

// resourceSpans groups spans by resource and instrumentation scope.
func resourceSpans(spans []sdktrace.ReadOnlySpan) []*tracepb.ResourceSpans {
	type scopeKey struct {
		res   attribute.Distinct
		name  string
		vers  string
		schem string
	}
	var out []*tracepb.ResourceSpans
	byRes := map[attribute.Distinct]*tracepb.ResourceSpans{}
	byScope := map[scopeKey]*tracepb.ScopeSpans{}
	for _, s := range spans {
		res := s.Resource()
		var rk attribute.Distinct
		if res != nil {
			rk = res.Equivalent()
		}
		rs := byRes[rk]
		if rs == nil {
			rs = &tracepb.ResourceSpans{Resource: &resourcepb.Resource{}}
			if res != nil {
				rs.Resource.Attributes = keyValues(res.Attributes())
				rs.SchemaUrl = res.SchemaURL()
			}
			byRes[rk] = rs
			out = append(out, rs)
		}
		is := s.InstrumentationScope()
		sk := scopeKey{rk, is.Name, is.Version, is.SchemaURL}
		ss := byScope[sk]
		if ss == nil {
			ss = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: is.Name, Version: is.Version}, SchemaUrl: is.SchemaURL}
			byScope[sk] = ss
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, span(s))
	}
	return out
}

func span(s sdktrace.ReadOnlySpan) *tracepb.Span {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	p := &tracepb.Span{
		TraceId:                tid[:],
		SpanId:                 sid[:],
		TraceState:             sc.TraceState().String(),
		Name:                   s.Name(),
		Kind:                   tracepb.Span_SpanKind(kind(s.SpanKind())),
		StartTimeUnixNano:      uint64(s.StartTime().UnixNano()),
		EndTimeUnixNano:        uint64(s.EndTime().UnixNano()),
		Attributes:             keyValues(s.Attributes()),
		DroppedAttributesCount: uint32(s.DroppedAttributes()),
		DroppedEventsCount:     uint32(s.DroppedEvents()),
		DroppedLinksCount:      uint32(s.DroppedLinks()),
		Flags:                  uint32(sc.TraceFlags()) | 0x100, // has the parent's remote flag
		Status:                 &tracepb.Status{Code: statusCode(s.Status().Code), Message: s.Status().Description},
	}
	if parent := s.Parent(); parent.IsValid() {
		psid := parent.SpanID()
		p.ParentSpanId = psid[:]
		if parent.IsRemote() {
			p.Flags |= 0x200
		}
	}
	for _, ev := range s.Events() {
		p.Events = append(p.Events, &tracepb.Span_Event{
			TimeUnixNano:           uint64(ev.Time.UnixNano()),
			Name:                   ev.Name,
			Attributes:             keyValues(ev.Attributes),
			DroppedAttributesCount: uint32(ev.DroppedAttributeCount),
		})
	}
	for _, l := range s.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		p.Links = append(p.Links, &tracepb.Span_Link{
			TraceId:                ltid[:],
			SpanId:                 lsid[:],
			TraceState:             l.SpanContext.TraceState().String(),
			Attributes:             keyValues(l.Attributes),
			DroppedAttributesCount: uint32(l.DroppedAttributeCount),
			Flags:                  linkFlags(l.SpanContext),
		})
	}
	return p
}

// linkFlags are a linked span context's trace flags and whether it is
// remote.
func linkFlags(sc trace.SpanContext) uint32 {
	f := uint32(sc.TraceFlags()) | 0x100
	if sc.IsRemote() {
		f |= 0x200
	}
	return f
}

// kind maps a span kind to OTLP's numbering (the same but for unset).
func kind(k trace.SpanKind) int32 {
	switch k {
	case trace.SpanKindInternal, trace.SpanKindServer, trace.SpanKindClient, trace.SpanKindProducer, trace.SpanKindConsumer:
		return int32(k)
	}
	return int32(trace.SpanKindInternal)
}

// statusCode maps a span status to OTLP's (whose Ok and Error are swapped
// relative to the API's).
func statusCode(c codes.Code) tracepb.Status_StatusCode {
	switch c {
	case codes.Ok:
		return tracepb.Status_STATUS_CODE_OK
	case codes.Error:
		return tracepb.Status_STATUS_CODE_ERROR
	}
	return tracepb.Status_STATUS_CODE_UNSET
}

func keyValues(attrs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, 0, len(attrs))
	for _, kv := range attrs {
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: anyValue(kv.Value)})
	}
	return out
}

func anyValue(v attribute.Value) *commonpb.AnyValue {
	switch v.Type() {
	case attribute.BOOL:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}}
	case attribute.INT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}}
	case attribute.FLOAT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}}
	case attribute.STRING:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v.AsString()}}
	case attribute.BOOLSLICE:
		return array(v.AsBoolSlice(), func(b bool) *commonpb.AnyValue { return anyValue(attribute.BoolValue(b)) })
	case attribute.INT64SLICE:
		return array(v.AsInt64Slice(), func(i int64) *commonpb.AnyValue { return anyValue(attribute.Int64Value(i)) })
	case attribute.FLOAT64SLICE:
		return array(v.AsFloat64Slice(), func(f float64) *commonpb.AnyValue { return anyValue(attribute.Float64Value(f)) })
	case attribute.STRINGSLICE:
		return array(v.AsStringSlice(), func(s string) *commonpb.AnyValue { return anyValue(attribute.StringValue(s)) })
	}
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v.Emit()}}
}

func array[T any](vs []T, f func(T) *commonpb.AnyValue) *commonpb.AnyValue {
	arr := &commonpb.ArrayValue{Values: make([]*commonpb.AnyValue, len(vs))}
	for i, v := range vs {
		arr.Values[i] = f(v)
	}
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: arr}}
}
