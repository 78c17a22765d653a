//go:build !linux

package bench

import "time"

// sleeper waits for short periods; on this platform with the runtime's
// timers.
type sleeper struct{}

func newSleeper() *sleeper { return &sleeper{} }

// sleep blocks the calling goroutine for d.
func (s *sleeper) sleep(d time.Duration) { time.Sleep(d) }

func (s *sleeper) close() {}
