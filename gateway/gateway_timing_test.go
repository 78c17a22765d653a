package gateway

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/tasks"
)

// BenchmarkFanout2 measures a route that calls two upstreams in parallel and
// merges their answers, served by the real gateway on an in-memory
// listener, next to a direct call of one upstream from the same client.
func BenchmarkFanout2(b *testing.B) {
	m1 := upstreamtest.Start(b, upstreamtest.JSON(`{"score":0.91,"model":"m1"}`))
	m2 := upstreamtest.Start(b, upstreamtest.JSON(`{"score":0.13,"model":"m2"}`))
	route := fmt.Sprintf(`
name: fanout2
endpoint: /fanout2
timeout: 1s
tasks:
  m1:
    type: http
    inputs: {address: %s, body: '{{ .request }}'}
    output: {path: response.body.m1}
  m2:
    type: http
    inputs: {address: %s, body: '{{ .request }}'}
    output: {path: response.body.m2}
`, m1.URL("/predict"), m2.URL("/predict"))
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(route), 0o644); err != nil {
		b.Fatal(err)
	}
	g := New(Options{RoutesDir: dir, Env: tasks.NewEnv(nil), Logger: discardLogger()})
	if errs := g.Load(); len(errs) > 0 {
		b.Fatal(errs)
	}
	ln := fasthttputil.NewInmemoryListener()
	go g.Serve(ln)
	defer g.server.Shutdown()

	body := []byte(`{"user":{"id":"u-1"},"features":[0.1,0.2,0.3]}`)
	via := &fasthttp.HostClient{Addr: "gateway", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 1024}
	direct := &fasthttp.HostClient{Addr: m1.Addr, MaxConns: 1024}
	call := func(b *testing.B, c *fasthttp.HostClient, uri string, want int) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for pb.Next() {
				req.SetRequestURI(uri)
				req.Header.SetMethod("POST")
				req.Header.SetContentType("application/json")
				req.SetBody(body)
				if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
					b.Error(err)
					return
				}
				if resp.StatusCode() != 200 || len(resp.Body()) != want {
					b.Errorf("answer %d %s", resp.StatusCode(), resp.Body())
					return
				}
			}
		})
	}
	b.Run("gateway", func(b *testing.B) {
		call(b, via, "http://gateway/fanout2", len(`{"m1":{"score":0.91,"model":"m1"},"m2":{"score":0.13,"model":"m2"}}`))
	})
	// The same route with tracing on (every request sampled, spans
	// dropped), to show what tracing costs; with tracing off the request
	// path is the "gateway" case above.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	traced := New(Options{RoutesDir: dir, Env: tasks.NewEnv(nil), Logger: discardLogger()})
	traced.opts.Env.Tracer = tp.Tracer("bench")
	if errs := traced.Load(); len(errs) > 0 {
		b.Fatal(errs)
	}
	tln := fasthttputil.NewInmemoryListener()
	go traced.Serve(tln)
	defer traced.server.Shutdown()
	viaTraced := &fasthttp.HostClient{Addr: "gateway", Dial: func(string) (net.Conn, error) { return tln.Dial() }, MaxConns: 1024}
	b.Run("gateway-traced", func(b *testing.B) {
		call(b, viaTraced, "http://gateway/fanout2", len(`{"m1":{"score":0.91,"model":"m1"},"m2":{"score":0.13,"model":"m2"}}`))
	})
	b.Run("direct", func(b *testing.B) {
		call(b, direct, m1.URL("/predict"), len(`{"score":0.91,"model":"m1"}`))
	})
}
