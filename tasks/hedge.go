package tasks

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// A raced try sends the same call more than once and takes one answer:
//
//   - hedging (hedge_after): when the first call has not answered after
//     hedge_after, one more goes to the same upstream; the first answer
//     wins;
//   - race fallback (fallback, primary_within): the primary and the
//     fallback are called together; the primary's answer is used when it
//     comes within primary_within, otherwise the first answer.
//
// Every call runs on its own goroutine with its own copy of the request,
// bounded by its own deadline (fasthttp cannot cancel a call). The task
// returns as soon as it has its answer; calls still running are abandoned:
// they end by their deadline and nobody reads their result.

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
	tg            *target
	req           *fasthttp.Request
	resp          *fasthttp.Response
	routeDeadline time.Time
	timeout       time.Duration
	status        int
	kind          failKind
	err           error
}

var raceCallPool = sync.Pool{New: func() any { return new(raceCall) }}

func freeRaceCall(a *raceCall) {
	fasthttp.ReleaseRequest(a.req)
	fasthttp.ReleaseResponse(a.resp)
	*a = raceCall{}
	raceCallPool.Put(a)
}

// maxRaceCalls bounds the calls of one raced try: primary, hedge,
// fallback.
const maxRaceCalls = 3

// race is the meeting point of a raced try's calls. The task and every
// call goroutine hold a reference; the last to let go frees the answers
// nobody took.
type race struct {
	results chan *raceCall
	refs    atomic.Int32
	hedge   *time.Timer
	within  *time.Timer
}

var racePool = sync.Pool{New: func() any {
	r := &race{results: make(chan *raceCall, maxRaceCalls), hedge: time.NewTimer(time.Hour), within: time.NewTimer(time.Hour)}
	r.hedge.Stop()
	r.within.Stop()
	return r
}}

func acquireRace() *race {
	r := racePool.Get().(*race)
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
	racePool.Put(rc)
}

// launch starts a call of a copy of src to tg.
func (c *caller) launch(rc *race, role raceRole, tg *target, src *fasthttp.Request, x *Exchange, timeout time.Duration) {
	a := raceCallPool.Get().(*raceCall)
	a.role, a.tg, a.routeDeadline, a.timeout = role, tg, x.Deadline, timeout
	a.req = fasthttp.AcquireRequest()
	a.resp = fasthttp.AcquireResponse()
	src.CopyTo(a.req)
	if role == roleFallback {
		retarget(a.req, tg)
	}
	rc.refs.Add(1)
	go c.runRaceCall(rc, a)
}

func (c *caller) runRaceCall(rc *race, a *raceCall) {
	a.err = a.tg.breaker.Do(func() (bool, error) {
		var e error
		a.status, a.kind, e = try(a.req, a.resp, a.routeDeadline, a.timeout, a.tg)
		return breakerCounts(a.kind, a.status), e
	})
	if a.err == ErrBreakerOpen {
		a.kind, a.err = failBreaker, fmt.Errorf("%s: %w", a.tg.host, ErrBreakerOpen)
	}
	if a.err != nil {
		c.count(a.kind)
	}
	rc.results <- a
	rc.release()
}

// race makes one raced try and decodes the answer it takes into r.
func (c *caller) race(x *Exchange, r *Result, req *fasthttp.Request, tg *target) (failKind, error) {
	rc := acquireRace()
	defer rc.release()
	c.launch(rc, rolePrimary, tg, req, x, c.tryTimeout)
	r.Attempts++
	inflight, primaries := 1, 1
	var fbErr error
	if c.fallback != nil {
		ftg, err := c.fallback.target()
		if err == nil {
			c.launch(rc, roleFallback, ftg, req, x, c.fallbackTry)
			r.Attempts++
			inflight++
		} else {
			fbErr = err
		}
	}
	var hedgeC, withinC <-chan time.Time
	if c.hedgeAfter > 0 {
		rc.hedge.Reset(c.hedgeAfter)
		defer rc.hedge.Stop()
		hedgeC = rc.hedge.C
	}
	withinPassed := c.fallback == nil || c.primaryWithin <= 0
	if !withinPassed {
		rc.within.Reset(c.primaryWithin)
		defer rc.within.Stop()
		withinC = rc.within.C
	}
	hedged := false
	// held is a fallback answer waiting for primary_within to pass.
	var held *raceCall
	var primErr error
	var primKind failKind
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
					return c.take(r, a, hedged)
				}
				held = a
				continue
			}
			if a.role != roleFallback {
				if primErr == nil {
					primErr, primKind, primStatus = a.err, a.kind, a.status
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
					return c.take(r, held, hedged)
				}
			}
			if inflight == 0 {
				if hedged {
					c.hedgeLost.Inc()
				}
				if primErr == nil {
					r.Status = 0
					return failOther, fmt.Errorf("fallback: %w", fbErr)
				}
				r.Status = primStatus
				return primKind, primErr
			}
		case <-hedgeC:
			hedgeC = nil
			// The hedge gets at least the time the first call has had;
			// a shorter budget is not worth a second call.
			if primaries > 0 && !x.Canceled() && x.Remaining() >= c.hedgeAfter {
				c.launch(rc, roleHedge, tg, req, x, c.tryTimeout)
				r.Attempts++
				inflight++
				primaries++
				hedged = true
			}
		case <-withinC:
			withinC = nil
			withinPassed = true
			if held != nil {
				return c.take(r, held, hedged)
			}
		}
	}
}

// take decodes the answer of call a into r and frees a.
func (c *caller) take(r *Result, a *raceCall, hedged bool) (failKind, error) {
	defer freeRaceCall(a)
	r.Status = a.status
	if c.fallback != nil {
		if a.role == roleFallback {
			r.Model = a.tg.label()
			r.Upstream = a.tg.host
			c.fbFallback.Inc()
		} else {
			c.fbPrimary.Inc()
		}
	}
	if hedged {
		if a.role == roleHedge {
			c.hedgeWon.Inc()
		} else {
			c.hedgeLost.Inc()
		}
	}
	return c.answer(r, a.resp.Body())
}
