package router

import (
	"math"
	"sync/atomic"
	"time"
)

// latencyStats keeps a task's latency distribution since the route loaded
// in fixed logarithmic buckets with atomic counters: cheap enough for the
// request path, precise to about 10% for the admin page. Prometheus
// histograms in /metrics remain the source for dashboards.
type latencyStats struct {
	buckets [latencyBuckets]atomic.Uint64
	count   atomic.Uint64
	sumNs   atomic.Uint64
	errors  atomic.Uint64
}

const (
	latencyBuckets = 96
	latencyBase    = 10 * time.Microsecond
	latencyGrowth  = 1.2
)

var logGrowth = math.Log(latencyGrowth)

func bucketOf(d time.Duration) int {
	if d <= latencyBase {
		return 0
	}
	b := int(math.Log(float64(d)/float64(latencyBase))/logGrowth) + 1
	return min(b, latencyBuckets-1)
}

func bucketUpper(b int) time.Duration {
	return time.Duration(float64(latencyBase) * math.Pow(latencyGrowth, float64(b)))
}

func (s *latencyStats) observe(d time.Duration, failed bool) {
	s.buckets[bucketOf(d)].Add(1)
	s.count.Add(1)
	s.sumNs.Add(uint64(d))
	if failed {
		s.errors.Add(1)
	}
}

// LatencySummary is a task's or route's latency distribution.
type LatencySummary struct {
	Count  uint64  `json:"count"`
	Errors uint64  `json:"errors"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

func (s *latencyStats) summary() LatencySummary {
	var counts [latencyBuckets]uint64
	var total uint64
	for i := range counts {
		counts[i] = s.buckets[i].Load()
		total += counts[i]
	}
	out := LatencySummary{Count: s.count.Load(), Errors: s.errors.Load()}
	if total == 0 {
		return out
	}
	out.MeanMs = float64(s.sumNs.Load()) / float64(out.Count) / 1e6
	q := func(p float64) float64 {
		rank := uint64(math.Ceil(p * float64(total)))
		var seen uint64
		for i, c := range counts {
			if seen += c; seen >= rank {
				return float64(bucketUpper(i)) / 1e6
			}
		}
		return float64(bucketUpper(latencyBuckets-1)) / 1e6
	}
	out.P50Ms, out.P90Ms, out.P99Ms = q(0.5), q(0.9), q(0.99)
	return out
}

// TaskStats is the latency of one task of a route.
type TaskStats struct {
	Task string `json:"task"`
	LatencySummary
}

// Stats returns the latency of the route and of each of its tasks since the
// route loaded.
func (p *Plan) Stats() (route LatencySummary, tasks []TaskStats) {
	tasks = make([]TaskStats, len(p.nodes))
	for i := range p.nodes {
		tasks[i] = TaskStats{Task: p.nodes[i].name, LatencySummary: p.nodes[i].stats.summary()}
	}
	return p.stats.summary(), tasks
}
