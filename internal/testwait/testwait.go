// Package testwait waits in tests for a condition that other goroutines
// or processes make true. It polls with a bounded deadline instead of
// sleeping a fixed time: a test goes on as soon as the condition holds,
// and on a loaded machine it still waits long enough. Under
// testing/synctest the polls sleep on virtual time.
package testwait

import (
	"testing"
	"time"
)

// Timeout bounds a wait. It is generous, since it is only reached when
// the condition never comes true, and then the test fails.
const Timeout = 30 * time.Second

// Until polls cond until it returns true, and fails the test naming what
// it waited for if that takes longer than Timeout.
func Until(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	if !Within(Timeout, cond) {
		tb.Fatalf("timed out after %s waiting for %s", Timeout, what)
	}
}

// Within polls cond until it returns true or d has passed, and reports
// whether it returned true. The polls start 1ms apart and slow down to
// 20ms apart.
func Within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	pause := time.Millisecond
	for !cond() {
		if !time.Now().Before(deadline) {
			return cond()
		}
		time.Sleep(min(pause, time.Until(deadline)))
		pause = min(2*pause, 20*time.Millisecond)
	}
	return true
}
