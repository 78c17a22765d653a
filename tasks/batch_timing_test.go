package tasks

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// serialModel is a model server that runs one call at a time, each
// costing perCall whatever its batch size (as a GPU running a kernel),
// and answers scores of shape [N,1].
func serialModel(b *testing.B, perCall time.Duration) *upstreamtest.Server {
	var mu sync.Mutex
	return upstreamtest.Start(b, func(_ int64, rc *fasthttp.RequestCtx) {
		rows := int(gjson.GetBytes(rc.PostBody(), "inputs.0.shape.0").Int())
		mu.Lock()
		end := time.Now().Add(perCall)
		for time.Now().Before(end) {
			time.Sleep(end.Sub(time.Now()))
		}
		mu.Unlock()
		out := append(make([]byte, 0, 128+rows*2), `{"model_name":"ranker","outputs":[{"name":"scores","datatype":"FP32","shape":[`...)
		out = strconv.AppendInt(out, int64(rows), 10)
		out = append(out, `,1],"data":[`...)
		for i := 0; i < rows; i++ {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, '1')
		}
		out = append(out, "]}]}"...)
		rc.SetContentType("application/json")
		rc.SetBody(out)
	})
}

// BenchmarkInferBatching calls one model from 32 goroutines, with and
// without micro-batching. The model serves one call at a time at 1ms a
// call, so without batching throughput is bounded by the call rate; with
// batching each call carries many requests. One op is one request.
func BenchmarkInferBatching(b *testing.B) {
	model := serialModel(b, time.Millisecond)
	for _, bc := range []struct{ name, batch string }{
		{"alone", ""},
		{"batched", "\n      batch: {max_size: 32, max_wait: 1ms}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := compileRoute(b, inferRoute(model.URL(""), `
      outputs: [scores]
      breaker: {disabled: true}
      inputs: [{name: x, datatype: FP32, from: '{{ .request.row }}', columns: [a, b]}]`+bc.batch), nil)
			task := c.tasks["rank"]
			before := model.Requests.Load()
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				x := c.exchange(`{"row":{"a":0.5,"b":0.25}}`, nil, nil)
				r := &x.Results[c.index["rank"]]
				for pb.Next() {
					x.Deadline = time.Now().Add(time.Second)
					if err := task.Run(x, r); err != nil || string(r.Body) != `{"scores":[1]}` {
						b.Errorf("%v %s", err, r.Body)
						return
					}
				}
			})
			b.StopTimer()
			calls := model.Requests.Load() - before
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		})
	}
}
