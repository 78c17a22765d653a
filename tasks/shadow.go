package tasks

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/jsonutil"
	"github.com/lariat-gw/lariat/internal/lazymetric"
	"github.com/lariat-gw/lariat/upstream"
)

// ShadowInputs mirror a sample of a task's calls to another upstream (a
// candidate model) after the primary answered. The mirror runs off the
// request path: it never delays or fails the answer. Its answer is
// compared with the primary's and counted in
// lariat_shadow_total{route,task,result="agree|disagree|error|dropped"}.
type ShadowInputs struct {
	// Address is the URL of the shadow, without templates; for infer tasks
	// the model server's base URL. Give either address or model.
	Address config.String `yaml:"address" jsonschema:"oneOf=target,pattern=^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@{}\\s]+([/?][^#]*)?$"`
	// Model is a registry model to call instead of an address
	// (name@alias, name/<version>, ...); needs a registry.
	Model config.String `yaml:"model" jsonschema:"oneOf=target,pattern=^(models:/)?[^@/]+(@[^@/]+|/[^@/]+)$"`
	// ModelName is, for infer tasks, the served model's name (the task's
	// model_name when left out).
	ModelName config.String `yaml:"model_name" jsonschema:"minLength=1"`
	// ModelVersion is, for infer tasks, the served model's version.
	ModelVersion config.String `yaml:"model_version"`
	// Sample is the share of requests mirrored: above 0, at most 1.
	Sample float64 `yaml:"sample" jsonschema:"required,exclusiveMinimum=0,maximum=1"`
	// Compare is a gjson path into the task's result whose value is
	// compared (the whole result when left out): numbers within tolerance,
	// arrays and objects element by element, other values exactly.
	Compare config.String `yaml:"compare"`
	// Tolerance is how far apart two numbers may be and still agree (0
	// when left out).
	Tolerance float64 `yaml:"tolerance" jsonschema:"minimum=0"`
	// Timeout bounds a shadow call (200ms when left out).
	Timeout config.Duration `yaml:"timeout" jsonschema:"exclusiveMinimum=0"`
	// MaxInFlight is the most shadow calls running at once (64 when 0 or
	// left out); requests beyond it are not mirrored and count as dropped.
	MaxInFlight int `yaml:"max_in_flight" jsonschema:"minimum=0"`
}

// shadower mirrors calls of one task.
type shadower struct {
	ep        *endpoint
	sample    float64
	compare   string
	tolerance float64
	timeout   time.Duration
	max       int64
	inflight  atomic.Int64
	// decode is the task's answer decoder (set after compiling).
	decode func(dst, body []byte) ([]byte, error)

	agree, disagree, failed, dropped *lazymetric.Counter
}

func compileShadow(s *Spec, in *ShadowInputs, ep endpointFunc, bs upstream.BreakerSettings) (*shadower, error) {
	sh := &shadower{sample: in.Sample, compare: in.Compare.Value, tolerance: in.Tolerance, timeout: 200 * time.Millisecond, max: 64}
	if !(in.Sample > 0 && in.Sample <= 1) {
		return nil, s.Errorf(s.Task.NamePos, "inputs.shadow.sample must be above 0 and at most 1, got %v", in.Sample)
	}
	if in.Tolerance < 0 || math.IsNaN(in.Tolerance) {
		return nil, s.Errorf(s.Task.NamePos, "inputs.shadow.tolerance must not be negative")
	}
	if in.Timeout.Set {
		if in.Timeout.D <= 0 {
			return nil, s.Errorf(in.Timeout.Pos, "inputs.shadow.timeout must be positive")
		}
		sh.timeout = in.Timeout.D
	}
	if in.MaxInFlight < 0 {
		return nil, s.Errorf(s.Task.NamePos, "inputs.shadow.max_in_flight must not be negative")
	}
	if in.MaxInFlight > 0 {
		sh.max = int64(in.MaxInFlight)
	}
	if p := in.Compare.Value; p != "" {
		if err := checkPath(p); err != nil {
			return nil, s.Errorf(in.Compare.Pos, "inputs.shadow.compare: %v", err)
		}
	}
	var err error
	if sh.ep, err = ep(s, "shadow", in.Address, in.Model, in.ModelName, in.ModelVersion, bs); err != nil {
		return nil, err
	}
	l := s.Labels
	sh.agree = lazymetric.NewCounter(s.Metrics, `lariat_shadow_total{`+l+`,result="agree"}`)
	sh.disagree = lazymetric.NewCounter(s.Metrics, `lariat_shadow_total{`+l+`,result="disagree"}`)
	sh.failed = lazymetric.NewCounter(s.Metrics, `lariat_shadow_total{`+l+`,result="error"}`)
	sh.dropped = lazymetric.NewCounter(s.Metrics, `lariat_shadow_total{`+l+`,result="dropped"}`)
	return sh, nil
}

// sampled decides whether this request is mirrored.
func (sh *shadower) sampled() bool { return sh.sample >= 1 || rand.Float64() < sh.sample }

// shadowJob is what a shadow call owns: copies of the request and of the
// primary's compared value.
type shadowJob struct {
	req  *fasthttp.Request
	tg   *target
	want []byte
	got  []byte
}

var shadowJobPool = sync.Pool{New: func() any { return new(shadowJob) }}

// send mirrors a copy of req to the shadow and compares its answer with
// primary, the task's result. It returns at once; it keeps nothing of
// its arguments.
func (sh *shadower) send(req *fasthttp.Request, primary []byte) {
	if sh.inflight.Add(1) > sh.max {
		sh.inflight.Add(-1)
		sh.dropped.Inc()
		return
	}
	tg, err := sh.ep.target()
	if err != nil {
		sh.inflight.Add(-1)
		sh.failed.Inc()
		return
	}
	j := shadowJobPool.Get().(*shadowJob)
	j.tg = tg
	j.req = fasthttp.AcquireRequest()
	req.CopyTo(j.req)
	tg.Retarget(j.req)
	j.want = append(j.want[:0], sh.value(primary).Raw...)
	go sh.run(j)
}

func (sh *shadower) value(body []byte) gjson.Result {
	if sh.compare == "" {
		return gjson.Parse(jsonutil.B2S(body))
	}
	return gjson.Get(jsonutil.B2S(body), sh.compare)
}

func (sh *shadower) run(j *shadowJob) {
	resp := upstream.AcquireResponse()
	defer func() {
		upstream.ReleaseResponse(resp)
		fasthttp.ReleaseRequest(j.req)
		j.req, j.tg = nil, nil
		shadowJobPool.Put(j)
		sh.inflight.Add(-1)
	}()
	if _, err := j.tg.Try(j.req, resp, time.Now().Add(sh.timeout), sh.timeout); err != nil {
		sh.failed.Inc()
		return
	}
	var err error
	if j.got, err = sh.decode(j.got[:0], resp.Body()); err != nil {
		sh.failed.Inc()
		return
	}
	if agrees(gjson.Parse(jsonutil.B2S(j.want)), sh.value(j.got), sh.tolerance, 0) {
		sh.agree.Inc()
	} else {
		sh.disagree.Inc()
	}
}

// agrees compares two JSON values: numbers within tol, strings, booleans
// and null exactly, arrays element by element, objects key by key.
// A value missing on both sides agrees.
func agrees(a, b gjson.Result, tol float64, depth int) bool {
	if depth > 32 {
		return false
	}
	if !a.Exists() || !b.Exists() {
		return a.Exists() == b.Exists()
	}
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case gjson.Number:
		return math.Abs(a.Num-b.Num) <= tol
	case gjson.String:
		return a.Str == b.Str
	case gjson.True, gjson.False, gjson.Null:
		return true
	}
	if a.IsArray() != b.IsArray() {
		return false
	}
	if a.IsArray() {
		n, ok := 0, true
		var bs [16]gjson.Result
		bl := bs[:0]
		b.ForEach(func(_, v gjson.Result) bool {
			bl = append(bl, v)
			return true
		})
		a.ForEach(func(_, v gjson.Result) bool {
			if n >= len(bl) || !agrees(v, bl[n], tol, depth+1) {
				ok = false
				return false
			}
			n++
			return true
		})
		return ok && n == len(bl)
	}
	na, nb, ok := 0, 0, true
	b.ForEach(func(_, _ gjson.Result) bool { nb++; return true })
	a.ForEach(func(k, v gjson.Result) bool {
		na++
		var other gjson.Result
		b.ForEach(func(bk, bv gjson.Result) bool {
			if bk.Str == k.Str {
				other = bv
				return false
			}
			return true
		})
		if !agrees(v, other, tol, depth+1) {
			ok = false
			return false
		}
		return true
	})
	return ok && na == nb
}
