package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/semaphore"
)

// freeBodyBytes is the size up to which request bodies are read without
// asking the request body memory: most prediction requests are smaller.
const freeBodyBytes = 8 << 10

// pooledRequestBodyMax is the largest request body buffer kept for reuse.
const pooledRequestBodyMax = 64 << 10

var bodyMemoryFull = metrics.NewCounter(`lariat_requests_rejected_total{reason="body_memory"}`)

// bodyMemory bounds the memory of the large request bodies being read
// and served at once. A request whose body does not fit is refused once
// its header is read, before its body is (the server then fails it with
// ErrBodyTooLarge, which handleServerError answers 503).
type bodyMemory struct {
	sem *semaphore.Weighted
	// max is the largest body accepted.
	max int
	mu  sync.Mutex
	// held is what each request holds, by its header (one per
	// connection being served); only large bodies have an entry.
	held map[*fasthttp.RequestHeader]int64
	// entries counts held's entries: while it is 0, requests skip the
	// lock.
	entries atomic.Int64
}

func newBodyMemory(size int64, maxBody int) *bodyMemory {
	return &bodyMemory{sem: semaphore.NewWeighted(max(size, int64(maxBody))), max: maxBody, held: map[*fasthttp.RequestHeader]int64{}}
}

// charge is what the body of a request with header h needs: its length
// when larger than freeBodyBytes, the largest size accepted when it is
// chunked (until it is read), nothing when small or too large to accept.
func (m *bodyMemory) charge(h *fasthttp.RequestHeader) int64 {
	n := h.ContentLength()
	switch {
	case n == -1:
		return int64(m.max)
	case n <= freeBodyBytes || n > m.max:
		return 0
	}
	return int64(n)
}

// admit takes what the request with header h needs and reports whether
// its body may be read.
func (m *bodyMemory) admit(h *fasthttp.RequestHeader) bool {
	charge := m.charge(h)
	if charge == 0 {
		return true
	}
	// A request whose end was not seen (its connection closed on
	// shutdown) leaves its entry to the next request on the header.
	m.release(h)
	if !m.sem.TryAcquire(charge) {
		bodyMemoryFull.Inc()
		return false
	}
	m.mu.Lock()
	m.held[h] = charge
	m.entries.Add(1)
	m.mu.Unlock()
	return true
}

// serve is called when the request rc holds is about to be served: a
// body read in full gives back what its charge holds beyond its size (a
// chunked one was charged the largest size). It reports whether the
// request holds memory, to release once it is answered.
func (m *bodyMemory) serve(rc *fasthttp.RequestCtx) bool {
	if m.entries.Load() == 0 {
		return false
	}
	h := &rc.Request.Header
	m.mu.Lock()
	charge, ok := m.held[h]
	n := int64(len(rc.PostBody()))
	if ok && n < charge {
		m.held[h] = n
	}
	m.mu.Unlock()
	if ok && n < charge {
		m.sem.Release(charge - n)
	}
	return ok
}

// release gives back what the request with header h holds and reports
// whether it held any.
func (m *bodyMemory) release(h *fasthttp.RequestHeader) bool {
	if m.entries.Load() == 0 {
		return false
	}
	m.mu.Lock()
	charge, ok := m.held[h]
	if ok {
		delete(m.held, h)
		m.entries.Add(-1)
	}
	m.mu.Unlock()
	if charge > 0 {
		m.sem.Release(charge)
	}
	return ok
}

// headerReceived runs once a request's header is read, before its body.
func (g *Gateway) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if g.bodyMem.admit(h) {
		return fasthttp.RequestConfig{}
	}
	// Fail the request before reading its body.
	return fasthttp.RequestConfig{MaxRequestBodySize: 1}
}

// maxDrainPastLimit is how much larger than the largest accepted a body
// may be and still be drained: a client sending more gets its
// connection reset.
const maxDrainPastLimit = 4 << 20

// drainGap ends a drain: the client has sent nothing for this long.
const drainGap = 20 * time.Millisecond

// drainBuffers hold what a drain reads.
var drainBuffers = sync.Pool{New: func() any { return new([16 << 10]byte) }}

// drain reads and drops what a client still sends of a request body
// that will not be read, so that the answer refusing it reaches the
// client: closing the connection with its bytes unread would reset it,
// and a client still sending would see the reset instead of the answer.
// It reads at least sure bytes (what the server cannot have read with
// the header) within timeout, then goes on while more comes within
// drainGap, up to limit bytes in all. The connection is closed after the
// answer.
func drain(rc *fasthttp.RequestCtx, sure, limit int, timeout time.Duration) {
	c := rc.Conn()
	if c == nil || limit <= 0 {
		return
	}
	buf := drainBuffers.Get().(*[16 << 10]byte)
	defer drainBuffers.Put(buf)
	end := time.Now().Add(timeout)
	for read := 0; read < limit; {
		deadline := end
		if read >= sure {
			deadline = time.Now().Add(drainGap)
		}
		if c.SetReadDeadline(deadline) != nil {
			return
		}
		n, err := c.Read(buf[:min(len(buf), limit-read)])
		read += n
		if err != nil {
			return
		}
	}
}

// drainUnread drains the unread body of the request rc holds (see
// drain): its length when known, or up to the largest size
// accepted; a body much larger than accepted is left to the reset.
func (g *Gateway) drainUnread(rc *fasthttp.RequestCtx) {
	n := rc.Request.Header.ContentLength()
	switch {
	case n == -1:
		drain(rc, 0, g.opts.MaxBodySize, g.opts.ReadTimeout)
	case n > 0 && n <= g.opts.MaxBodySize+maxDrainPastLimit:
		// The server read the header with up to a read buffer of
		// the body.
		drain(rc, n-g.opts.MaxHeaderSize, n, g.opts.ReadTimeout)
	}
}
