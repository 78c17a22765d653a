package tasks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// percent-encoded; a value in the path that would leave its segment,
	// such as "a/b" or "..", fails the task).
	Address config.String `yaml:"address"`
	// Model names a registry model instead of an address: "name@alias" or
	// "name/version". The gateway calls the serving endpoint of the version
	// it resolves to, follows alias moves, and reports the version in
	// X-Lariat-Models.
	Model config.String `yaml:"model"`
	// Method is the HTTP method (POST by default).
	Method config.String `yaml:"method"`
	// Headers are request headers; values may hold templates (plain text).
	// A header whose template refers to a missing or null value is left out.
	Headers map[string]config.String `yaml:"headers"`
	// Body is the request body template (JSON: values are inserted as
	// JSON). Empty means no body.
	Body config.String `yaml:"body"`
	// CallInputs are the timeout, retry, breaker, hedging, fallback and
	// shadow settings shared with the infer kind.
	CallInputs `yaml:",inline"`
}

// BackoffInputs set the wait before a retry.
type BackoffInputs struct {
	// Base is the first wait (10ms by default).
	Base config.Duration `yaml:"base"`
	// Max caps the wait (100ms by default).
	Max config.Duration `yaml:"max"`
}

// BreakerInputs configure an upstream's circuit breaker.
type BreakerInputs struct {
	// Failures is how many consecutive failures open the breaker.
	Failures uint32 `yaml:"failures"`
	// OpenFor is how long it stays open before trial requests.
	OpenFor config.Duration `yaml:"open_for"`
	// HalfOpenRequests is how many trial requests may run while half open.
	HalfOpenRequests uint32 `yaml:"half_open_requests"`
	// Disabled turns the breaker off.
	Disabled bool `yaml:"disabled"`
}

// FallbackInputs name the upstream a task races against its primary.
type FallbackInputs struct {
	// Address is the fallback's URL (for infer tasks, the model server's
	// base URL). No templates.
	Address config.String `yaml:"address"`
	// Model names a registry model instead of an address.
	Model config.String `yaml:"model"`
	// ModelName is the served model's name (infer tasks; by default the
	// task's model_name).
	ModelName config.String `yaml:"model_name"`
	// ModelVersion is the served model's version (infer tasks).
	ModelVersion config.String `yaml:"model_version"`
	// Timeout bounds each call to the fallback; by default the task's.
	Timeout config.Duration `yaml:"timeout"`
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
	ep         *endpoint
	call       *caller
	pathTmpl   *Template
	method     []byte
	headers    headerSet
	propagate  []propagated
	body       *Template
	modelCalls bool
}

// target is one upstream endpoint a task calls.
type target struct {
	client  *fasthttp.HostClient
	breaker *Breaker
	scheme  string
	host    string // Host header
	path    string // path and query, for model endpoints
	model   string // "name/version", for model endpoints
	version string
	calls   *metrics.Counter
	// batch is the micro-batcher of infer calls to this target.
	batch atomic.Pointer[batcher]
}

// label names the target in Result.Model: its model, or its host.
func (tg *target) label() string {
	if tg.model != "" {
		return tg.model
	}
	return tg.host
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

// endpoint is where a task's calls go: a fixed target, or the serving
// endpoint of the registry model version a reference resolves to now.
type endpoint struct {
	fixed   *target
	ref     string // registry reference
	models  ModelResolver
	targets sync.Map // serving endpoint → *target
	up      *Upstreams
	bs      BreakerSettings
	labels  string
	// modelPath maps a model version's serving endpoint path and query
	// to the path called; nil calls the serving endpoint as it is.
	modelPath func(rest string, m ResolvedModel) string
}

func (e *endpoint) newTarget(scheme, host, hostPort string) *target {
	return &target{
		client:  e.up.Client(scheme == "https", hostPort),
		breaker: e.up.Breaker(scheme+"://"+hostPort, e.bs),
		scheme:  scheme,
		host:    host,
	}
}

// target returns the target to call now.
func (e *endpoint) target() (*target, error) {
	if e.fixed != nil {
		return e.fixed, nil
	}
	m, ok := e.models.Lookup(e.ref)
	if !ok {
		return nil, fmt.Errorf("model %s is not resolved", e.ref)
	}
	if v, ok := e.targets.Load(m.Endpoint); ok {
		tg := v.(*target)
		if tg.version == m.Version {
			return tg, nil
		}
	}
	scheme, host, hostPort, rest, err := parseUpstream(m.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("model %s version %s: serving endpoint: %w", m.Name, m.Version, err)
	}
	tg := e.newTarget(scheme, host, hostPort)
	tg.path = rest
	if e.modelPath != nil {
		tg.path = e.modelPath(rest, m)
	}
	tg.model = m.Name + "/" + m.Version
	tg.version = m.Version
	tg.calls = metrics.GetOrCreateCounter(`lariat_model_calls_total{` + e.labels + `,model=` + strconv.Quote(m.Name) + `,version=` + strconv.Quote(m.Version) + `}`)
	// Keep the first target stored for an endpoint and version, so that
	// racing callers share one (and its batcher).
	if prev, loaded := e.targets.LoadOrStore(m.Endpoint, tg); loaded {
		if p := prev.(*target); p.version == m.Version {
			return p, nil
		}
		e.targets.Store(m.Endpoint, tg)
	}
	return tg, nil
}

// registryEndpoint compiles a registry model reference written at ref.
func registryEndpoint(s *Spec, field string, ref config.String, bs BreakerSettings) (*endpoint, error) {
	if s.Env.Models == nil {
		return nil, s.Errorf(ref.Pos, "inputs.%s: naming a model needs a model registry: start lariat with --registry URL", field)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := s.Env.Models.Register(ctx, ref.Value)
	cancel()
	if err != nil {
		return nil, s.Errorf(ref.Pos, "inputs.%s: cannot resolve %q: %v", field, ref.Value, err)
	}
	return &endpoint{ref: ref.Value, models: s.Env.Models, up: s.Env.Upstreams, bs: bs, labels: s.Labels}, nil
}

// fixedEndpoint returns an endpoint calling scheme://host with path.
func fixedEndpoint(s *Spec, bs BreakerSettings, scheme, host, hostPort, path string) *endpoint {
	e := &endpoint{up: s.Env.Upstreams, bs: bs, labels: s.Labels}
	e.fixed = e.newTarget(scheme, host, hostPort)
	e.fixed.path = path
	return e
}

// retarget points req at tg, keeping everything else.
func retarget(req *fasthttp.Request, tg *target) {
	req.SetRequestURI(tg.path)
	req.URI().SetScheme(tg.scheme)
	req.Header.SetHost(tg.host)
	req.UseHostHeader = true
}

func newHTTPTask(s *Spec) (Task, error) {
	var in HTTPInputs
	if err := s.Decode(&in); err != nil {
		return nil, err
	}
	t := &httpTask{method: []byte("POST")}
	var err error
	t.call, err = compileCall(s, &in.CallInputs, httpEndpoint)
	if err != nil {
		return nil, err
	}
	t.call.setDecode(appendBody)
	switch {
	case in.Address.Value != "" && in.Model.Value != "":
		return nil, s.Errorf(in.Model.Pos, "inputs: give either address or model, not both")
	case in.Model.Value != "":
		if t.ep, err = registryEndpoint(s, "model", in.Model, t.call.breakerSet); err != nil {
			return nil, err
		}
		t.modelCalls = true
	case in.Address.Value == "":
		return nil, s.Errorf(s.Task.NamePos, "inputs.address (or inputs.model) is required")
	default:
		scheme, host, hostPort, rest, err := parseUpstream(in.Address.Value)
		if err != nil {
			return nil, s.Errorf(in.Address.Pos, "inputs.address: %v", err)
		}
		t.pathTmpl, err = s.Template("address", config.String{Value: rest, Pos: in.Address.Pos}, ModeURL)
		if err != nil {
			return nil, err
		}
		t.ep = fixedEndpoint(s, t.call.breakerSet, scheme, host, hostPort, "")
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
	if t.headers, err = compileHeaders(s, in.Headers); err != nil {
		return nil, err
	}
	t.propagate = compilePropagate(s)
	if in.Body.Value != "" {
		if t.body, err = s.Template("body", in.Body, ModeJSON); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// httpEndpoint compiles the fallback or shadow upstream of an http task:
// a URL without templates, or a registry model.
func httpEndpoint(s *Spec, field string, address, model, modelName, modelVersion config.String, bs BreakerSettings) (*endpoint, error) {
	switch {
	case modelName.Value != "":
		return nil, s.Errorf(modelName.Pos, "inputs.%s.model_name is for infer tasks; give the full URL in address", field)
	case modelVersion.Value != "":
		return nil, s.Errorf(modelVersion.Pos, "inputs.%s.model_version is for infer tasks; give the full URL in address", field)
	case address.Value != "" && model.Value != "":
		return nil, s.Errorf(model.Pos, "inputs.%s: give either address or model, not both", field)
	case model.Value != "":
		return registryEndpoint(s, field+".model", model, bs)
	case address.Value == "":
		return nil, s.Errorf(s.Task.NamePos, "inputs.%s.address (or model) is required", field)
	}
	if strings.Contains(address.Value, "{{") {
		return nil, s.Errorf(address.Pos, "inputs.%s.address: templates are not supported here", field)
	}
	scheme, host, hostPort, rest, err := parseUpstream(address.Value)
	if err != nil {
		return nil, s.Errorf(address.Pos, "inputs.%s.address: %v", field, err)
	}
	return fixedEndpoint(s, bs, scheme, host, hostPort, rest), nil
}

func appendBody(dst, body []byte) ([]byte, error) { return append(dst, body...), nil }

// headerSet holds a task's request header templates.
type headerSet struct {
	keys [][]byte
	vals []*Template
}

func compileHeaders(s *Spec, headers map[string]config.String) (headerSet, error) {
	var h headerSet
	for _, k := range sortedKeys(headers) {
		v := headers[k]
		if !validHeaderName(k) {
			return h, s.Errorf(v.Pos, "inputs.headers: invalid header name %q", k)
		}
		tmpl, err := s.Template("headers."+k, v, ModeText)
		if err != nil {
			return h, err
		}
		h.keys = append(h.keys, []byte(k))
		h.vals = append(h.vals, tmpl)
	}
	return h, nil
}

// static reports whether no header value holds a template.
func (h *headerSet) static() bool {
	for _, v := range h.vals {
		if !v.Static() {
			return false
		}
	}
	return true
}

// apply renders the headers into req, using *scratch as a buffer. A
// header whose template references a missing or null value is left out.
func (h *headerSet) apply(req *fasthttp.Request, x *Exchange, scratch *[]byte) error {
	for i, k := range h.keys {
		var ok bool
		if *scratch, ok = h.vals[i].AppendText((*scratch)[:0], x); !ok {
			continue
		}
		if hasControl(*scratch) {
			return &RequestError{Msg: "header " + string(k) + ": the value from the request holds a control character"}
		}
		req.Header.SetBytesKV(k, *scratch)
	}
	return nil
}

// hasControl reports whether b holds a control byte other than tab.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

func compilePropagate(s *Spec) []propagated {
	var out []propagated
	for _, h := range s.Route.PropagateHeaders {
		out = append(out, propagated{name: []byte(h.Value), slot: s.Scope.HeaderRef(h.Value)})
	}
	return out
}

// setPropagated copies the propagated request headers into req.
func setPropagated(req *fasthttp.Request, x *Exchange, propagate []propagated) {
	for _, h := range propagate {
		if x.HeaderSet(h.slot) {
			req.Header.SetBytesKV(h.name, x.Headers[h.slot])
		}
	}
}

// setTrace sets the trace context of the call: the task's span when it
// has one, else the request's.
func setTrace(req *fasthttp.Request, x *Exchange, r *Result) {
	tp := x.TraceParent
	if len(r.TraceParent) > 0 {
		tp = r.TraceParent
	}
	if len(tp) > 0 {
		req.Header.SetBytesV("traceparent", tp)
		if len(x.TraceState) > 0 {
			req.Header.SetBytesV("tracestate", x.TraceState)
		}
	}
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

// Run calls the upstream, retrying what the policy allows while the route
// budget can hold another full try.
func (t *httpTask) Run(x *Exchange, r *Result) error {
	tg, err := t.ep.target()
	if err != nil {
		return err
	}
	if t.modelCalls {
		r.Model = tg.model
		tg.calls.Inc()
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	if err := t.buildRequest(req, x, r, tg); err != nil {
		return err
	}
	if err := t.call.call(x, r, req, tg, 0); err != nil {
		return err
	}
	if sh := t.call.shadow; sh != nil && sh.sampled() {
		sh.send(req, r.Body)
	}
	return nil
}

func (t *httpTask) buildRequest(req *fasthttp.Request, x *Exchange, r *Result, tg *target) error {
	req.Header.SetMethodBytes(t.method)
	if t.pathTmpl != nil {
		var err error
		if r.scratch, err = t.pathTmpl.AppendURL(r.scratch[:0], x); err != nil {
			return err
		}
	} else {
		r.scratch = append(r.scratch[:0], tg.path...)
	}
	req.SetRequestURIBytes(r.scratch)
	req.URI().SetScheme(tg.scheme)
	req.Header.SetHost(tg.host)
	req.UseHostHeader = true
	setPropagated(req, x, t.propagate)
	if err := t.headers.apply(req, x, &r.scratch); err != nil {
		return err
	}
	r.Upstream = tg.host
	setTrace(req, x, r)
	if t.body != nil {
		req.Header.SetContentType("application/json")
		// The body stays in r.scratch, which outlives the request.
		r.scratch = t.body.Append(r.scratch[:0], x)
		req.SetBodyRaw(r.scratch)
	}
	return nil
}

// CallInputs are the settings every kind that calls a model server
// shares: timeouts, retries, breaker, hedging, fallback and shadow. Kinds
// embed them inline, so they are keys of the task's inputs.
type CallInputs struct {
	// Timeout bounds each try (milliseconds or a duration); by default the
	// route timeout. Never longer than the route timeout.
	Timeout config.Duration `yaml:"timeout"`
	// Retries is how many extra tries a retryable failure may get.
	Retries int `yaml:"retries"`
	// Backoff is the wait before a retry: exponential from Base, capped at
	// Max, with jitter.
	Backoff BackoffInputs `yaml:"backoff"`
	// RetryOn lists what is retried: "connect", "timeout" and status codes
	// (429, 5xx codes, or "5xx"). Default: connect, timeout, 429, 502, 503,
	// 504.
	RetryOn []config.String `yaml:"retry_on"`
	// Breaker configures the upstream's circuit breaker.
	Breaker *BreakerInputs `yaml:"breaker"`
	// HedgeAfter, when set, sends one more identical try when the first
	// has not answered after this long; the first answer wins.
	HedgeAfter config.Duration `yaml:"hedge_after"`
	// Fallback is a second upstream called together with the primary; its
	// answer is used when the primary's does not come within
	// PrimaryWithin.
	Fallback *FallbackInputs `yaml:"fallback"`
	// PrimaryWithin is how long the primary's answer is preferred over the
	// fallback's (0: the first answer wins). Only with Fallback.
	PrimaryWithin config.Duration `yaml:"primary_within"`
	// Shadow mirrors a sample of the calls to another upstream, off the
	// request path, and counts how often it agrees with the primary.
	Shadow *ShadowInputs `yaml:"shadow"`
}

// endpointFunc compiles the fallback or shadow upstream of a kind (field
// names it in messages).
type endpointFunc func(s *Spec, field string, address, model, modelName, modelVersion config.String, bs BreakerSettings) (*endpoint, error)

// callCounters count upstream failures by reason.
type callCounters struct {
	errTimeout *metrics.Counter
	errConnect *metrics.Counter
	errStatus  *metrics.Counter
	errInvalid *metrics.Counter
	errBreaker *metrics.Counter
}

func newCallCounters(labels string) callCounters {
	return callCounters{
		errTimeout: metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + labels + `,reason="timeout"}`),
		errConnect: metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + labels + `,reason="connect"}`),
		errStatus:  metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + labels + `,reason="status"}`),
		errInvalid: metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + labels + `,reason="invalid_response"}`),
		errBreaker: metrics.GetOrCreateCounter(`lariat_upstream_errors_total{` + labels + `,reason="breaker_open"}`),
	}
}

// count counts a failure of kind k.
func (cc *callCounters) count(k failKind) {
	switch k {
	case failTimeout:
		cc.errTimeout.Inc()
	case failConnect:
		cc.errConnect.Inc()
	case failStatus:
		cc.errStatus.Inc()
	case failInvalid:
		cc.errInvalid.Inc()
	case failBreaker:
		cc.errBreaker.Inc()
	}
}

// caller makes a task's upstream calls: tries bounded by the task and
// route timeouts, retries with backoff, the breaker, and the hedge,
// fallback and shadow policies.
type caller struct {
	callCounters
	breakerSet    BreakerSettings
	tryTimeout    time.Duration
	retries       int
	backoff       time.Duration
	backoffMax    time.Duration
	retry         retryPolicy
	hedgeAfter    time.Duration
	fallback      *endpoint
	fallbackTry   time.Duration
	primaryWithin time.Duration
	shadow        *shadower
	// decode appends the task's result for an upstream answer body to
	// dst. It must be safe for concurrent use.
	decode func(dst, body []byte) ([]byte, error)

	retriesTotal *metrics.Counter
	hedgeWon     *metrics.Counter
	hedgeLost    *metrics.Counter
	fbPrimary    *metrics.Counter
	fbFallback   *metrics.Counter
}

// compileCall compiles the shared call settings; ep compiles the fallback
// and shadow upstreams the way the kind addresses them.
func compileCall(s *Spec, in *CallInputs, ep endpointFunc) (*caller, error) {
	c := &caller{retries: in.Retries, callCounters: newCallCounters(s.Labels)}
	routeTimeout := s.Route.Timeout.D
	c.tryTimeout = routeTimeout
	if in.Timeout.Set {
		if in.Timeout.D <= 0 {
			return nil, s.Errorf(in.Timeout.Pos, "inputs.timeout must be positive")
		}
		if in.Timeout.D > routeTimeout {
			return nil, s.Errorf(in.Timeout.Pos, "inputs.timeout %s is longer than the route timeout %s", in.Timeout.D, routeTimeout)
		}
		c.tryTimeout = in.Timeout.D
	}
	if in.Retries < 0 || in.Retries > 10 {
		return nil, s.Errorf(s.Task.NamePos, "inputs.retries must be between 0 and 10, got %d", in.Retries)
	}
	c.backoff, c.backoffMax = 10*time.Millisecond, 100*time.Millisecond
	if in.Backoff.Base.Set {
		c.backoff = in.Backoff.Base.D
	}
	if in.Backoff.Max.Set {
		c.backoffMax = in.Backoff.Max.D
	}
	if c.backoffMax < c.backoff {
		return nil, s.Errorf(in.Backoff.Max.Pos, "inputs.backoff.max %s is shorter than backoff.base %s", c.backoffMax, c.backoff)
	}
	if err := c.retry.parse(s, in.RetryOn); err != nil {
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
	c.breakerSet = bs
	l := s.Labels
	c.retriesTotal = metrics.GetOrCreateCounter(`lariat_task_retries_total{` + l + `}`)
	if in.HedgeAfter.Set {
		switch d := in.HedgeAfter.D; {
		case d <= 0:
			return nil, s.Errorf(in.HedgeAfter.Pos, "inputs.hedge_after must be positive")
		case d >= c.tryTimeout:
			return nil, s.Errorf(in.HedgeAfter.Pos, "inputs.hedge_after %s must be shorter than the try timeout %s", d, c.tryTimeout)
		}
		c.hedgeAfter = in.HedgeAfter.D
		c.hedgeWon = metrics.GetOrCreateCounter(`lariat_hedges_total{` + l + `,result="won"}`)
		c.hedgeLost = metrics.GetOrCreateCounter(`lariat_hedges_total{` + l + `,result="lost"}`)
	}
	if f := in.Fallback; f != nil {
		var err error
		if c.fallback, err = ep(s, "fallback", f.Address, f.Model, f.ModelName, f.ModelVersion, bs); err != nil {
			return nil, err
		}
		c.fallbackTry = c.tryTimeout
		if f.Timeout.Set {
			if f.Timeout.D <= 0 || f.Timeout.D > routeTimeout {
				return nil, s.Errorf(f.Timeout.Pos, "inputs.fallback.timeout must be positive and at most the route timeout %s", routeTimeout)
			}
			c.fallbackTry = f.Timeout.D
		}
		c.fbPrimary = metrics.GetOrCreateCounter(`lariat_fallback_answers_total{` + l + `,answer="primary"}`)
		c.fbFallback = metrics.GetOrCreateCounter(`lariat_fallback_answers_total{` + l + `,answer="fallback"}`)
	}
	if in.PrimaryWithin.Set {
		if c.fallback == nil {
			return nil, s.Errorf(in.PrimaryWithin.Pos, "inputs.primary_within needs a fallback")
		}
		if in.PrimaryWithin.D >= routeTimeout {
			return nil, s.Errorf(in.PrimaryWithin.Pos, "inputs.primary_within %s must be shorter than the route timeout %s", in.PrimaryWithin.D, routeTimeout)
		}
		c.primaryWithin = in.PrimaryWithin.D
	}
	if in.Shadow != nil {
		var err error
		if c.shadow, err = compileShadow(s, in.Shadow, ep, bs); err != nil {
			return nil, err
		}
	}
	return c, nil
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

type failKind uint8

const (
	failNone failKind = iota
	failConnect
	failTimeout
	failStatus
	failInvalid
	failBreaker
	failOther
)

// breakerCounts reports whether a failure counts against the upstream's
// breaker: connect errors, timeouts, invalid answers and 5xx.
func breakerCounts(k failKind, status int) bool {
	return k != failNone && k != failOther && k != failBreaker && !(k == failStatus && status < 500)
}

// racing reports whether a try races several calls.
func (c *caller) racing() bool { return c.hedgeAfter > 0 || c.fallback != nil }

// call sends req to tg until an answer is decoded into r, retrying what
// the policy allows while the route budget can hold another full try.
// firstAttempt is the number of tries already made elsewhere.
func (c *caller) call(x *Exchange, r *Result, req *fasthttp.Request, tg *target, firstAttempt int) error {
	for attempt := firstAttempt; ; attempt++ {
		if x.Canceled() {
			return ErrCanceled
		}
		if x.Remaining() <= 0 {
			return ErrDeadline
		}
		var kind failKind
		var err error
		if c.racing() {
			kind, err = c.race(x, r, req, tg)
		} else {
			kind, err = c.once(x, r, req, tg)
		}
		if err == nil {
			return nil
		}
		wait, ok := c.mayRetry(x, attempt, kind, r.Status)
		if !ok {
			return err
		}
		c.retriesTotal.Inc()
		time.Sleep(wait)
	}
}

// mayRetry reports whether a failure of kind after attempt+1 tries gets
// another try, and the backoff before it: the policy allows it and the
// route budget, after the backoff, can hold a whole try.
func (c *caller) mayRetry(x *Exchange, attempt int, kind failKind, status int) (time.Duration, bool) {
	if attempt >= c.retries || !c.retryable(kind, status) {
		return 0, false
	}
	wait := c.backoffFor(attempt)
	return wait, x.Remaining() >= wait+c.tryTimeout
}

// once makes one try on the calling goroutine.
func (c *caller) once(x *Exchange, r *Result, req *fasthttp.Request, tg *target) (failKind, error) {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	r.Attempts++
	var kind failKind
	var status int
	err := tg.breaker.Do(func() (bool, error) {
		var e error
		status, kind, e = try(req, resp, x.Deadline, c.tryTimeout, tg)
		return breakerCounts(kind, status), e
	})
	r.Status = status
	if err == ErrBreakerOpen {
		kind, err = failBreaker, fmt.Errorf("%s: %w", tg.host, ErrBreakerOpen)
	}
	if err != nil {
		c.count(kind)
		return kind, err
	}
	return c.answer(r, resp.Body())
}

// setDecode sets the decoder of the task's answers, the shadow's too.
func (c *caller) setDecode(decode func(dst, body []byte) ([]byte, error)) {
	c.decode = decode
	if c.shadow != nil {
		c.shadow.decode = decode
	}
}

// answer decodes an upstream answer into r.
func (c *caller) answer(r *Result, body []byte) (failKind, error) {
	b, err := c.decode(r.Body[:0], body)
	if err != nil {
		c.errInvalid.Inc()
		return failInvalid, err
	}
	r.Body = b
	return failNone, nil
}

func (c *caller) retryable(k failKind, status int) bool {
	switch k {
	case failConnect:
		return c.retry.connect
	case failTimeout:
		return c.retry.timeout
	case failStatus:
		return c.retry.status(status)
	}
	return false
}

func (c *caller) backoffFor(attempt int) time.Duration {
	d := c.backoff << min(attempt, 20)
	if d > c.backoffMax || d <= 0 {
		d = c.backoffMax
	}
	// Equal jitter: half fixed, half random.
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

var deadlineHeader = []byte("X-Lariat-Deadline-Ms")

// try makes one call of req to tg, bounded by timeout and routeDeadline,
// and leaves the answer in resp. It returns the status, the failure kind
// and an error describing it. It touches nothing but its arguments, so
// it may run on any goroutine.
func try(req *fasthttp.Request, resp *fasthttp.Response, routeDeadline time.Time, timeout time.Duration, tg *target) (int, failKind, error) {
	now := time.Now()
	deadline := now.Add(timeout)
	if routeDeadline.Before(deadline) {
		deadline = routeDeadline
	}
	var ms [20]byte
	req.Header.SetBytesKV(deadlineHeader, strconv.AppendInt(ms[:0], int64(routeDeadline.Sub(now)/time.Millisecond), 10))
	resp.Reset()
	err := tg.client.DoDeadline(req, resp, deadline)
	if err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, fasthttp.ErrNoFreeConns) {
			if !routeDeadline.After(time.Now()) {
				return 0, failTimeout, ErrDeadline
			}
			return 0, failTimeout, fmt.Errorf("%s: %w after %s", tg.host, ErrTimeout, time.Since(now).Round(time.Millisecond))
		}
		return 0, failConnect, fmt.Errorf("%s: %w", tg.host, err)
	}
	status := resp.StatusCode()
	body := resp.Body()
	if status < 200 || status > 299 {
		return status, failStatus, &StatusError{Status: status}
	}
	if !gjson.ValidBytes(body) {
		return status, failInvalid, fmt.Errorf("%s: upstream answered with invalid JSON (%d bytes)", tg.host, len(body))
	}
	return status, failNone, nil
}
