package upstream

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

// TestOSRunDelaySeesBusyCPUs: threads spinning on four times as many OS
// threads as the machine has CPUs wait on the kernel's run queues three
// times as long as they run; the reading of the run-queue delay sees
// them wait longer than they run, and finds the process short of CPU.
func TestOSRunDelaySeesBusyCPUs(t *testing.T) {
	_, delay0, slices0, ok := osRunDelay()
	if !ok {
		t.Skip("the kernel reports no run-queue delays (/proc/self/task/*/schedstat)")
	}
	w := &cpuWait{sample: [1]metrics.Sample{{Name: "/sched/latencies:seconds"}}}
	w.recent(time.Now())
	threads := 4 * runtime.NumCPU()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads + 1))
	end := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for time.Now().Before(end) {
			}
		}()
	}
	wg.Wait()
	st := w.recent(time.Now())
	_, delay, slices, ok := osRunDelay()
	if !ok || slices <= slices0 {
		t.Fatalf("run-queue readings %d slices after %d (ok %t)", slices, slices0, ok)
	}
	waited := time.Duration(delay - delay0)
	t.Logf("%d threads spinning on %d CPUs for 300ms waited %s in all; pressure %.2f", threads, runtime.NumCPU(), waited, st.pressure)
	// Three quarters of the threads wait at any time: about threads × 225ms.
	if waited < 300*time.Millisecond {
		t.Fatalf("threads waited %s in all, want at least 300ms", waited)
	}
	// About 3 alone; other processes on the machine (parallel test
	// binaries) change the share these threads get, not that they wait
	// longer than they run.
	if !st.short() || st.pressure <= 1 {
		t.Fatalf("pressure %.2f (wait %s) while %d threads spun on %d CPUs: not short of CPU, or waited less than they ran", st.pressure, st.wait, threads, runtime.NumCPU())
	}
}

func BenchmarkOSRunDelay(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		osRunDelay()
	}
}
