package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/bench"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// BenchmarkHedgingP99 measures the latency of a route whose model has
// one slow replica: one call in twenty takes 50ms, the others answer at
// once (so a hedge is rarely slow too). The "plain" route waits for the slow call; the "hedged" one sends
// a second call after 5ms. Load comes from bench.Run (closed loop, 4
// connections) against a real gateway on loopback; one op is one request.
// Reported: p50 and p99 in milliseconds, upstream calls per request.
func BenchmarkHedgingP99(b *testing.B) {
	up := upstreamtest.Start(b, nil)
	up.Set(func(n int64, rc *fasthttp.RequestCtx) {
		if n%20 == 0 {
			up.Delay(50*time.Millisecond, upstreamtest.JSON(`{"score":0.5}`))(n, rc)
			return
		}
		upstreamtest.JSON(`{"score":0.5}`)(n, rc)
	})
	route := func(name, policy string) string {
		return fmt.Sprintf(`
name: %s
endpoint: /%s
timeout: 1s
tasks:
  m:
    type: http
    inputs: {address: %s, body: '{{ .request }}', timeout: 500ms, breaker: {disabled: true}%s}
    output: {path: response.body}
`, name, name, up.URL("/p"), policy)
	}
	tg := startGateway(b, map[string]string{
		"plain.yaml":  route("plain", ""),
		"hedged.yaml": route("hedged", ", hedge_after: 5ms"),
	}, nil)
	for _, name := range []string{"plain", "hedged"} {
		b.Run(name, func(b *testing.B) {
			before := up.Requests.Load()
			b.ReportAllocs()
			res, err := bench.Run(context.Background(), bench.Config{
				Name: name, URL: tg.url + "/" + name, Body: `{"id":{{seq}}}`,
				Mode: bench.ModeClosed, Connections: 4, Requests: int64(b.N), Timeout: 2 * time.Second,
			})
			if err != nil {
				b.Fatal(err)
			}
			if res.OK != int64(b.N) {
				b.Fatalf("%d of %d requests answered OK: %+v", res.OK, b.N, res.Errors)
			}
			b.ReportMetric(res.Latency.P50Ms, "p50-ms")
			b.ReportMetric(res.Latency.P99Ms, "p99-ms")
			b.ReportMetric(float64(up.Requests.Load()-before)/float64(b.N), "calls/op")
		})
	}
}
