// Package accept keeps servers accepting connections through errors that
// pass. fasthttp's server stops serving at the first accept error other
// than a timeout, so a burst of connections that takes a process past its
// file descriptor limit for a moment would otherwise stop it serving for
// good.
package accept

import (
	"net"
	"time"

	"github.com/lariat-gw/lariat/internal/shortage"
)

// FirstWait and MaxWait bound the wait between accept tries after an error
// that passes: FirstWait after the first, doubling up to MaxWait.
const (
	FirstWait = 5 * time.Millisecond
	MaxWait   = time.Second
)

// Retrying returns ln with an Accept that, as net/http's server does,
// waits and tries again after an error that passes (shortage.Local): the
// process or the system out of file descriptors, or the kernel short of
// buffers. Connections that arrive meanwhile wait in the
// listen backlog. onError, when not nil, is called with each such error
// and the wait before the next try. Other errors (the listener closed)
// are returned.
func Retrying(ln net.Listener, onError func(err error, wait time.Duration)) net.Listener {
	return &listener{Listener: ln, onError: onError}
}

// Notable reports whether a wait is worth a log line: the first of a
// series, then one a second.
func Notable(wait time.Duration) bool { return wait == FirstWait || wait == MaxWait }

type listener struct {
	net.Listener
	onError func(err error, wait time.Duration)
}

func (l *listener) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !shortage.Local(err) {
			return c, err
		}
		wait = min(max(2*wait, FirstWait), MaxWait)
		if l.onError != nil {
			l.onError(err, wait)
		}
		time.Sleep(wait)
	}
}
