package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/valyala/fasthttp"
)

// The tests in this file run under virtual time (testing/synctest) with a
// transport that is a plain function: what they check about timing holds
// on any machine, however loaded.

// fake is a transport whose behaviour is set per test; it records when
// each try started and the time it had left.
type fake struct {
	mu     sync.Mutex
	starts []time.Duration // since the test began
	left   []time.Duration // deadline - start
	t0     time.Time
	answer func(n int, host string, deadline time.Time, resp *fasthttp.Response) error
}

func (f *fake) transport(h *Host, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	f.mu.Lock()
	n := len(f.starts)
	f.starts = append(f.starts, time.Since(f.t0))
	f.left = append(f.left, time.Until(deadline))
	f.mu.Unlock()
	return f.answer(n, string(req.Header.Host()), deadline, resp)
}

func (f *fake) tries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts)
}

// hang waits out the deadline, as an upstream that never answers.
// cpuIdle stands for the process's wait for a CPU in tests of what the
// breakers count: never short of CPU, whatever else the test binary ran.
func cpuIdle(time.Time) cpuState { return cpuState{} }

func hang(deadline time.Time) error {
	time.Sleep(time.Until(deadline))
	return fasthttp.ErrTimeout
}

func ok(resp *fasthttp.Response, body string) error {
	resp.SetStatusCode(200)
	resp.SetBodyString(body)
	return nil
}

func newFake(answer func(n int, host string, deadline time.Time, resp *fasthttp.Response) error) (*fake, *Pool) {
	f := &fake{t0: time.Now(), answer: answer}
	return f, NewPool(nil, Options{Transport: f.transport, Limit: LimitSettings{Disabled: true}})
}

func target(p *Pool, host string, bs BreakerSettings) *Target {
	return p.Target("", "http", host, host+":80", "/p", bs)
}

func copyBody(dst, body []byte) ([]byte, error) { return append(dst, body...), nil }

func newCaller(p Policy) *Caller {
	c := NewCaller(p, `route="t",task="m"`, nil)
	c.Decode = copyBody
	return c
}

func request() *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("/p")
	req.Header.SetMethod("POST")
	req.SetBodyString(`{}`)
	return req
}

// TestRetryStartsOnlyWhenATryFits: a hanging upstream, tries of 30ms,
// five retries allowed, a 100ms route: retries start only while a whole
// try fits, and the call ends by the deadline.
func TestRetryStartsOnlyWhenATryFits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, p := newFake(func(_ int, _ string, deadline time.Time, _ *fasthttp.Response) error { return hang(deadline) })
		c := newCaller(Policy{TryTimeout: 30 * time.Millisecond, Retries: 5, Backoff: 5 * time.Millisecond, BackoffMax: 5 * time.Millisecond, RetryOn: DefaultRetryOn})
		start := time.Now()
		b := Budget{Deadline: start.Add(100 * time.Millisecond), Cancel: new(Cancel)}
		var out Outcome
		_, err := c.Call(b, request(), target(p, "m", BreakerSettings{Disabled: true}), nil, nil, &out)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("error %v, want a timeout", err)
		}
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Fatalf("call took %s, past the 100ms deadline", took)
		}
		// 30ms tries with 2.5-5ms backoff: three fit in 100ms, a fourth
		// would start with less than 30ms left.
		if n := f.tries(); n != 3 {
			t.Fatalf("%d tries (at %v), want 3", n, f.starts)
		}
		for i, left := range f.left {
			if left < 30*time.Millisecond {
				t.Fatalf("try %d started with %s left, less than a whole try", i, left)
			}
		}
		if out.Tries != 3 || out.Attempts != 3 {
			t.Fatalf("outcome %+v", out)
		}
	})
}

// TestBackoffEndsWhenCanceled: a request that ends during a backoff sleep
// makes no further try and returns at once.
func TestBackoffEndsWhenCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, p := newFake(func(_ int, _ string, _ time.Time, resp *fasthttp.Response) error {
			resp.SetStatusCode(503)
			return nil
		})
		c := newCaller(Policy{TryTimeout: 100 * time.Millisecond, Retries: 3, Backoff: 400 * time.Millisecond, BackoffMax: 400 * time.Millisecond, RetryOn: DefaultRetryOn})
		cancel := new(Cancel)
		start := time.Now()
		b := Budget{Deadline: start.Add(2 * time.Second), Cancel: cancel}
		go func() {
			time.Sleep(50 * time.Millisecond)
			cancel.Cancel()
		}()
		var out Outcome
		_, err := c.Call(b, request(), target(p, "m", BreakerSettings{Disabled: true}), nil, nil, &out)
		if ReasonOf(err) != ReasonStatus || out.Status != 503 {
			t.Fatalf("error %v status %d, want the 503", err, out.Status)
		}
		if took := time.Since(start); took != 50*time.Millisecond {
			t.Fatalf("call returned after %s, want 50ms (when the request ended)", took)
		}
		if n := f.tries(); n != 1 {
			t.Fatalf("%d tries, want 1", n)
		}
	})
}

// TestRetriesTheRetryable: what the policy names is retried, the rest not.
func TestRetriesTheRetryable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := func(fail func(resp *fasthttp.Response) error, on RetryOn, wantTries int) {
			t.Helper()
			fk, p := newFake(func(n int, _ string, _ time.Time, resp *fasthttp.Response) error {
				if n == 0 {
					return fail(resp)
				}
				return ok(resp, `{"ok":1}`)
			})
			c := newCaller(Policy{TryTimeout: 50 * time.Millisecond, Retries: 1, Backoff: time.Millisecond, BackoffMax: time.Millisecond, RetryOn: on})
			var out Outcome
			res, err := c.Call(Budget{Deadline: time.Now().Add(time.Second)}, request(), target(p, "m", BreakerSettings{Disabled: true}), nil, nil, &out)
			if fk.tries() != wantTries {
				t.Fatalf("%d tries, want %d (err %v)", fk.tries(), wantTries, err)
			}
			if wantTries == 2 && (err != nil || string(res) != `{"ok":1}`) {
				t.Fatalf("retry did not answer: %v %s", err, res)
			}
		}
		status := func(code int) func(*fasthttp.Response) error {
			return func(resp *fasthttp.Response) error { resp.SetStatusCode(code); return nil }
		}
		refused := func(*fasthttp.Response) error { return errors.New("dial tcp: connect: connection refused") }
		f(status(503), DefaultRetryOn, 2)
		f(status(500), DefaultRetryOn, 1)
		f(status(500), RetryOn{Any5xx: true}, 2)
		f(status(404), RetryOn{Any5xx: true}, 1)
		f(refused, DefaultRetryOn, 2)
		f(refused, RetryOn{Timeout: true}, 1)
		// Local refusals are never retried: the gateway is protecting
		// itself.
		f(func(*fasthttp.Response) error { return fasthttp.ErrNoFreeConns }, RetryOn{Connect: true, Timeout: true, Any5xx: true}, 1)
	})
}

// TestRetryWaitsForRetryAfter: an upstream that answers 429 or 503 with
// Retry-After gets its pause: the retry starts after it when it fits in
// the route's budget, and is not made when it does not.
func TestRetryWaitsForRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		call := func(status int, retryAfter string, budget time.Duration) (*fake, []byte, error) {
			t.Helper()
			f, p := newFake(func(n int, _ string, _ time.Time, resp *fasthttp.Response) error {
				if n == 0 {
					resp.SetStatusCode(status)
					resp.Header.Set("Retry-After", retryAfter)
					return nil
				}
				return ok(resp, `{"ok":1}`)
			})
			f.t0 = time.Now()
			c := newCaller(Policy{TryTimeout: 100 * time.Millisecond, Retries: 2, Backoff: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond, RetryOn: DefaultRetryOn})
			var out Outcome
			res, err := c.Call(Budget{Deadline: time.Now().Add(budget), Cancel: new(Cancel)}, request(), target(p, "m", BreakerSettings{Disabled: true}), nil, nil, &out)
			return f, res, err
		}
		// A pause longer than the budget: no retry, the answer at once.
		start := time.Now()
		f, _, err := call(503, "2", time.Second)
		if ReasonOf(err) != ReasonStatus || f.tries() != 1 || time.Since(start) != 0 {
			t.Fatalf("503 asking for 2s in a 1s budget: %d tries, %v after %s", f.tries(), err, time.Since(start))
		}
		// A pause that fits: the retry waits for it.
		f, res, err := call(429, "1", 2*time.Second)
		if err != nil || string(res) != `{"ok":1}` || f.tries() != 2 || f.starts[1] != time.Second {
			t.Fatalf("429 asking for 1s in a 2s budget: %d tries at %v, %v", f.tries(), f.starts, err)
		}
		// An HTTP date.
		f, _, err = call(503, time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat), 2*time.Second)
		if ReasonOf(err) != ReasonStatus || f.tries() != 1 {
			t.Fatalf("503 asking until a date past the budget: %d tries, %v", f.tries(), err)
		}
		// Other statuses and malformed values keep the backoff.
		for _, c := range []struct {
			status int
			value  string
		}{{502, "5"}, {503, "soon"}, {503, "0"}, {503, "-1"}} {
			f, _, err = call(c.status, c.value, time.Second)
			if err != nil || f.tries() != 2 || f.starts[1] > 10*time.Millisecond {
				t.Fatalf("%d with Retry-After %q: %d tries at %v, %v", c.status, c.value, f.tries(), f.starts, err)
			}
		}
	})
}

func TestRetryAfterValues(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"0":                             0,
		"86400":                         time.Hour,
		"99999999999":                   0,
		"1.5":                           0,
		"Fri, 01 May 2026 10:00:30 GMT": 30 * time.Second,
		"Fri, 01 May 2026 09:59:00 GMT": 0,
		"tomorrow":                      0,
	} {
		if got := retryAfter([]byte(v), now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

// TestBreakerCountsOnlyUpstreamFaults: local refusals and the caller's
// deadline never open the breaker; consecutive upstream faults do; after
// open_for one trial goes through and closes it.
func TestBreakerCountsOnlyUpstreamFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mode atomic.Value
		mode.Store("busy")
		_, p := newFake(func(_ int, _ string, deadline time.Time, resp *fasthttp.Response) error {
			switch mode.Load() {
			case "busy":
				return fasthttp.ErrNoFreeConns
			case "memory":
				return fmt.Errorf("read: %w", errMemory)
			case "hang":
				return hang(deadline)
			case "404":
				resp.SetStatusCode(404)
				return nil
			case "down":
				return errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
			case "slow":
				time.Sleep(30 * time.Millisecond)
			}
			return ok(resp, `{}`)
		})
		tg := target(p, "m", BreakerSettings{Failures: 3, OpenFor: time.Second, HalfOpenRequests: 1})
		c := newCaller(Policy{TryTimeout: time.Second})
		call := func(routeTimeout time.Duration) error {
			var out Outcome
			_, err := c.Call(Budget{Deadline: time.Now().Add(routeTimeout)}, request(), tg, nil, nil, &out)
			return err
		}
		for _, m := range []string{"busy", "memory", "404"} {
			mode.Store(m)
			for i := 0; i < 10; i++ {
				call(time.Second)
			}
		}
		// A route deadline shorter than the try timeout cuts the try
		// of an upstream that answers in 30ms after less than hangFactor
		// times that: the caller's budget ran out, not the upstream.
		mode.Store("slow")
		for i := 0; i < 5; i++ {
			if err := call(time.Second); err != nil {
				t.Fatalf("slow answer: %v", err)
			}
		}
		mode.Store("hang")
		for i := 0; i < 10; i++ {
			if err := call(50 * time.Millisecond); ReasonOf(err) != ReasonDeadline {
				t.Fatalf("error %v, want the route deadline", err)
			}
		}
		if s := tg.Breaker.State(); s != "closed" {
			t.Fatalf("breaker %s after local refusals, 4xx and deadlines, want closed", s)
		}
		mode.Store("down")
		for i := 0; i < 3; i++ {
			if err := call(time.Second); ReasonOf(err) != ReasonConnect {
				t.Fatalf("error %v, want connect", err)
			}
		}
		if err := call(time.Second); !errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("error %v, want the breaker open", err)
		}
		mode.Store("up")
		time.Sleep(999 * time.Millisecond)
		if err := call(time.Second); !errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("error %v before open_for passed, want the breaker open", err)
		}
		time.Sleep(2 * time.Millisecond)
		if err := call(time.Second); err != nil {
			t.Fatalf("trial after open_for: %v", err)
		}
		if s := tg.Breaker.State(); s != "closed" {
			t.Fatalf("breaker %s after a good trial, want closed", s)
		}
	})
}

// TestHungUpstreamOpensTheBreaker: a try the route deadline cuts short
// after many times the upstream's usual latency is the upstream's
// timeout, which its breaker counts, also when the try had no timeout
// of its own; a deadline too short for any upstream to answer in is the
// caller's.
func TestHungUpstreamOpensTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mode atomic.Value
		mode.Store("hang")
		_, p := newFake(func(_ int, _ string, deadline time.Time, resp *fasthttp.Response) error {
			if mode.Load() == "hang" {
				return hang(deadline)
			}
			time.Sleep(time.Millisecond)
			return ok(resp, `{}`)
		})
		c := newCaller(Policy{TryTimeout: time.Second})
		call := func(tg *Target, routeTimeout time.Duration) error {
			var out Outcome
			_, err := c.Call(Budget{Deadline: time.Now().Add(routeTimeout)}, request(), tg, nil, nil, &out)
			return err
		}
		// Hung from the start: nothing is known of its latency, so only
		// a deadline shorter than minHang is the caller's.
		tg := target(p, "a", BreakerSettings{Failures: 3, OpenFor: time.Second})
		tg.Breaker.cpuWait = cpuIdle
		for i := 0; i < 10; i++ {
			if err := call(tg, minHang/2); ReasonOf(err) != ReasonDeadline {
				t.Fatalf("try cut after %s: %v, want the route deadline", minHang/2, err)
			}
		}
		if s := tg.Breaker.State(); s != "closed" {
			t.Fatalf("breaker %s after deadlines shorter than minHang, want closed", s)
		}
		for i := 0; i < 3; i++ {
			if err := call(tg, 200*time.Millisecond); ReasonOf(err) != ReasonTimeout {
				t.Fatalf("try %d of a hung upstream: %v, want a timeout", i, err)
			}
		}
		if err := call(tg, 200*time.Millisecond); !errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("after 3 hung tries: %v, want the breaker open", err)
		}

		// An upstream that answers in 1ms, then hangs: a 5ms deadline is
		// still the caller's, a 50ms one the upstream's.
		b := target(p, "b", BreakerSettings{Failures: 3, OpenFor: time.Second})
		b.Breaker.cpuWait = cpuIdle
		mode.Store("up")
		for i := 0; i < 10; i++ {
			if err := call(b, time.Second); err != nil {
				t.Fatalf("answer %d: %v", i, err)
			}
		}
		mode.Store("hang")
		for i := 0; i < 5; i++ {
			if err := call(b, 5*time.Millisecond); ReasonOf(err) != ReasonDeadline {
				t.Fatalf("try cut after 5ms: %v, want the route deadline", err)
			}
		}
		for i := 0; i < 3; i++ {
			if err := call(b, 50*time.Millisecond); ReasonOf(err) != ReasonTimeout || !strings.Contains(err.Error(), "after 50ms") {
				t.Fatalf("try %d cut after 50ms: %v, want a timeout after 50ms", i, err)
			}
		}
		if s := b.Breaker.State(); s != "open" {
			t.Fatalf("breaker %s after 3 hung tries, want open", s)
		}
	})
}

// TestUsualLatencyIsEachTasks: one model server serves a model that
// answers in 1ms and one that answers in 150ms, to two tasks. When the
// slow model's answers run past its task's 200ms route deadline, that is
// not a hang of the server, though the fast model's calls are most of
// the calls to it: each task's calls are judged by their own usual
// latency, and the server's breaker stays closed.
func TestUsualLatencyIsEachTasks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mode atomic.Value
		_, p := newFake(func(_ int, _ string, deadline time.Time, resp *fasthttp.Response) error {
			switch mode.Load() {
			case "fast":
				time.Sleep(time.Millisecond)
			case "slow":
				time.Sleep(150 * time.Millisecond)
			default:
				return hang(deadline)
			}
			return ok(resp, `{}`)
		})
		bs := BreakerSettings{Failures: 3, OpenFor: time.Minute}
		fast := p.Target("", "http", "m", "m:80", "/fast", bs)
		slow := p.Target("", "http", "m", "m:80", "/slow", bs)
		if fast.Breaker != slow.Breaker {
			t.Fatal("the two targets of one host do not share its breaker")
		}
		fast.Breaker.cpuWait = cpuIdle
		c := newCaller(Policy{TryTimeout: time.Second})
		call := func(tg *Target, m string) error {
			mode.Store(m)
			var out Outcome
			_, err := c.Call(Budget{Deadline: time.Now().Add(200 * time.Millisecond)}, request(), tg, nil, nil, &out)
			return err
		}
		for range 10 {
			for range 10 {
				if err := call(fast, "fast"); err != nil {
					t.Fatal(err)
				}
			}
			if err := call(slow, "slow"); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 5 {
			if err := call(slow, "slower"); ReasonOf(err) != ReasonDeadline {
				t.Fatalf("slow answer %d cut by the deadline: %v, want the route deadline", i, err)
			}
		}
		if s := slow.Breaker.State(); s != "closed" {
			t.Fatalf("breaker %s after slow answers cut by the deadline, want closed", s)
		}
	})
}

// TestTimeoutsOfOneStallCountOnce: tries in flight together when the
// upstream stalls time out together, and count as one fault: a stall of
// 100ms under 50 concurrent calls with a 30ms try timeout (four waves of
// timeouts) does not open a breaker of 5 failures, which a hang still
// opens once 5 tries in a row, each sent after the last counted one timed
// out, time out.
func TestTimeoutsOfOneStallCountOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stallEnd := time.Now().Add(100 * time.Millisecond)
		_, p := newFake(func(_ int, _ string, deadline time.Time, resp *fasthttp.Response) error {
			if time.Now().Before(stallEnd) {
				return hang(deadline)
			}
			return ok(resp, `{}`)
		})
		c := newCaller(Policy{TryTimeout: 30 * time.Millisecond})
		wave := func(tg *Target, n int) {
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var out Outcome
					c.Call(Budget{Deadline: time.Now().Add(time.Second)}, request(), tg, nil, nil, &out)
				}()
			}
			wg.Wait()
		}
		tg := target(p, "stall", BreakerSettings{Failures: 5, OpenFor: time.Minute})
		tg.Breaker.cpuWait = cpuIdle
		for range 5 { // 0, 30, 60 and 90ms hang; 120ms answers
			wave(tg, 50)
		}
		if s := tg.Breaker.State(); s != "closed" {
			t.Fatalf("breaker %s after a 100ms stall, want closed", s)
		}

		stallEnd = time.Now().Add(time.Hour)
		hung := target(p, "hung", BreakerSettings{Failures: 5, OpenFor: time.Minute})
		hung.Breaker.cpuWait = cpuIdle
		for i := range 5 {
			if s := hung.Breaker.State(); s != "closed" {
				t.Fatalf("breaker %s after %d waves of hung tries, want closed", s, i)
			}
			wave(hung, 50)
		}
		if s := hung.Breaker.State(); s != "open" {
			t.Fatalf("breaker %s after 5 waves of hung tries, want open", s)
		}
	})
}

// TestHedgeAfter: the hedge leaves after hedge_after and its answer wins
// when it comes first; an upstream that answers fast gets no hedge.
func TestHedgeAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, p := newFake(func(n int, _ string, deadline time.Time, resp *fasthttp.Response) error {
			if n == 0 {
				return hang(deadline)
			}
			time.Sleep(5 * time.Millisecond)
			return ok(resp, `{"from":"hedge"}`)
		})
		c := newCaller(Policy{TryTimeout: 200 * time.Millisecond, HedgeAfter: 20 * time.Millisecond})
		start := time.Now()
		var out Outcome
		res, err := c.Call(Budget{Deadline: start.Add(time.Second)}, request(), target(p, "m", BreakerSettings{Disabled: true}), nil, nil, &out)
		if err != nil || string(res) != `{"from":"hedge"}` {
			t.Fatalf("%v %s", err, res)
		}
		if took := time.Since(start); took != 25*time.Millisecond {
			t.Fatalf("answer after %s, want 25ms (hedge at 20ms + 5ms)", took)
		}
		if f.starts[1] != 20*time.Millisecond || out.Attempts != 2 {
			t.Fatalf("hedge started at %v, attempts %d", f.starts, out.Attempts)
		}
		// Wait for the abandoned first call to end by its own deadline.
		synctest.Wait()
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()

		f2, p2 := newFake(func(_ int, _ string, _ time.Time, resp *fasthttp.Response) error {
			time.Sleep(10 * time.Millisecond)
			return ok(resp, `{}`)
		})
		if _, err := c.Call(Budget{Deadline: time.Now().Add(time.Second)}, request(), target(p2, "m", BreakerSettings{Disabled: true}), nil, nil, &out); err != nil {
			t.Fatal(err)
		}
		if f2.tries() != 1 {
			t.Fatalf("%d calls to a fast upstream, want no hedge", f2.tries())
		}
	})
}

// TestFallbackRace: the primary's answer is preferred while it comes
// within primary_within; after that the fallback's; a failing primary
// gives the fallback's answer at once.
func TestFallbackRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var primaryDelay atomic.Int64
		var primaryFails atomic.Bool
		_, p := newFake(func(_ int, host string, deadline time.Time, resp *fasthttp.Response) error {
			if host == "fb" {
				time.Sleep(2 * time.Millisecond)
				return ok(resp, `{"from":"fallback"}`)
			}
			if primaryFails.Load() {
				resp.SetStatusCode(500)
				return nil
			}
			d := time.Duration(primaryDelay.Load())
			if time.Until(deadline) < d {
				return hang(deadline)
			}
			time.Sleep(d)
			return ok(resp, `{"from":"primary"}`)
		})
		c := newCaller(Policy{TryTimeout: 500 * time.Millisecond, FallbackTimeout: 500 * time.Millisecond, PrimaryWithin: 50 * time.Millisecond})
		primary, fallback := target(p, "primary", BreakerSettings{Disabled: true}), target(p, "fb", BreakerSettings{Disabled: true})
		f := func(wantFrom string, wantAfter time.Duration) {
			t.Helper()
			start := time.Now()
			var out Outcome
			res, err := c.Call(Budget{Deadline: start.Add(time.Second)}, request(), primary, fallback, nil, &out)
			if err != nil || string(res) != `{"from":"`+wantFrom+`"}` {
				t.Fatalf("%v %s, want %s", err, res, wantFrom)
			}
			if took := time.Since(start); took != wantAfter {
				t.Fatalf("answer after %s, want %s", took, wantAfter)
			}
			if (out.Answered == fallback) != (wantFrom == "fallback") {
				t.Fatalf("answered by %v", out.Answered.HostHdr)
			}
			time.Sleep(time.Second)
			synctest.Wait()
		}
		primaryDelay.Store(int64(30 * time.Millisecond))
		f("primary", 30*time.Millisecond)
		primaryDelay.Store(int64(300 * time.Millisecond))
		f("fallback", 50*time.Millisecond)
		primaryFails.Store(true)
		f("fallback", 2*time.Millisecond)
	})
}

// TestLimitFollowsLatency: at full use with a steady latency the limit
// grows; when the latency rises well above its baseline it shrinks and
// calls past it are refused at once; an upstream used lightly keeps its
// limit whatever its latency.
func TestLimitFollowsLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newVirtualLimiter("http://limit-test:80", LimitSettings{Initial: 20, Min: 4, Max: 200, Tolerance: 1.5})
		// run keeps n calls of latency d in flight for dur.
		run := func(n int, d, dur time.Duration) {
			var wg sync.WaitGroup
			end := time.Now().Add(dur)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(end) {
						if !l.Acquire() {
							time.Sleep(d)
							continue
						}
						time.Sleep(d)
						l.Release(d, ReasonNone, 200)
					}
				}()
			}
			wg.Wait()
		}
		run(20, 10*time.Millisecond, 2*time.Second)
		grown := l.Limit()
		if grown <= 20 {
			t.Fatalf("limit %d after full use at a steady latency, want above 20", grown)
		}
		// The same load, 2.5 times slower: a queue at the upstream.
		run(grown, 25*time.Millisecond, 3*time.Second)
		shrunk := l.Limit()
		if shrunk >= grown {
			t.Fatalf("limit %d after latency rose 4x, want below %d", shrunk, grown)
		}
		// At the limit, the next call is refused.
		for i := 0; i < shrunk; i++ {
			if !l.Acquire() {
				t.Fatalf("call %d refused below the limit %d", i, shrunk)
			}
		}
		if l.Acquire() {
			t.Fatal("call past the limit admitted")
		}
		for i := 0; i < shrunk; i++ {
			l.Release(time.Millisecond, ReasonCanceled, 0)
		}
		// Timeouts shrink it.
		for i := 0; i < 20; i++ {
			l.Acquire()
			time.Sleep(20 * time.Millisecond)
			l.Release(time.Second, ReasonTimeout, 0)
		}
		if l.Limit() >= shrunk {
			t.Fatalf("limit %d after timeouts, want below %d", l.Limit(), shrunk)
		}
		// Light use (1 call) of a slow upstream leaves the limit alone
		// (after a window that still holds the busy calls).
		run(1, 400*time.Millisecond, 2*time.Second)
		shrunk = l.Limit()
		run(1, 400*time.Millisecond, 4*time.Second)
		if l.Limit() != shrunk {
			t.Fatalf("limit moved from %d to %d under light use", shrunk, l.Limit())
		}
	})
}

// TestLimitCutsLongQueueAtOnce: when the latency jumps far above the
// tolerated one, the limit is cut as soon as a window's worth of answers
// shows it, to what the upstream served at the tolerated latency, once
// per wave of calls: the answers of calls sent before the queue of the
// cut could drain do not cut again. When far fewer calls in flight do not
// bring the latency down, it is not a queue of the gateway's calls (a
// slower upstream, a machine short of CPU): the limit holds and the
// latency becomes the baseline.
func TestLimitCutsLongQueueAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newVirtualLimiter("http://limit-cut-test:80", LimitSettings{Initial: 64, Min: 4, Max: 200, Tolerance: 1.5})
		// wave keeps the limit's worth of calls of latency d in flight
		// once, and waits for them.
		wave := func(d time.Duration) {
			var wg sync.WaitGroup
			for l.Acquire() {
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(d)
					l.Release(d, ReasonNone, 200)
				}()
			}
			wg.Wait()
		}
		for range 10 {
			wave(10 * time.Millisecond)
			time.Sleep(10 * time.Millisecond) // a window holds two waves
		}
		before := l.Limit()
		if before < 64 {
			t.Fatalf("limit %d after full use at a steady latency, want at least 64", before)
		}
		// Ten times slower: the first answers of the wave cut the limit
		// at once (smoothed steps would take a tenth off) to about a
		// fifth, the rest of the wave not further.
		wave(100 * time.Millisecond)
		cut := l.Limit()
		if cut > before/3 || cut < before/8 {
			t.Fatalf("limit %d after one slow wave from %d, want about a fifth", cut, before)
		}
		// Waves of far fewer calls are as slow: the limit holds.
		for range 5 {
			wave(100 * time.Millisecond)
			t.Logf("limit %d", l.Limit())
		}
		if got := l.Limit(); got < cut {
			t.Fatalf("limit %d after slow waves that fewer calls did not speed up, want at least %d", got, cut)
		}
	})
}

// TestLimitSettlesAtAQueue: an upstream that works on 8 calls at a time
// and queues the rest, offered far more: the limit settles a little above
// 8, where the queue stays short.
func TestLimitSettlesAtAQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers, service = 8, 5 * time.Millisecond
		l := newVirtualLimiter("http://limit-queue-test:80", LimitSettings{Initial: 128, Min: 4, Max: 1024, Tolerance: 1.5})
		run := func(n int, dur time.Duration) { offerQueue(l, workers, service, n, dur) }
		run(2, time.Second) // unloaded: the baseline
		run(200, 5*time.Second)
		if got := l.Limit(); got < workers || got > 3*workers {
			t.Fatalf("limit %d against an upstream working on %d calls at a time, want between %d and %d", got, workers, workers, 3*workers)
		}
	})
}

// TestLimitRefusalIsLocal: a call refused by the limit fails at once with
// ErrOverloaded, is not retried and does not touch the breaker.
func TestLimitRefusalIsLocal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := &fake{t0: time.Now(), answer: func(_ int, _ string, _ time.Time, resp *fasthttp.Response) error {
			<-release
			return ok(resp, `{}`)
		}}
		p := NewPool(nil, Options{Transport: f.transport, Limit: LimitSettings{Initial: 2, Min: 2, Max: 2}})
		tg := target(p, "m", BreakerSettings{Failures: 1, OpenFor: time.Hour})
		c := newCaller(Policy{TryTimeout: time.Second, Retries: 3, Backoff: time.Millisecond, BackoffMax: time.Millisecond, RetryOn: RetryOn{Connect: true, Timeout: true, Any5xx: true}})
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var out Outcome
				if _, err := c.Call(Budget{Deadline: time.Now().Add(10 * time.Second)}, request(), tg, nil, nil, &out); err != nil {
					t.Errorf("admitted call: %v", err)
				}
			}()
		}
		synctest.Wait()
		start := time.Now()
		var out Outcome
		_, err := c.Call(Budget{Deadline: start.Add(10 * time.Second)}, request(), tg, nil, nil, &out)
		if !errors.Is(err, ErrOverloaded) || time.Since(start) != 0 || out.Tries != 1 {
			t.Fatalf("third call: %v after %s, %d tries; want ErrOverloaded at once, 1 try", err, time.Since(start), out.Tries)
		}
		close(release)
		wg.Wait()
		if s := tg.Breaker.State(); s != "closed" {
			t.Fatalf("breaker %s after a refusal, want closed", s)
		}
	})
}

// offerQueue keeps n callers calling through l for dur (virtual time) an
// upstream that works on workers calls at a time, each taking service,
// and queues the rest: a call waits for the calls ahead of it.
func offerQueue(l *Limiter, workers int, service time.Duration, n int, dur time.Duration) {
	var wg sync.WaitGroup
	end := time.Now().Add(dur)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if !l.Acquire() {
					time.Sleep(time.Millisecond)
					continue
				}
				d := service * time.Duration((l.InFlight()+workers-1)/workers)
				time.Sleep(d)
				l.Release(d, ReasonNone, 200)
			}
		}()
	}
	wg.Wait()
}

// TestBreakerLogsItsOutages: a pool's breaker logs a line when it opens
// (naming the last fault counted) and one when it closes again (how long
// it was open, how many trials failed meanwhile), and nothing for each
// failed trial in between.
func TestBreakerLogsItsOutages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		var down atomic.Bool
		down.Store(true)
		f := &fake{t0: time.Now(), answer: func(_ int, _ string, _ time.Time, resp *fasthttp.Response) error {
			if down.Load() {
				resp.SetStatusCode(503)
				return nil
			}
			return ok(resp, `{}`)
		}}
		p := NewPool(nil, Options{Transport: f.transport, Limit: LimitSettings{Disabled: true}, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		tg := target(p, "m", BreakerSettings{Failures: 2, OpenFor: time.Second})
		c := newCaller(Policy{TryTimeout: time.Second})
		call := func() error {
			_, err := c.Call(Budget{Deadline: time.Now().Add(time.Second)}, request(), tg, nil, nil, new(Outcome))
			return err
		}
		for range 3 {
			_ = call()
		}
		time.Sleep(time.Second + time.Millisecond)
		_ = call() // a failed trial
		time.Sleep(time.Second + time.Millisecond)
		down.Store(false)
		if err := call(); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		want := []string{
			`level=WARN msg="upstream breaker opened: calls fail at once until a trial call succeeds" upstream=http://m:80 consecutive_faults=2 last_fault="status 503"`,
			`level=INFO msg="upstream breaker closed" upstream=http://m:80 open_for=2.002s failed_trials=1`,
		}
		if len(lines) != len(want) {
			t.Fatalf("log:\n%s", buf.String())
		}
		for i, w := range want {
			if !strings.HasSuffix(lines[i], w) {
				t.Fatalf("line %d: %s\nwant it to end with %s", i, lines[i], w)
			}
		}
	})
}

// callPath makes a call of c to tg's own path within a 200ms route
// deadline.
func callPath(c *Caller, tg *Target) error {
	req := request()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(tg.Path)
	var out Outcome
	_, err := c.Call(Budget{Deadline: time.Now().Add(200 * time.Millisecond)}, req, tg, nil, nil, &out)
	return err
}

// TestTightTimeoutOfOneModelKeepsTheHostsBreakerClosed: two models on one
// server share its breaker and concurrency limit. One route gives its
// model a try timeout far below what the model takes (a typo, or a model
// that became slower); its tries all time out, while the server answers
// the other model's calls. The server is up: the other model's calls are
// neither cut off by the breaker nor refused by a shrunken limit. When the
// whole server hangs, the breaker still opens.
func TestTightTimeoutOfOneModelKeepsTheHostsBreakerClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hung atomic.Bool
		_, p := newFake(nil)
		p.o.Transport = func(h *Host, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
			wait := time.Millisecond
			if string(req.URI().Path()) == "/slow" {
				wait = 50 * time.Millisecond
			}
			if hung.Load() || time.Until(deadline) < wait {
				return hang(deadline)
			}
			time.Sleep(wait)
			return ok(resp, `{}`)
		}
		p.o.Limit = DefaultLimit
		bs := BreakerSettings{Failures: 5, OpenFor: time.Minute}
		fast := p.Target("", "http", "m", "m:80", "/fast", bs)
		slow := p.Target("", "http", "m", "m:80", "/slow", bs)
		fast.Breaker.cpuWait = cpuIdle
		healthy := newCaller(Policy{TryTimeout: time.Second})
		tight := newCaller(Policy{TryTimeout: 5 * time.Millisecond})
		for round := range 20 {
			if err := callPath(healthy, fast); err != nil {
				t.Fatalf("round %d: the other model's call: %v (breaker %s)", round, err, fast.Breaker.State())
			}
			for i := range 10 {
				if err := callPath(tight, slow); ReasonOf(err) != ReasonTimeout {
					t.Fatalf("round %d, tight call %d: %v, want a timeout", round, i, err)
				}
			}
		}
		if l := fast.Host.limit.Limit(); l < DefaultLimit.Initial {
			t.Errorf("the host's limit shrank to %d from %d", l, DefaultLimit.Initial)
		}
		hung.Store(true)
		for i := range 15 {
			if err := callPath(healthy, fast); ReasonOf(err) == ReasonBreakerOpen {
				t.Logf("the hung server's breaker opened after %d calls", i)
				return
			}
		}
		t.Fatalf("breaker %s after 15 calls to the hung server", fast.Breaker.State())
	})
}

// TestFailingModelKeepsTheHostsBreakerClosed: one model of a server
// answers 500 to every call (a broken version deployed), while the
// server's other model answers well. The failing model's calls fail; the
// other model's are not cut off by the breaker the server's models share.
// When every model of the server fails, the breaker opens.
func TestFailingModelKeepsTheHostsBreakerClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var allFail atomic.Bool
		_, p := newFake(nil)
		p.o.Transport = func(h *Host, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
			time.Sleep(time.Millisecond)
			if allFail.Load() || string(req.URI().Path()) == "/broken" {
				resp.SetStatusCode(500)
				resp.SetBodyString(`{"error":"model raised"}`)
				return nil
			}
			return ok(resp, `{}`)
		}
		bs := BreakerSettings{Failures: 5, OpenFor: time.Minute}
		good := p.Target("", "http", "m", "m:80", "/good", bs)
		broken := p.Target("", "http", "m", "m:80", "/broken", bs)
		good.Breaker.cpuWait = cpuIdle
		c := newCaller(Policy{TryTimeout: time.Second})
		for round := range 20 {
			if err := callPath(c, good); err != nil {
				t.Fatalf("round %d: the good model's call: %v (breaker %s)", round, err, good.Breaker.State())
			}
			for i := range 10 {
				if err := callPath(c, broken); ReasonOf(err) != ReasonStatus {
					t.Fatalf("round %d, broken call %d: %v, want its 500", round, i, err)
				}
			}
		}
		allFail.Store(true)
		for i := range 15 {
			if err := callPath(c, good); ReasonOf(err) == ReasonBreakerOpen {
				t.Logf("the failing server's breaker opened after %d calls", i)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("breaker %s after 15 calls to the failing server", good.Breaker.State())
	})
}
