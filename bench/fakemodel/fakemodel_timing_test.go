package fakemodel_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

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

// TestWorkersQueue: with two workers and a latency of 10ms, six requests at
// once finish in three waves, 10ms apart.
func TestWorkersQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := fakemodel.New(fakemodel.Config{Latency: 10 * time.Millisecond, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		done := make(chan time.Duration, 6)
		for range 6 {
			go func() {
				var rc fasthttp.RequestCtx
				rc.Request.SetRequestURI("/predict")
				rc.Request.Header.SetMethod("POST")
				s.Handle(&rc)
				done <- time.Since(start)
			}()
		}
		var got []time.Duration
		for range 6 {
			got = append(got, <-done)
		}
		slices.Sort(got)
		want := []time.Duration{10, 10, 20, 20, 30, 30}
		for i := range want {
			if got[i] != want[i]*time.Millisecond {
				t.Fatalf("answers after %v, want %v ms", got, want)
			}
		}
	})
}
