package tasks

import (
	"reflect"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/upstream"
)

func init() {
	Register(Kind{Name: "http", Inputs: reflect.TypeFor[HTTPInputs](), New: newHTTPTask})
}

// HTTPInputs are the settings of an http task: one call to a model server
// or any JSON HTTP upstream, with retries and a circuit breaker. Templates:
// {{ .request }}, {{ .request.<path> }}, {{ .headers.<Name> }},
// {{ .tasks.<task>.body[.<path>] }}, {{ .tasks.<task>.status }}.
type HTTPInputs struct {
	// Address is the URL to call, http(s)://host[:port]/path. The scheme
	// and host are fixed; the path and query may hold templates (values
	// are percent-encoded; a value in the path that would leave its
	// segment, such as a/b or .., fails the task with 400). No credentials
	// or fragment. Give either address or model.
	Address config.String `yaml:"address" jsonschema:"oneOf=target,pattern=^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@{}\\s]+([/?][^#]*)?$"`
	// Model is a model of the model registry to call instead of an
	// address: name@alias, name/<version>, name/latest or name/<stage>
	// (optionally prefixed models:/). The gateway calls the serving
	// endpoint of the version it resolves to, follows alias moves and
	// reports the version in X-Lariat-Models; it needs a registry. Give
	// either address or model.
	Model config.String `yaml:"model" jsonschema:"oneOf=target,pattern=^(models:/)?[^@/]+(@[^@/]+|/[^@/]+)$"`
	// Method is the HTTP method of the call (POST when left out), in any
	// case.
	Method config.String `yaml:"method" jsonschema:"enum=GET,enum=POST,enum=PUT,enum=PATCH,enum=DELETE,pattern=^([Gg][Ee][Tt]|[Pp][Oo][Ss][Tt]|[Pp][Uu][Tt]|[Pp][Aa][Tt][Cc][Hh]|[Dd][Ee][Ll][Ee][Tt][Ee])$,default=POST"`
	// Headers are request headers, name to value; values may hold
	// templates (inserted as plain text). A header whose template refers
	// to a missing or null value is left out.
	Headers map[string]config.String `yaml:"headers" jsonschema:"keys.pattern=^[-!#$%&'*+.^_\x60|~0-9A-Za-z]+$"`
	// Body is the request body template, JSON: template values are
	// inserted as JSON, e.g. '{"order": {{ .request.order }}}'. Empty means
	// no body.
	Body config.String `yaml:"body"`
	// CallInputs are the timeout, retry, breaker, hedging, fallback and
	// shadow settings shared with the infer kind.
	CallInputs `yaml:",inline"`
}

type propagated struct {
	name []byte
	slot int
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
	detail     Detail
}

var (
	_ Describer = (*httpTask)(nil)
	_ Cleaner   = (*httpTask)(nil)
)

// Cleanup lets go of the upstream targets the task holds.
func (t *httpTask) Cleanup() {
	t.ep.release()
	t.call.release()
}

// Describe implements Describer: the upstream host, or the registry model.
func (t *httpTask) Describe() Detail { return t.detail }

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
		t.detail = Detail{Target: "model " + in.Model.Value, Model: in.Model.Value}
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
		if t.ep, err = fixedEndpoint(s, in.Address.Pos, "inputs.address", t.call.breakerSet, scheme, host, hostPort, ""); err != nil {
			return nil, err
		}
		t.detail.Target = host
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
func httpEndpoint(s *Spec, field string, address, model, modelName, modelVersion config.String, bs upstream.BreakerSettings) (*endpoint, error) {
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
	return fixedEndpoint(s, address.Pos, "inputs."+field+".address", bs, scheme, host, hostPort, rest)
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
		r.scratch = append(r.scratch[:0], tg.Path...)
	}
	tg.Prepare(req, r.scratch)
	setPropagated(req, x, t.propagate)
	if err := t.headers.apply(req, x, &r.scratch); err != nil {
		return err
	}
	r.Upstream = tg.HostHdr
	setTrace(req, x, r)
	if t.body != nil {
		req.Header.SetContentType("application/json")
		// The body stays in r.scratch, which outlives the request.
		r.scratch = t.body.Append(r.scratch[:0], x)
		req.SetBodyRaw(r.scratch)
	}
	return nil
}
