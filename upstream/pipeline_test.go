package upstream

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// TestPipelinedCallsGetTheirOwnAnswers: many concurrent calls pipelined
// over one connection to an echoing upstream each get the answer to
// their own request, and the upstream sees that one connection only.
func TestPipelinedCallsGetTheirOwnAnswers(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Echo())
	p := NewPool(nil, Options{Pipeline: map[string]int{up.Addr: 1}})
	defer p.CloseIdle()
	tg := realTarget(p, up, BreakerSettings{Disabled: true})
	if tg.Host.pipe == nil {
		t.Fatal("the host is not pipelined")
	}
	c := newCaller(Policy{TryTimeout: 10 * time.Second})
	const workers, calls = 20, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			req := request()
			defer fasthttp.ReleaseRequest(req)
			tg.Prepare(req, []byte(tg.Path))
			for i := 0; i < calls; i++ {
				want := fmt.Sprintf(`{"worker":%d,"call":%d}`, w, i)
				req.SetBodyString(want)
				out := new(Outcome)
				res, err := c.Call(Budget{Deadline: time.Now().Add(10 * time.Second), Cancel: new(Cancel)}, req, tg, nil, nil, out)
				if err != nil || string(res) != want {
					errs <- fmt.Errorf("worker %d call %d: got %s, %v; want %s", w, i, res, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := up.Requests.Load(); n != workers*calls {
		t.Errorf("upstream saw %d requests, want %d", n, workers*calls)
	}
	if n := up.Conns.Load(); n != 1 {
		t.Errorf("upstream accepted %d connections, want 1", n)
	}
}

// TestPipelinedRetryResendsTheBody: a pipelined try that fails with a
// retryable status is retried with the request's body whole.
func TestPipelinedRetryResendsTheBody(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Sequence(upstreamtest.Status(503), upstreamtest.Echo()))
	p := NewPool(nil, Options{Pipeline: map[string]int{up.Addr: 1}})
	defer p.CloseIdle()
	tg := realTarget(p, up, BreakerSettings{Disabled: true})
	c := newCaller(Policy{TryTimeout: 5 * time.Second, Retries: 1, Backoff: time.Millisecond, BackoffMax: time.Millisecond, RetryOn: DefaultRetryOn})
	req := request()
	defer fasthttp.ReleaseRequest(req)
	tg.Prepare(req, []byte(tg.Path))
	const body = `{"features":[1,2,3]}`
	req.SetBodyString(body)
	out := new(Outcome)
	res, err := c.Call(Budget{Deadline: time.Now().Add(10 * time.Second), Cancel: new(Cancel)}, req, tg, nil, nil, out)
	if err != nil || string(res) != body || out.Tries != 2 {
		t.Fatalf("got %s, %v after %d tries; want %s after 2", res, err, out.Tries, body)
	}
	if got := string(req.Body()); got != body {
		t.Fatalf("request body after the call: %q, want %q", got, body)
	}
}

// TestPipelinedHangClosesTheConnection: an upstream that holds one answer
// past PipelineReadTimeout fails the call waiting on it, the pipelined
// connection is closed, and the next call gets its answer on a new one.
func TestPipelinedHangClosesTheConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var up *upstreamtest.Server
		up = upstreamtest.StartWith(t, func(n int64, rc *fasthttp.RequestCtx) {
			if n == 1 {
				up.Delay(PipelineReadTimeout+time.Second, upstreamtest.Echo())(n, rc)
				return
			}
			upstreamtest.Echo()(n, rc)
		}, upstreamtest.Options{InMemory: true})
		p := NewPool(nil, Options{Pipeline: map[string]int{up.Addr: 1}, IdleTimeout: time.Second, Dial: upstreamtest.DialMemory})
		defer endBubble(p, up)
		tg := realTarget(p, up, BreakerSettings{Disabled: true})
		c := newCaller(Policy{TryTimeout: 10 * time.Second})
		start := time.Now()
		if res, out, err := callOnce(c, tg, 10*time.Second); err == nil || out.Reason != ReasonTimeout {
			t.Fatalf("call on the hanging answer: %s, %v (%+v); want a timeout", res, err, out)
		}
		if d := time.Since(start); d < PipelineReadTimeout || d > PipelineReadTimeout+time.Second {
			t.Fatalf("the hanging call failed after %v, want %v", d, PipelineReadTimeout)
		}
		if res, _, err := callOnce(c, tg, 10*time.Second); err != nil || string(res) != `{}` {
			t.Fatalf("call after the hang: %s, %v", res, err)
		}
		if n := up.Conns.Load(); n != 2 {
			t.Fatalf("upstream accepted %d connections, want 2", n)
		}
	})
}
