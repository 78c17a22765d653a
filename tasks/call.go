package tasks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/lazymetric"
	"github.com/lariat-gw/lariat/upstream"
)

// CallInputs are the settings every kind that calls a model server
// shares: timeouts, retries, breaker, hedging, fallback and shadow. Kinds
// embed them inline, so they are keys of the task's inputs.
type CallInputs struct {
	// Timeout bounds each try: milliseconds (100) or a duration ("100ms").
	// The route timeout when left out; never longer than it. Must be
	// positive.
	Timeout config.Duration `yaml:"timeout" jsonschema:"exclusiveMinimum=0"`
	// Retries is how many extra tries a retryable failure may get (0 to
	// 10; 0 when left out). A retry starts only when the route deadline
	// leaves room for a full try, so retries need a timeout shorter than
	// the route's.
	Retries int `yaml:"retries" jsonschema:"minimum=0,maximum=10,default=0"`
	// Backoff is the wait before a retry: exponential from base, capped at
	// max, with jitter.
	Backoff BackoffInputs `yaml:"backoff"`
	// RetryOn lists the failures that are retried: connect, timeout, 5xx
	// (any 5xx status) and status codes (408, 425, 429 or 5xx codes; at
	// most 8). Default: connect, timeout, 429, 502, 503, 504.
	RetryOn RetryOn `yaml:"retry_on"`
	// Breaker is the upstream's circuit breaker, shared by every task that
	// calls the same scheme://host:port.
	Breaker *BreakerInputs `yaml:"breaker"`
	// HedgeAfter turns on hedging: when the first try has not answered
	// after this long, one more identical try is sent; the first answer
	// wins and the other is abandoned. Shorter than the try timeout. No
	// hedge is sent when the time left before the route deadline is
	// shorter than hedge_after. Counted in
	// lariat_hedges_total{result="won|lost"}.
	HedgeAfter config.Duration `yaml:"hedge_after" jsonschema:"exclusiveMinimum=0"`
	// Fallback is a race fallback: a second upstream called together with
	// the primary; its answer is used when the primary's does not come
	// within PrimaryWithin (or the primary fails). The answering model
	// shows in X-Lariat-Models and lariat_fallback_answers_total.
	Fallback *FallbackInputs `yaml:"fallback"`
	// PrimaryWithin is how long the primary's answer is preferred over the
	// fallback's (0 when left out: the first answer wins). Needs fallback;
	// shorter than the route timeout.
	PrimaryWithin config.Duration `yaml:"primary_within"`
	// Shadow mirrors a sample of the calls to another upstream (a
	// candidate model) off the request path, and counts in
	// lariat_shadow_total whether its answer agrees with the primary's.
	// It never delays or fails the answer.
	Shadow *ShadowInputs `yaml:"shadow"`
}

// RetryOn lists the failures a task retries: "connect", "timeout", "5xx"
// and status codes (408, 425, 429 or 5xx codes), written as numbers or
// strings.
type RetryOn []config.String

// JSONSchema returns the JSON Schema of a retry_on list.
func (RetryOn) JSONSchema() map[string]any {
	return map[string]any{"type": "array", "items": map[string]any{"anyOf": []any{
		map[string]any{"enum": []any{"connect", "timeout", "5xx"}},
		map[string]any{"type": "integer", "enum": []any{408, 425, 429}},
		map[string]any{"type": "integer", "minimum": 500, "maximum": 599},
		map[string]any{"type": "string", "pattern": "^(408|425|429|5[0-9][0-9])$"},
	}}}
}

// BackoffInputs set the wait before a retry: exponential from base,
// capped at max, with jitter.
type BackoffInputs struct {
	// Base is the first wait (10ms when left out).
	Base config.Duration `yaml:"base" jsonschema:"default=10ms"`
	// Max is the longest wait (100ms when left out); not shorter than
	// base.
	Max config.Duration `yaml:"max" jsonschema:"default=100ms"`
}

// BreakerInputs configure an upstream's circuit breaker: consecutive
// counted failures (connect errors, timeouts, 5xx) open it; an open breaker
// fails calls at once. Fields left out keep the gateway's defaults (5
// failures, open 5s, 1 trial request).
type BreakerInputs struct {
	// Failures is how many consecutive counted failures open the breaker
	// (the gateway default when 0 or left out).
	Failures uint32 `yaml:"failures"`
	// OpenFor is how long the breaker stays open before letting trial
	// requests through.
	OpenFor config.Duration `yaml:"open_for"`
	// HalfOpenRequests is how many trial requests may run while half open
	// (the gateway default when 0 or left out).
	HalfOpenRequests uint32 `yaml:"half_open_requests"`
	// Disabled turns the breaker off for this upstream.
	Disabled bool `yaml:"disabled"`
}

// FallbackInputs name the upstream a task races against its primary.
type FallbackInputs struct {
	// Address is the URL of the fallback, without templates; for infer
	// tasks the model server's base URL. Give either address or model.
	Address config.String `yaml:"address" jsonschema:"oneOf=target,pattern=^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@{}\\s]+([/?][^#]*)?$"`
	// Model is a registry model to call instead of an address
	// (name@alias, name/<version>, ...); needs a registry.
	Model config.String `yaml:"model" jsonschema:"oneOf=target,pattern=^(models:/)?[^@/]+(@[^@/]+|/[^@/]+)$"`
	// ModelName is, for infer tasks, the served model's name (the task's
	// model_name when left out).
	ModelName config.String `yaml:"model_name" jsonschema:"minLength=1"`
	// ModelVersion is, for infer tasks, the served model's version.
	ModelVersion config.String `yaml:"model_version"`
	// Timeout bounds each call to the fallback; the task's try timeout
	// when left out, never longer than the route timeout.
	Timeout config.Duration `yaml:"timeout" jsonschema:"exclusiveMinimum=0"`
}

// target is one upstream endpoint a task calls, with what the task
// reports of it.
type target struct {
	*upstream.Target
	model   string // "name/version", for model endpoints
	version string
	calls   *lazymetric.Counter
	// batch is the micro-batcher of infer calls to this target.
	batch atomic.Pointer[batcher]
}

// label names the target in Result.Model: its model, or its host.
func (tg *target) label() string {
	if tg.model != "" {
		return tg.model
	}
	return tg.HostHdr
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
	fixed  *target
	ref    string // registry reference
	models ModelResolver
	// tenant is the route's tenant, nil for none: its breakers are its
	// own, and a model version served on a host it may not call fails.
	tenant  *config.Tenant
	targets sync.Map // serving endpoint → *target
	up      *upstream.Pool
	bs      upstream.BreakerSettings
	labels  string
	metrics *metrics.Set
	// modelPath maps a model version's serving endpoint path and query
	// to the path called; nil calls the serving endpoint as it is.
	modelPath func(rest string, m ResolvedModel) string
}

func (e *endpoint) newTarget(scheme, host, hostPort, path string) *target {
	tenant := ""
	if e.tenant != nil {
		tenant = e.tenant.Name
	}
	return &target{Target: e.up.Target(tenant, scheme, host, hostPort, path, e.bs)}
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
	if !e.tenant.AllowsUpstream(host) {
		return nil, fmt.Errorf("model %s version %s is served on %s, which tenant %q may not call", m.Name, m.Version, host, e.tenant.Name)
	}
	if e.modelPath != nil {
		rest = e.modelPath(rest, m)
	}
	tg := e.newTarget(scheme, host, hostPort, rest)
	tg.model = m.Name + "/" + m.Version
	tg.version = m.Version
	tg.calls = lazymetric.NewCounter(e.metrics, `lariat_model_calls_total{`+e.labels+`,model=`+strconv.Quote(m.Name)+`,version=`+strconv.Quote(m.Version)+`}`)
	// Keep the first target stored for an endpoint and version, so that
	// racing callers share one (and its batcher).
	if prev, loaded := e.targets.LoadOrStore(m.Endpoint, tg); loaded {
		if p := prev.(*target); p.version == m.Version {
			tg.Release()
			return p, nil
		}
		if e.targets.CompareAndSwap(m.Endpoint, prev, tg) {
			prev.(*target).Release()
		}
	}
	// The model has moved to another serving endpoint: the targets of
	// the others are let go (calls running on them finish).
	e.targets.Range(func(k, v any) bool {
		if k != m.Endpoint && e.targets.CompareAndDelete(k, v) {
			v.(*target).Release()
		}
		return true
	})
	return tg, nil
}

// release lets go of the targets the endpoint made (see
// upstream.Target.Release).
func (e *endpoint) release() {
	if e == nil {
		return
	}
	if e.fixed != nil {
		e.fixed.Release()
	}
	e.targets.Range(func(k, v any) bool {
		if e.targets.CompareAndDelete(k, v) {
			v.(*target).Release()
		}
		return true
	})
}

// registryEndpoint compiles a registry model reference written at ref.
func registryEndpoint(s *Spec, field string, ref config.String, bs upstream.BreakerSettings) (*endpoint, error) {
	models, err := ModelRegistry.Need(s, ref.Pos, "inputs."+field+": naming a model needs")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	m, err := models.Register(ctx, ref.Value)
	cancel()
	switch {
	case errors.Is(err, ErrRegistryUnreachable):
		// The route serves: its calls fail ("not resolved") until the
		// registry answers and the reference resolves, rather than the
		// route being left out while the registry is down.
	case err != nil:
		return nil, s.Errorf(ref.Pos, "inputs.%s: cannot resolve %q: %v", field, ref.Value, err)
	case s.Tenant != nil:
		// The version served now must be on an allowed host; later
		// versions are checked when they resolve.
		if _, host, _, _, err := parseUpstream(m.Endpoint); err == nil {
			if err := s.CheckUpstream(ref.Pos, "inputs."+field, host); err != nil {
				return nil, err
			}
		}
	}
	return &endpoint{ref: ref.Value, models: models, tenant: s.Tenant, up: s.Env.Upstreams, bs: bs, labels: s.Labels, metrics: s.Metrics}, nil
}

// fixedEndpoint returns an endpoint calling scheme://host with path; the
// URL was written at pos, in field.
func fixedEndpoint(s *Spec, pos config.Pos, field string, bs upstream.BreakerSettings, scheme, host, hostPort, path string) (*endpoint, error) {
	if err := s.CheckUpstream(pos, field, host); err != nil {
		return nil, err
	}
	e := &endpoint{tenant: s.Tenant, up: s.Env.Upstreams, bs: bs, labels: s.Labels, metrics: s.Metrics}
	e.fixed = e.newTarget(scheme, host, hostPort, path)
	return e, nil
}

// endpointFunc compiles the fallback or shadow upstream of a kind (field
// names it in messages).
type endpointFunc func(s *Spec, field string, address, model, modelName, modelVersion config.String, bs upstream.BreakerSettings) (*endpoint, error)

// caller makes a task's upstream calls: the upstream package's call
// stack under the task's policy, with the task's fallback and shadow.
type caller struct {
	*upstream.Caller
	breakerSet upstream.BreakerSettings
	fallback   *endpoint
	shadow     *shadower
}

// release lets go of the targets of the fallback and shadow upstreams.
func (c *caller) release() {
	if c == nil {
		return
	}
	c.fallback.release()
	if c.shadow != nil {
		c.shadow.ep.release()
	}
}

// compileCall compiles the shared call settings; ep compiles the fallback
// and shadow upstreams the way the kind addresses them.
func compileCall(s *Spec, in *CallInputs, ep endpointFunc) (*caller, error) {
	routeTimeout := s.Route.Timeout.D
	p := upstream.Policy{TryTimeout: routeTimeout, Retries: in.Retries, RetryOn: upstream.DefaultRetryOn}
	if in.Timeout.Set {
		if err := s.CheckTimeout("inputs.timeout", in.Timeout); err != nil {
			return nil, err
		}
		p.TryTimeout = in.Timeout.D
	}
	if in.Retries < 0 || in.Retries > 10 {
		return nil, s.Errorf(s.Task.NamePos, "inputs.retries must be between 0 and 10, got %d", in.Retries)
	}
	if in.Retries > 0 && p.TryTimeout >= routeTimeout {
		return nil, s.Errorf(s.Task.NamePos, "inputs.retries: a retry starts only when a whole try fits before the route deadline, so retries need inputs.timeout shorter than the route timeout %s", routeTimeout)
	}
	p.Backoff, p.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	if in.Backoff.Base.Set {
		p.Backoff = in.Backoff.Base.D
	}
	if in.Backoff.Max.Set {
		p.BackoffMax = in.Backoff.Max.D
	}
	if p.Backoff <= 0 {
		return nil, s.Errorf(in.Backoff.Base.Pos, "inputs.backoff.base must be positive")
	}
	if p.BackoffMax < p.Backoff {
		return nil, s.Errorf(in.Backoff.Max.Pos, "inputs.backoff.max %s is shorter than backoff.base %s", p.BackoffMax, p.Backoff)
	}
	if len(in.RetryOn) > 0 {
		var err error
		if p.RetryOn, err = parseRetryOn(s, in.RetryOn); err != nil {
			return nil, err
		}
	}
	bs := s.Env.Upstreams.Options().Breaker
	if b := in.Breaker; b != nil {
		if b.OpenFor.Set && b.OpenFor.D <= 0 {
			return nil, s.Errorf(b.OpenFor.Pos, "inputs.breaker.open_for must be positive")
		}
		bs = bs.Merge(upstream.BreakerSettings{Failures: b.Failures, OpenFor: b.OpenFor.D, HalfOpenRequests: b.HalfOpenRequests, Disabled: b.Disabled})
	}
	c := &caller{breakerSet: bs}
	if in.HedgeAfter.Set {
		switch d := in.HedgeAfter.D; {
		case d <= 0:
			return nil, s.Errorf(in.HedgeAfter.Pos, "inputs.hedge_after must be positive")
		case d >= p.TryTimeout:
			return nil, s.Errorf(in.HedgeAfter.Pos, "inputs.hedge_after %s must be shorter than the try timeout %s", d, p.TryTimeout)
		}
		p.HedgeAfter = in.HedgeAfter.D
	}
	if f := in.Fallback; f != nil {
		var err error
		if c.fallback, err = ep(s, "fallback", f.Address, f.Model, f.ModelName, f.ModelVersion, bs); err != nil {
			return nil, err
		}
		p.FallbackTimeout = p.TryTimeout
		if f.Timeout.Set {
			if err := s.CheckTimeout("inputs.fallback.timeout", f.Timeout); err != nil {
				return nil, err
			}
			p.FallbackTimeout = f.Timeout.D
		}
	}
	if in.PrimaryWithin.Set {
		if c.fallback == nil {
			return nil, s.Errorf(in.PrimaryWithin.Pos, "inputs.primary_within needs a fallback")
		}
		if in.PrimaryWithin.D <= 0 || in.PrimaryWithin.D >= routeTimeout {
			return nil, s.Errorf(in.PrimaryWithin.Pos, "inputs.primary_within %s must be positive and shorter than the route timeout %s", in.PrimaryWithin.D, routeTimeout)
		}
		p.PrimaryWithin = in.PrimaryWithin.D
	}
	c.Caller = upstream.NewCaller(p, s.Labels, s.Metrics)
	if in.Shadow != nil {
		var err error
		if c.shadow, err = compileShadow(s, in.Shadow, ep, bs); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func parseRetryOn(s *Spec, list []config.String) (upstream.RetryOn, error) {
	var p upstream.RetryOn
	for _, v := range list {
		switch v.Value {
		case "connect":
			p.Connect = true
		case "timeout":
			p.Timeout = true
		case "5xx":
			p.Any5xx = true
		default:
			code, err := strconv.Atoi(v.Value)
			switch {
			case err != nil || code < 400 || code > 599:
				return p, s.Errorf(v.Pos, "inputs.retry_on: %q is not connect, timeout, 5xx or a 4xx/5xx status code", v.Value)
			case code < 500 && code != 408 && code != 425 && code != 429:
				return p, s.Errorf(v.Pos, "inputs.retry_on: %d is a client error; only 408, 425 and 429 may be retried", code)
			}
			p.Codes = append(p.Codes, code)
		}
	}
	return p, nil
}

// setDecode sets the decoder of the task's answers, the shadow's too.
func (c *caller) setDecode(decode func(dst, body []byte) ([]byte, error)) {
	c.Decode = decode
	if c.shadow != nil {
		c.shadow.decode = decode
	}
}

// call sends req to tg (racing the fallback when the task has one) until
// an answer is decoded into r. tries is the number of tries already made
// elsewhere (a batch that failed).
func (c *caller) call(x *Exchange, r *Result, req *fasthttp.Request, tg *target, tries int) error {
	var fb *target
	if c.fallback != nil {
		// A fallback that cannot be resolved now is left out.
		fb, _ = c.fallback.target()
	}
	out := upstream.Outcome{Tries: tries}
	var fbt *upstream.Target
	if fb != nil {
		fbt = fb.Target
	}
	body, err := c.Call(x.Budget(), req, tg.Target, fbt, r.Body, &out)
	r.Attempts += out.Attempts
	r.Status = out.Status
	if err != nil {
		return err
	}
	r.Body = body
	if fb != nil && out.Answered == fbt {
		r.Model = fb.label()
		r.Upstream = fb.HostHdr
	}
	return nil
}
