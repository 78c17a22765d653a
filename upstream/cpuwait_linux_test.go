package upstream

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestOSRunDelaySeesBusyCPUs: threads spinning on more OS threads than
// the machine has CPUs wait on the kernel's run queues, and the reading
// of the run-queue delay sees it.
func TestOSRunDelaySeesBusyCPUs(t *testing.T) {
	delay0, slices0, ok := osRunDelay()
	if !ok {
		t.Skip("the kernel reports no run-queue delays (/proc/self/task/*/schedstat)")
	}
	threads := 2 * runtime.NumCPU()
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
	delay, slices, ok := osRunDelay()
	if !ok || slices <= slices0 {
		t.Fatalf("run-queue readings %d slices after %d (ok %t)", slices, slices0, ok)
	}
	waited := time.Duration(delay - delay0)
	t.Logf("%d threads spinning on %d CPUs for 300ms waited %s in all", threads, runtime.NumCPU(), waited)
	// Half of the threads wait at any time: about threads × 150ms.
	if waited < 100*time.Millisecond {
		t.Fatalf("threads waited %s in all, want at least 100ms", waited)
	}
}

func BenchmarkOSRunDelay(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		osRunDelay()
	}
}
