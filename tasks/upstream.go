package tasks

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// Env holds the runtime services tasks share across routes and reloads:
// upstream connection pools and circuit breakers, and the services later
// kinds plug in (feature store, model registry).
type Env struct {
	Upstreams *Upstreams
	// Features is the online feature store, for the feature kind.
	Features *FeatureEnv
	// Models resolves registry model references, for http tasks that name
	// a model instead of an address.
	Models ModelResolver
	// Tracer, when set, traces every request and task.
	Tracer trace.Tracer
}

// NewEnv returns an Env with an upstream pool using the given host
// overrides (see ParseResolve).
func NewEnv(resolve map[string]string) *Env {
	return &Env{Upstreams: NewUpstreams(resolve)}
}

// ParseResolve parses a --resolve value, HOST[:PORT]=ADDR, where ADDR is
// host:port or a bare host (the request's port is kept).
func ParseResolve(s string) (key, addr string, err error) {
	key, addr, ok := strings.Cut(s, "=")
	if !ok || key == "" || addr == "" {
		return "", "", fmt.Errorf("invalid --resolve %q: want HOST[:PORT]=ADDR", s)
	}
	return strings.ToLower(key), addr, nil
}

// Upstreams keeps one pooled, kept-alive fasthttp client per upstream
// host:port and one circuit breaker per upstream and breaker setting. They
// outlive route reloads, so connections stay warm.
type Upstreams struct {
	resolve map[string]string

	mu       sync.Mutex
	clients  map[string]*fasthttp.HostClient
	breakers map[string]*Breaker
}

// NewUpstreams returns a pool; resolve maps "host" or "host:port" to the
// address to dial instead of resolving the name.
func NewUpstreams(resolve map[string]string) *Upstreams {
	return &Upstreams{
		resolve:  resolve,
		clients:  map[string]*fasthttp.HostClient{},
		breakers: map[string]*Breaker{},
	}
}

// DialAddr returns the address dialled for hostPort, after overrides.
func (u *Upstreams) DialAddr(hostPort string) string {
	hp := strings.ToLower(hostPort)
	if a, ok := u.resolve[hp]; ok {
		return withPort(a, hp)
	}
	host, _, err := net.SplitHostPort(hp)
	if err != nil {
		host = hp
	}
	if a, ok := u.resolve[host]; ok {
		return withPort(a, hp)
	}
	return hostPort
}

func withPort(addr, hostPort string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	_, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(addr, port)
}

// Client returns the pooled client for scheme and hostPort.
func (u *Upstreams) Client(tlsOn bool, hostPort string) *fasthttp.HostClient {
	key := hostPort
	if tlsOn {
		key = "https://" + hostPort
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if c := u.clients[key]; c != nil {
		return c
	}
	c := &fasthttp.HostClient{
		Addr:                          u.DialAddr(hostPort),
		Name:                          "lariat",
		IsTLS:                         tlsOn,
		MaxConns:                      1024,
		MaxIdleConnDuration:           60 * time.Second,
		MaxConnWaitTimeout:            50 * time.Millisecond,
		MaxResponseBodySize:           64 << 20,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      false,
	}
	if tlsOn {
		host, _, _ := net.SplitHostPort(hostPort)
		c.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	u.clients[key] = c
	return c
}

// CloseIdle closes idle upstream connections.
func (u *Upstreams) CloseIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.clients {
		c.CloseIdleConnections()
	}
}

// OpenConns counts the open upstream connections, busy and idle.
func (u *Upstreams) OpenConns() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.clients {
		n += c.ConnsCount()
	}
	return n
}

// BreakerSettings configure a circuit breaker.
type BreakerSettings struct {
	// Failures is how many consecutive failures open the breaker.
	Failures uint32
	// OpenFor is how long the breaker stays open before letting trial
	// requests through.
	OpenFor time.Duration
	// HalfOpenRequests is how many trial requests may run while half open;
	// that many successes close it again.
	HalfOpenRequests uint32
	// Disabled turns the breaker off.
	Disabled bool
}

// DefaultBreaker is used when a task sets no breaker.
var DefaultBreaker = BreakerSettings{Failures: 5, OpenFor: 5 * time.Second, HalfOpenRequests: 1}

// Breaker is a circuit breaker for one upstream.
type Breaker struct {
	name string
	cb   *gobreaker.CircuitBreaker[struct{}]
}

// Breaker returns the breaker shared by all tasks calling upstream with the
// same settings. It is nil when the settings disable it.
func (u *Upstreams) Breaker(upstream string, s BreakerSettings) *Breaker {
	if s.Disabled {
		return nil
	}
	key := fmt.Sprintf("%s|%d|%s|%d", upstream, s.Failures, s.OpenFor, s.HalfOpenRequests)
	u.mu.Lock()
	defer u.mu.Unlock()
	if b := u.breakers[key]; b != nil {
		return b
	}
	failures := s.Failures
	label := fmt.Sprintf(`upstream=%q`, upstream)
	state := metrics.GetOrCreateGauge(`lariat_breaker_open{`+label+`}`, nil)
	b := &Breaker{name: upstream}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        upstream,
		MaxRequests: s.HalfOpenRequests,
		Timeout:     s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			metrics.GetOrCreateCounter(fmt.Sprintf(`lariat_breaker_state_changes_total{%s,to=%q}`, label, to.String())).Inc()
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
	u.breakers[key] = b
	return b
}

// State returns the breaker's state: closed, half-open or open.
func (b *Breaker) State() string { return b.cb.State().String() }

// errBreakerCounted wraps failures the breaker must count.
type errBreakerCounted struct{ err error }

func (e errBreakerCounted) Error() string { return e.err.Error() }

// Do runs call through the breaker. call reports whether its failure (if
// any) counts against the upstream; a request the breaker rejects returns
// ErrBreakerOpen at once. A nil Breaker (disabled) just runs call.
func (b *Breaker) Do(call func() (counted bool, err error)) error {
	if b == nil {
		_, err := call()
		return err
	}
	var callErr error
	_, err := b.cb.Execute(func() (struct{}, error) {
		counted, err := call()
		callErr = err
		if err != nil && counted {
			return struct{}{}, errBreakerCounted{err}
		}
		return struct{}{}, nil
	})
	if err == gobreaker.ErrOpenState || err == gobreaker.ErrTooManyRequests {
		return ErrBreakerOpen
	}
	return callErr
}

// ModelResolver resolves model-registry references ("fraud@production",
// "fraud/7") to the version and serving endpoint to call.
type ModelResolver interface {
	// Register adds ref to the references kept fresh and resolves it once;
	// it fails when ref cannot be resolved and nothing is known of it.
	Register(ctx context.Context, ref string) (ResolvedModel, error)
	// Lookup returns the current resolution of a registered ref. It is
	// called on the request path and must not block.
	Lookup(ref string) (ResolvedModel, bool)
}

// ResolvedModel is a model version and where it is served.
type ResolvedModel struct {
	Name, Version, Endpoint string
}
