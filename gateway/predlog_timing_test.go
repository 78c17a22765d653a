package gateway

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/predlogtest"
	"github.com/lariat-gw/lariat/predlog"
)

// BenchmarkFanout2PredictionLog measures the fan-out-2 route (two upstream
// calls in parallel, merged) with every request recorded to a file://
// prediction log, next to the same route with the log off, in one run:
// the two gateways take turns serving rounds of 1,000 requests from the
// same clients, so machine noise hits both alike. Reported: requests per
// second of each and on/off, the throughput ratio.
func BenchmarkFanout2PredictionLog(b *testing.B) {
	dir, _ := fanout2Routes(b, "log: {sample: 1, outputs: [response.body.m1.score]}")
	pl, err := predlog.Open("file://"+b.TempDir(), predlog.Options{Logger: discardLogger(), SinkCommand: predlogtest.Command()})
	if err != nil {
		b.Fatal(err)
	}
	defer pl.Close()
	off := serveInMemory(b, dir)
	on := serveInMemory(b, dir, func(o *Options) { o.PredictionLog = pl })

	body := []byte(fanout2Request)
	conc := 4 * runtime.GOMAXPROCS(0)
	round := func(c *fasthttp.HostClient, n int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				i := w - conc // requests w, w+conc, ... below n
				postEach(b, c, "http://gateway/fanout2", body, len(fanout2Answer), func() bool { i += conc; return i < n })
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
