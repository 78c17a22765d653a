// Package upstreamtest runs fake model servers on 127.0.0.1 for tests and
// benchmarks: real HTTP servers whose behaviour (latency, status, garbage,
// hangs, resets) is set per test, with counters of what they received.
// With Options.InMemory a server takes in-process connections instead, so
// that a test under testing/synctest runs its timing on virtual time.
package upstreamtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// Behavior decides how a fake answers one request. n counts requests from 1.
type Behavior func(n int64, rc *fasthttp.RequestCtx)

// Server is a fake upstream on a loopback port.
type Server struct {
	Addr string

	opts     Options
	srvMu    sync.Mutex
	ln       *trackingListener
	srv      *fasthttp.Server
	behavior atomic.Pointer[Behavior]
	closing  chan struct{}

	// Conns counts the connections accepted.
	Conns atomic.Int64

	Requests    atomic.Int64
	InFlight    atomic.Int64
	MaxInFlight atomic.Int64

	mu        sync.Mutex
	lastBody  []byte
	lastHdr   []byte
	completed atomic.Int64
}

// Options make a fake behave like a particular kind of production server.
type Options struct {
	// IdleTimeout closes a kept-alive connection idle this long, without
	// telling the client, as uvicorn (5s) and Node (5s) do. 0: never.
	IdleTimeout time.Duration
	// InMemory serves in-process connections, dialled with DialMemory,
	// instead of a loopback port; the server's address is a made-up
	// name. Its timers (idle timeout, Delay, Trickle) then run on the
	// clock of the goroutines that use it: start the server inside a
	// testing/synctest bubble to put them on virtual time, and end the
	// bubble with Settle.
	InMemory bool
}

// Start serves b on a free 127.0.0.1 port until the test ends.
func Start(tb testing.TB, b Behavior) *Server {
	return StartWith(tb, b, Options{})
}

// StartWith serves b with options o until the test ends.
func StartWith(tb testing.TB, b Behavior, o Options) *Server {
	tb.Helper()
	s, err := NewWith(b, o)
	if err != nil {
		tb.Fatalf("cannot start fake upstream: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// New serves b on a free 127.0.0.1 port until Close.
func New(b Behavior) (*Server, error) { return NewWith(b, Options{}) }

// NewWith serves b with options o on a free 127.0.0.1 port until Close.
func NewWith(b Behavior, o Options) (*Server, error) {
	s := &Server{opts: o, closing: make(chan struct{})}
	s.Set(b)
	if err := s.listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return s, nil
}

// memServers maps the address of each in-memory server to it, for
// DialMemory; memCount numbers the addresses.
var (
	memServers sync.Map
	memCount   atomic.Int64
)

// listen starts a server incarnation on addr.
func (s *Server) listen(addr string) error {
	var ln net.Listener
	if s.opts.InMemory {
		ln = fasthttputil.NewInmemoryListener()
		if addr == "127.0.0.1:0" {
			addr = fmt.Sprintf("upstream-%d.test:80", memCount.Add(1))
		}
		memServers.Store(addr, s)
	} else {
		var err error
		if ln, err = net.Listen("tcp4", addr); err != nil {
			return err
		}
		addr = ln.Addr().String()
	}
	tl := &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}, accepted: &s.Conns}
	// No Date header in memory: fasthttp refreshes it from a goroutine
	// that never ends, which must not start inside a synctest bubble.
	srv := &fasthttp.Server{Handler: s.handle, Name: "fake", CloseOnShutdown: true, IdleTimeout: s.opts.IdleTimeout, Logger: quiet{}, NoDefaultDate: s.opts.InMemory}
	s.srvMu.Lock()
	s.Addr, s.ln, s.srv = addr, tl, srv
	s.srvMu.Unlock()
	go srv.Serve(tl) //nolint:errcheck // returns when the listener closes.
	return nil
}

// Restart kills the server as a crashing or redeployed process dies (the
// listener closes, every connection, idle or busy, is closed without an
// answer) and starts it again on the same address. Requests in flight at
// the kill fail; connections kept alive by clients are dead.
func (s *Server) Restart() error {
	s.srvMu.Lock()
	old, addr := s.ln, s.Addr
	s.srvMu.Unlock()
	old.kill()
	return s.listen(addr)
}

// DialMemory connects to the in-memory server (Options.InMemory) whose
// address is addr; it has the shape of upstream.Options.Dial. The
// connection reports use after the server closed it as a TCP socket does
// (a write fails with EPIPE, a read finds the end of the stream), and a
// passed deadline as os.ErrDeadlineExceeded.
func DialMemory(addr string, _ time.Duration) (net.Conn, error) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	v, ok := memServers.Load(addr)
	if !ok {
		return nil, refused
	}
	s := v.(*Server)
	s.srvMu.Lock()
	ln := s.ln
	s.srvMu.Unlock()
	c, err := ln.Listener.(*fasthttputil.InmemoryListener).Dial()
	if err != nil {
		return nil, refused
	}
	return tcpLike{c}, nil
}

// Settle ends the use of in-memory servers in a testing/synctest bubble,
// after the clients have closed their idle connections: it closes the
// servers (their test's cleanup closing them again is harmless), then
// lets virtual time run until
// fasthttp's cleaners (of the servers' workers and of the clients' idle
// connections, which look for work every few seconds) have seen there is
// none and exited, since a bubble must end with no goroutine left.
func Settle(servers ...*Server) {
	for _, s := range servers {
		s.Close()
	}
	time.Sleep(10 * time.Minute)
}

// tcpLike is an in-memory connection whose errors are those of a TCP
// socket.
type tcpLike struct{ net.Conn }

func (c tcpLike) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	return n, tcpError("read", err)
}

func (c tcpLike) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	return n, tcpError("write", err)
}

func tcpError(op string, err error) error {
	switch {
	case errors.Is(err, fasthttputil.ErrConnectionClosed):
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, syscall.EPIPE)}
	case errors.Is(err, fasthttputil.ErrTimeout):
		return &net.OpError{Op: op, Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	return err
}

// quiet drops fasthttp's log lines: the connection errors a fake causes
// on purpose are not news.
type quiet struct{}

func (quiet) Printf(string, ...any) {}

// trackingListener remembers its open connections so that a kill can
// close them all.
type trackingListener struct {
	net.Listener
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	killed   bool
	accepted *atomic.Int64
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.killed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.accepted.Add(1)
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *trackingListener) kill() {
	l.mu.Lock()
	l.killed = true
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	l.mu.Unlock()
	_ = l.Listener.Close()
	for c := range conns {
		if tc, ok := c.(*trackedConn); ok {
			if t, ok := tc.Conn.(*net.TCPConn); ok {
				_ = t.SetLinger(0)
			}
		}
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// URL returns http://ADDR plus path.
func (s *Server) URL(path string) string { return "http://" + s.Addr + path }

// Set replaces the behaviour.
func (s *Server) Set(b Behavior) { s.behavior.Store(&b) }

// Close stops the server and releases requests that hang.
func (s *Server) Close() {
	select {
	case <-s.closing:
		return
	default:
		close(s.closing)
	}
	s.srvMu.Lock()
	ln, srv := s.ln, s.srv
	s.srvMu.Unlock()
	if s.opts.InMemory {
		memServers.Delete(s.Addr)
	}
	_ = ln.Close()
	done := make(chan struct{})
	go func() { _ = srv.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// Closing is closed when the server stops; behaviours that hang wait on it.
func (s *Server) Closing() <-chan struct{} { return s.closing }

// Completed counts requests answered.
func (s *Server) Completed() int64 { return s.completed.Load() }

// LastBody returns the body of the last request received.
func (s *Server) LastBody() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.lastBody)
}

// LastHeader returns a header of the last request received.
func (s *Server) LastHeader(name string) string {
	s.mu.Lock()
	raw := append([]byte(nil), s.lastHdr...)
	s.mu.Unlock()
	var h fasthttp.RequestHeader
	h.DisableNormalizing()
	if err := h.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
		return ""
	}
	for k, v := range h.All() {
		if strings.EqualFold(string(k), name) {
			return string(v)
		}
	}
	return ""
}

func (s *Server) handle(rc *fasthttp.RequestCtx) {
	n := s.Requests.Add(1)
	cur := s.InFlight.Add(1)
	for {
		m := s.MaxInFlight.Load()
		if cur <= m || s.MaxInFlight.CompareAndSwap(m, cur) {
			break
		}
	}
	s.mu.Lock()
	s.lastBody = append(s.lastBody[:0], rc.PostBody()...)
	s.lastHdr = append(s.lastHdr[:0], rc.Request.Header.Header()...)
	s.mu.Unlock()
	(*s.behavior.Load())(n, rc)
	s.InFlight.Add(-1)
	s.completed.Add(1)
}

// JSON answers 200 with body.
func JSON(body string) Behavior {
	return func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetContentType("application/json")
		rc.SetBodyString(body)
	}
}

// Echo answers 200 with the request body.
func Echo() Behavior {
	return func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetContentType("application/json")
		rc.SetBody(rc.PostBody())
	}
}

// Status answers status with a JSON error body.
func Status(status int) Behavior {
	return func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetStatusCode(status)
		rc.SetContentType("application/json")
		rc.SetBodyString(`{"error":"fake failure"}`)
	}
}

// Delay waits d (or until the server closes) and then behaves as b.
func (s *Server) Delay(d time.Duration, b Behavior) Behavior {
	return func(n int64, rc *fasthttp.RequestCtx) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.closing:
		}
		b(n, rc)
	}
}

// Hang never answers until the server closes.
func (s *Server) Hang() Behavior {
	return func(_ int64, rc *fasthttp.RequestCtx) {
		<-s.closing
		rc.SetStatusCode(fasthttp.StatusServiceUnavailable)
	}
}

// Garbage answers 200 with a body that is not JSON.
func Garbage() Behavior {
	return func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetContentType("application/json")
		rc.SetBodyString("{\"oops\": <html>not json")
	}
}

// Reset closes the connection without answering.
func Reset() Behavior {
	return func(_ int64, rc *fasthttp.RequestCtx) {
		rc.HijackSetNoResponse(true)
		rc.Hijack(func(c net.Conn) {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		})
	}
}

// Trickle answers 200 with body, one byte every interval (or until the
// server closes), as an overloaded or stalled server streams.
func (s *Server) Trickle(body string, every time.Duration) Behavior {
	return func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetContentType("application/json")
		closing := s.closing
		rc.SetBodyStreamWriter(func(w *bufio.Writer) {
			t := time.NewTicker(every)
			defer t.Stop()
			for i := 0; i < len(body); i++ {
				if w.WriteByte(body[i]) != nil || w.Flush() != nil {
					return
				}
				select {
				case <-t.C:
				case <-closing:
					return
				}
			}
		})
	}
}

// Huge answers 200 with a chunked JSON body of about n bytes (a list of
// numbers), written as fast as the client reads it.
func Huge(n int) Behavior {
	chunk := []byte(strings.Repeat("12345678,", 7281)) // ~64 KiB
	return func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetContentType("application/json")
		rc.SetBodyStreamWriter(func(w *bufio.Writer) {
			if _, err := w.WriteString("["); err != nil {
				return
			}
			for sent := 0; sent < n; sent += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				if w.Flush() != nil {
					return
				}
			}
			_, _ = w.WriteString("0]")
		})
	}
}

// Sequence answers request n with bs[n-1], and the last one after that.
func Sequence(bs ...Behavior) Behavior {
	return func(n int64, rc *fasthttp.RequestCtx) {
		i := int(n - 1)
		if i >= len(bs) {
			i = len(bs) - 1
		}
		bs[i](n, rc)
	}
}

// Rendezvous makes several fakes wait for each other: each request joins,
// then waits until want requests across the group are in flight at once
// (or timeout passes) before answering with b. Peak reports the most seen
// in flight together; Peak() >= want proves the calls overlapped.
type Rendezvous struct {
	want    int64
	timeout time.Duration
	cur     atomic.Int64
	peak    atomic.Int64
	mu      sync.Mutex
	cond    *sync.Cond
}

// NewRendezvous returns a group that waits for want concurrent requests.
func NewRendezvous(want int, timeout time.Duration) *Rendezvous {
	r := &Rendezvous{want: int64(want), timeout: timeout}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// Peak returns the most requests that were in flight together.
func (r *Rendezvous) Peak() int64 { return r.peak.Load() }

// Join wraps b so its requests take part in the rendezvous.
func (r *Rendezvous) Join(b Behavior) Behavior {
	return func(n int64, rc *fasthttp.RequestCtx) {
		c := r.cur.Add(1)
		for {
			p := r.peak.Load()
			if c <= p || r.peak.CompareAndSwap(p, c) {
				break
			}
		}
		r.mu.Lock()
		r.cond.Broadcast()
		deadline := time.Now().Add(r.timeout)
		for r.peak.Load() < r.want && time.Now().Before(deadline) {
			// Wake up periodically to honour the timeout.
			go func() { time.Sleep(10 * time.Millisecond); r.cond.Broadcast() }()
			r.cond.Wait()
		}
		r.mu.Unlock()
		b(n, rc)
		r.cur.Add(-1)
	}
}
