package bench_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/lariat-gw/lariat/bench"
)

// inmemTarget serves a small JSON answer on an in-memory listener, so the
// benchmarks measure the generator and the fasthttp client and server, not a
// network stack.
func inmemTarget(b *testing.B) fasthttp.DialFunc {
	b.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"y":1}`)
	}}
	go srv.Serve(ln) //nolint:errcheck
	b.Cleanup(func() { ln.Close() })
	return func(string) (net.Conn, error) { return ln.Dial() }
}

func benchRun(b *testing.B, cfg bench.Config) {
	cfg.URL = "http://bench.test/predict"
	cfg.Dial = inmemTarget(b)
	cfg.Requests = int64(b.N)
	cfg.Body = `{"id":{{seq}},"n":{{rand 1 50}}}`
	b.ReportAllocs()
	b.ResetTimer()
	res, err := bench.Run(context.Background(), cfg)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Requests != int64(b.N) || res.Errors.Total != 0 {
		b.Fatalf("requests %d of %d, errors %+v", res.Requests, b.N, res.Errors)
	}
}

// BenchmarkClosedLoop is the generator's cost per request, back to back: one
// op is one request rendered from a template, sent, answered and recorded.
func BenchmarkClosedLoop(b *testing.B) {
	for _, conns := range []int{1, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			benchRun(b, bench.Config{Mode: bench.ModeClosed, Connections: conns})
		})
	}
}

// BenchmarkOpenLoop paces at a rate above what the machine can do, so the
// schedule is always due: it measures the open-loop bookkeeping (schedule,
// lag and service-time histograms) on top of BenchmarkClosedLoop.
func BenchmarkOpenLoop(b *testing.B) {
	benchRun(b, bench.Config{Mode: bench.ModeOpen, Rate: 5_000_000, Connections: 4})
}

// BenchmarkRawClient is the floor for BenchmarkClosedLoop/conns=1: the same
// requests through the same client and server with no generator around them.
// The difference is the generator's own cost per request.
func BenchmarkRawClient(b *testing.B) {
	c := &fasthttp.HostClient{Addr: "bench.test", Dial: inmemTarget(b), MaxConns: 1}
	req, resp := &fasthttp.Request{}, &fasthttp.Response{}
	req.SetRequestURI("http://bench.test/predict")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	tmpl, err := bench.ParseTemplate(`{"id":{{seq}},"n":{{rand 1 50}}}`)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var body []byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		body = tmpl.Append(body[:0], uint64(i), rng)
		req.SetBodyRaw(body)
		if err := c.DoTimeout(req, resp, time.Second); err != nil || resp.StatusCode() != fasthttp.StatusOK {
			b.Fatalf("status %d, %v", resp.StatusCode(), err)
		}
	}
}

func BenchmarkTemplateAppend(b *testing.B) {
	tmpl, err := bench.ParseTemplate(`{"user":"u{{rand 1 1000}}","id":{{seq}},"features":[1,2,3]}`)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = tmpl.Append(buf[:0], uint64(i), rng)
	}
}
