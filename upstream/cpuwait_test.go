package upstream

import (
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/valyala/fasthttp"
)

// newVirtualLimiter is NewLimiter for tests under virtual time: the
// latencies they release are simulated, so the real CPU wait of the test
// process has no part in them.
func newVirtualLimiter(name string, s LimitSettings) *Limiter {
	l := NewLimiter(name, s)
	l.cpuWait = nil
	return l
}

func TestHistogramMeanSince(t *testing.T) {
	h := &metrics.Float64Histogram{
		Buckets: []float64{math.Inf(-1), 0, 10e-6, 1e-3, math.Inf(1)},
		Counts:  []uint64{0, 10, 5, 1},
	}
	if got := histogramMeanSince(h, []uint64{0, 10, 5, 1}); got != 0 {
		t.Fatalf("mean %v with nothing new, want 0", got)
	}
	// Since prev: 10 at 5µs, 2 at 505µs, 1 at 1ms (the open last bucket at
	// its lower edge).
	got := histogramMeanSince(h, []uint64{0, 0, 3, 0})
	want := (10*5e-6 + 2*505e-6 + 1e-3) / 13
	if math.Abs(got-want) > 1e-12 {
		t.Fatalf("mean %v, want %v", got, want)
	}
}

// TestCPUWaitSeesBusyProcessors: goroutines that wake while every
// processor spins wait for one; the reader of the runtime's scheduling
// latency sees it, and reads at most once per window.
func TestCPUWaitSeesBusyProcessors(t *testing.T) {
	// No collection during the window: its workers' many short waits for
	// a processor would dilute the mean of those measured here. Twice as
	// many spinners as processors keep a runnable one queued on each.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	w := &cpuWait{sample: [1]metrics.Sample{{Name: "/sched/latencies:seconds"}}}
	start := time.Now()
	w.recent(start)
	end := start.Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
			}
		}()
	}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	got := w.recent(time.Now())
	t.Logf("mean wait for a CPU while every processor spun: %s", got.wait)
	if got.wait < cpuWaitFloor || !got.short() {
		t.Fatalf("mean wait %s while every processor spun, want above %s", got.wait, cpuWaitFloor)
	}
	if again := w.recent(time.Now()); again != got {
		t.Fatalf("a second reading within the window gave %+v, want the first, %+v", again, got)
	}
}

// TestLimitHoldsWhileThisMachineIsShortOfCPU: an upstream that works on 8
// calls at a time, offered far more: while this process's goroutines wait
// for a CPU, its slower answers do not cut the limit (the latency cannot
// be told from one made here); once the CPU is back, they do.
func TestLimitHoldsWhileThisMachineIsShortOfCPU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers, service = 8, 5 * time.Millisecond
		l := newVirtualLimiter("http://limit-cpu-test:80", LimitSettings{Initial: 64, Min: 4, Max: 200, Tolerance: 1.5})
		var wait atomic.Int64
		l.cpuWait = func(time.Time) cpuState { return cpuState{wait: time.Duration(wait.Load())} }
		run := func(n int, dur time.Duration) { offerQueue(l, workers, service, n, dur) }
		wait.Store(int64(20 * time.Microsecond)) // an idle machine
		start := l.cpuHeld.Get()                 // the counter is the process's
		run(workers, time.Second)                // unloaded: the baseline
		before, heldBefore := l.Limit(), l.cpuHeld.Get()
		if heldBefore != start {
			t.Fatalf("%d windows held for CPU on an idle machine, want none", heldBefore-start)
		}
		wait.Store(int64(3 * time.Millisecond))
		run(200, 2*time.Second)
		held := l.Limit()
		if held < before {
			t.Fatalf("limit %d after a queue formed while this machine was short of CPU, want it held at %d or more", held, before)
		}
		// lariat_upstream_limit_cpu_held_total says why.
		heldWindows := l.cpuHeld.Get()
		if heldWindows-heldBefore < 10 {
			t.Fatalf("%d windows in 2s counted as held for CPU, want most of them", heldWindows-heldBefore)
		}
		wait.Store(int64(20 * time.Microsecond))
		run(200, 2*time.Second)
		if got := l.Limit(); got > held/2 {
			t.Fatalf("limit %d after a queue formed at the upstream, want at most %d", got, held/2)
		}
		if n := l.cpuHeld.Get(); n != heldWindows {
			t.Fatalf("%d more windows held for CPU with the CPU back, want none", n-heldWindows)
		}
	})
}

// TestTimeoutsWhileShortOfCPUAreNotTheUpstreams: timeouts while this
// process waits long for a CPU (a long mean wait, or threads waiting far
// longer than they run) neither open the breaker nor shrink the limit;
// the same timeouts with the CPU back do.
func TestTimeoutsWhileShortOfCPUAreNotTheUpstreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, p := newFake(func(_ int, _ string, deadline time.Time, _ *fasthttp.Response) error { return hang(deadline) })
		tg := target(p, "m", BreakerSettings{Failures: 3, OpenFor: time.Minute, HalfOpenRequests: 1})
		var state atomic.Value
		waited := func(time.Time) cpuState { return state.Load().(cpuState) }
		tg.Breaker.cpuWait = waited
		tg.Host.limit = newVirtualLimiter("http://limit-cpu-timeout-test:80", LimitSettings{Initial: 20, Min: 4, Max: 200, Tolerance: 1.5})
		tg.Host.limit.cpuWait = waited
		c := newCaller(Policy{TryTimeout: 20 * time.Millisecond})
		timeouts := func(n int) {
			for range n {
				var out Outcome
				_, err := c.Call(Budget{Deadline: time.Now().Add(time.Second)}, request(), tg, nil, nil, &out)
				if ReasonOf(err) != ReasonTimeout && !errors.Is(err, ErrBreakerOpen) {
					t.Fatalf("error %v, want a timeout", err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		before := tg.Host.limit.Limit()
		for _, st := range []cpuState{{wait: 2 * time.Millisecond, pressure: 0.5}, {wait: 50 * time.Microsecond, pressure: 3}} {
			state.Store(st)
			timeouts(20)
			if s := tg.Breaker.State(); s != "closed" {
				t.Fatalf("breaker %s after timeouts while short of CPU (%+v), want closed", s, st)
			}
			if got := tg.Host.limit.Limit(); got != before {
				t.Fatalf("limit %d after timeouts while short of CPU (%+v), want %d", got, st, before)
			}
		}
		state.Store(cpuState{wait: 20 * time.Microsecond, pressure: 0.5})
		timeouts(20)
		if s := tg.Breaker.State(); s != "open" {
			t.Fatalf("breaker %s after timeouts with the CPU back, want open", s)
		}
		if got := tg.Host.limit.Limit(); got >= before {
			t.Fatalf("limit %d after timeouts with the CPU back, want below %d", got, before)
		}

		// A try that waited 200ms was kept waiting by the upstream,
		// unless the mean wait for a CPU was over 200ms/cpuStallWaits.
		for _, c := range []struct {
			st   cpuState
			want string
		}{
			{cpuState{wait: 2 * time.Millisecond, pressure: 0.5}, "open"},
			{cpuState{wait: 50 * time.Microsecond, pressure: 3}, "open"},
			{cpuState{wait: 5 * time.Millisecond, pressure: 3}, "closed"},
		} {
			hung := target(p, "hung", BreakerSettings{Failures: 3, OpenFor: time.Minute, HalfOpenRequests: 1})
			hung.Breaker.cpuWait = waited
			state.Store(c.st)
			slow := newCaller(Policy{TryTimeout: 200 * time.Millisecond})
			for range 3 {
				var out Outcome
				slow.Call(Budget{Deadline: time.Now().Add(time.Second)}, request(), hung, nil, nil, &out)
			}
			if s := hung.Breaker.State(); s != c.want {
				t.Fatalf("breaker %s after 3 tries that waited 200ms, short of CPU (%+v), want %s", s, c.st, c.want)
			}
			hung.Release()
		}
	})
}
