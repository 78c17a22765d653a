package upstream

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// LimitSettings configure the adaptive concurrency limit of an upstream.
//
// The limit follows the upstream's latency, as Envoy's adaptive
// concurrency filter and Netflix's Gradient2 limiter do: once per window
// of answers it compares their mean latency with the baseline (the
// latency of the unloaded upstream); it grows while the upstream is used
// near its limit and the latency stays within Tolerance times the
// baseline, and shrinks in proportion when the latency rises above it (a
// queue is forming at the upstream), or when the upstream times out or
// answers 429/503. Calls beyond the limit are refused at once (ErrOverloaded), so
// an overloaded upstream sees the load it can serve and the callers get a
// quick 503 instead of a slow failure.
type LimitSettings struct {
	// Initial is the limit before any latency is known.
	Initial int
	// Min and Max bound the limit.
	Min, Max int
	// Tolerance is how many times the baseline latency the recent latency
	// may reach before the limit shrinks.
	Tolerance float64
	// Disabled turns the limit off.
	Disabled bool
}

// DefaultLimit is the adaptive limit of an upstream no setting changes.
var DefaultLimit = LimitSettings{Initial: 128, Min: 4, Max: 1024, Tolerance: 1.25}

// limitSmoothing weighs a new limit estimate against the current one.
const limitSmoothing = 0.2

// The limit moves once per window of at least limitWindow holding at
// least limitSamples answers: averaging over a window keeps a mix of fast
// and slow answers (normal for model servers) from moving it.
const (
	limitWindow  = 100 * time.Millisecond
	limitSamples = 8
	// A rise of the baseline latency is followed over lightWindows
	// windows when the calls in flight stay below half the limit (the
	// slower answers are the upstream's own), and over busyWindows when
	// they reach the limit (they may be slow because of the queue the
	// limit lets form: following them quickly would let a lasting
	// overload become the new normal and the limit creep up).
	lightWindows = 10
	busyWindows  = 1000
)

// Limiter is the adaptive concurrency limit of one upstream. A nil
// *Limiter admits everything.
type Limiter struct {
	s LimitSettings
	// series are the names NewLimiter exported.
	series   []string
	inflight atomic.Int64
	limit    atomic.Int64

	mu sync.Mutex
	// est is the limit as a real number; base is the baseline latency
	// (ns, an average over windows); windows counts windows seen.
	est     float64
	base    float64
	windows int
	// The window being collected: its start, the sum and count of answer
	// latencies, the most calls seen in flight, and whether an overload
	// signal came.
	winStart time.Time
	winSum   float64
	winN     int
	winAll   int
	winPeak  int64
	winDrop  bool
	winShed  bool
	// cut is when the limit was last cut at once (see update); cutRTT
	// and cutPeak are the latency and the calls in flight that made it
	// cut. Calls started before cut+cutRTT wait behind the queue of
	// before the cut, so their answers are not counted; the first window
	// of later calls judges the cut (judging).
	cut     time.Time
	cutRTT  time.Duration
	cutPeak int64
	judging bool

	rejected *metrics.Counter
	// cpuHeld counts the windows whose verdict this process being short
	// of CPU changed (see update); nil for limits without metrics.
	cpuHeld *metrics.Counter
	// cpuWait, when set, reports how long this process waited for a CPU
	// lately (see update).
	cpuWait func(now time.Time) cpuState
}

// A window is not judged while this process is short of CPU for the
// upstream (cpuState.shortFor); its timeouts do not count against an
// upstream (neither its limit nor its breaker) while it is short of CPU
// at all (cpuState.short).

// NewLimiter returns the limit of upstream name, exported as
// lariat_upstream_limit, lariat_upstream_in_flight,
// lariat_upstream_rejected_total{reason="limit"} and
// lariat_upstream_limit_cpu_held_total (windows in which the limit held
// because this process was short of CPU). Unlike the limits of
// NewAdaptiveLimiter, it does not cut over windows in which this
// process waited long for a CPU (see update): it follows a
// queue at the upstream, not the gateway's own saturation.
func NewLimiter(name string, s LimitSettings) *Limiter {
	l := NewAdaptiveLimiter(s)
	if l == nil {
		return nil
	}
	l.cpuWait = processCPUWait.recent
	l.cpuWait(time.Now()) // the first reading, that the first window is compared with
	label := `{upstream=` + strconv.Quote(name) + `}`
	l.series = []string{`lariat_upstream_limit` + label, `lariat_upstream_in_flight` + label,
		`lariat_upstream_rejected_total{upstream=` + strconv.Quote(name) + `,reason="limit"}`, `lariat_upstream_limit_cpu_held_total` + label}
	metrics.GetOrCreateGauge(l.series[0], func() float64 { return float64(l.limit.Load()) })
	metrics.GetOrCreateGauge(l.series[1], func() float64 { return float64(l.inflight.Load()) })
	l.rejected = metrics.GetOrCreateCounter(l.series[2])
	l.cpuHeld = metrics.GetOrCreateCounter(l.series[3])
	return l
}

// unregister drops the series NewLimiter exported.
func (l *Limiter) unregister() {
	if l == nil {
		return
	}
	for _, name := range l.series {
		metrics.UnregisterMetric(name)
	}
}

// NewAdaptiveLimiter returns an adaptive limit with settings s that
// exports no metrics (nil when s is disabled): the caller counts what it
// refuses in its own series.
func NewAdaptiveLimiter(s LimitSettings) *Limiter {
	if s.Disabled {
		return nil
	}
	s.Min = max(s.Min, 1)
	s.Max = max(s.Max, s.Min)
	s.Initial = min(max(s.Initial, s.Min), s.Max)
	if s.Tolerance < 1 {
		s.Tolerance = DefaultLimit.Tolerance
	}
	l := &Limiter{s: s, est: float64(s.Initial)}
	l.limit.Store(int64(s.Initial))
	return l
}

// Acquire admits a call, or reports false when the upstream has as many
// calls in flight as its limit allows. An admitted call must be Released.
func (l *Limiter) Acquire() bool {
	if l == nil {
		return true
	}
	if l.inflight.Add(1) > l.limit.Load() {
		l.inflight.Add(-1)
		if l.rejected != nil {
			l.rejected.Inc()
		}
		return false
	}
	return true
}

// Limit returns the current limit.
func (l *Limiter) Limit() int {
	if l == nil {
		return math.MaxInt
	}
	return int(l.limit.Load())
}

// InFlight returns the calls admitted and not yet released.
func (l *Limiter) InFlight() int {
	if l == nil {
		return 0
	}
	return int(l.inflight.Load())
}

// Release ends an admitted call that took rtt and ended for reason r with
// status: answers feed the latency the limit follows; timeouts and
// 429/503 answers shrink it; other failures leave it alone.
func (l *Limiter) Release(rtt time.Duration, r Reason, status int) {
	if l == nil {
		return
	}
	inflight := l.inflight.Add(-1) + 1
	shed := r == ReasonStatus && (status == 429 || status == 503)
	drop := r == ReasonTimeout || shed
	answered := r == ReasonNone || r == ReasonStatus || r == ReasonInvalid || r == ReasonTooLarge
	if !drop && !answered {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.winStart.IsZero() {
		l.winStart = now
	}
	l.winAll++
	switch {
	case drop:
		l.winDrop = true
		l.winShed = l.winShed || shed
	case now.Sub(l.cut) < rtt+l.cutRTT:
		// Sent before the queue of the last cut could drain: its wait is
		// already acted on.
		return
	default:
		l.winSum += float64(rtt)
		l.winN++
	}
	l.winPeak = max(l.winPeak, inflight)
	full := l.winDrop || l.winN >= limitSamples
	// A window closes after limitWindow, or as soon as it is full when its
	// latency says a long queue has formed (see update).
	if !full || now.Sub(l.winStart) < limitWindow && !(l.windows > 0 && l.winN > 0 && l.winSum/float64(l.winN) > queueFactor*l.s.Tolerance*l.base) {
		return
	}
	l.update(now)
	l.winStart, l.winSum, l.winN, l.winAll, l.winPeak, l.winDrop, l.winShed = now, 0, 0, 0, 0, false, false
}

// maxCut is the deepest one cut goes: to a fifth of the calls in flight.
const maxCut = 0.2

// queueAllowance is the queue a limit of est lets form at the upstream
// beyond what the tolerance allows, so that the limit keeps probing for
// more: half the square root of est (Gradient2 allows the whole square
// root, which at small limits doubles the latency on its own).
func queueAllowance(est float64) float64 { return math.Sqrt(est) / 2 }

// heldForCPU counts a window that was not judged because this process
// was short of CPU.
func (l *Limiter) heldForCPU() {
	if l.cpuHeld != nil {
		l.cpuHeld.Inc()
	}
}

// queueFactor: a window whose mean latency exceeds the tolerated latency
// this many times over is a long queue, cut at once (see update).
const queueFactor = 2.0

// update moves the limit at the end of a window.
func (l *Limiter) update(now time.Time) {
	// cpu is how long this process waited for a CPU lately (zero when
	// not followed).
	var cpu cpuState
	if l.cpuWait != nil {
		cpu = l.cpuWait(now)
	}
	if l.winDrop {
		// The upstream said it is overloaded (429/503), or timed out:
		// back off; but not for timeouts while this process is short of
		// CPU, which say nothing of the upstream.
		if l.winShed || !cpu.short() {
			l.set(l.est * 0.9)
		} else {
			l.heldForCPU()
		}
		return
	}
	rtt := l.winSum / float64(l.winN)
	if l.windows > 0 && cpu.shortFor(l.base) {
		// This process waited for a CPU for a sizeable part of the
		// baseline: the latency was made on this machine (the gateway,
		// or what runs beside it, is short of CPU) more than by a queue
		// at the upstream. Cutting would refuse calls the upstream could
		// serve without making the answers any faster (the route's own
		// limit follows the gateway's saturation), so the limit and its
		// baseline hold; it still grows when the latency is within the
		// tolerance, and 429/503 answers still shrink it.
		if float64(l.winPeak) >= l.est/2 && rtt <= l.s.Tolerance*l.base {
			l.grow()
		}
		l.heldForCPU()
		return
	}
	l.windows++
	if l.judging {
		l.judging = false
		if rtt >= 0.8*float64(l.cutRTT) && float64(l.winPeak) <= 0.75*float64(l.cutPeak) {
			// Far fewer calls in flight did not make the answers faster:
			// the latency is not a queue of this gateway's calls (the
			// upstream itself became slower, or this machine is short of
			// CPU), and cutting again would only refuse calls. Take it
			// as the new baseline instead.
			l.base = rtt / l.s.Tolerance
			return
		}
	}
	// The baseline is the latency of the unloaded upstream: it follows a
	// faster window quickly, a slower one under light use less quickly,
	// and a slower one at the limit very slowly.
	switch {
	case l.windows == 1:
		l.base = rtt
	case rtt < l.base:
		l.base += (rtt - l.base) / 4
	case float64(l.winPeak) < l.est/2 || l.est <= float64(l.s.Min):
		// Used lightly, or slow even at the smallest limit: the latency
		// is not made by the queue this gateway's calls form.
		l.base += (rtt - l.base) / lightWindows
	default:
		l.base += (rtt - l.base) / busyWindows
	}
	// An upstream used below half its limit says nothing about the limit:
	// its latency, slow or fast, is not made by queueing behind the calls
	// this gateway sends. Keep the limit.
	if float64(l.winPeak) < l.est/2 {
		return
	}
	gradient := l.s.Tolerance * l.base / rtt
	if gradient >= 1 {
		// No queue is forming: grow.
		l.grow()
		return
	}
	if gradient < 1/queueFactor {
		// The latency is more than queueFactor times what the tolerance
		// allows: a long queue has formed (a burst, or a limit far above
		// what the upstream serves). Cut at once, not over seconds of
		// smoothed steps the callers would spend in the queue: to the
		// calls the upstream keeps in flight at the tolerated latency, by
		// Little's law the rate it answered at times that latency (or
		// the calls in flight scaled by the gradient, when fewer). Then
		// let the queue drain before judging the cut.
		in := math.Min(l.est, float64(l.winPeak)) * math.Max(maxCut, gradient)
		if d := now.Sub(l.winStart); d > 0 {
			// Answers per nanosecond times the tolerated latency in ns.
			in = math.Min(in, float64(l.winAll)/float64(d)*l.s.Tolerance*l.base)
		}
		l.set(in + queueAllowance(in))
		l.cut, l.cutRTT, l.cutPeak, l.judging = now, time.Duration(rtt), l.winPeak, true
		return
	}
	next := l.est*math.Max(0.5, gradient) + queueAllowance(l.est)
	l.set(l.est*(1-limitSmoothing) + next*limitSmoothing)
}

// grow raises the limit by a tenth, at least by its square root, so that
// a limit far below what the upstream serves catches up within seconds.
func (l *Limiter) grow() { l.set(l.est + math.Max(l.est/10, math.Sqrt(l.est))) }

func (l *Limiter) set(est float64) {
	l.est = math.Max(float64(l.s.Min), math.Min(float64(l.s.Max), est))
	l.limit.Store(int64(l.est))
}
