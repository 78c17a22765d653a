package fakemodel_test

import (
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/bench/fakemodel"
)

// BenchmarkHandle measures the handler of a fake model without latency.
func BenchmarkHandle(b *testing.B) {
	s, err := fakemodel.New(fakemodel.Config{ErrorRate: 0.05})
	if err != nil {
		b.Fatal(err)
	}
	var rc fasthttp.RequestCtx
	rc.Request.SetRequestURI("/predict")
	rc.Request.Header.SetMethod("POST")
	rc.Request.SetBodyString(`{"user":"u1","items":[1,2,3]}`)
	b.ReportAllocs()
	for b.Loop() {
		rc.Response.Reset()
		s.Handle(&rc)
	}
}
