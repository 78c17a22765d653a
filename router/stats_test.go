package router

import (
	"testing"
	"time"
)

func TestLatencyStats(t *testing.T) {
	var s latencyStats
	for i := 1; i <= 100; i++ {
		s.observe(time.Duration(i)*time.Millisecond, i > 95)
	}
	sum := s.summary()
	if sum.Count != 100 || sum.Errors != 5 {
		t.Fatalf("count %d errors %d", sum.Count, sum.Errors)
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if got < want*0.95 || got > want*1.25 {
			t.Fatalf("%s = %.2fms, want about %.0fms", name, got, want)
		}
	}
	near("p50", sum.P50Ms, 50)
	near("p90", sum.P90Ms, 90)
	near("p99", sum.P99Ms, 99)
	near("mean", sum.MeanMs, 50.5)
	if n := testing.AllocsPerRun(100, func() { s.observe(time.Millisecond, false) }); n != 0 {
		t.Fatalf("observe allocates %.0f times", n)
	}
}
