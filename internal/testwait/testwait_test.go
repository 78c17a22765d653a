package testwait

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestWithin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		start := time.Now()
		if !Within(time.Second, func() bool { return n.Add(1) == 5 }) {
			t.Fatal("Within gave up before the condition held")
		}
		// Polls at 0, 1, 3 and 7ms came out false, the fifth, at 15ms,
		// true.
		if took := time.Since(start); took != 15*time.Millisecond {
			t.Fatalf("the condition held at the fifth poll, after %s; want 15ms", took)
		}
		start = time.Now()
		if Within(100*time.Millisecond, func() bool { return false }) {
			t.Fatal("Within reported a condition that never held")
		}
		if took := time.Since(start); took != 100*time.Millisecond {
			t.Fatalf("Within gave up after %s, want 100ms", took)
		}
	})
}

func TestUntilWaitsForAnotherGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var done atomic.Bool
		go func() {
			time.Sleep(time.Second)
			done.Store(true)
		}()
		Until(t, "the goroutine", done.Load)
		if !done.Load() {
			t.Fatal("Until returned before the condition held")
		}
	})
}
