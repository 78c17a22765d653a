package accept

import (
	"errors"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// scriptedListener returns the errors of errs in turn, then conn.
type scriptedListener struct {
	net.Listener
	errs []error
	conn net.Conn
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.conn, nil
}

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// TestAcceptWaitsOutShortages: accept errors that pass are waited out,
// 5ms after the first and doubling, until a connection comes; the wait
// stops growing at a second.
func TestAcceptWaitsOutShortages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		var errs []error
		for range 4 {
			errs = append(errs, acceptErr(syscall.EMFILE))
		}
		errs = append(errs, acceptErr(syscall.ENFILE), acceptErr(syscall.ENOBUFS))
		for range 5 {
			errs = append(errs, acceptErr(syscall.ENOMEM))
		}
		var waits []time.Duration
		ln := Retrying(&scriptedListener{errs: errs, conn: c1}, func(err error, wait time.Duration) {
			waits = append(waits, wait)
		})
		start := time.Now()
		c, err := ln.Accept()
		if err != nil || c != c1 {
			t.Fatalf("Accept = %v, %v; want the connection after the errors", c, err)
		}
		ms := time.Millisecond
		want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second, time.Second}
		if !slices.Equal(waits, want) {
			t.Fatalf("waits %v, want %v", waits, want)
		}
		var sum time.Duration
		for _, w := range want {
			sum += w
		}
		if took := time.Since(start); took != sum {
			t.Fatalf("Accept took %s, want the waits' sum %s", took, sum)
		}
	})
}

// TestAcceptReturnsOtherErrors: an error that does not pass (the listener
// closed) is returned at once, with no wait.
func TestAcceptReturnsOtherErrors(t *testing.T) {
	ln := Retrying(&scriptedListener{errs: []error{net.ErrClosed}}, func(error, time.Duration) {
		t.Error("onError called for a closed listener")
	})
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept: %v, want net.ErrClosed", err)
	}
}
