package upstream

import (
	"math"
	"runtime/metrics"
	"sync"
	"time"
)

// cpuWait follows how long this process's runnable goroutines wait for a
// CPU before they run, from the runtime's /sched/latencies histogram.
// When that wait is a sizeable part of an upstream's latency, the latency
// the upstream limits see is made on this machine (the gateway, or what
// runs beside it, is short of CPU), not by a queue at the upstream.
type cpuWait struct {
	mu     sync.Mutex
	sample [1]metrics.Sample
	prev   []uint64
	at     time.Time
	mean   time.Duration
}

// processCPUWait is the one reader of the process's scheduling latency,
// shared by every upstream limit.
var processCPUWait = &cpuWait{sample: [1]metrics.Sample{{Name: "/sched/latencies:seconds"}}}

// recent returns the mean wait of the goroutines scheduled between the
// last two readings; it reads the runtime at most once per limitWindow.
func (w *cpuWait) recent(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.at.IsZero() && now.Sub(w.at) < limitWindow {
		return w.mean
	}
	w.at = now
	metrics.Read(w.sample[:])
	if w.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := w.sample[0].Value.Float64Histogram()
	if len(w.prev) == len(h.Counts) {
		w.mean = time.Duration(histogramMeanSince(h, w.prev) * float64(time.Second))
	}
	w.prev = append(w.prev[:0], h.Counts...)
	return w.mean
}

// histogramMeanSince is the mean of the values h counted since it held
// the counts prev, each taken at the middle of its bucket (at its finite
// edge for the open-ended first and last buckets); 0 when none came.
func histogramMeanSince(h *metrics.Float64Histogram, prev []uint64) float64 {
	var n, sum float64
	for i, c := range h.Counts {
		d := float64(c - prev[i])
		if d == 0 {
			continue
		}
		lo, hi := h.Buckets[i], h.Buckets[i+1]
		switch {
		case math.IsInf(lo, -1):
			lo = hi
		case math.IsInf(hi, 1):
			hi = lo
		}
		n += d
		sum += d * (lo + hi) / 2
	}
	if n == 0 {
		return 0
	}
	return sum / n
}
