package upstream

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// othersAnsweredWithin is how recent an answer to another caller of a
// server must be for a timeout to be the caller's own (see
// Answered.Reason).
const othersAnsweredWithin = time.Second

// Answers follows when each caller of one server last got an answer from
// it: the targets of a model server, the feature tasks of a store. A
// caller's timeouts while the server answers the others are the caller's
// own (see Answered.Reason). The zero value is ready to use.
type Answers struct {
	mu sync.Mutex
	// callers is replaced whole under mu.
	callers atomic.Pointer[[]*Answered]
}

// Answered is one caller's part of Answers; a nil *Answered follows
// nothing.
type Answered struct {
	// at and ok are when the caller last got an answer, and a successful
	// one (Unix nanoseconds, to the millisecond).
	at, ok atomic.Int64
	set    *Answers
}

// Join adds a caller, which Leave takes out when it is retired.
func (a *Answers) Join() *Answered {
	c := &Answered{set: a}
	a.mu.Lock()
	defer a.mu.Unlock()
	var callers []*Answered
	if old := a.callers.Load(); old != nil {
		callers = slices.Clone(*old)
	}
	callers = append(callers, c)
	a.callers.Store(&callers)
	return c
}

// Leave takes the caller out of its Answers.
func (c *Answered) Leave() {
	if c == nil {
		return
	}
	a := c.set
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.callers.Load(); old != nil {
		callers := slices.DeleteFunc(slices.Clone(*old), func(o *Answered) bool { return o == c })
		a.callers.Store(&callers)
	}
}

// Mark notes that the caller got an answer at end, a successful one when
// success is set. Writes are skipped when they would change little, as
// every call would make them.
func (c *Answered) Mark(end time.Time, success bool) {
	if c == nil {
		return
	}
	now := end.UnixNano()
	if now-c.at.Load() >= int64(time.Millisecond) {
		c.at.Store(now)
	}
	if success && now-c.ok.Load() >= int64(time.Millisecond) {
		c.ok.Store(now)
	}
}

// Reason returns why a call of the caller that ended at end failed, r
// (with the server's status), as the server's breaker takes it. A
// timeout while the server answered its other callers within the last
// second (another model of the same server, another route's calls,
// another feature task's reads) is the caller's own, ReasonOther: what it
// asks is slower than its calls allow (a timeout set too short, a model
// that stalls on its own, a read of very many entities), while the
// server, answering, is up. So is a 5xx answer while the server answered
// its other callers successfully: one model of the server fails (a
// broken version, a model that did not load), not the server. Neither
// opens the breaker the others share. A server that stops answering every
// caller, or fails them all, is cut off a second later than a server with
// one caller.
func (c *Answered) Reason(r Reason, status int, end time.Time) Reason {
	if c == nil {
		return r
	}
	// The evidence wanted: for a 5xx, another caller's success; for a
	// timeout, any answer to another caller.
	var success bool
	switch {
	case r == ReasonTimeout:
	case r == ReasonStatus && status >= 500:
		success = true
	default:
		return r
	}
	callers := c.set.callers.Load()
	if callers == nil {
		return r
	}
	since := end.Add(-othersAnsweredWithin).UnixNano()
	for _, o := range *callers {
		at := &o.at
		if success {
			at = &o.ok
		}
		if o != c && at.Load() > since {
			return ReasonOther
		}
	}
	return r
}
