package tasks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
)

func init() {
	Register(Kind{Name: "http", New: newHTTPTask})
}

// HTTPInputs are the settings of an http task: one call to a model server
// or any JSON HTTP upstream, with retries and a circuit breaker.
type HTTPInputs struct {
	// Address is the URL to call. Its scheme and host are fixed when the
	// route loads; its path and query may hold templates (values are
	// percent-encoded).
	Address config.String `yaml:"address"`
	// Model names a registry model instead of an address: "name@alias" or
	// "name/version". The gateway calls the serving endpoint of the version
	// it resolves to, follows alias moves, and reports the version in
	// X-Lariat-Models.
	Model config.String `yaml:"model"`
	// Method is the HTTP method (POST by default).
	Method config.String `yaml:"method"`
	// Headers are request headers; values may hold templates (plain text).
	Headers map[string]config.String `yaml:"headers"`
	// Body is the request body template (JSON: values are inserted as
	// JSON). Empty means no body.
	Body config.String `yaml:"body"`
	// Timeout bounds each try (milliseconds or a duration); by default the
	// route timeout. Never longer than the route timeout.
	Timeout config.Duration `yaml:"timeout"`
	// Retries is how many extra tries a retryable failure may get.
	Retries int `yaml:"retries"`
	// Backoff is the wait before a retry: exponential from Base, capped at
	// Max, with jitter.
	Backoff struct {
		Base config.Duration `yaml:"base"`
		Max  config.Duration `yaml:"max"`
	} `yaml:"backoff"`
	// RetryOn lists what is retried: "connect", "timeout" and status codes
	// (429, 5xx codes, or "5xx"). Default: connect, timeout, 429, 502, 503,
	// 504.
	RetryOn []config.String `yaml:"retry_on"`
	// Breaker configures the upstream's circuit breaker.
	Breaker *struct {
		Failures         uint32          `yaml:"failures"`
		OpenFor          config.Duration `yaml:"open_for"`
		HalfOpenRequests uint32          `yaml:"half_open_requests"`
		Disabled         bool            `yaml:"disabled"`
	} `yaml:"breaker"`
}

type propagated struct {
	name []byte
	slot int
}

type retryPolicy struct {
	connect, timeout bool
	any5xx           bool
	codes            [8]int
	nCodes           int
}

func (p *retryPolicy) status(code int) bool {
	if p.any5xx && code >= 500 && code <= 599 {
		return true
	}
	for _, c := range p.codes[:p.nCodes] {
		if c == code {
			return true
		}
	}
	return false
}

type httpTask struct {
	name       string
	fixed      *target // nil for model tasks
	model      string  // registry reference, for model tasks
	models     ModelResolver
	targets    sync.Map // endpoint → *target, for model tasks
	breakerSet BreakerSettings
	upstreams  *Upstreams
	labels     string
	pathTmpl   *Template
	method     []byte
	headerKeys [][]byte
	headerVals []*Template
	// propagate are request headers copied upstream, by header slot.
	propagate  []propagated
	body       *Template
	tryTimeout time.Duration
	retries    int
	backoff    time.Duration
	backoffMax time.Duration
	retry      retryPolicy

	retriesTotal *metrics.Counter
	errTimeout   *metrics.Counter
	errConnect   *metrics.Counter
	errStatus    *metrics.Counter
	errInvalid   *metrics.Counter
	errBreaker   *metrics.Counter
}

// target is one upstream endpoint an http task calls.
type target struct {
	client  *fasthttp.HostClient
	breaker *Breaker
	scheme  string
	host    string // Host header
	path    string // path and query, for model endpoints
	model   string // "name=version", for model endpoints
	version string
	calls   *metrics.Counter
}

// parseUpstream splits an http(s) URL into scheme, host (as written),
// host:port to dial, and the path and query.
func parseUpstream(raw string) (scheme, host, hostPort, rest string, err error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Contains(u.Host, "{{") {
		return "", "", "", "", fmt.Errorf("invalid URL %q: want http(s)://host[:port]/path, with templates only in the path and query", raw)
	}
	if u.User != nil || u.Fragment != "" {
		return "", "", "", "", fmt.Errorf("URL %q must not hold credentials or a fragment", raw)
	}
	hostPort = u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		hostPort = net.JoinHostPort(u.Hostname(), port)
	}
	// The path and query are everything after scheme://host.
	rest = strings.TrimPrefix(raw, u.Scheme+"://"+u.Host)
	if rest == "" {
		rest = "/"
	}
	return u.Scheme, u.Host, hostPort, rest, nil
}

func (t *httpTask) newTarget(scheme, host, hostPort string) *target {
	return &target{
		client:  t.upstreams.Client(scheme == "https", hostPort),
		breaker: t.upstreams.Breaker(scheme+"://"+hostPort, t.breakerSet),
		scheme:  scheme,
		host:    host,
	}
}

// modelTarget returns the target of the model version the task's reference
// resolves to now.
func (t *httpTask) modelTarget() (*target, error) {
	m, ok := t.models.Lookup(t.model)
	if !ok {
		return nil, fmt.Errorf("model %s is not resolved", t.model)
	}
	if v, ok := t.targets.Load(m.Endpoint); ok {
		tg := v.(*target)
		if tg.version == m.Version {
			return tg, nil
		}
	}
	scheme, host, hostPort, rest, err := parseUpstream(m.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("model %s version %s: serving endpoint: %w", m.Name, m.Version, err)
	}
	tg := t.newTarget(scheme, host, hostPort)
	tg.path = rest
	tg.model = m.Name + "=" + m.Version
	tg.version = m.Version
	tg.calls = metrics.GetOrCreateCounter(`lariat_model_calls_total{` + t.labels + `,model=` + strconv.Quote(m.Name) + `,version=` + strconv.Quote(m.Version) + `}`)
	t.targets.Store(m.Endpoint, tg)
	return tg, nil
}

func newHTTPTask(s *Spec) (Task, error) {
	var in HTTPInputs
	if err := s.Decode(&in); err != nil {
		return nil, err
	}
	t := &httpTask{name: s.Task.Name, method: []byte("POST"), retries: in.Retries, upstreams: s.Env.Upstreams, labels: s.Labels}
	var scheme, host, hostPort string
	switch {
	case in.Address.Value != "" && in.Model.Value != "":
		return nil, s.Errorf(in.Model.Pos, "inputs: give either address or model, not both")
	case in.Model.Value != "":
		if s.Env.Models == nil {
			return nil, s.Errorf(in.Model.Pos, "inputs.model: naming a model needs a model registry: start lariat with --registry URL")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.Env.Models.Register(ctx, in.Model.Value)
		cancel()
		if err != nil {
			return nil, s.Errorf(in.Model.Pos, "inputs.model: cannot resolve %q: %v", in.Model.Value, err)
		}
		t.model, t.models = in.Model.Value, s.Env.Models
	case in.Address.Value == "":
		return nil, s.Errorf(s.Task.NamePos, "inputs.address (or inputs.model) is required")
	default:
		var rest string
		var err error
		scheme, host, hostPort, rest, err = parseUpstream(in.Address.Value)
		if err != nil {
			return nil, s.Errorf(in.Address.Pos, "inputs.address: %v", err)
		}
		t.pathTmpl, err = s.Template("address", config.String{Value: rest, Pos: in.Address.Pos}, ModeURL)
		if err != nil {
			return nil, err
		}
	}
	if m := in.Method.Value; m != "" {
		m = strings.ToUpper(m)
		switch m {
		case "GET", "POST", "PUT", "PATCH", "DELETE":
		default:
			return nil, s.Errorf(in.Method.Pos, "inputs.method: unsupported method %q", in.Method.Value)
		}
		t.method = []byte(m)
	}
	for _, k := range sortedKeys(in.Headers) {
		v := in.Headers[k]
		if !validHeaderName(k) {
			return nil, s.Errorf(v.Pos, "inputs.headers: invalid header name %q", k)
		}
		tmpl, err := s.Template("headers."+k, v, ModeText)
		if err != nil {
			return nil, err
		}
		t.headerKeys = append(t.headerKeys, []byte(k))
		t.headerVals = append(t.headerVals, tmpl)
	}
	for _, h := range s.Route.PropagateHeaders {
		t.propagate = append(t.propagate, propagated{name: []byte(h.Value), slot: s.Scope.HeaderRef(h.Value)})
	}
	if in.Body.Value != "" {
		var err error
		if t.body, err = s.Template("body", in.Body, ModeJSON); err != nil {
			return nil, err
		}
	}
	routeTimeout := s.Route.Timeout.D
	t.tryTimeout = routeTimeout
	if in.Timeout.Set {
		if in.Timeout.D <= 0 {
			return nil, s.Errorf(in.Timeout.Pos, "inputs.timeout must be positive")
		}
		if in.Timeout.D > routeTimeout {
			return nil, s.Errorf(in.Timeout.Pos, "inputs.timeout %s is longer than the route timeout %s", in.Timeout.D, routeTimeout)
		}
		t.tryTimeout = in.Timeout.D
	}
	if in.Retries < 0 || in.Retries > 10 {
		return nil, s.Errorf(s.Task.NamePos, "inputs.retries must be between 0 and 10, got %d", in.Retries)
	}
	t.backoff, t.backoffMax = 10*time.Millisecond, 100*time.Millisecond
	if in.Backoff.Base.Set {
		t.backoff = in.Backoff.Base.D
	}
	if in.Backoff.Max.Set {
		t.backoffMax = in.Backoff.Max.D
	}
	if t.backoffMax < t.backoff {
		return nil, s.Errorf(in.Backoff.Max.Pos, "inputs.backoff.max %s is shorter than backoff.base %s", t.backoffMax, t.backoff)
	}
	if err := t.retry.parse(s, in.RetryOn); err != nil {
		return nil, err
	}
	bs := DefaultBreaker
	if b := in.Breaker; b != nil {
		if b.Failures > 0 {
			bs.Failures = b.Failures
		}
		if b.OpenFor.Set {
			bs.OpenFor = b.OpenFor.D
		}
		if b.HalfOpenRequests > 0 {
			bs.HalfOpenRequests = b.HalfOpenRequests
		}
		bs.Disabled = b.Disabled
	}
	t.breakerSet = bs
	if t.model == "" {
		t.fixed = t.newTarget(scheme, host, hostPort)
	}

	l := s.Labels
	t.retriesTotal = metrics.GetOrCreateCounter(`lariat_task_retries_total{` + l + `}`)
	t.errTimeout = metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + l + `,reason="timeout"}`)
	t.errConnect = metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + l + `,reason="connect"}`)
	t.errStatus = metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + l + `,reason="status"}`)
	t.errInvalid = metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + l + `,reason="invalid_response"}`)
	t.errBreaker = metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + l + `,reason="breaker_open"}`)
	return t, nil
}

func (p *retryPolicy) parse(s *Spec, list []config.String) error {
	if len(list) == 0 {
		*p = retryPolicy{connect: true, timeout: true, codes: [8]int{429, 502, 503, 504}, nCodes: 4}
		return nil
	}
	for _, v := range list {
		switch v.Value {
		case "connect":
			p.connect = true
		case "timeout":
			p.timeout = true
		case "5xx":
			p.any5xx = true
		default:
			code, err := strconv.Atoi(v.Value)
			switch {
			case err != nil || code < 400 || code > 599:
				return s.Errorf(v.Pos, "inputs.retry_on: %q is not connect, timeout, 5xx or a 4xx/5xx status code", v.Value)
			case code < 500 && code != 408 && code != 425 && code != 429:
				return s.Errorf(v.Pos, "inputs.retry_on: %d is a client error; only 408, 425 and 429 may be retried", code)
			case p.nCodes == len(p.codes):
				return s.Errorf(v.Pos, "inputs.retry_on: at most %d status codes", len(p.codes))
			}
			p.codes[p.nCodes] = code
			p.nCodes++
		}
	}
	return nil
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

type failKind uint8

const (
	failNone failKind = iota
	failConnect
	failTimeout
	failStatus
	failInvalid
	failOther
)

// Run calls the upstream, retrying what the policy allows while the route
// budget can hold another full try.
func (t *httpTask) Run(x *Exchange, r *Result) error {
	tg := t.fixed
	if tg == nil {
		var err error
		if tg, err = t.modelTarget(); err != nil {
			return err
		}
		r.Model = tg.model
		tg.calls.Inc()
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	if err := t.buildRequest(req, x, r, tg); err != nil {
		return err
	}

	var err error
	for attempt := 0; ; attempt++ {
		if x.Canceled() {
			return ErrCanceled
		}
		remaining := x.Remaining()
		if remaining <= 0 {
			return ErrDeadline
		}
		r.Attempts++
		var kind failKind
		err = tg.breaker.Do(func() (bool, error) {
			var e error
			kind, e = t.try(req, resp, x, r, tg)
			return kind != failNone && kind != failOther && !(kind == failStatus && r.Status < 500), e
		})
		if err == ErrBreakerOpen {
			t.errBreaker.Inc()
			return fmt.Errorf("%s: %w", tg.host, ErrBreakerOpen)
		}
		if err == nil {
			return nil
		}
		if attempt >= t.retries || !t.retryable(kind, r.Status) {
			return err
		}
		wait := t.backoffFor(attempt)
		if x.Remaining() < wait+t.tryTimeout {
			return err
		}
		t.retriesTotal.Inc()
		time.Sleep(wait)
	}
}

func (t *httpTask) retryable(k failKind, status int) bool {
	switch k {
	case failConnect:
		return t.retry.connect
	case failTimeout:
		return t.retry.timeout
	case failStatus:
		return t.retry.status(status)
	}
	return false
}

func (t *httpTask) backoffFor(attempt int) time.Duration {
	d := t.backoff << min(attempt, 20)
	if d > t.backoffMax || d <= 0 {
		d = t.backoffMax
	}
	// Equal jitter: half fixed, half random.
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

func (t *httpTask) buildRequest(req *fasthttp.Request, x *Exchange, r *Result, tg *target) error {
	req.Header.SetMethodBytes(t.method)
	if t.pathTmpl != nil {
		r.scratch = t.pathTmpl.Append(r.scratch[:0], x)
	} else {
		r.scratch = append(r.scratch[:0], tg.path...)
	}
	req.SetRequestURIBytes(r.scratch)
	req.URI().SetScheme(tg.scheme)
	req.Header.SetHost(tg.host)
	req.UseHostHeader = true
	for _, h := range t.propagate {
		if x.HeaderSet(h.slot) {
			req.Header.SetBytesKV(h.name, x.Headers[h.slot])
		}
	}
	for i, k := range t.headerKeys {
		r.scratch = t.headerVals[i].Append(r.scratch[:0], x)
		if bytes.ContainsAny(r.scratch, "\r\n\x00") {
			return &RequestError{Msg: "header " + string(k) + ": the value from the request holds a line break or NUL"}
		}
		req.Header.SetBytesKV(k, r.scratch)
	}
	r.Upstream = tg.host
	if len(r.TraceParent) > 0 {
		req.Header.SetBytesV("traceparent", r.TraceParent)
		if len(x.TraceState) > 0 {
			req.Header.SetBytesV("tracestate", x.TraceState)
		}
	} else if len(x.TraceParent) > 0 {
		req.Header.SetBytesV("traceparent", x.TraceParent)
		if len(x.TraceState) > 0 {
			req.Header.SetBytesV("tracestate", x.TraceState)
		}
	}
	if t.body != nil {
		req.Header.SetContentType("application/json")
		// The body stays in r.scratch, which outlives the request.
		r.scratch = t.body.Append(r.scratch[:0], x)
		req.SetBodyRaw(r.scratch)
	}
	return nil
}

var deadlineHeader = []byte("X-Lariat-Deadline-Ms")

// try makes one call. It returns the failure kind and an error describing it.
func (t *httpTask) try(req *fasthttp.Request, resp *fasthttp.Response, x *Exchange, r *Result, tg *target) (failKind, error) {
	now := time.Now()
	deadline := now.Add(t.tryTimeout)
	if x.Deadline.Before(deadline) {
		deadline = x.Deadline
	}
	var ms [20]byte
	req.Header.SetBytesKV(deadlineHeader, strconv.AppendInt(ms[:0], int64(x.Deadline.Sub(now)/time.Millisecond), 10))
	resp.Reset()
	err := tg.client.DoDeadline(req, resp, deadline)
	if err != nil {
		r.Status = 0
		if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, fasthttp.ErrNoFreeConns) {
			t.errTimeout.Inc()
			if !x.Deadline.After(time.Now()) {
				return failTimeout, ErrDeadline
			}
			return failTimeout, fmt.Errorf("%s: %w after %s", tg.host, ErrTimeout, time.Since(now).Round(time.Millisecond))
		}
		t.errConnect.Inc()
		return failConnect, fmt.Errorf("%s: %w", tg.host, err)
	}
	r.Status = resp.StatusCode()
	body := resp.Body()
	if r.Status < 200 || r.Status > 299 {
		t.errStatus.Inc()
		return failStatus, &StatusError{Status: r.Status}
	}
	if !gjson.ValidBytes(body) {
		t.errInvalid.Inc()
		return failInvalid, fmt.Errorf("%s: upstream answered with invalid JSON (%d bytes)", tg.host, len(body))
	}
	r.Body = append(r.Body[:0], body...)
	return failNone, nil
}
