package floor_test

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/bench/fakemodel"
	"github.com/lariat-gw/lariat/bench/floor"
)

func benchHandle(b *testing.B, cfg floor.Config, body string) {
	s, err := floor.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var rc fasthttp.RequestCtx
	rc.Request.SetRequestURI("/v1/x")
	rc.Request.Header.SetMethod("POST")
	rc.Request.SetBodyString(body)
	// Both paths must agree before the loop is timed.
	s.Handle(&rc)
	if rc.Response.StatusCode() != 200 {
		b.Fatalf("answer %d %s", rc.Response.StatusCode(), rc.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		rc.Response.Reset()
		s.Handle(&rc)
	}
}

// BenchmarkFanout2 is the floor's fanout2 handler calling two fake models
// without latency on 127.0.0.1.
func BenchmarkFanout2(b *testing.B) {
	_, a1 := startModel(b, fakemodel.Config{Body: []byte(`{"score":1}`)})
	_, a2 := startModel(b, fakemodel.Config{Body: []byte(`{"score":2}`)})
	benchHandle(b, floor.Config{Models: []floor.Model{
		{Key: "m1", Addr: a1, Timeout: time.Second},
		{Key: "m2", Addr: a2, Timeout: time.Second},
	}}, `{"user":"u1","items":[1,2,3]}`)
}

// BenchmarkFeatures is a read of 3 entities x 6 features from redis-server
// feeding one model call.
func BenchmarkFeatures(b *testing.B) {
	redis, _ := seedFeatures(b)
	_, model := startModel(b, fakemodel.Config{})
	benchHandle(b, featureConfig(redis, model), `{"ids":[1,2,3]}`)
}
