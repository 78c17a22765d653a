package upstream

import (
	"math"
	"runtime/metrics"
	"sync"
	"time"
)

// cpuWait follows how long this process waits for a CPU: its runnable
// goroutines for one of the runtime's processors (the runtime's
// /sched/latencies histogram: the gateway's own work saturates them), and
// its threads for a CPU of the machine (the kernel's run-queue delay:
// other processes, or the container's CPU quota, take the CPUs). When
// that wait is a sizeable part of an upstream's latency, the latency the
// upstream limits see and the timeouts the breakers count are made on
// this machine, not by the upstream.
type cpuWait struct {
	mu     sync.Mutex
	sample [1]metrics.Sample
	prev   []uint64
	// osCPU, osDelay and osSlices are the kernel's totals at the last
	// reading.
	osCPU, osDelay, osSlices uint64
	at                       time.Time
	last                     cpuState
}

// cpuState is how long this process waited for a CPU between two
// readings.
type cpuState struct {
	// wait is the mean wait each time a goroutine was scheduled or a
	// thread put on a CPU, whichever is longer.
	wait time.Duration
	// pressure is the time the threads waited on the kernel's run
	// queues over the time they ran: about 1 on a busy but sufficient
	// machine, 3 or more when other processes take most of the CPUs.
	pressure float64
}

// A process is short of CPU when its goroutines or threads waited more
// than cpuWaitFloor on average each time (on an idle machine some 10µs),
// or its threads waited more than cpuPressureLimit times as long as they
// ran. Then latencies and timeouts are not the upstream's.
// The pressure of an interval in which the threads waited less than
// minPressureDelay in all is not taken: a process that hardly ran (an
// idle gateway) can show any ratio, and no timeout came from such waits.
const (
	cpuWaitFloor     = 200 * time.Microsecond
	cpuPressureLimit = 2.0
	minPressureDelay = time.Millisecond
)

// cpuWaitShare is the share of an upstream's baseline latency that the
// mean wait for a CPU may reach before the latency is taken as made on
// this machine (see shortFor).
const cpuWaitShare = 0.1

// short reports whether the process was short of CPU.
func (s cpuState) short() bool { return s.wait > cpuWaitFloor || s.pressure > cpuPressureLimit }

// A shortage of CPU explains a try that timed out after less than
// maxCPUStall, or less than cpuStallWaits times the mean wait for a CPU.
// A runnable thread waits some tens of milliseconds at most for the
// kernel's scheduler (CFS serves up to 8 runnable threads within 24ms),
// and a CPU quota throttles a process for less than its 100ms period; a
// try that waited longer was kept waiting by the upstream.
const (
	maxCPUStall   = 100 * time.Millisecond
	cpuStallWaits = 50
)

// explains reports whether the process's shortage of CPU, if any,
// explains a try that timed out after ran.
func (s cpuState) explains(ran time.Duration) bool {
	return s.short() && (ran < maxCPUStall || ran < cpuStallWaits*s.wait)
}

// shortFor reports whether the process was short of CPU for an upstream
// whose baseline latency is base (ns): its threads waited more than
// cpuPressureLimit times as long as they ran, or it waited more than
// cpuWaitShare of base on average (and more than cpuWaitFloor).
func (s cpuState) shortFor(base float64) bool {
	return s.pressure > cpuPressureLimit || float64(s.wait) > math.Max(cpuWaitShare*base, float64(cpuWaitFloor))
}

// processCPUWait is the one reader of the process's wait for a CPU,
// shared by every upstream limit and breaker.
var processCPUWait = &cpuWait{sample: [1]metrics.Sample{{Name: "/sched/latencies:seconds"}}}

// recent returns how long this process waited for a CPU between the last
// two readings. It reads at most once per limitWindow.
func (w *cpuWait) recent(now time.Time) cpuState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.at.IsZero() && now.Sub(w.at) < limitWindow {
		return w.last
	}
	first := w.at.IsZero()
	w.at = now
	var st cpuState
	metrics.Read(w.sample[:])
	if w.sample[0].Value.Kind() == metrics.KindFloat64Histogram {
		h := w.sample[0].Value.Float64Histogram()
		if len(w.prev) == len(h.Counts) {
			st.wait = time.Duration(histogramMeanSince(h, w.prev) * float64(time.Second))
		}
		w.prev = append(w.prev[:0], h.Counts...)
	}
	if cpu, delay, slices, ok := osRunDelay(); ok {
		// Threads that ended take their totals with them: no reading
		// then.
		if !first && delay >= w.osDelay && slices > w.osSlices && cpu > w.osCPU {
			st.wait = max(st.wait, time.Duration((delay-w.osDelay)/(slices-w.osSlices)))
			if d := delay - w.osDelay; d >= uint64(minPressureDelay) {
				st.pressure = float64(d) / float64(cpu-w.osCPU)
			}
		}
		w.osCPU, w.osDelay, w.osSlices = cpu, delay, slices
	}
	w.last = st
	return st
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
