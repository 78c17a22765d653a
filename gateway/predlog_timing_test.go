package gateway

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/lariat-gw/lariat/internal/predlogtest"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/tasks"
)

// BenchmarkFanout2PredictionLog measures the fan-out-2 route (two upstream
// calls in parallel, merged) with every request recorded to a file://
// prediction log, next to the same route with the log off, in one run:
// the two gateways take turns serving rounds of 1,000 requests from the
// same clients, so machine noise hits both alike. Reported: requests per
// second of each and on/off, the throughput ratio.
func BenchmarkFanout2PredictionLog(b *testing.B) {
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
log: {sample: 1, outputs: [response.body.m1.score]}
`, m1.URL("/predict"), m2.URL("/predict"))
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(route), 0o644); err != nil {
		b.Fatal(err)
	}
	pl, err := predlog.Open("file://"+b.TempDir(), predlog.Options{Logger: discardLogger(), SinkCommand: predlogtest.Command()})
	if err != nil {
		b.Fatal(err)
	}
	defer pl.Close()
	serve := func(pl *predlog.Log) *fasthttp.HostClient {
		g := New(Options{RoutesDir: dir, Env: tasks.NewEnv(nil), Logger: discardLogger(), PredictionLog: pl})
		if errs := g.Load(); len(errs) > 0 {
			b.Fatal(errs)
		}
		ln := fasthttputil.NewInmemoryListener()
		go g.Serve(ln)
		b.Cleanup(func() { g.server.Shutdown() })
		return &fasthttp.HostClient{Addr: "gateway", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 1024}
	}
	off, on := serve(nil), serve(pl)

	body := []byte(`{"user":{"id":"u-1"},"features":[0.1,0.2,0.3]}`)
	want := len(`{"m1":{"score":0.91,"model":"m1"},"m2":{"score":0.13,"model":"m2"}}`)
	conc := 4 * runtime.GOMAXPROCS(0)
	round := func(c *fasthttp.HostClient, n int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				req := fasthttp.AcquireRequest()
				resp := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				for i := w; i < n; i += conc {
					req.SetRequestURI("http://gateway/fanout2")
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
			}(w)
		}
		wg.Wait()
		return time.Since(start)
	}
	round(off, 2000)
	round(on, 2000)
	written := pl.Status().Written
	b.ReportAllocs()
	b.ResetTimer()
	var tOff, tOn time.Duration
	done := 0
	for done < b.N {
		n := min(1000, b.N-done)
		tOff += round(off, n)
		tOn += round(on, n)
		done += n
	}
	b.StopTimer()
	if st := pl.Status(); st.Dropped > 0 || !st.OK {
		b.Fatalf("prediction log: %+v", st)
	}
	if w := int64(pl.Status().Written - written); w < int64(b.N)-predlog.DefaultQueueSize {
		b.Fatalf("%d records written for %d requests", w, b.N)
	}
	rOff, rOn := float64(b.N)/tOff.Seconds(), float64(b.N)/tOn.Seconds()
	b.ReportMetric(rOff, "off-req/s")
	b.ReportMetric(rOn, "on-req/s")
	b.ReportMetric(rOn/rOff, "on/off")
}
