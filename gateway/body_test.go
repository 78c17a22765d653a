package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// TestRequestBodyMemory: request bodies over 8 KiB share the request body
// memory while they are read and served. One that does not fit is
// answered 503 with Retry-After without being read; small bodies never
// wait for it; what a request held comes back when it is answered, when
// its client goes away in the middle of the body, and, for a chunked
// body, beyond the size it turned out to have.
func TestRequestBodyMemory(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"ok":true}`))
	tg := startGateway(t, map[string]string{"b.yaml": httpRoute("b", "2s", up.URL("/"), "")}, nil, func(o *Options) {
		o.MaxBodySize = 1 << 20
		o.BodyMemory = 2 << 20
	})
	addr := strings.TrimPrefix(tg.url, "http://")
	body := func(n int) string { return `{"pad":"` + strings.Repeat("x", n-10) + `"}` }
	free := func() bool {
		if !tg.g.bodyMem.sem.TryAcquire(2 << 20) {
			return false
		}
		tg.g.bodyMem.sem.Release(2 << 20)
		return true
	}
	// stall sends the header of a request with a 1 MiB body and a few of
	// its bytes, then waits: the request holds 1 MiB.
	stall := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"pad\":\"xx", 1<<20)
		return c
	}
	a, b := stall(), stall()
	defer b.Close()
	if !testwait.Within(testwait.Timeout, func() bool { return tg.g.bodyMem.entries.Load() == 2 }) {
		t.Fatalf("the stalled requests hold %d entries, want 2", tg.g.bodyMem.entries.Load())
	}

	resp := tg.post(t, "/b", body(100<<10))
	if resp.status != 503 || resp.header.Get("Retry-After") != "1" || !strings.Contains(resp.body, "request body memory") {
		t.Fatalf("100 KiB body with the memory full: %d %v %s", resp.status, resp.header, resp.body)
	}
	if resp := tg.post(t, "/b", body(1<<10)); resp.status != 200 {
		t.Fatalf("1 KiB body with the memory full: %d %s", resp.status, resp.body)
	}
	if resp := tg.post(t, "/b", body(2<<20)); resp.status != 413 {
		t.Fatalf("2 MiB body: %d %s", resp.status, resp.body)
	}

	// A client gone in the middle of its body gives its memory back.
	a.Close()
	if !testwait.Within(testwait.Timeout, func() bool { return tg.g.bodyMem.entries.Load() == 1 }) {
		t.Fatalf("%d entries after a stalled client left, want 1", tg.g.bodyMem.entries.Load())
	}
	if resp := tg.post(t, "/b", body(100<<10)); resp.status != 200 {
		t.Fatalf("100 KiB body after a client left: %d %s", resp.status, resp.body)
	}
	b.Close()
	if !testwait.Within(testwait.Timeout, free) {
		t.Fatal("the request body memory did not come back whole")
	}

	// A chunked body is charged the largest size until it is read.
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	chunk := body(20 << 10)
	fmt.Fprintf(c, "POST /b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk)
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("chunked body: %v %v", r, err)
	}
	r.Body.Close()
	if !testwait.Within(testwait.Timeout, free) {
		t.Fatal("the request body memory did not come back whole after a chunked body")
	}
	if n := metricValue(t, tg, `lariat_requests_rejected_total{reason="body_memory"}`); n < 1 {
		t.Fatalf("lariat_requests_rejected_total{reason=\"body_memory\"} = %v", n)
	}
}
