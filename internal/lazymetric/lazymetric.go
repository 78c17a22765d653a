// Package lazymetric holds metrics that are created in their set on first
// use, so that a route or task that never serves, fails or retries costs
// no series. Reading or updating one after its creation costs an atomic
// load.
package lazymetric

import (
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Counter is a counter created in Set on its first update.
type Counter struct {
	set  *metrics.Set
	name string
	c    atomic.Pointer[metrics.Counter]
}

// NewCounter returns the counter name of set (nil: the default set), not
// created yet.
func NewCounter(set *metrics.Set, name string) *Counter {
	return &Counter{set: set, name: name}
}

func (l *Counter) get() *metrics.Counter {
	if c := l.c.Load(); c != nil {
		return c
	}
	var c *metrics.Counter
	if l.set == nil {
		c = metrics.GetOrCreateCounter(l.name)
	} else {
		c = l.set.GetOrCreateCounter(l.name)
	}
	l.c.Store(c)
	return c
}

// Inc adds one.
func (l *Counter) Inc() { l.get().Inc() }

// Add adds n.
func (l *Counter) Add(n int) { l.get().Add(n) }

// Get returns the count; 0 when the counter was never updated.
func (l *Counter) Get() uint64 {
	if c := l.c.Load(); c != nil {
		return c.Get()
	}
	return 0
}

// Histogram is a Prometheus histogram (le buckets) created in Set on its
// first update. A nil *Histogram does nothing, for histograms switched
// off.
type Histogram struct {
	set     *metrics.Set
	name    string
	buckets []float64
	h       atomic.Pointer[metrics.PrometheusHistogram]
}

// NewHistogram returns the histogram name of set (nil: the default set)
// with the default buckets, or with buckets when given.
func NewHistogram(set *metrics.Set, name string, buckets []float64) *Histogram {
	return &Histogram{set: set, name: name, buckets: buckets}
}

func (l *Histogram) get() *metrics.PrometheusHistogram {
	if h := l.h.Load(); h != nil {
		return h
	}
	var h *metrics.PrometheusHistogram
	switch {
	case l.set == nil && l.buckets == nil:
		h = metrics.GetOrCreatePrometheusHistogram(l.name)
	case l.set == nil:
		h = metrics.GetOrCreatePrometheusHistogramExt(l.name, l.buckets)
	case l.buckets == nil:
		h = l.set.GetOrCreatePrometheusHistogram(l.name)
	default:
		h = l.set.GetOrCreatePrometheusHistogramExt(l.name, l.buckets)
	}
	l.h.Store(h)
	return h
}

// Update records v.
func (l *Histogram) Update(v float64) {
	if l != nil {
		l.get().Update(v)
	}
}

// UpdateDuration records the seconds since start.
func (l *Histogram) UpdateDuration(start time.Time) {
	if l != nil {
		l.get().UpdateDuration(start)
	}
}
