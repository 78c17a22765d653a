package upstream

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// BenchmarkTry compares a try on a connection per call with a pipelined
// try (Options.Pipeline), from concurrent callers against a fasthttp
// upstream on 127.0.0.1; both must allocate nothing per call.
func BenchmarkTry(b *testing.B) {
	for _, pipelined := range []bool{false, true} {
		name := "pooled"
		if pipelined {
			name = "pipelined"
		}
		b.Run(name, func(b *testing.B) {
			up := upstreamtest.Start(b, upstreamtest.JSON(`{"score":0.5}`))
			var o Options
			if pipelined {
				o.Pipeline = map[string]int{up.Addr: 1}
			}
			p := NewPool(nil, o)
			defer p.CloseIdle()
			tg := realTarget(p, up, BreakerSettings{Disabled: true})
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				req := request()
				defer fasthttp.ReleaseRequest(req)
				tg.Prepare(req, []byte(tg.Path))
				resp := AcquireResponse()
				defer ReleaseResponse(resp)
				for pb.Next() {
					if _, err := tg.Try(req, resp, time.Now().Add(10*time.Second), 10*time.Second); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
