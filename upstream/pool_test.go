package upstream

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// These tests call real HTTP servers that behave as production servers
// do: they close idle connections, restart, trickle and send huge
// answers. They assert outcomes, not latencies. Those whose subject is
// timing (idle timeouts, try timeouts) serve in memory under virtual time
// (testing/synctest), the others on 127.0.0.1.

func realTarget(p *Pool, s *upstreamtest.Server, bs BreakerSettings) *Target {
	return p.Target("", "http", s.Addr, s.Addr, "/p", bs)
}

// endBubble ends a test under synctest (deferred, so that it runs after a
// failure too): the pool closes its idle connections, then the upstream
// settles.
func endBubble(p *Pool, up *upstreamtest.Server) {
	p.CloseIdle()
	upstreamtest.Settle(up)
}

func callOnce(c *Caller, tg *Target, routeTimeout time.Duration) ([]byte, *Outcome, error) {
	req := request()
	defer fasthttp.ReleaseRequest(req)
	tg.Prepare(req, []byte(tg.Path))
	out := new(Outcome)
	res, err := c.Call(Budget{Deadline: time.Now().Add(routeTimeout), Cancel: new(Cancel)}, req, tg, nil, nil, out)
	return res, out, err
}

// TestIdleClosedConnectionIsResent: an upstream that closes kept-alive
// connections after 200ms idle (as uvicorn does after 5s), called every
// 300ms by a pool that keeps them longer: every call succeeds without a
// retry policy, each on a fresh connection after the dead one.
func TestIdleClosedConnectionIsResent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := upstreamtest.StartWith(t, upstreamtest.JSON(`{"ok":true}`), upstreamtest.Options{IdleTimeout: 200 * time.Millisecond, InMemory: true})
		p := NewPool(nil, Options{IdleTimeout: time.Minute, Dial: upstreamtest.DialMemory})
		defer endBubble(p, up)
		tg := realTarget(p, up, BreakerSettings{Failures: 1, OpenFor: time.Hour})
		c := newCaller(Policy{TryTimeout: 2 * time.Second})
		before := p.staleResends.Get()
		const calls = 6
		for i := 0; i < calls; i++ {
			if i > 0 {
				time.Sleep(300 * time.Millisecond)
			}
			res, out, err := callOnce(c, tg, 2*time.Second)
			if err != nil || string(res) != `{"ok":true}` || out.Tries != 1 {
				t.Fatalf("call %d: %v %s (%+v)", i, err, res, out)
			}
		}
		if n := p.staleResends.Get() - before; n != calls-1 {
			t.Fatalf("%d dead connections resent, want %d", n, calls-1)
		}
		if n := up.Conns.Load(); n != calls {
			t.Fatalf("upstream accepted %d connections, want %d (one per call)", n, calls)
		}
		if s := tg.Breaker.State(); s != "closed" {
			t.Fatalf("breaker %s, want closed", s)
		}
	})
}

// TestIdleTimeoutBelowTheUpstreams: with the pool's idle timeout below
// the upstream's, connections are dropped before the upstream closes
// them: nothing needs a resend.
func TestIdleTimeoutBelowTheUpstreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := upstreamtest.StartWith(t, upstreamtest.JSON(`{}`), upstreamtest.Options{IdleTimeout: 400 * time.Millisecond, InMemory: true})
		p := NewPool(nil, Options{IdleTimeout: 100 * time.Millisecond, Dial: upstreamtest.DialMemory})
		defer endBubble(p, up)
		tg := realTarget(p, up, DefaultBreaker)
		c := newCaller(Policy{TryTimeout: 2 * time.Second})
		before := p.staleResends.Get()
		for i := 0; i < 3; i++ {
			if i > 0 {
				time.Sleep(500 * time.Millisecond)
			}
			if _, _, err := callOnce(c, tg, 2*time.Second); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if n := p.staleResends.Get() - before; n != 0 {
			t.Fatalf("%d resends, want none: idle connections should have been closed first", n)
		}
		if n := up.Conns.Load(); n != 3 {
			t.Fatalf("upstream accepted %d connections, want 3 (one per call)", n)
		}
	})
}

// TestRestartedUpstream: after the upstream restarts, every kept-alive
// connection is dead; the first call succeeds and the breaker stays
// closed.
func TestRestartedUpstream(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"ok":true}`))
	p := NewPool(nil, Options{})
	tg := realTarget(p, up, BreakerSettings{Failures: 1, OpenFor: time.Hour})
	c := newCaller(Policy{TryTimeout: 2 * time.Second})
	// Warm the pool with several connections.
	var wg sync.WaitGroup
	up.Set(up.Delay(50*time.Millisecond, upstreamtest.JSON(`{"ok":true}`)))
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := callOnce(c, tg, 2*time.Second); err != nil {
				t.Errorf("warm-up: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := tg.Host.Client().ConnsCount(); n < 2 {
		t.Fatalf("pool holds %d connections, want several", n)
	}
	up.Set(upstreamtest.JSON(`{"ok":true}`))
	if err := up.Restart(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if res, _, err := callOnce(c, tg, 2*time.Second); err != nil || string(res) != `{"ok":true}` {
			t.Fatalf("call %d after the restart: %v %s", i, err, res)
		}
	}
	if s := tg.Breaker.State(); s != "closed" {
		t.Fatalf("breaker %s, want closed", s)
	}
}

// TestTrickledAnswerIsATimeout: an answer trickling one byte per 50ms is
// a timeout of the upstream when the try timeout cuts it, or the route
// deadline after the upstream was late by much (see hangFactor), and
// the route deadline when that cuts it sooner: never a connection
// failure.
func TestTrickledAnswerIsATimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := upstreamtest.StartWith(t, nil, upstreamtest.Options{InMemory: true})
		up.Set(up.Trickle(`{"a":"`+strings.Repeat("x", 100)+`"}`, 50*time.Millisecond))
		p := NewPool(nil, Options{Dial: upstreamtest.DialMemory})
		defer endBubble(p, up)
		tg := realTarget(p, up, BreakerSettings{Failures: 5, OpenFor: time.Second})
		start := time.Now()
		_, _, err := callOnce(newCaller(Policy{TryTimeout: 200 * time.Millisecond}), tg, 2*time.Second)
		if ReasonOf(err) != ReasonTimeout || !errors.Is(err, ErrTimeout) {
			t.Fatalf("try timeout: %v (reason %s), want a timeout", err, ReasonOf(err).Metric())
		}
		if took := time.Since(start); took != 200*time.Millisecond {
			t.Fatalf("the try ended after %s, want its 200ms timeout", took)
		}
		for _, c := range []struct {
			deadline time.Duration
			want     Reason
		}{{200 * time.Millisecond, ReasonTimeout}, {minHang / 2, ReasonDeadline}} {
			start = time.Now()
			_, _, err = callOnce(newCaller(Policy{TryTimeout: 2 * time.Second}), tg, c.deadline)
			if ReasonOf(err) != c.want {
				t.Fatalf("route deadline %s: %v (reason %s), want %s", c.deadline, err, ReasonOf(err).Metric(), c.want.Metric())
			}
			if took := time.Since(start); took != c.deadline {
				t.Fatalf("the call ended after %s, want the %s route deadline", took, c.deadline)
			}
		}
	})
}

// TestAnswerSizeIsBounded: chunked and sized answers over the limit fail
// with ErrTooLarge, and do not count against the breaker.
func TestAnswerSizeIsBounded(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Huge(20<<20))
	p := NewPool(nil, Options{MaxBodySize: 1 << 20})
	tg := realTarget(p, up, BreakerSettings{Failures: 1, OpenFor: time.Hour})
	c := newCaller(Policy{TryTimeout: 5 * time.Second})
	if _, _, err := callOnce(c, tg, 5*time.Second); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("chunked: %v, want ErrTooLarge", err)
	}
	up.Set(upstreamtest.JSON(`["` + strings.Repeat("x", 2<<20) + `"]`))
	if _, _, err := callOnce(c, tg, 5*time.Second); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("sized: %v, want ErrTooLarge", err)
	}
	up.Set(upstreamtest.JSON(`{}`))
	if _, _, err := callOnce(c, tg, 5*time.Second); err != nil {
		t.Fatalf("after: %v (breaker %s)", err, tg.Breaker.State())
	}
}

// TestAnswerMemoryIsBounded: many large answers at once cannot take more
// than the answer memory budget: the reads past it fail as overloaded,
// and the budget is whole again afterwards.
func TestAnswerMemoryIsBounded(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Huge(3<<20))
	p := NewPool(nil, Options{MaxBodySize: 4 << 20, BodyMemory: 4 << 20})
	tg := realTarget(p, up, BreakerSettings{Failures: 1, OpenFor: time.Hour})
	c := newCaller(Policy{TryTimeout: 10 * time.Second})
	var wg sync.WaitGroup
	var mu sync.Mutex
	reasons := map[Reason]int{}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := callOnce(c, tg, 10*time.Second)
			mu.Lock()
			reasons[ReasonOf(err)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if reasons[ReasonOverloaded] == 0 || reasons[ReasonOverloaded]+reasons[ReasonNone] != 8 {
		t.Fatalf("outcomes %v: want some answers refused as overloaded and the rest answered", reasons)
	}
	if used := p.budget.used.Load(); used != 0 {
		t.Fatalf("%d bytes of the answer memory still taken", used)
	}
	if s := tg.Breaker.State(); s != "closed" {
		t.Fatalf("breaker %s, want closed", s)
	}
}

// TestBusyPoolIsLocal: a try that finds every connection busy is refused
// as overloaded and does not count against the upstream.
func TestBusyPoolIsLocal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := upstreamtest.StartWith(t, nil, upstreamtest.Options{InMemory: true})
		release := make(chan struct{})
		up.Set(func(n int64, rc *fasthttp.RequestCtx) {
			<-release
			upstreamtest.JSON(`{}`)(n, rc)
		})
		p := NewPool(nil, Options{MaxConns: 2, Limit: LimitSettings{Disabled: true}, Dial: upstreamtest.DialMemory})
		defer endBubble(p, up)
		tg := realTarget(p, up, BreakerSettings{Failures: 1, OpenFor: time.Hour})
		c := newCaller(Policy{TryTimeout: 5 * time.Second})
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Go(func() {
				if _, _, err := callOnce(c, tg, 5*time.Second); err != nil {
					t.Errorf("busy call: %v", err)
				}
			})
		}
		synctest.Wait() // both calls wait in the upstream
		if n := up.InFlight.Load(); n != 2 {
			t.Fatalf("%d calls in the upstream, want 2", n)
		}
		_, _, err := callOnce(c, tg, 5*time.Second)
		close(release)
		wg.Wait()
		if !errors.Is(err, ErrOverloaded) {
			t.Fatalf("third call: %v, want ErrOverloaded", err)
		}
		if s := tg.Breaker.State(); s != "closed" {
			t.Fatalf("breaker %s, want closed", s)
		}
	})
}

// endlessConn is a connection whose reads always fill the buffer.
type endlessConn struct{ net.Conn }

func (endlessConn) Read(b []byte) (int, error) { return len(b), nil }

// readAnswer reads n bytes of an answer on c, as the body reader does.
func readAnswer(c *trackedConn, n int) error {
	buf := make([]byte, maxRead)
	for got := 0; got < n; {
		k, err := c.Read(buf[:min(len(buf), n-got)])
		if err != nil {
			return err
		}
		got += k
	}
	return nil
}

// TestAnswerMemoryCountsBufferCapacity: the budget holds the capacity the
// body buffer grows to, not only the bytes read; a second large answer
// is refused when that capacity fills the budget, while an answer alone
// may always grow to the largest size allowed; settling gives it all
// back.
func TestAnswerMemoryCountsBufferCapacity(t *testing.T) {
	budget := &memBudget{max: 1 << 20}
	a := &trackedConn{Conn: endlessConn{}, budget: budget}
	b := &trackedConn{Conn: endlessConn{}, budget: budget}
	if err := readAnswer(a, 600<<10); err != nil {
		t.Fatal(err)
	}
	if used := budget.used.Load(); used != 1<<20 {
		t.Fatalf("600 KiB read holds %d bytes of the budget, want the 1 MiB buffer it grows into", used)
	}
	if err := readAnswer(b, freeAnswerBytes); err != nil {
		t.Fatalf("the first bytes of an answer are free: %v", err)
	}
	if err := readAnswer(b, maxRead); !errors.Is(err, errMemory) {
		t.Fatalf("second large answer: %v, want errMemory", err)
	}
	b.release()
	if err := readAnswer(a, 3<<20); err != nil {
		t.Fatalf("an answer alone is never refused: %v", err)
	}
	if used := budget.used.Load(); used != 4<<20 {
		t.Fatalf("a alone holds %d bytes, want 4 MiB", used)
	}
	a.release()
	if used := budget.used.Load(); used != 0 {
		t.Fatalf("%d bytes still taken after settling", used)
	}
}

// rawUpstream accepts one connection on 127.0.0.1 and, when answer is
// set, answers the first request with it; then it reads until the
// connection ends and sends how it ended.
func rawUpstream(t *testing.T, answer string) (addr string, ended <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		var got []byte
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				ch <- err
				return
			}
			if answer != "" && strings.Contains(string(got), "\r\n\r\n{}") {
				if _, err := c.Write([]byte(answer)); err != nil {
					ch <- err
					return
				}
				answer = ""
			}
		}
	}()
	return ln.Addr().String(), ch
}

func connEnd(t *testing.T, ended <-chan error) error {
	t.Helper()
	select {
	case err := <-ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream's connection did not end within 10s")
		return nil
	}
}

// TestTimedOutConnectionIsReset: the connection of a try that timed out
// is reset, so that neither side keeps it (a graceful close would hold
// the gateway's socket and local port as long as the upstream hangs); a
// healthy idle connection is still closed gracefully.
func TestTimedOutConnectionIsReset(t *testing.T) {
	addr, ended := rawUpstream(t, "")
	p := NewPool(nil, Options{})
	tg := p.Target("", "http", addr, addr, "/p", BreakerSettings{Disabled: true})
	if _, _, err := callOnce(newCaller(Policy{TryTimeout: 50 * time.Millisecond}), tg, time.Second); ReasonOf(err) != ReasonTimeout {
		t.Fatalf("hanging upstream: %v, want a timeout", err)
	}
	if err := connEnd(t, ended); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("timed-out connection ended with %v, want a reset", err)
	}

	addr, ended = rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	tg = p.Target("", "http", addr, addr, "/p", BreakerSettings{Disabled: true})
	if _, _, err := callOnce(newCaller(Policy{TryTimeout: 5 * time.Second}), tg, 5*time.Second); err != nil {
		t.Fatalf("answering upstream: %v", err)
	}
	p.CloseIdle()
	if err := connEnd(t, ended); err != io.EOF {
		t.Fatalf("idle connection ended with %v, want a graceful close (EOF)", err)
	}
}

// TestLocalShortageIsNotTheUpstreams: a dial that fails because this
// machine is out of file descriptors or local ports is refused as
// overloaded and does not count against the upstream.
func TestLocalShortageIsNotTheUpstreams(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL} {
		dial := func(addr string, _ time.Duration) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)}
		}
		p := NewPool(nil, Options{Dial: dial})
		tg := p.Target("", "http", "127.0.0.1:9", "127.0.0.1:9", "/p", BreakerSettings{Failures: 1, OpenFor: time.Hour})
		_, _, err := callOnce(newCaller(Policy{TryTimeout: time.Second}), tg, time.Second)
		if !errors.Is(err, ErrOverloaded) || ReasonOf(err) != ReasonOverloaded {
			t.Fatalf("%v: %v (reason %s), want ErrOverloaded", errno, err, ReasonOf(err).Metric())
		}
		if s := tg.Breaker.State(); s != "closed" {
			t.Fatalf("%v: breaker %s, want closed", errno, s)
		}
	}
}

// TestStalledChunkedAnswerIsATimeout: a chunked answer that stops in the
// middle of a chunk size's line end is a timeout of the upstream when the try
// timeout cuts it (fasthttp reports it as a broken chunk), and its
// connection is reset like any timed-out one.
func TestStalledChunkedAnswerIsATimeout(t *testing.T) {
	addr, ended := rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r")
	p := NewPool(nil, Options{})
	tg := p.Target("", "http", addr, addr, "/p", BreakerSettings{Disabled: true})
	_, _, err := callOnce(newCaller(Policy{TryTimeout: 50 * time.Millisecond}), tg, time.Second)
	if ReasonOf(err) != ReasonTimeout || !errors.Is(err, ErrTimeout) {
		t.Fatalf("stalled chunk: %v (reason %s), want a timeout", err, ReasonOf(err).Metric())
	}
	if err := connEnd(t, ended); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("timed-out connection ended with %v, want a reset", err)
	}
}

// TestRefusedMemoryShowsThroughBrokenChunk: the answer memory refusing a
// read in the middle of a chunked answer is told as such, not as the
// broken connection fasthttp reports.
func TestRefusedMemoryShowsThroughBrokenChunk(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	tc := &trackedConn{Conn: c1, budget: &memBudget{max: 1}}
	tc.addr.conn = tc
	var resp fasthttp.Response
	resp.ParseNetConn(tc)
	broken := errors.New("cannot read '\\n' char at the end of chunk size") // does not unwrap
	if err := connFailure(&resp, broken); err != broken {
		t.Fatalf("healthy connection: %v, want the error as it came", err)
	}
	tc.memoryRefused.Store(true)
	if err := connFailure(&resp, broken); !errors.Is(err, errMemory) {
		t.Fatalf("refused read: %v, want errMemory", err)
	}
	if err := connFailure(&resp, errMemory); err != errMemory {
		t.Fatalf("refused read reported as such: %v, want it as it came", err)
	}
}

// countingResolver answers every name with 127.0.0.1 and counts the
// lookups.
type countingResolver struct{ lookups atomic.Int64 }

func (r *countingResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	r.lookups.Add(1)
	return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
}

// TestFailedDialAsksDNSAgain: the addresses of an upstream name are
// cached while dials to them work; a dial that fails (the model server's
// pod replaced, its load balancer's nodes changed) makes the next dial
// ask DNS again instead of using the cached addresses for a minute.
func TestFailedDialAsksDNSAgain(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: dials are refused
	_, port, _ := net.SplitHostPort(addr)
	p := NewPool(nil, Options{})
	r := &countingResolver{}
	p.dialer.Resolver = r
	host := "model.test:" + port
	tg := p.Target("", "http", host, host, "/p", BreakerSettings{Disabled: true})
	c := newCaller(Policy{TryTimeout: time.Second})
	if _, _, err := callOnce(c, tg, time.Second); ReasonOf(err) != ReasonConnect {
		t.Fatalf("nothing listening: %v, want a connection failure", err)
	}
	if n := r.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups, want 1", n)
	}
	ln, err = net.Listen("tcp4", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) { rc.SetBodyString(`{"ok":true}`) }}
	go srv.Serve(ln)     //nolint:errcheck // returns when the listener closes.
	defer srv.Shutdown() //nolint:errcheck
	for i := range 2 {
		if res, _, err := callOnce(c, tg, time.Second); err != nil || string(res) != `{"ok":true}` {
			t.Fatalf("call %d once listening: %v %s", i, err, res)
		}
	}
	if n := r.lookups.Load(); n != 2 {
		t.Fatalf("%d lookups, want 2: one again after the failed dial, none while dials work", n)
	}
}

// TestTLSSessionsAreResumed: a connection to an https upstream that
// replaces one closed idle resumes the TLS session instead of making a
// full handshake.
func TestTLSSessionsAreResumed(t *testing.T) {
	var resumed []bool
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resumed = append(resumed, r.TLS.DidResume)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	p := NewPool(nil, Options{})
	tg := p.Target("", "https", addr, addr, "/p", BreakerSettings{Disabled: true})
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	tg.Host.client.TLSConfig.RootCAs = roots
	c := newCaller(Policy{TryTimeout: 5 * time.Second})
	for i := range 3 {
		if res, _, err := callOnce(c, tg, 5*time.Second); err != nil || string(res) != `{"ok":true}` {
			t.Fatalf("call %d: %v %s", i, err, res)
		}
		p.CloseIdle()
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(resumed, []bool{false, true, true}) {
		t.Fatalf("sessions resumed by connection: %v, want [false true true]", resumed)
	}
}

// TestEarlyAnswerIsTheUpstreams: an upstream that refuses a body larger
// than it accepts answers before taking it and closes the connection, so
// writing the rest of the body fails. That is the upstream's answer (a
// 4xx), not a broken connection: it neither opens the breaker nor fails
// the calls with bodies it takes.
func TestEarlyAnswerIsTheUpstreams(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler:            func(rc *fasthttp.RequestCtx) { rc.SetBodyString(`{"ok":true}`) },
		MaxRequestBodySize: 64 << 10,
		ErrorHandler: func(rc *fasthttp.RequestCtx, err error) {
			rc.SetStatusCode(fasthttp.StatusRequestEntityTooLarge)
			rc.SetBodyString(`{"error":"body too large"}`)
		},
		Logger: quietLogger{},
	}
	go srv.Serve(ln)     //nolint:errcheck // returns when the listener closes.
	defer srv.Shutdown() //nolint:errcheck
	addr := ln.Addr().String()
	p := NewPool(nil, Options{})
	tg := p.Target("", "http", addr, addr, "/p", BreakerSettings{Failures: 1, OpenFor: time.Hour})
	c := newCaller(Policy{TryTimeout: 5 * time.Second, Retries: 2, RetryOn: RetryOn{Connect: true, Any5xx: true}})
	call := func(size int) (Outcome, []byte, error) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod("POST")
		req.SetBodyString(`{"x":"` + strings.Repeat("a", size) + `"}`)
		tg.Prepare(req, []byte("/p"))
		var out Outcome
		res, err := c.Call(Budget{Deadline: time.Now().Add(5 * time.Second)}, req, tg, nil, nil, &out)
		return out, res, err
	}
	for i := range 3 {
		out, _, err := call(4 << 20)
		if ReasonOf(err) != ReasonStatus || out.Status != 413 || out.Attempts != 1 {
			t.Fatalf("4 MiB body %d: %v, %+v; want the upstream's 413, one attempt", i, err, out)
		}
	}
	if out, res, err := call(100); err != nil || string(res) != `{"ok":true}` {
		t.Fatalf("small body after the refused ones: %v %s %+v", err, res, out)
	}
	if s := tg.Breaker.State(); s != "closed" {
		t.Fatalf("breaker %s, want closed", s)
	}
}

// TestAnswerHeadersAreBounded: answers with headers of up to 16 KiB (as
// some proxies and servers send) are read; larger ones fail the try as
// too large, which does not count against the upstream.
func TestAnswerHeadersAreBounded(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var size atomic.Int64
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		rc.Response.Header.Set("X-Debug", strings.Repeat("d", int(size.Load())))
		rc.SetBodyString(`{"ok":true}`)
	}}
	go srv.Serve(ln)     //nolint:errcheck // returns when the listener closes.
	defer srv.Shutdown() //nolint:errcheck
	addr := ln.Addr().String()
	p := NewPool(nil, Options{})
	tg := p.Target("", "http", addr, addr, "/p", BreakerSettings{Failures: 1, OpenFor: time.Hour})
	c := newCaller(Policy{TryTimeout: 2 * time.Second})
	size.Store(10 << 10)
	if res, _, err := callOnce(c, tg, 2*time.Second); err != nil || string(res) != `{"ok":true}` {
		t.Fatalf("10 KiB of headers: %v %s", err, res)
	}
	size.Store(20 << 10)
	if _, _, err := callOnce(c, tg, 2*time.Second); ReasonOf(err) != ReasonTooLarge || !strings.Contains(err.Error(), "headers larger than 16384 bytes") {
		t.Fatalf("20 KiB of headers: %v, want too large", err)
	}
	if s := tg.Breaker.State(); s != "closed" {
		t.Fatalf("breaker %s, want closed", s)
	}
}
