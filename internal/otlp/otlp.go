// Package otlp exports OpenTelemetry trace spans to a collector over OTLP:
// HTTP with protobuf bodies (the default, port 4318) or gRPC (port 4317),
// configured by the standard OTEL_EXPORTER_OTLP_* variables.
//
// It exists to keep the gateway binary small: the OpenTelemetry OTLP
// exporters link gRPC, which links golang.org/x/net/trace and through it
// html/template, whose use of reflect.Value.MethodByName turns off the
// linker's dead-method elimination for the whole binary (about 25 MB of
// 41 MB). This package speaks the same protocol with the standard
// library's HTTP client (HTTP/2, with or without TLS, for gRPC) and
// encodes the OTLP messages with protowire: the generated OTLP message
// types would link the protobuf runtime, whose descriptor formatting calls
// MethodByName too.
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
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
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
	msg := exportRequest(spans)
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

// The OTLP messages are encoded with protowire, field by field as
// opentelemetry-proto defines them: the generated message types register
// their descriptors with the protobuf runtime, which formats descriptors
// with reflect.Value.MethodByName and so turns off the linker's dead-method
// elimination for the whole binary. Fields holding their zero value are
// left out, as protobuf does.

// Field numbers of the messages encoded.
const (
	fExportResourceSpans = 1 // ExportTraceServiceRequest.resource_spans

	fResourceSpansResource   = 1
	fResourceSpansScopeSpans = 2
	fResourceSpansSchemaURL  = 3

	fResourceAttributes = 1

	fScopeSpansScope     = 1
	fScopeSpansSpans     = 2
	fScopeSpansSchemaURL = 3

	fScopeName    = 1
	fScopeVersion = 2

	fSpanTraceID           = 1
	fSpanSpanID            = 2
	fSpanTraceState        = 3
	fSpanParentSpanID      = 4
	fSpanName              = 5
	fSpanKind              = 6
	fSpanStartTime         = 7
	fSpanEndTime           = 8
	fSpanAttributes        = 9
	fSpanDroppedAttributes = 10
	fSpanEvents            = 11
	fSpanDroppedEvents     = 12
	fSpanLinks             = 13
	fSpanDroppedLinks      = 14
	fSpanStatus            = 15
	fSpanFlags             = 16

	fEventTime              = 1
	fEventName              = 2
	fEventAttributes        = 3
	fEventDroppedAttributes = 4

	fLinkTraceID           = 1
	fLinkSpanID            = 2
	fLinkTraceState        = 3
	fLinkAttributes        = 4
	fLinkDroppedAttributes = 5
	fLinkFlags             = 6

	fStatusMessage = 2
	fStatusCode    = 3

	fKeyValueKey   = 1
	fKeyValueValue = 2

	fAnyString = 1
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyDouble = 4
	fAnyArray  = 5

	fArrayValues = 1
)

// Enum values of Status.code.
const (
	statusUnset = 0
	statusOK    = 1
	statusError = 2
)

// exportRequest encodes an ExportTraceServiceRequest: one ResourceSpans per
// resource, one ScopeSpans per instrumentation scope within it, in the
// order the spans come.
func exportRequest(spans []sdktrace.ReadOnlySpan) []byte {
	type scopeGroup struct {
		scope instrumentation.Scope
		spans []sdktrace.ReadOnlySpan
	}
	type resourceGroup struct {
		res    *resource.Resource
		scopes []*scopeGroup
	}
	type scopeKey struct {
		res   attribute.Distinct
		scope instrumentation.Scope
	}
	var groups []*resourceGroup
	byRes := map[attribute.Distinct]*resourceGroup{}
	byScope := map[scopeKey]*scopeGroup{}
	for _, s := range spans {
		res := s.Resource()
		var rk attribute.Distinct
		if res != nil {
			rk = res.Equivalent()
		}
		rg := byRes[rk]
		if rg == nil {
			rg = &resourceGroup{res: res}
			byRes[rk] = rg
			groups = append(groups, rg)
		}
		is := s.InstrumentationScope()
		sk := scopeKey{rk, instrumentation.Scope{Name: is.Name, Version: is.Version, SchemaURL: is.SchemaURL}}
		sg := byScope[sk]
		if sg == nil {
			sg = &scopeGroup{scope: sk.scope}
			byScope[sk] = sg
			rg.scopes = append(rg.scopes, sg)
		}
		sg.spans = append(sg.spans, s)
	}
	var out, rs, sc, buf []byte
	for _, rg := range groups {
		rs = rs[:0]
		buf = buf[:0]
		if rg.res != nil {
			buf = appendKeyValues(buf, fResourceAttributes, rg.res.Attributes())
		}
		rs = appendMessage(rs, fResourceSpansResource, buf) // present even when empty
		for _, sg := range rg.scopes {
			sc = sc[:0]
			buf = appendString(buf[:0], fScopeName, sg.scope.Name)
			buf = appendString(buf, fScopeVersion, sg.scope.Version)
			sc = appendMessage(sc, fScopeSpansScope, buf)
			for _, s := range sg.spans {
				buf = appendSpan(buf[:0], s)
				sc = appendMessage(sc, fScopeSpansSpans, buf)
			}
			sc = appendString(sc, fScopeSpansSchemaURL, sg.scope.SchemaURL)
			rs = appendMessage(rs, fResourceSpansScopeSpans, sc)
		}
		if rg.res != nil {
			rs = appendString(rs, fResourceSpansSchemaURL, rg.res.SchemaURL())
		}
		out = appendMessage(out, fExportResourceSpans, rs)
	}
	return out
}

// appendSpan appends the fields of a Span.
func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, fSpanTraceID, tid[:])
	b = appendBytes(b, fSpanSpanID, sid[:])
	b = appendString(b, fSpanTraceState, sc.TraceState().String())
	flags := uint32(sc.TraceFlags()) | 0x100 // has the parent's remote flag
	if parent := s.Parent(); parent.IsValid() {
		psid := parent.SpanID()
		b = appendBytes(b, fSpanParentSpanID, psid[:])
		if parent.IsRemote() {
			flags |= 0x200
		}
	}
	b = appendString(b, fSpanName, s.Name())
	b = appendVarint(b, fSpanKind, uint64(kind(s.SpanKind())))
	b = appendFixed64(b, fSpanStartTime, uint64(s.StartTime().UnixNano()))
	b = appendFixed64(b, fSpanEndTime, uint64(s.EndTime().UnixNano()))
	b = appendKeyValues(b, fSpanAttributes, s.Attributes())
	b = appendVarint(b, fSpanDroppedAttributes, uint64(s.DroppedAttributes()))
	var msg []byte
	for _, ev := range s.Events() {
		msg = appendFixed64(msg[:0], fEventTime, uint64(ev.Time.UnixNano()))
		msg = appendString(msg, fEventName, ev.Name)
		msg = appendKeyValues(msg, fEventAttributes, ev.Attributes)
		msg = appendVarint(msg, fEventDroppedAttributes, uint64(ev.DroppedAttributeCount))
		b = appendMessage(b, fSpanEvents, msg)
	}
	b = appendVarint(b, fSpanDroppedEvents, uint64(s.DroppedEvents()))
	for _, l := range s.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		msg = appendBytes(msg[:0], fLinkTraceID, ltid[:])
		msg = appendBytes(msg, fLinkSpanID, lsid[:])
		msg = appendString(msg, fLinkTraceState, l.SpanContext.TraceState().String())
		msg = appendKeyValues(msg, fLinkAttributes, l.Attributes)
		msg = appendVarint(msg, fLinkDroppedAttributes, uint64(l.DroppedAttributeCount))
		msg = appendFixed32(msg, fLinkFlags, linkFlags(l.SpanContext))
		b = appendMessage(b, fSpanLinks, msg)
	}
	b = appendVarint(b, fSpanDroppedLinks, uint64(s.DroppedLinks()))
	msg = appendString(msg[:0], fStatusMessage, s.Status().Description)
	msg = appendVarint(msg, fStatusCode, statusCode(s.Status().Code))
	b = appendMessage(b, fSpanStatus, msg) // present even when empty
	return appendFixed32(b, fSpanFlags, flags)
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
func statusCode(c codes.Code) uint64 {
	switch c {
	case codes.Ok:
		return statusOK
	case codes.Error:
		return statusError
	}
	return statusUnset
}

// appendKeyValues appends each attribute as a KeyValue in field num.
func appendKeyValues(b []byte, num protowire.Number, attrs []attribute.KeyValue) []byte {
	var kv []byte
	for _, a := range attrs {
		kv = appendString(kv[:0], fKeyValueKey, string(a.Key))
		kv = appendMessage(kv, fKeyValueValue, appendAnyValue(nil, a.Value))
		b = appendMessage(b, num, kv)
	}
	return b
}

// appendAnyValue appends the fields of an AnyValue: one of its oneof,
// present even when zero.
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, fAnyBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
		return protowire.AppendString(b, v.AsString())
	case attribute.BOOLSLICE:
		return appendArray(b, v.AsBoolSlice(), attribute.BoolValue)
	case attribute.INT64SLICE:
		return appendArray(b, v.AsInt64Slice(), attribute.Int64Value)
	case attribute.FLOAT64SLICE:
		return appendArray(b, v.AsFloat64Slice(), attribute.Float64Value)
	case attribute.STRINGSLICE:
		return appendArray(b, v.AsStringSlice(), attribute.StringValue)
	}
	b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
	return protowire.AppendString(b, v.Emit())
}

// appendArray appends an AnyValue holding an ArrayValue of vs.
func appendArray[T any](b []byte, vs []T, value func(T) attribute.Value) []byte {
	var arr []byte
	for _, v := range vs {
		arr = appendMessage(arr, fArrayValues, appendAnyValue(nil, value(v)))
	}
	return appendMessage(b, fAnyArray, arr)
}

// appendMessage appends an embedded message (its encoded fields) in field num.
func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}
