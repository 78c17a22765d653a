package bench

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// sleeper waits precisely for short periods. The Go runtime's timers wake up
// to about a millisecond late on Linux (the network poller waits in whole
// milliseconds), which would add up to a millisecond of generator error to
// every open-loop latency. A timerfd fires within tens of microseconds and,
// being read through the network poller, blocks only the goroutine: no OS
// thread or P is held while waiting.
type sleeper struct {
	f   *os.File // nil: fall back to time.Sleep
	fd  int      // f's descriptor; f.Fd() would make f blocking
	buf [8]byte
}

func newSleeper() *sleeper {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return &sleeper{}
	}
	return &sleeper{f: os.NewFile(uintptr(fd), "timerfd"), fd: fd}
}

// sleep blocks the calling goroutine for d.
func (s *sleeper) sleep(d time.Duration) {
	if s.f == nil {
		time.Sleep(d)
		return
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(s.fd, 0, &spec, nil); err != nil {
		time.Sleep(d)
		return
	}
	if _, err := s.f.Read(s.buf[:]); err != nil {
		time.Sleep(d)
	}
}

func (s *sleeper) close() {
	if s.f != nil {
		s.f.Close()
	}
}
