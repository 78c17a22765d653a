package quota

import (
	"context"
	"errors"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sony/gobreaker/v2"
)

// Guard settings: after guardFailures failed decisions in a row, the
// store is not asked for guardOpenFor; then one decision tries it again.
const (
	guardFailures = 5
	guardOpenFor  = time.Second
)

// errStoreSkipped fails a decision the guard did not ask the store for.
var errStoreSkipped = errors.New("quota store skipped: it kept failing")

var storeSkipped = metrics.NewCounter(`lariat_quota_store_skipped_total`)

// Guarded returns s behind a circuit breaker: while the store keeps
// failing (down, or slower than its timeout, as a Redis stalled by a
// fork or a long script is), decisions fail at once, and so admit (see
// NewGlobal), instead of each waiting out the store's timeout. Decisions
// skipped count in lariat_quota_store_skipped_total. Guarded(nil) is nil.
func Guarded(s Store) Store {
	if s == nil {
		return nil
	}
	return &guarded{s: s, cb: gobreaker.NewCircuitBreaker[decision](gobreaker.Settings{
		Name:        "quota store",
		MaxRequests: 1,
		Timeout:     guardOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= guardFailures },
	})}
}

type guarded struct {
	s  Store
	cb *gobreaker.CircuitBreaker[decision]
}

type decision struct {
	ok    bool
	after time.Duration
}

// Allow implements Store.
func (g *guarded) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, time.Duration, error) {
	d, err := g.cb.Execute(func() (decision, error) {
		ok, after, err := g.s.Allow(ctx, key, perSecond, burst)
		return decision{ok, after}, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		storeSkipped.Inc()
		return false, 0, errStoreSkipped
	}
	return d.ok, d.after, err
}
