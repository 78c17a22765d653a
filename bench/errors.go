package bench

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/valyala/fasthttp"
)

// errKind is how a failed request is counted.
type errKind uint8

const (
	kindNone       errKind = iota
	kindStatus             // a response with status >= 400
	kindTimeout            // no response within Config.Timeout
	kindConnection         // dial failure, refused, reset or closed connection
	kindOther              // anything else (e.g. a malformed response)
)

// classify tells which kind of failure err is. Dial failures count as
// connection errors even when the dial timed out: the request never reached
// the server.
func classify(err error) errKind {
	if errors.Is(err, fasthttp.ErrDialTimeout) {
		return kindConnection
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return kindConnection
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return kindTimeout
	}
	switch {
	case errors.Is(err, fasthttp.ErrConnectionClosed),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE):
		return kindConnection
	}
	if op != nil {
		return kindConnection
	}
	return kindOther
}
