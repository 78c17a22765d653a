// Package upstreamtest runs fake model servers on 127.0.0.1 for tests and
// benchmarks: real HTTP servers whose behaviour (latency, status, garbage,
// hangs, resets) is set per test, with counters of what they received.
package upstreamtest

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Behavior decides how a fake answers one request. n counts requests from 1.
type Behavior func(n int64, rc *fasthttp.RequestCtx)

// Server is a fake upstream on a loopback port.
type Server struct {
	Addr string

	ln       net.Listener
	srv      *fasthttp.Server
	behavior atomic.Pointer[Behavior]
	closing  chan struct{}

	Requests    atomic.Int64
	InFlight    atomic.Int64
	MaxInFlight atomic.Int64

	mu        sync.Mutex
	lastBody  []byte
	lastHdr   []byte
	completed atomic.Int64
}

// Start serves b on a free 127.0.0.1 port until the test ends.
func Start(tb testing.TB, b Behavior) *Server {
	tb.Helper()
	s, err := New(b)
	if err != nil {
		tb.Fatalf("cannot start fake upstream: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// New serves b on a free 127.0.0.1 port until Close.
func New(b Behavior) (*Server, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr().String(), ln: ln, closing: make(chan struct{})}
	s.Set(b)
	s.srv = &fasthttp.Server{Handler: s.handle, Name: "fake", CloseOnShutdown: true}
	go s.srv.Serve(ln) //nolint:errcheck // returns at Close.
	return s, nil
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
	_ = s.ln.Close()
	done := make(chan struct{})
	go func() { _ = s.srv.Shutdown(); close(done) }()
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
