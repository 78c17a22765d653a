package tasks

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/upstream"
)

func batchRoute(addr, batch string) string {
	return inferRoute(addr, `
      outputs: [scores, echo]
      rows: true
      timeout: 1s
      retries: 1
      backoff: {base: 1ms, max: 2ms}
      breaker: {disabled: true}
      inputs:
        - {name: x, datatype: FP32, from: '{{ .tasks.features.body }}', columns: [conv_rate, acc_rate]}
        - {name: ids, datatype: INT64, shape: [-1], from: '{{ .request.ids }}'}
      batch: `+batch)
}

// rowsFor returns feature rows and ids for request i with n rows.
func rowsFor(i, n int) (features, body, want string) {
	var f, ids, w []string
	for k := 0; k < n; k++ {
		a, b := float64(i), float64(k)/4
		f = append(f, fmt.Sprintf(`{"conv_rate":%g,"acc_rate":%g}`, a, b))
		ids = append(ids, fmt.Sprint(i*100+k))
		w = append(w, fmt.Sprintf(`{"scores":%g,"echo":[%g,%g]}`, a+b, a, b))
	}
	return "[" + strings.Join(f, ",") + "]", `{"ids":[` + strings.Join(ids, ",") + `]}`, "[" + strings.Join(w, ",") + "]"
}

// runConcurrently runs the task for requests 0..n-1 at once (request i
// with rows(i) rows) and checks every result is its own.
func runConcurrently(t *testing.T, c *compiled, n int, rows func(i int) int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			feats, body, want := rowsFor(i, rows(i))
			<-start
			r, err := c.run("rank", body, map[string]string{"features": feats})
			if err != nil || string(r.Body) != want {
				errs <- fmt.Errorf("request %d: %v\n got %s\nwant %s", i, err, r.Body, want)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestRefusedBatchSplitsIntoItsRequests: a model refusing a batch for
// one request's rows (422) refuses that request alone. The requests of
// the batch are sent again one by one: the others are answered, and the
// refused one gets a 422 of its own, which its caller is answered with.
func TestRefusedBatchSplitsIntoItsRequests(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		m := b.startV2("ranker", "")
		c := compileRoute(t, batchRoute(m.URL(""), "{max_size: 4, max_wait: 200ms}"), b.env)
		// Request 7's id is 700.
		m.Set(func(n int64, rc *fasthttp.RequestCtx) {
			if bytes.Contains(rc.PostBody(), []byte("700")) {
				rc.SetStatusCode(422)
				rc.SetContentType("application/json")
				rc.SetBodyString(`{"error":"row 700 is invalid"}`)
				return
			}
			m.handle(n, rc)
		})
		requests := []int{1, 7, 2}
		errs := make([]error, len(requests))
		var wg sync.WaitGroup
		for k, i := range requests {
			wg.Go(func() {
				feats, body, want := rowsFor(i, 1)
				r, err := c.run("rank", body, map[string]string{"features": feats})
				errs[k] = err
				if err == nil && string(r.Body) != want {
					errs[k] = fmt.Errorf("got %s, want %s", r.Body, want)
				}
			})
		}
		wg.Wait()
		for k, i := range requests {
			var ue *upstream.Error
			switch {
			case i != 7 && errs[k] != nil:
				t.Errorf("request %d of the refused batch: %v", i, errs[k])
			case i == 7 && (!errors.As(errs[k], &ue) || !ue.RefusedRequest() || !strings.Contains(ue.Error(), "row 700 is invalid")):
				t.Errorf("request 7: error %v, want its own 422", errs[k])
			}
		}
		if n := m.Requests.Load(); n != 4 {
			t.Errorf("model saw %d requests, want the batch and each of its 3 requests alone", n)
		}
	})
}

func TestBatchCoalesces(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		m := b.startV2("ranker", "")
		c := compileRoute(t, batchRoute(m.URL(""), "{max_size: 12, max_wait: 300ms}"), b.env)
		// 6 requests of 1 to 3 rows (12 in all) fill one batch, which goes
		// at once, without waiting out max_wait.
		start := time.Now()
		runConcurrently(t, c, 6, func(i int) int { return 1 + i%3 })
		if calls, rows := m.Calls.Load(), m.Rows.Load(); calls != 1 || rows != 12 || m.MaxRows.Load() != 12 {
			t.Fatalf("model saw %d calls, %d rows, %d at most (last error %q)", calls, rows, m.MaxRows.Load(), m.LastError())
		}
		if took := time.Since(start); took != 0 {
			t.Fatalf("a full batch was sent after %s", took)
		}
		// A request with more rows than max_size goes alone.
		m.Calls.Store(0)
		feats, body, want := rowsFor(7, 13)
		r, err := c.run("rank", body, map[string]string{"features": feats})
		if err != nil || string(r.Body) != want || m.Calls.Load() != 1 || m.MaxRows.Load() != 13 {
			t.Fatalf("%v %s calls %d", err, r.Body, m.Calls.Load())
		}
	})
}

// TestBatchWindow: requests that do not fill a batch wait max_wait for
// others, counted from the first.
func TestBatchWindow(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		m := b.startV2("ranker", "")
		c := compileRoute(t, batchRoute(m.URL(""), "{max_size: 12, max_wait: 300ms}"), b.env)
		start := time.Now()
		var wg sync.WaitGroup
		for i, after := range []time.Duration{0, 100 * time.Millisecond, 299 * time.Millisecond} {
			wg.Go(func() {
				time.Sleep(after)
				feats, body, want := rowsFor(i, 1)
				r, err := c.run("rank", body, map[string]string{"features": feats})
				if err != nil || string(r.Body) != want {
					t.Errorf("request %d: %v %s", i, err, r.Body)
				}
				if took := time.Since(start); took != 300*time.Millisecond {
					t.Errorf("request %d answered after %s, want 300ms", i, took)
				}
			})
		}
		wg.Wait()
		if calls, rows := m.Calls.Load(), m.Rows.Load(); calls != 1 || rows != 3 {
			t.Fatalf("model saw %d calls, %d rows; want one call of 3", calls, rows)
		}
	})
}

// TestBatchGroupsInterleaved: calls whose propagated headers differ go in
// different batches; arriving interleaved (a, b, a, b, ...), each group
// still fills its own batch within the window.
func TestBatchGroupsInterleaved(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		m := b.startV2("ranker", "")
		route := strings.Replace(batchRoute(m.URL(""), "{max_size: 12, max_wait: 300ms}"), "timeout: 2s\n", "timeout: 2s\npropagate_headers: [X-Tenant]\n", 1)
		c := compileRoute(t, route, b.env)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				time.Sleep(time.Duration(i) * time.Millisecond) // a, b, a, b, ... in this order
				feats, body, want := rowsFor(i, 1)
				x := c.exchange(body, map[string]string{"features": feats}, map[string]string{"X-Tenant": string(rune('a' + i%2))})
				r := &x.Results[c.index["rank"]]
				if err := c.tasks["rank"].Run(x, r); err != nil || string(r.Body) != want {
					t.Errorf("request %d: %v %s", i, err, r.Body)
				}
			})
		}
		wg.Wait()
		if calls, rows := m.Calls.Load(), m.Rows.Load(); calls != 2 || rows != 8 || m.MaxRows.Load() != 4 {
			t.Fatalf("model saw %d calls, %d rows, %d at most; want two calls of 4", calls, rows, m.MaxRows.Load())
		}
	})
}

// TestBatchManyRequests sends more requests than fit in a batch, from
// many goroutines, under the race detector.
func TestBatchManyRequests(t *testing.T) {
	m := startV2(t, "ranker", "")
	c := compileRoute(t, batchRoute(m.URL(""), "{max_size: 8, max_wait: 2ms}"), nil)
	for round := 0; round < 5; round++ {
		runConcurrently(t, c, 40, func(i int) int { return 1 + i%4 })
	}
	if m.MaxRows.Load() > 8 || m.Rows.Load() != 5*100 {
		t.Fatalf("max rows %d, rows %d", m.MaxRows.Load(), m.Rows.Load())
	}
	t.Logf("%d calls for 200 requests", m.Calls.Load())
}

// TestBatchDeadlineNear: a request whose deadline is closer than max_wait
// is sent without waiting for others.
func TestBatchDeadlineNear(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		m := b.startV2("ranker", "")
		c := compileRoute(t, batchRoute(m.URL(""), "{max_size: 32, max_wait: 1500ms}"), b.env)
		feats, body, want := rowsFor(1, 2)
		x := c.exchange(body, map[string]string{"features": feats}, nil)
		x.Deadline = time.Now().Add(300 * time.Millisecond)
		r := &x.Results[c.index["rank"]]
		start := time.Now()
		if err := c.tasks["rank"].Run(x, r); err != nil || string(r.Body) != want {
			t.Fatalf("%v %s", err, r.Body)
		}
		if took := time.Since(start); took != 0 {
			t.Fatalf("the request waited %s for others", took)
		}
	})
}

// TestTightDeadlineDoesNotCutTheBatch: a request with little time left
// that joins a batch leaves it at its own deadline; the batched call goes
// on for the others, whose deadlines are later, and answers them.
func TestTightDeadlineDoesNotCutTheBatch(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		m := b.startV2("ranker", "")
		c := compileRoute(t, batchRoute(m.URL(""), "{max_size: 4, max_wait: 200ms}"), b.env)
		m.Set(m.Delay(100*time.Millisecond, m.handle))
		type outcome struct {
			body string
			err  error
			took time.Duration
		}
		run := func(i int, budget time.Duration) outcome {
			feats, body, _ := rowsFor(i, 1)
			x := c.exchange(body, map[string]string{"features": feats}, nil)
			x.Deadline = time.Now().Add(budget)
			r := &x.Results[c.index["rank"]]
			start := time.Now()
			err := c.tasks["rank"].Run(x, r)
			return outcome{string(r.Body), err, time.Since(start)}
		}
		var late, tight outcome
		var wg sync.WaitGroup
		wg.Go(func() { late = run(1, time.Second) })
		// The first request waits for others; the second, with 50ms left,
		// sends the batch at once.
		time.Sleep(time.Millisecond)
		wg.Go(func() { tight = run(2, 50*time.Millisecond) })
		wg.Wait()
		if _, _, want := rowsFor(1, 1); late.err != nil || late.body != want || late.took != 101*time.Millisecond {
			t.Errorf("request with 1s: %v %s after %s, want its answer after 101ms", late.err, late.body, late.took)
		}
		if !errors.Is(tight.err, ErrDeadline) || tight.took != 50*time.Millisecond {
			t.Errorf("request with 50ms: %v after %s, want the deadline after 50ms", tight.err, tight.took)
		}
		if n := m.Requests.Load(); n != 1 {
			t.Errorf("model saw %d requests, want the batch only", n)
		}
	})
}

func TestBatchFailures(t *testing.T) {
	inBubble(t, func(b *bubble) {
		t := b.t
		m := b.startV2("ranker", "")
		c := compileRoute(t, batchRoute(m.URL(""), "{max_size: 4, max_wait: 200ms}"), b.env)
		handle := m.handle
		// The batched call fails with 503: each request retries alone.
		m.Set(upstreamtest.Sequence(upstreamtest.Status(503), handle))
		runConcurrently(t, c, 4, func(int) int { return 1 })
		if n := m.Requests.Load(); n != 5 {
			t.Fatalf("model saw %d requests, want 1 batch + 4 retries", n)
		}
		// An answer whose batch size is wrong fails every member.
		m.Set(handle)
		m.answer = func(*v2Request, []tensor) (int, string) {
			return 200, `{"outputs":[{"name":"scores","shape":[1,1],"datatype":"FP32","data":[1]},{"name":"echo","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`
		}
		// twoMembers runs two requests of one row each at once, batched
		// together, and hands each error to check.
		twoMembers := func(budget time.Duration, check func(err error)) {
			var wg sync.WaitGroup
			for i := 0; i < 2; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					feats, body, _ := rowsFor(i, 1)
					x := c.exchange(body, map[string]string{"features": feats}, nil)
					x.Deadline = time.Now().Add(budget)
					check(c.tasks["rank"].Run(x, &x.Results[c.index["rank"]]))
				}()
			}
			wg.Wait()
		}
		twoMembers(2*time.Second, func(err error) {
			if !errors.Is(err, errAnswer) || !strings.Contains(err.Error(), "output scores has shape [1 1] for a batch of 2") {
				t.Errorf("error %v", err)
			}
		})
		// A batch refused as invalid (422) may be refused for another
		// member's rows: each member goes alone, and is refused for its
		// own.
		m.answer = func(*v2Request, []tensor) (int, string) { return 422, `{"error":"bad row"}` }
		sent := m.Requests.Load()
		twoMembers(2*time.Second, func(err error) {
			var ue *upstream.Error
			if !errors.As(err, &ue) || ue.Status != 422 || !ue.RefusedRequest() {
				t.Errorf("member of a refused batch: error %v, want its own 422", err)
			}
		})
		if n := m.Requests.Load() - sent; n != 3 {
			t.Errorf("model saw %d requests, want the batch and each member alone", n)
		}
		// Without the time for a try after the batch (the task's timeout
		// is 1s, the batch waited 200ms), no member goes alone, and no
		// member's error says its own content was refused.
		sent = m.Requests.Load()
		twoMembers(time.Second, func(err error) {
			var ue *upstream.Error
			if !errors.As(err, &ue) || ue.Status != 422 || ue.RefusedRequest() {
				t.Errorf("member of a refused batch: error %v, want a 422 not said to be its own", err)
			}
		})
		if n := m.Requests.Load() - sent; n != 1 {
			t.Errorf("model saw %d requests, want the batch alone", n)
		}
		m.answer = nil
		// Inputs with different batch sizes cannot be batched.
		feats, _, _ := rowsFor(1, 2)
		if _, err := c.run("rank", `{"ids":[1]}`, map[string]string{"features": feats}); err == nil || !strings.Contains(err.Error(), "needs the same batch size in every input") {
			t.Fatalf("error %v", err)
		}
		// The deadline passes while the batch waits: the task fails at its
		// deadline, the batch goes on without it.
		m.Set(m.Delay(200*time.Millisecond, handle))
		feats, body, _ := rowsFor(1, 1)
		x := c.exchange(body, map[string]string{"features": feats}, nil)
		x.Deadline = time.Now().Add(50 * time.Millisecond)
		r := &x.Results[c.index["rank"]]
		start := time.Now()
		if err := c.tasks["rank"].Run(x, r); !errors.Is(err, ErrDeadline) {
			t.Fatalf("error %v, want the deadline", err)
		}
		if took := time.Since(start); took != 50*time.Millisecond {
			t.Fatalf("the task failed after %s, want its 50ms deadline", took)
		}
	})
}
