package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/accept"
	"github.com/lariat-gw/lariat/internal/jsonutil"
	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/quota"
	"github.com/lariat-gw/lariat/router"
	"github.com/lariat-gw/lariat/tasks"
	"github.com/lariat-gw/lariat/upstream"
)

// Options configure a Gateway. Zero values take the defaults named.
type Options struct {
	// RoutesDir is the folder of route files.
	RoutesDir string
	// Env holds the shared runtime services of tasks.
	Env *tasks.Env
	// MaxBodySize bounds request bodies (default 1 MiB); larger ones get 413.
	MaxBodySize int
	// BodyMemory bounds the memory of request bodies larger than 8 KiB
	// read at once (default 32 MiB, at least MaxBodySize): a request whose
	// body does not fit is answered 503 with Retry-After before its body
	// is read, so that a burst of large requests cannot exhaust memory.
	BodyMemory int64
	// ReadTimeout and WriteTimeout guard against slow clients (default
	// 5s each); IdleTimeout closes kept-alive client connections left
	// idle (default DefaultIdleTimeout).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Logger receives the gateway's log lines (default slog.Default()).
	Logger *slog.Logger
	// MaxJSONDepth bounds the nesting of request JSON that templates read
	// (default 64); deeper bodies get 400.
	MaxJSONDepth int
	// MaxHeaderSize bounds the request line and headers (default 8 KiB);
	// larger ones get 431.
	MaxHeaderSize int
	// FeatureTimeout bounds a /get-online-features read (default 1s).
	FeatureTimeout time.Duration
	// AccessLogSample is the share of requests written to the access log
	// (0 turns it off, 1 logs every request).
	AccessLogSample float64
	// AccessLogBodies adds request bodies to access log lines; off by
	// default, since bodies may hold personal data.
	AccessLogBodies bool
	// AdminToken, when set, is the bearer token the admin listener
	// requires on every path but /healthz and /readyz.
	AdminToken string
	// ReadyDetails adds named details (such as the model registry's
	// freshness) to the /readyz answer.
	ReadyDetails map[string]func() any
	// MaxInFlight bounds the requests served at once (default 4096):
	// beyond it, requests are answered 503 with Retry-After at once,
	// before any work, so that a traffic spike cannot make every request
	// slow.
	MaxInFlight int
	// PredictionLog, when set, records the answered requests of every
	// route (see the route's log block); /readyz shows its state under
	// "prediction_log". The caller closes it after Shutdown.
	PredictionLog *predlog.Log
	// QuotaStore counts the rates of tenants whose quotas.scope is global
	// (Redis, shared by the replicas); nil rejects such tenant files.
	QuotaStore quota.Store
}

// Gateway serves routes on a traffic listener and exposes admin endpoints on
// another.
type Gateway struct {
	opts     Options
	loader   *router.Loader
	reloadMu sync.Mutex
	// tenantDirs are the tenant folders of the last reload (under
	// reloadMu).
	tenantDirs []string
	log        *slog.Logger
	table      atomic.Pointer[router.Table]
	ready      atomic.Bool
	inflight   atomic.Int64
	// bodyMem is the request body memory (Options.BodyMemory).
	bodyMem *bodyMemory
	server  *fasthttp.Server
	admin   *fasthttp.Server
	// features is the Env's feature store, served on OnlineFeaturesPath;
	// nil when there is none. featuresAnswered is that API's part of the
	// store's answers.
	features         *tasks.FeatureEnv
	featuresAnswered *upstream.Answered
}

var (
	notFound         = metrics.NewCounter(`lariat_requests_rejected_total{reason="not_found"}`)
	methodNotAllowed = metrics.NewCounter(`lariat_requests_rejected_total{reason="method"}`)
	badRequests      = metrics.NewCounter(`lariat_requests_rejected_total{reason="bad_request"}`)
	tooLarge         = metrics.NewCounter(`lariat_requests_rejected_total{reason="body_too_large"}`)
	badContentType   = metrics.NewCounter(`lariat_requests_rejected_total{reason="content_type"}`)
	tooDeep          = metrics.NewCounter(`lariat_requests_rejected_total{reason="json_too_deep"}`)
	headerTooLarge   = metrics.NewCounter(`lariat_requests_rejected_total{reason="header_too_large"}`)
	atCapacity       = metrics.NewCounter(`lariat_requests_rejected_total{reason="at_capacity"}`)
	// acceptErrors counts the accept errors the listeners waited out.
	acceptErrors    = metrics.NewCounter(`lariat_accept_errors_total`)
	reloadOK        = metrics.NewGauge(`lariat_config_last_reload_successful`, nil)
	loadErrorsGauge = metrics.NewGauge(`lariat_config_load_errors`, nil)
	routesGauge     = metrics.NewGauge(`lariat_routes`, nil)
)

// New returns a gateway with no routes loaded yet.
func New(opts Options) *Gateway {
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = 1 << 20
	}
	if opts.BodyMemory <= 0 {
		opts.BodyMemory = 32 << 20
	}
	// A large request body's buffer goes back to the garbage collector
	// once the request is answered, rather than into fasthttp's pool,
	// where a burst of them would outlive the request body memory.
	fasthttp.SetBodySizePoolLimit(pooledRequestBodyMax, -1)
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 5 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxJSONDepth <= 0 {
		opts.MaxJSONDepth = 64
	}
	if opts.MaxHeaderSize <= 0 {
		opts.MaxHeaderSize = 8 << 10
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 4096
	}
	if opts.FeatureTimeout <= 0 {
		opts.FeatureTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Env == nil {
		opts.Env = tasks.NewEnv(nil)
	}
	if pl := opts.PredictionLog; pl != nil {
		details := map[string]func() any{"prediction_log": func() any { return pl.Status() }}
		for k, f := range opts.ReadyDetails {
			details[k] = f
		}
		opts.ReadyDetails = details
	}
	g := &Gateway{opts: opts, log: opts.Logger, loader: router.NewLoader(opts.Env), bodyMem: newBodyMemory(opts.BodyMemory, opts.MaxBodySize)}
	if fe, ok := tasks.FeatureStore.Lookup(opts.Env); ok && fe != nil {
		g.features = fe
		g.featuresAnswered = fe.JoinAnswers()
	}
	g.loader.PredictionLog = opts.PredictionLog
	g.loader.Tenants = router.TenantOptions{Store: quota.Guarded(opts.QuotaStore)}
	g.table.Store(router.NewTable(nil, nil))
	g.server = &fasthttp.Server{
		Handler:            g.handle,
		ErrorHandler:       g.handleServerError,
		Name:               "lariat",
		MaxRequestBodySize: opts.MaxBodySize,
		// Large bodies are read only when the request body memory
		// holds them.
		HeaderReceived:                g.headerReceived,
		DisablePreParseMultipartForm:  true,
		ReadTimeout:                   opts.ReadTimeout,
		WriteTimeout:                  opts.WriteTimeout,
		IdleTimeout:                   opts.IdleTimeout,
		ReadBufferSize:                opts.MaxHeaderSize,
		DisableHeaderNamesNormalizing: false,
		NoDefaultDate:                 true,
		CloseOnShutdown:               true,
		Logger:                        fasthttpLogger{opts.Logger},
	}
	g.admin = &fasthttp.Server{
		Handler:         g.handleAdmin,
		Name:            "lariat-admin",
		ReadTimeout:     5 * time.Second,
		WriteTimeout:    10 * time.Second,
		IdleTimeout:     60 * time.Second,
		CloseOnShutdown: true,
	}
	return g
}

// DefaultIdleTimeout is how long a kept-alive client connection may idle
// before the gateway closes it: longer than the proxies and load
// balancers in front keep their idle connections to a backend (Envoy and
// so Istio 1h, Google Cloud's load balancers 600s, AWS's ALB 60s,
// nginx 60s). A proxy that reuses a connection the backend is closing
// at that moment gets a reset and answers its client with an error
// (Envoy's 503 "upstream connect error ... connection termination"), so
// the side that closes idle connections first must be the proxy.
const DefaultIdleTimeout = 65 * time.Minute

// Env returns the runtime services the gateway's tasks use.
func (g *Gateway) Env() *tasks.Env { return g.opts.Env }

// Load reads the routes folder and serves the routes that compile; see
// Reload. Problems are returned and logged.
func (g *Gateway) Load() []string {
	return g.Reload().Errors
}

// SetTable swaps in a new routing table and marks the gateway ready.
// Requests in flight finish on the routes they started with.
func (g *Gateway) SetTable(t *router.Table) {
	g.table.Store(t)
	ok := 1.0
	if len(t.Errors) > 0 {
		ok = 0
	}
	reloadOK.Set(ok)
	loadErrorsGauge.Set(float64(len(t.Errors)))
	routesGauge.Set(float64(len(t.Plans())))
	g.ready.Store(true)
}

// Table returns the routing table in use.
func (g *Gateway) Table() *router.Table { return g.table.Load() }

func (g *Gateway) handle(rc *fasthttp.RequestCtx) {
	if g.bodyMem.serve(rc) {
		defer g.bodyMem.release(&rc.Request.Header)
	}
	if g.inflight.Add(1) > int64(g.opts.MaxInFlight) {
		g.inflight.Add(-1)
		atCapacity.Inc()
		router.WriteError(rc, fasthttp.StatusServiceUnavailable, "gateway is at capacity; retry later", "", "")
		rc.Response.Header.Set("Retry-After", "1")
		return
	}
	defer g.inflight.Add(-1)
	if g.opts.AccessLogSample > 0 && rand.Float64() < g.opts.AccessLogSample {
		start := time.Now()
		defer g.accessLog(rc, start)
	}
	p := g.table.Load().Lookup(rc.Path())
	if p != nil && !p.MatchesHost(rc.Host()) {
		// The route answers for its tenant's hosts only.
		p = nil
	}
	if p == nil && g.features != nil && string(rc.Path()) == OnlineFeaturesPath {
		g.serveOnlineFeatures(rc)
		return
	}
	if p == nil {
		notFound.Inc()
		router.WriteError(rc, fasthttp.StatusNotFound, fmt.Sprintf("no route serves path %q", rc.Path()), "", "")
		return
	}
	if !p.Allows(rc.Method()) {
		methodNotAllowed.Inc()
		router.WriteError(rc, fasthttp.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on this route", rc.Method()), p.Name(), "")
		rc.Response.Header.SetBytesV("Allow", p.AllowHeader())
		return
	}
	// Credentials, quotas and the route's limit are decided before the
	// body is looked at.
	a, ok := p.Admit(rc)
	if !ok {
		return
	}
	if p.ReadsRequestJSON() && !jsonContentType(rc.Request.Header.ContentType()) {
		a.Release()
		badContentType.Inc()
		router.WriteError(rc, fasthttp.StatusUnsupportedMediaType, contentTypeHint(rc.Request.Header.ContentType()), p.Name(), "")
		return
	}
	if p.ReadsRequestJSON() && jsonutil.DepthExceeds(rc.PostBody(), g.opts.MaxJSONDepth) {
		a.Release()
		tooDeep.Inc()
		router.WriteError(rc, fasthttp.StatusBadRequest, fmt.Sprintf("request JSON nests deeper than %d levels", g.opts.MaxJSONDepth), p.Name(), "")
		return
	}
	p.ServeAdmitted(rc, &a)
}

// handleServerError answers requests fasthttp could not parse.
func (g *Gateway) handleServerError(rc *fasthttp.RequestCtx, err error) {
	held := g.bodyMem.release(&rc.Request.Header)
	if errors.Is(err, fasthttp.ErrBodyTooLarge) && !held && rc.Request.Header.ContentLength() <= g.opts.MaxBodySize {
		// The request body memory refused the body before it was read
		// (a body found too large while read held memory, and one too
		// large by its length is past MaxBodySize).
		g.drainUnread(rc)
		router.WriteError(rc, fasthttp.StatusServiceUnavailable, "request bodies being served fill the gateway's request body memory; retry later", "", "")
		rc.Response.Header.Set("Retry-After", "1")
		return
	}
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		// A body too large by its length is unread; one found too large
		// while read is not drained (its header is gone).
		g.drainUnread(rc)
		tooLarge.Inc()
		router.WriteError(rc, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", g.opts.MaxBodySize), "", "")
		return
	}
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) || errors.Is(err, fasthttp.ErrSmallReadBuffer) {
		headerTooLarge.Inc()
		router.WriteError(rc, fasthttp.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request headers are larger than %d bytes", g.opts.MaxHeaderSize), "", "")
		return
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		router.WriteError(rc, fasthttp.StatusRequestTimeout, "request was not received in time", "", "")
		return
	}
	badRequests.Inc()
	router.WriteError(rc, fasthttp.StatusBadRequest, "malformed HTTP request: "+err.Error(), "", "")
}

// Serve serves traffic on ln until Shutdown.
func (g *Gateway) Serve(ln net.Listener) error {
	return g.server.Serve(accept.Retrying(ln, g.acceptFailed))
}

// ServeAdmin serves the admin endpoints on ln until Shutdown.
func (g *Gateway) ServeAdmin(ln net.Listener) error {
	return g.admin.Serve(accept.Retrying(ln, g.acceptFailed))
}

// acceptFailed counts an accept error that passes (out of file
// descriptors, mostly) and logs the first of a series, then one a second.
func (g *Gateway) acceptFailed(err error, wait time.Duration) {
	acceptErrors.Inc()
	if accept.Notable(wait) {
		g.log.Warn("cannot accept connections; waiting, they queue meanwhile", "error", err, "retry_in", wait)
	}
}

// Shutdown stops accepting connections and waits, until ctx ends, for
// requests in flight to finish.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.ready.Store(false)
	err := g.server.ShutdownWithContext(ctx)
	if aerr := g.admin.ShutdownWithContext(ctx); err == nil {
		err = aerr
	}
	g.opts.Env.Upstreams.CloseIdle()
	g.reloadMu.Lock()
	g.loader.Close()
	g.reloadMu.Unlock()
	return err
}

// jsonContentType accepts a missing content type, application/json,
// text/json and any +json type, with parameters.
// contentTypeHint is the 415 message for a request body of content type ct,
// naming the header to send; curl -d sends a form type unless told otherwise.
func contentTypeHint(ct []byte) string {
	msg := fmt.Sprintf("content type %q is not JSON; send the header Content-Type: application/json", ct)
	if bytes.HasPrefix(ct, []byte("application/x-www-form-urlencoded")) {
		msg += " (curl -d sends application/x-www-form-urlencoded: add -H 'Content-Type: application/json', or use curl --json)"
	}
	return msg
}

func jsonContentType(ct []byte) bool {
	if len(ct) == 0 {
		return true
	}
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	return bytes.EqualFold(ct, []byte("application/json")) || bytes.EqualFold(ct, []byte("text/json")) ||
		(len(ct) > 5 && bytes.EqualFold(ct[len(ct)-5:], []byte("+json")))
}

// fasthttpLogger sends fasthttp's connection-level messages (client
// errors, mostly) to the debug log.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...))
}

// accessLog writes one access log line for rc.
func (g *Gateway) accessLog(rc *fasthttp.RequestCtx, start time.Time) {
	attrs := []slog.Attr{
		slog.String("method", string(rc.Method())),
		slog.String("path", string(rc.Path())),
		slog.Int("status", rc.Response.StatusCode()),
		slog.Duration("duration", time.Since(start)),
		slog.String("remote", rc.RemoteAddr().String()),
		slog.Int("request_bytes", len(rc.PostBody())),
		slog.Int("response_bytes", len(rc.Response.Body())),
	}
	if v := rc.Response.Header.Peek("X-Lariat-Models"); len(v) > 0 {
		attrs = append(attrs, slog.String("models", string(v)))
	}
	if v := rc.Response.Header.Peek("X-Lariat-Incomplete"); len(v) > 0 {
		attrs = append(attrs, slog.String("incomplete", string(v)))
	}
	if g.opts.AccessLogBodies {
		attrs = append(attrs, slog.String("body", string(rc.PostBody())))
	}
	g.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}
