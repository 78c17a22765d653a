package tasks

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/upstream"
)

func counter(name string) uint64 { return metrics.GetOrCreateCounter(name).Get() }

// hedgeRoute is a route named name with one http task m calling addr.
func hedgeRoute(name, addr, timeout, inputs string) string {
	return fmt.Sprintf(`
name: %s
endpoint: /%s
timeout: %s
tasks:
  m:
    type: http
    inputs:
      address: %s
      body: '{{ .request }}'
%s
`, name, name, timeout, addr, inputs)
}

// bubble is a test under testing/synctest whose upstreams are in-memory
// servers: hedges, races and timeouts run on virtual time, so what the
// tests check of them holds on any machine, however loaded.
type bubble struct {
	t   *testing.T
	env *Env
	ups []*upstreamtest.Server
}

// inBubble runs f in a bubble with an Env that dials in-memory servers.
func inBubble(t *testing.T, f func(b *bubble)) {
	synctest.Test(t, func(t *testing.T) {
		unpooledMembers.Add(1)
		defer unpooledMembers.Add(-1)
		b := &bubble{t: t, env: &Env{Upstreams: upstream.NewPool(nil, upstream.Options{Dial: upstreamtest.DialMemory})}}
		defer func() {
			b.env.Upstreams.CloseIdle()
			upstreamtest.Settle(b.ups...)
		}()
		f(b)
	})
}

// startV2 serves an in-memory V2 model server (see fakeModel).
func (b *bubble) startV2(name, version string) *fakeModel {
	m := &fakeModel{name: name, version: version}
	m.Server = b.start(m.handle)
	return m
}

// start serves an in-memory upstream behaving as beh.
func (b *bubble) start(beh upstreamtest.Behavior) *upstreamtest.Server {
	s := upstreamtest.StartWith(b.t, beh, upstreamtest.Options{InMemory: true})
	b.ups = append(b.ups, s)
	return s
}

func TestHedgeWins(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		up := b.start(nil)
		up.Set(upstreamtest.Sequence(up.Hang(), upstreamtest.JSON(`{"from":"hedge"}`)))
		c := compileRoute(t, hedgeRoute("hedge-wins", up.URL("/p"), "2s", "      timeout: 1s\n      hedge_after: 100ms"), b.env)
		won0, lost0 := counter(`lariat_hedges_total{route="hedge-wins",task="m",result="won"}`), counter(`lariat_hedges_total{route="hedge-wins",task="m",result="lost"}`)
		start := time.Now()
		r, err := c.run("m", `{"a":1}`, nil)
		if err != nil || string(r.Body) != `{"from":"hedge"}` {
			t.Fatalf("%v %s", err, r.Body)
		}
		if took := time.Since(start); took != 100*time.Millisecond {
			t.Fatalf("the hedge answered after %s, want hedge_after, 100ms", took)
		}
		if r.Attempts != 2 || up.Requests.Load() != 2 || up.LastBody() != `{"a":1}` {
			t.Fatalf("attempts %d, upstream requests %d, body %s", r.Attempts, up.Requests.Load(), up.LastBody())
		}
		if won, lost := counter(`lariat_hedges_total{route="hedge-wins",task="m",result="won"}`)-won0, counter(`lariat_hedges_total{route="hedge-wins",task="m",result="lost"}`)-lost0; won != 1 || lost != 0 {
			t.Fatalf("hedges won %d lost %d", won, lost)
		}
		// A fast answer sends no hedge.
		up.Set(upstreamtest.JSON(`{"from":"first"}`))
		for i := 0; i < 5; i++ {
			if r, err := c.run("m", `{}`, nil); err != nil || string(r.Body) != `{"from":"first"}` || r.Attempts != 1 {
				t.Fatalf("%v %s attempts %d", err, r.Body, r.Attempts)
			}
		}
		if n := up.Requests.Load(); n != 7 {
			t.Fatalf("upstream saw %d requests, want 7", n)
		}
	})
}

func TestHedgeLost(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		up := b.start(nil)
		up.Set(upstreamtest.Sequence(up.Delay(150*time.Millisecond, upstreamtest.JSON(`{"from":"first"}`)), up.Hang()))
		c := compileRoute(t, hedgeRoute("hedge-lost", up.URL("/p"), "2s", "      timeout: 1s\n      hedge_after: 20ms"), b.env)
		won0, lost0 := counter(`lariat_hedges_total{route="hedge-lost",task="m",result="won"}`), counter(`lariat_hedges_total{route="hedge-lost",task="m",result="lost"}`)
		start := time.Now()
		r, err := c.run("m", `{}`, nil)
		if err != nil || string(r.Body) != `{"from":"first"}` || r.Attempts != 2 {
			t.Fatalf("%v %s attempts %d", err, r.Body, r.Attempts)
		}
		if took := time.Since(start); took != 150*time.Millisecond {
			t.Fatalf("the first call answered after %s, want 150ms", took)
		}
		if won, lost := counter(`lariat_hedges_total{route="hedge-lost",task="m",result="won"}`)-won0, counter(`lariat_hedges_total{route="hedge-lost",task="m",result="lost"}`)-lost0; won != 0 || lost != 1 {
			t.Fatalf("hedges won %d lost %d", won, lost)
		}
	})
}

// TestHedgeWithinBudget: no hedge when the time left before the route
// deadline is shorter than hedge_after.
func TestHedgeWithinBudget(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		up := b.start(nil)
		up.Set(up.Hang())
		c := compileRoute(t, hedgeRoute("hedge-budget", up.URL("/p"), "100ms", "      hedge_after: 60ms"), b.env)
		start := time.Now()
		_, err := c.run("m", `{}`, nil)
		if !errors.Is(err, ErrDeadline) && !errors.Is(err, ErrTimeout) {
			t.Fatalf("error %v, want a timeout", err)
		}
		if took := time.Since(start); took != 100*time.Millisecond {
			t.Fatalf("the call ended after %s, want the 100ms route deadline", took)
		}
		if n := up.Requests.Load(); n != 1 {
			t.Fatalf("upstream saw %d requests, want 1 (no hedge)", n)
		}
	})
}

// TestHedgeFailure: a failing first call is not hedged; the retry policy
// decides.
func TestHedgeFailure(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		up := b.start(upstreamtest.Status(500))
		c := compileRoute(t, hedgeRoute("hedge-fail", up.URL("/p"), "1s", "      timeout: 200ms\n      hedge_after: 50ms\n      breaker: {disabled: true}"), b.env)
		_, err := c.run("m", `{}`, nil)
		var se *upstream.Error
		if !errors.As(err, &se) || se.Status != 500 {
			t.Fatalf("error %v, want 500", err)
		}
		time.Sleep(time.Second) // a hedge would have been sent by now
		if n := up.Requests.Load(); n != 1 {
			t.Fatalf("upstream saw %d requests, want 1", n)
		}
	})
}

func TestRaceFallback(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		primary := b.start(nil)
		fallback := b.start(upstreamtest.JSON(`{"from":"fallback"}`))
		c := compileRoute(t, hedgeRoute("race", primary.URL("/p"), "2s", fmt.Sprintf(`      timeout: 1s
      breaker: {disabled: true}
      fallback: {address: %s}
      primary_within: 200ms`, fallback.URL("/f"))), b.env)
		p0, fb0 := counter(`lariat_fallback_answers_total{route="race",task="m",answer="primary"}`), counter(`lariat_fallback_answers_total{route="race",task="m",answer="fallback"}`)
		f := func(beh upstreamtest.Behavior, wantFrom, wantModel string, wantAfter time.Duration) {
			t.Helper()
			primary.Set(beh)
			start := time.Now()
			r, err := c.run("m", `{"q":1}`, nil)
			if err != nil || string(r.Body) != `{"from":"`+wantFrom+`"}` || r.Model != wantModel {
				t.Fatalf("%v %s model %q, want %s %q", err, r.Body, r.Model, wantFrom, wantModel)
			}
			if took := time.Since(start); took != wantAfter {
				t.Fatalf("answer from %s after %s, want %s", wantFrom, took, wantAfter)
			}
		}
		// The primary answers within primary_within: its answer, although the
		// fallback's came first.
		f(primary.Delay(5*time.Millisecond, upstreamtest.JSON(`{"from":"primary"}`)), "primary", "", 5*time.Millisecond)
		// The primary is late: the fallback's answer, at primary_within.
		f(primary.Delay(600*time.Millisecond, upstreamtest.JSON(`{"from":"primary"}`)), "fallback", fallback.Addr, 200*time.Millisecond)
		// The primary fails: the fallback's answer at once.
		f(upstreamtest.Status(503), "fallback", fallback.Addr, 0)
		if fallback.LastBody() != `{"q":1}` || fallback.LastHeader("Host") != fallback.Addr {
			t.Fatalf("fallback got %s host %s", fallback.LastBody(), fallback.LastHeader("Host"))
		}
		if p, fb := counter(`lariat_fallback_answers_total{route="race",task="m",answer="primary"}`)-p0, counter(`lariat_fallback_answers_total{route="race",task="m",answer="fallback"}`)-fb0; p != 1 || fb != 2 {
			t.Fatalf("answers primary %d fallback %d", p, fb)
		}
		// Both fail: the primary's error.
		primary.Set(upstreamtest.Status(503))
		fallback.Set(upstreamtest.Status(500))
		_, err := c.run("m", `{}`, nil)
		var se *upstream.Error
		if !errors.As(err, &se) || se.Status != 503 {
			t.Fatalf("error %v, want the primary's 503", err)
		}
		// The fallback fails, the primary is late but answers: its answer.
		f(primary.Delay(300*time.Millisecond, upstreamtest.JSON(`{"from":"primary"}`)), "primary", "", 300*time.Millisecond)
	})
}

// TestRaceCallsAreIsolated runs many hedged and raced calls at once under
// the race detector: calls abandoned after the task returned must not
// touch the task's result or the pooled objects of other calls.
func TestRaceCallsAreIsolated(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	up.Set(func(n int64, rc *fasthttp.RequestCtx) {
		if n%3 == 0 {
			time.Sleep(15 * time.Millisecond)
		}
		rc.SetContentType("application/json")
		rc.SetBody(rc.PostBody())
	})
	c := compileRoute(t, hedgeRoute("race-iso", up.URL("/p"), "2s", fmt.Sprintf("      timeout: 500ms\n      hedge_after: 2ms\n      fallback: {address: %s}\n      primary_within: 1ms", up.URL("/f"))), nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				body := fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)
				r, err := c.run("m", body, nil)
				if err != nil || string(r.Body) != body {
					errs <- fmt.Errorf("%s: %v %s", body, err, r.Body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !strings.Contains(up.LastBody(), `"g":`) {
		t.Fatal("no calls")
	}
}
