package gateway

import (
	"context"
	"testing"

	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkFanout2 measures a route that calls two upstreams in parallel and
// merges their answers, served by the real gateway on an in-memory
// listener, next to a direct call of one upstream from the same client.
func BenchmarkFanout2(b *testing.B) {
	dir, m1 := fanout2Routes(b, "")
	via := serveInMemory(b, dir)
	direct := &fasthttp.HostClient{Addr: m1.Addr, MaxConns: 1024}
	body := []byte(fanout2Request)
	call := func(b *testing.B, c *fasthttp.HostClient, uri string, want int) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) { postEach(b, c, uri, body, want, pb.Next) })
	}
	b.Run("gateway", func(b *testing.B) {
		call(b, via, "http://gateway/fanout2", len(fanout2Answer))
	})
	// The same route with tracing on (every request sampled, spans
	// dropped), to show what tracing costs; with tracing off the request
	// path is the "gateway" case above.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	viaTraced := serveInMemory(b, dir, func(o *Options) { o.Env.Tracer = tp.Tracer("bench") })
	b.Run("gateway-traced", func(b *testing.B) {
		call(b, viaTraced, "http://gateway/fanout2", len(fanout2Answer))
	})
	b.Run("direct", func(b *testing.B) {
		call(b, direct, m1.URL("/predict"), len(m1Answer))
	})
}
