package upstream

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sony/gobreaker/v2"
)

// BreakerSettings configure a circuit breaker.
type BreakerSettings struct {
	// Failures is how many consecutive upstream faults open the breaker.
	Failures uint32
	// OpenFor is how long the breaker stays open before it lets trial
	// requests through.
	OpenFor time.Duration
	// HalfOpenRequests is how many trial requests may run while half
	// open; that many successes in a row close it again.
	HalfOpenRequests uint32
	// Disabled turns the breaker off.
	Disabled bool
}

// DefaultBreaker is used when a task sets no breaker.
var DefaultBreaker = BreakerSettings{Failures: 5, OpenFor: 5 * time.Second, HalfOpenRequests: 1}

// Merge returns s with the fields o sets replacing its own.
func (s BreakerSettings) Merge(o BreakerSettings) BreakerSettings {
	if o.Failures > 0 {
		s.Failures = o.Failures
	}
	if o.OpenFor > 0 {
		s.OpenFor = o.OpenFor
	}
	if o.HalfOpenRequests > 0 {
		s.HalfOpenRequests = o.HalfOpenRequests
	}
	s.Disabled = s.Disabled || o.Disabled
	return s
}

func (s BreakerSettings) key() string {
	return fmt.Sprintf("%d|%s|%d|%t", s.Failures, s.OpenFor, s.HalfOpenRequests, s.Disabled)
}

// Breaker is a circuit breaker for one upstream. It counts only the
// upstream's faults (see Fault): a try the gateway refused itself, one
// the caller's deadline cut short, or one that timed out while the
// gateway was short of CPU (see cpuState.explains) neither opens nor
// closes it; timeouts of tries in flight together count once (see
// sameStall). A nil *Breaker lets everything through.
type Breaker struct {
	name string
	cb   *gobreaker.CircuitBreaker[struct{}]
	// cpuWait, when set, reports how long this process waited for a CPU
	// lately: timeouts while it waits long are not the upstream's.
	cpuWait func(now time.Time) cpuState
	// log, when set, receives a line when the breaker opens after being
	// closed and one when it closes again; lastFault is the reason and
	// status of the last fault counted (reason<<16 | status), which the
	// line of an opening names. openedAt and failedTrials describe the
	// outage for the closing line (gobreaker serializes state changes).
	log          *slog.Logger
	lastFault    atomic.Uint32
	failures     uint32
	openedAt     time.Time
	failedTrials int
	// label is the breaker's series' labels, shared by the breakers of
	// one tenant and upstream; settingsSeries is its settings series,
	// its own.
	label, settingsSeries string
	// refs counts the targets using a pool's breaker (under Pool.mu).
	refs int
	key  string
	// lastTimeout is when the last timeout counted ended (under
	// timeoutMu): a try sent before it timed out in the same stall.
	timeoutMu   sync.Mutex
	lastTimeout time.Time
}

// sameStall reports whether a try sent at start that timed out now was in
// flight when the last counted timeout ended: the tries in flight when an
// upstream stalls time out together and count as one fault, so a stall
// shorter than the try timeout times the failures the breaker allows (a
// garbage collection pause, a fork of Redis to save) does not open it,
// while a hang still does, after as many tries in a row, each sent after
// the last one counted timed out.
func (b *Breaker) sameStall(start, now time.Time) bool {
	b.timeoutMu.Lock()
	defer b.timeoutMu.Unlock()
	if start.Before(b.lastTimeout) {
		return true
	}
	b.lastTimeout = now
	return false
}

// unregister drops the breaker's own series, and those it shares when
// shared is false (it was the last of its label).
func (b *Breaker) unregister(shared bool) {
	metrics.UnregisterMetric(b.settingsSeries)
	if shared {
		return
	}
	metrics.UnregisterMetric(`lariat_breaker_open{` + b.label + `}`)
	for _, to := range []gobreaker.State{gobreaker.StateClosed, gobreaker.StateHalfOpen, gobreaker.StateOpen} {
		metrics.UnregisterMetric(`lariat_breaker_state_changes_total{` + b.label + `,to="` + to.String() + `"}`)
	}
}

// faultError marks a try's failure the breaker counts.
type faultError struct{}

func (faultError) Error() string { return "upstream fault" }

// excludedError marks a failure the breaker neither counts nor treats as
// a success.
type excludedError struct{}

func (excludedError) Error() string { return "not the upstream's fault" }

// NewBreaker returns a breaker named name (the upstream) whose state is
// exported as lariat_breaker_open{upstream=name}.
func NewBreaker(name string, s BreakerSettings) *Breaker {
	return NewTenantBreaker("", name, s)
}

// NewTenantBreaker returns the breaker of tenant's calls to upstream name:
// other tenants' calls to the same upstream neither open nor close it. Its
// series carry tenant="<tenant>" before the upstream label; with tenant ""
// it is NewBreaker's.
func NewTenantBreaker(tenant, name string, s BreakerSettings) *Breaker {
	if s.Disabled {
		return nil
	}
	label := `upstream=` + strconv.Quote(name)
	if tenant != "" {
		label = `tenant=` + strconv.Quote(tenant) + `,` + label
	}
	state := metrics.GetOrCreateGauge(`lariat_breaker_open{`+label+`}`, nil)
	failures := max(s.Failures, 1)
	settings := fmt.Sprintf(`lariat_breaker_settings{%s,failures="%d",open_for_seconds="%g",half_open_requests="%d"}`,
		label, failures, s.OpenFor.Seconds(), max(s.HalfOpenRequests, 1))
	metrics.GetOrCreateGauge(settings, nil).Set(1)
	b := &Breaker{name: name, cpuWait: processCPUWait.recent, label: label, settingsSeries: settings, failures: failures}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: max(s.HalfOpenRequests, 1),
		Timeout:     s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded:  func(err error) bool { _, ok := err.(excludedError); return ok },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			metrics.GetOrCreateCounter(`lariat_breaker_state_changes_total{` + label + `,to="` + to.String() + `"}`).Inc()
			b.logChange(tenant, from, to)
			switch to {
			case gobreaker.StateOpen:
				state.Set(1)
			case gobreaker.StateHalfOpen:
				state.Set(0.5)
			default:
				state.Set(0)
			}
		},
	})
	return b
}

// SetLogger makes the breaker log its outages to l: a line when it opens
// after being closed, and one when it closes again. It must be called
// before the breaker is used.
func (b *Breaker) SetLogger(l *slog.Logger) {
	if b != nil {
		b.log = l
	}
}

// logChange logs an outage starting (from closed to open) or ending (to
// closed); trials that fail while it lasts are counted, not logged.
func (b *Breaker) logChange(tenant string, from, to gobreaker.State) {
	if b.log == nil {
		return
	}
	attrs := []any{"upstream", b.name}
	if tenant != "" {
		attrs = append(attrs, "tenant", tenant)
	}
	switch {
	case to == gobreaker.StateOpen && from == gobreaker.StateClosed:
		b.openedAt, b.failedTrials = time.Now(), 0
		last := b.lastFault.Load()
		fault := Reason(last >> 16).Metric()
		if status := last & 0xffff; status != 0 {
			fault += " " + strconv.Itoa(int(status))
		}
		b.log.Warn("upstream breaker opened: calls fail at once until a trial call succeeds", append(attrs, "consecutive_faults", b.failures, "last_fault", fault)...)
	case to == gobreaker.StateOpen:
		b.failedTrials++
	case to == gobreaker.StateClosed:
		b.log.Info("upstream breaker closed", append(attrs, "open_for", time.Since(b.openedAt).Round(time.Millisecond), "failed_trials", b.failedTrials)...)
	}
}

// Do runs try, a try that started at start, through the breaker. try
// returns the reason and status of its outcome; Do returns false without
// running it when the breaker is open (or half open with its trials
// taken).
func (b *Breaker) Do(start time.Time, try func() (Reason, int)) bool {
	if b == nil {
		try()
		return true
	}
	_, err := b.cb.Execute(func() (struct{}, error) {
		r, status := try()
		switch {
		case r == ReasonNone:
			return struct{}{}, nil
		case r == ReasonTimeout && b.cpuWait != nil && b.cpuWait(time.Now()).explains(time.Since(start)):
			// The gateway is short of CPU (its own work, other
			// processes, or its CPU quota): a call to a healthy upstream
			// may time out waiting to run, so the timeout is not
			// counted against the upstream, unless it waited longer
			// than a shortage of CPU makes a try wait.
			return struct{}{}, excludedError{}
		case r == ReasonTimeout && b.sameStall(start, time.Now()):
			return struct{}{}, excludedError{}
		case Fault(r, status):
			b.lastFault.Store(uint32(r)<<16 | uint32(status)&0xffff)
			return struct{}{}, faultError{}
		case r == ReasonStatus || r == ReasonTooLarge || r == ReasonInvalid:
			// The upstream answered: it is up.
			return struct{}{}, nil
		}
		return struct{}{}, excludedError{}
	})
	return err != gobreaker.ErrOpenState && err != gobreaker.ErrTooManyRequests
}

// State returns the breaker's state: closed, half-open or open.
func (b *Breaker) State() string {
	if b == nil {
		return "disabled"
	}
	return b.cb.State().String()
}
