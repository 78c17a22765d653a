package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// A raced try sends the same call more than once and takes one answer:
//
//   - hedging (HedgeAfter): when the first call has not answered after
//     HedgeAfter, one more goes to the same upstream; the first answer
//     wins;
//   - race fallback (a fallback target, PrimaryWithin): the primary and
//     the fallback are called together; the primary's answer is used when
//     it comes within PrimaryWithin, otherwise the first answer.
//
// Every call runs on its own goroutine with its own copy of the request,
// bounded by its own deadline (fasthttp cannot cancel a call). The task
// returns as soon as it has its answer; calls still running are
// abandoned: they end by their deadline and nobody reads their result.

type raceRole uint8

const (
	rolePrimary raceRole = iota
	roleHedge
	roleFallback
)

// raceCall is one call of a raced try. It belongs to its goroutine until
// sent on the race's channel, then to whoever receives it.
type raceCall struct {
	role          raceRole
	tg            *Target
	req           *fasthttp.Request
	resp          *fasthttp.Response
	routeDeadline time.Time
	timeout       time.Duration
	status        int
	err           *Error
}

var raceCallPool = sync.Pool{New: func() any { return new(raceCall) }}

func freeRaceCall(a *raceCall) {
	fasthttp.ReleaseRequest(a.req)
	ReleaseResponse(a.resp)
	*a = raceCall{}
	raceCallPool.Put(a)
}

// maxRaceCalls bounds the calls of one raced try: primary, hedge,
// fallback.
const maxRaceCalls = 3

// race is the meeting point of a raced try's calls. The task and every
// call goroutine hold a reference; the last to let go frees the answers
// nobody took. A race is made per raced try, not pooled: its channel and
// timers belong to the goroutines that made them.
type race struct {
	results chan *raceCall
	refs    atomic.Int32
}

func newRace() *race {
	r := &race{results: make(chan *raceCall, maxRaceCalls)}
	r.refs.Store(1)
	return r
}

func (rc *race) release() {
	if rc.refs.Add(-1) != 0 {
		return
	}
	for len(rc.results) > 0 {
		freeRaceCall(<-rc.results)
	}
}

// launch starts a call of a copy of src to tg.
func (c *Caller) launch(rc *race, role raceRole, tg *Target, src *fasthttp.Request, b Budget, timeout time.Duration) {
	a := raceCallPool.Get().(*raceCall)
	a.role, a.tg, a.routeDeadline, a.timeout = role, tg, b.Deadline, timeout
	a.req = fasthttp.AcquireRequest()
	a.resp = AcquireResponse()
	src.CopyTo(a.req)
	if role == roleFallback {
		tg.Retarget(a.req)
	}
	rc.refs.Add(1)
	go c.runRaceCall(rc, a)
}

func (c *Caller) runRaceCall(rc *race, a *raceCall) {
	a.status, a.err = a.tg.Try(a.req, a.resp, a.routeDeadline, a.timeout)
	if a.err != nil {
		c.CountFailure(a.err.Reason)
	}
	rc.results <- a
	rc.release()
}

// race makes one raced try and decodes the answer it takes into dst.
func (c *Caller) race(b Budget, req *fasthttp.Request, tg, fallback *Target, dst []byte, out *Outcome) ([]byte, *Error) {
	rc := newRace()
	defer rc.release()
	c.launch(rc, rolePrimary, tg, req, b, c.TryTimeout)
	out.Attempts++
	inflight, primaries := 1, 1
	if fallback != nil {
		c.launch(rc, roleFallback, fallback, req, b, c.FallbackTimeout)
		out.Attempts++
		inflight++
	}
	var hedgeC, withinC <-chan time.Time
	if c.HedgeAfter > 0 {
		hedge := time.NewTimer(c.HedgeAfter)
		defer hedge.Stop()
		hedgeC = hedge.C
	}
	withinPassed := fallback == nil || c.PrimaryWithin <= 0
	if !withinPassed {
		within := time.NewTimer(c.PrimaryWithin)
		defer within.Stop()
		withinC = within.C
	}
	hedged := false
	// held is a fallback answer waiting for PrimaryWithin to pass.
	var held *raceCall
	var primErr, fbErr *Error
	var primStatus int
	for {
		select {
		case a := <-rc.results:
			inflight--
			if a.role != roleFallback {
				primaries--
			}
			if a.err == nil {
				if a.role != roleFallback || withinPassed || primaries == 0 {
					if held != nil {
						freeRaceCall(held)
					}
					return c.take(a, hedged, fallback != nil, dst, out)
				}
				held = a
				continue
			}
			if a.role != roleFallback {
				if primErr == nil {
					primErr, primStatus = a.err, a.status
				}
			} else {
				fbErr = a.err
			}
			freeRaceCall(a)
			if primaries == 0 {
				// No hedge once the primary has failed: that is the
				// retry policy's call.
				hedgeC = nil
				if held != nil {
					return c.take(held, hedged, true, dst, out)
				}
			}
			if inflight == 0 {
				if hedged {
					c.countHedge(false)
				}
				if primErr == nil {
					out.Status = 0
					return dst, fbErr
				}
				out.Status = primStatus
				return dst, primErr
			}
		case <-hedgeC:
			hedgeC = nil
			// The hedge gets at least the time the first call has had;
			// a shorter budget is not worth a second call.
			if primaries > 0 && (b.Cancel == nil || !b.Cancel.Canceled()) && b.Remaining() >= c.HedgeAfter {
				c.launch(rc, roleHedge, tg, req, b, c.TryTimeout)
				out.Attempts++
				inflight++
				primaries++
				hedged = true
			}
		case <-withinC:
			withinC = nil
			withinPassed = true
			if held != nil {
				return c.take(held, hedged, true, dst, out)
			}
		}
	}
}

// take decodes the answer of call a into dst and frees a.
func (c *Caller) take(a *raceCall, hedged, fallback bool, dst []byte, out *Outcome) ([]byte, *Error) {
	defer freeRaceCall(a)
	out.Status = a.status
	if fallback {
		c.countFallback(a.role == roleFallback)
	}
	if hedged {
		c.countHedge(a.role == roleHedge)
	}
	return c.answer(a.tg, a.resp.Body(), dst, out)
}
