// Package quota owns the admission quotas of tenants: a request rate with
// a burst, counted in each replica (a token bucket from
// golang.org/x/time/rate) or across replicas in Redis (GCRA, see Redis),
// and a bound on the requests in flight.
//
// Quotas are decided before any work is done for a request; a request
// over quota is answered 429 with the time after which a retry may pass.
package quota

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"
)

// Rate admits requests at a sustained rate with a burst.
type Rate interface {
	// Allow reports whether one more request may pass now; when not, after
	// how long one may.
	Allow() (ok bool, retryAfter time.Duration)
}

// NewLocal returns a token bucket of burst requests refilled at perSecond,
// counted in this process.
func NewLocal(perSecond float64, burst int) *Local {
	return &Local{l: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// Local is a token bucket counted in this process.
type Local struct{ l *rate.Limiter }

// Allow implements Rate.
func (b *Local) Allow() (bool, time.Duration) {
	now := time.Now()
	if b.l.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - b.l.TokensAt(now)
	return false, time.Duration(missing / float64(b.l.Limit()) * float64(time.Second))
}

// Store counts rates shared by several gateway replicas.
type Store interface {
	// Allow reports whether one more request under key may pass, at
	// perSecond with burst; when not, after how long one may. An error
	// means the store could not decide (in time: a store bounds its own
	// wait).
	Allow(ctx context.Context, key string, perSecond float64, burst int) (ok bool, retryAfter time.Duration, err error)
}

var (
	storeErrors = metrics.NewCounter(`lariat_quota_store_errors_total`)
	storeUp     atomic.Int64
	_           = metrics.NewGauge(`lariat_quota_store_up`, func() float64 { return float64(storeUp.Load()) })
)

// NewGlobal returns a rate counted in store under key, shared by every
// replica that uses the same key.
//
// When the store fails (unreachable, or slower than its timeout), requests are
// admitted: a quota store outage must not take the tenants' traffic down
// with it. Failures count in lariat_quota_store_errors_total and set
// lariat_quota_store_up to 0 until the store answers again.
func NewGlobal(store Store, key string, perSecond float64, burst int) *Global {
	storeUp.Store(1)
	return &Global{store: store, key: key, rate: perSecond, burst: burst}
}

// Global is a rate counted in a Store.
type Global struct {
	store Store
	key   string
	rate  float64
	burst int
}

// Allow implements Rate.
func (g *Global) Allow() (bool, time.Duration) {
	ok, after, err := g.store.Allow(context.Background(), g.key, g.rate, g.burst)
	if err != nil {
		storeErrors.Inc()
		storeUp.Store(0)
		return true, 0
	}
	storeUp.Store(1)
	return ok, after
}

// InFlight bounds the requests in flight. The zero value and a nil
// *InFlight admit everything.
type InFlight struct {
	n   atomic.Int64
	max int64
}

// NewInFlight returns a bound of max requests in flight; nil for max <= 0.
func NewInFlight(max int) *InFlight {
	if max <= 0 {
		return nil
	}
	return &InFlight{max: int64(max)}
}

// Acquire takes a slot; it reports false when max are in flight.
func (f *InFlight) Acquire() bool {
	if f == nil {
		return true
	}
	if f.n.Add(1) > f.max {
		f.n.Add(-1)
		return false
	}
	return true
}

// Release gives back a slot taken by Acquire.
func (f *InFlight) Release() {
	if f != nil {
		f.n.Add(-1)
	}
}

// Count returns the requests in flight.
func (f *InFlight) Count() int {
	if f == nil {
		return 0
	}
	return int(f.n.Load())
}

// RetryAfterSeconds rounds d up to whole seconds for a Retry-After header,
// at least 1.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
