package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/internal/yamlstrict"
)

// DefaultTimeout is the route deadline when a route file sets none.
const DefaultTimeout = time.Second

// MaxRouteFileSize bounds the size of one route file.
const MaxRouteFileSize = 1 << 20

// Route is a Lariat route file: an endpoint and the task graph (feature
// lookups, model calls) that answers it. `lariat validate FILE` checks what
// a schema cannot (templates, references, cycles, feature views).
//
// Kind-specific task settings stay raw (Task.Inputs) until the task's kind
// decodes them. The field comments double as the descriptions of the
// route-file JSON Schema, and the `jsonschema` tags give its constraints
// (see internal/schemagen): run `go generate ./config` after changing them.
type Route struct {
	// APIVersion is the version of the route file format. Only v1 exists;
	// when left out, v1 is assumed.
	APIVersion String `yaml:"apiVersion" jsonschema:"enum=v1"`
	// Name is the unique name of the route, used in metrics and logs:
	// letters, digits, '_', '-' and '.', starting with a letter or digit.
	Name String `yaml:"name" jsonschema:"required,pattern=^[A-Za-z0-9][A-Za-z0-9_.-]*$"`
	// Description is free text for people; the gateway ignores it.
	Description string `yaml:"description"`
	// Endpoint is the path the route serves, e.g. /v1/allocate. A plain URL
	// path: starts with /, no spaces, query or fragment; paths under /-/
	// belong to the gateway.
	Endpoint String `yaml:"endpoint" jsonschema:"required,pattern=^/(-|-[^/ ?#\\t\\r\\n][^ ?#\\t\\r\\n]*|[^- ?#\\t\\r\\n][^ ?#\\t\\r\\n]*)?$"`
	// Methods are the HTTP methods the route accepts, in capitals (POST
	// when left out). Other methods get 405.
	Methods []String `yaml:"methods" jsonschema:"items.enum=GET,items.enum=POST,items.enum=PUT,items.enum=PATCH,items.enum=DELETE,default=[\"POST\"]"`
	// Timeout is the route deadline: every task of a request must finish
	// within it. Milliseconds as a number (140) or a duration string
	// ("150ms", "2s"); 1s when left out. Must be positive.
	Timeout Duration `yaml:"timeout" jsonschema:"exclusiveMinimum=0,default=1s"`
	// Limits is the concurrency limit of the route (load shedding): beyond
	// max_concurrency requests in flight, up to queue requests wait at most
	// queue_timeout for a slot; the rest are answered 503 with Retry-After
	// at once.
	Limits Limits `yaml:"limits"`
	// Auth, when set, requires callers to authenticate: with an API key
	// (X-API-Key or Authorization: Bearer) or a JWT; either passes when
	// both are set. Failures answer 401.
	Auth *Auth `yaml:"auth"`
	// PropagateHeaders lists request headers copied to every upstream call
	// of the route; no other request header is forwarded.
	PropagateHeaders []String `yaml:"propagate_headers" jsonschema:"items.pattern=^[!#$%&'*+.^_\x60|~0-9A-Za-z-]+$"`
	// Metrics are the series the route exposes.
	Metrics *RouteMetrics `yaml:"metrics"`
	// Log is what the prediction log records of this route's requests, when
	// the gateway runs with --prediction-log. Without a log block every
	// request is recorded with its features and without its body.
	Log *Log `yaml:"log"`
	// TasksNode is the task graph: task name to task. Tasks run in
	// parallel unless one depends on another (through `after` or a
	// template such as {{ .tasks.<name>.body }}). Task names use letters,
	// digits and '_', starting with a letter or '_'.
	//
	// It keeps the ordered task mapping; Tasks holds it decoded.
	TasksNode yaml.Node `yaml:"tasks" jsonschema:"required,minProperties=1,keys.pattern=^[A-Za-z_][A-Za-z0-9_]*$,valuesFrom=Tasks"`

	Tasks []*Task `yaml:"-"`
	// File is the path the route was read from.
	File string `yaml:"-"`
	// Hash identifies the file's content (hex, 12 characters).
	Hash string `yaml:"-"`
	// Source is the file's content.
	Source []byte `yaml:"-"`
}

// Limits bound how many requests a route serves at once. Beyond
// MaxConcurrency requests in flight, up to Queue requests wait at most
// QueueTimeout for a slot; the rest are answered 503 at once, so the
// requests admitted keep their latency.
type Limits struct {
	// MaxConcurrency is the most requests in flight on this route; 0 means
	// no limit.
	MaxConcurrency int `yaml:"max_concurrency" jsonschema:"minimum=0"`
	// Queue is how many requests may wait for a slot when MaxConcurrency
	// are in flight.
	Queue int `yaml:"queue" jsonschema:"minimum=0"`
	// QueueTimeout is how long a request may wait for a slot (default
	// 10ms); not longer than the route timeout.
	QueueTimeout Duration `yaml:"queue_timeout"`
}

// RouteMetrics chooses which series a route exposes. Every series is made
// on first use, so an idle route exposes none.
type RouteMetrics struct {
	// TaskHistograms turns the per-task latency histograms
	// (lariat_task_duration_seconds, 12 buckets each) on or off; by
	// default as lariat serve --task-histograms says (on).
	TaskHistograms *bool `yaml:"task_histograms"`
}

// Auth says how callers of a route authenticate: with one of the API keys
// (sent as X-API-Key or Authorization: Bearer), or with a JWT, or either.
type Auth struct {
	// APIKeys are the accepted API keys, stored hashed as sha256:<64 hex
	// digits>.
	APIKeys []String `yaml:"api_keys" jsonschema:"items.pattern=^sha256:[0-9a-f]{64}$"`
	// JWT verifies bearer tokens (HS256 or RS256); tokens must carry exp.
	JWT *JWTAuth `yaml:"jwt"`
}

// JWTAuth verifies JSON Web Tokens signed with HS256 or RS256. Tokens must
// carry an exp claim; aud and iss are checked when set here.
type JWTAuth struct {
	// HS256SecretEnv names the environment variable holding the HS256
	// secret.
	HS256SecretEnv String `yaml:"hs256_secret_env"`
	// RS256PublicKeyFile is a PEM file with the RS256 public key.
	RS256PublicKeyFile String `yaml:"rs256_public_key_file"`
	// Audience is the required aud claim.
	Audience String `yaml:"audience"`
	// Issuer is the required iss claim.
	Issuer String `yaml:"issuer"`
}

// Log tunes the prediction log of a route. Without a log block every
// request is recorded with its features and no request body.
type Log struct {
	// Sample is the share of requests recorded, from 0 (none) to 1 (all,
	// the default).
	Sample *float64 `yaml:"sample" jsonschema:"minimum=0,maximum=1"`
	// Sticky is a template (plain text), e.g. '{{ .request.user.id }}':
	// requests with the same value are all recorded or all left out, so a
	// user's whole session is kept together. Random when left out or when
	// it renders empty.
	Sticky String `yaml:"sticky"`
	// Request is whether the request body is recorded (off by default: it
	// may hold personal data).
	Request bool `yaml:"request"`
	// Features is whether the feature values served are recorded, per
	// entity, with their status and event time (on by default).
	Features *bool `yaml:"features"`
	// Outputs are the paths of the answer whose values are recorded:
	// response.body.<field>..., response.headers.<Name> or
	// response.status.
	Outputs []String `yaml:"outputs" jsonschema:"items.pattern=^response\\.(body\\.[^.]+(\\.[^.]+)*|headers\\.[!#$%&'*+.^_\x60|~0-9A-Za-z-]+|status)$"`
	// Pos is where the log block was written.
	Pos Pos `yaml:",pos"`
}

// SampleRate returns the share of requests recorded.
func (l *Log) SampleRate() float64 {
	if l == nil || l.Sample == nil {
		return 1
	}
	return *l.Sample
}

// LogsFeatures reports whether feature values are recorded.
func (l *Log) LogsFeatures() bool { return l == nil || l.Features == nil || *l.Features }

// Task is one node of the task graph.
type Task struct {
	Name    string `yaml:"-"`
	NamePos Pos    `yaml:"-"`

	// Type is the task kind: it says what the task does and which inputs
	// it takes.
	Type String `yaml:"type" jsonschema:"required,kindName"`
	// Description is free text for people; the gateway ignores it.
	Description string `yaml:"description"`
	// Inputs are the settings of the task's kind (see Type).
	//
	// They are decoded by the kind.
	Inputs yaml.Node `yaml:"inputs" jsonschema:"kindInputs"`
	// Output says where the task's result goes in the response. A task
	// without output only feeds other tasks.
	Output *Output `yaml:"output"`
	// After lists tasks of this route that must finish before this one
	// starts, beyond those its templates reference.
	After []String `yaml:"after" jsonschema:"items.pattern=^[A-Za-z_][A-Za-z0-9_]*$"`
	// OnError says what a failure of this task does: `fail` fails the
	// request (the default); `{default: <value>}` uses the value as the
	// task's result instead.
	OnError OnError `yaml:"on_error" jsonschema:"default=fail"`
}

// Output places a task's result in the response document.
type Output struct {
	// Path is where the result goes: response.body,
	// response.body.<field>[.<field>...], response.headers.<Name> or
	// response.status.
	Path String `yaml:"path" jsonschema:"required,pattern=^response\\.(body(\\.[^.]+)*|status|headers\\.[-!#$%&'*+.^_\x60|~0-9A-Za-z]+)$"`
	// From is an optional gjson path into the task's result body; only
	// that part is written.
	From String `yaml:"from"`
	// Write is the write mode: overwrite (the default) replaces what is
	// there; ignoreIfExists writes only when nothing is there yet (the
	// first task to finish wins); append adds the value to an array; merge
	// merges an object's keys into the object there.
	Write WriteMode `yaml:"write" jsonschema:"default=overwrite"`
}

var (
	nameRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	taskNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	headerRe   = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	methods    = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
)

// Parse decodes and checks the route file named file with content data.
// Every problem found is returned as Errors with file:line:col positions.
func Parse(file string, data []byte) (*Route, error) {
	root, err := yamlstrict.Parse(file, data, "a route file")
	if err != nil {
		return nil, err
	}
	r := &Route{File: file, Source: data}
	sum := sha256.Sum256(data)
	r.Hash = hex.EncodeToString(sum[:6])
	var errs Errors
	errs.Add(PosOf(file, root), Decode(file, root, r))
	r.check(root, &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

func (r *Route) check(root *yaml.Node, errs *Errors) {
	file := r.File
	rootPos := PosOf(file, root)
	if r.APIVersion.Value != "" && r.APIVersion.Value != "v1" {
		errs.Add(r.APIVersion.Pos, Errorf(r.APIVersion.Pos, "unsupported apiVersion %q (supported: v1)", r.APIVersion.Value))
	}
	switch {
	case r.Name.Value == "":
		*errs = append(*errs, Errorf(rootPos, "missing required key \"name\""))
	case !nameRe.MatchString(r.Name.Value):
		*errs = append(*errs, Errorf(r.Name.Pos, "invalid route name %q: use letters, digits, '_', '-' and '.'", r.Name.Value))
	}
	switch ep := r.Endpoint.Value; {
	case ep == "":
		*errs = append(*errs, Errorf(rootPos, "missing required key \"endpoint\""))
	case !strings.HasPrefix(ep, "/"):
		*errs = append(*errs, Errorf(r.Endpoint.Pos, "endpoint %q must start with /", ep))
	case strings.ContainsAny(ep, " ?#\t\r\n"):
		*errs = append(*errs, Errorf(r.Endpoint.Pos, "endpoint %q must be a plain path (no spaces, query or fragment)", ep))
	case strings.HasPrefix(ep, "/-/"):
		*errs = append(*errs, Errorf(r.Endpoint.Pos, "endpoint %q is reserved: paths under /-/ belong to the gateway", ep))
	default:
		if u, err := url.Parse(ep); err != nil || u.Path != ep {
			*errs = append(*errs, Errorf(r.Endpoint.Pos, "endpoint %q is not a clean URL path", ep))
		}
	}
	if len(r.Methods) == 0 {
		r.Methods = []String{{Value: "POST", Pos: rootPos}}
	}
	for _, m := range r.Methods {
		if !contains(methods, m.Value) {
			*errs = append(*errs, Errorf(m.Pos, "unsupported method %q%s", m.Value, Suggest(m.Value, methods)))
		}
	}
	if r.Timeout.Pos.Line == 0 {
		r.Timeout.D = DefaultTimeout
	} else if r.Timeout.Set && r.Timeout.D <= 0 {
		*errs = append(*errs, Errorf(r.Timeout.Pos, "route timeout must be positive"))
	}
	r.checkLimits(errs)
	for _, h := range r.PropagateHeaders {
		if !headerRe.MatchString(h.Value) {
			*errs = append(*errs, Errorf(h.Pos, "propagate_headers: %q is not a valid header name", h.Value))
		}
	}
	if a := r.Auth; a != nil {
		for _, k := range a.APIKeys {
			if !apiKeyRe.MatchString(k.Value) {
				*errs = append(*errs, Errorf(k.Pos, "auth.api_keys: %q is not a hashed key; write sha256:<64 hex digits> (e.g. printf %%s KEY | sha256sum)", k.Value))
			}
		}
		if j := a.JWT; j != nil {
			if (j.HS256SecretEnv.Value == "") == (j.RS256PublicKeyFile.Value == "") {
				*errs = append(*errs, Errorf(rootPos, "auth.jwt: give exactly one of hs256_secret_env and rs256_public_key_file"))
			}
		}
		if len(a.APIKeys) == 0 && a.JWT == nil {
			*errs = append(*errs, Errorf(rootPos, "auth: give api_keys, jwt or both"))
		}
	}
	r.checkLog(errs)
	r.decodeTasks(root, errs)
}

func (r *Route) checkLog(errs *Errors) {
	l := r.Log
	if l == nil {
		return
	}
	if s := l.SampleRate(); !(s >= 0 && s <= 1) {
		*errs = append(*errs, Errorf(l.Pos, "log.sample must be between 0 and 1, got %v", s))
	}
	for _, o := range l.Outputs {
		if o.Value == "response.body" {
			*errs = append(*errs, Errorf(o.Pos, "log.outputs: name fields of the body (response.body.<field>), not the whole body"))
		} else if err := CheckOutputPath(o); err != nil {
			*errs = append(*errs, Errorf(o.Pos, "log.outputs: %v", err))
		}
	}
}

var apiKeyRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// DefaultQueueTimeout is how long a request waits for a slot when a route
// has a concurrency limit and a queue but sets no queue_timeout.
const DefaultQueueTimeout = 10 * time.Millisecond

func (r *Route) checkLimits(errs *Errors) {
	l := &r.Limits
	if l.MaxConcurrency < 0 || l.Queue < 0 {
		*errs = append(*errs, Errorf(Pos{File: r.File}, "limits: max_concurrency and queue must not be negative"))
	}
	if l.Queue > 0 && l.MaxConcurrency == 0 {
		*errs = append(*errs, Errorf(l.QueueTimeout.Pos, "limits: a queue needs max_concurrency"))
	}
	if !l.QueueTimeout.Set {
		l.QueueTimeout.D = DefaultQueueTimeout
	} else if l.QueueTimeout.D > r.Timeout.D {
		*errs = append(*errs, Errorf(l.QueueTimeout.Pos, "limits.queue_timeout %s is longer than the route timeout %s", l.QueueTimeout.D, r.Timeout.D))
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (r *Route) decodeTasks(root *yaml.Node, errs *Errors) {
	file := r.File
	n := yamlstrict.Resolve(&r.TasksNode)
	if n == nil || n.Kind == 0 {
		*errs = append(*errs, Errorf(PosOf(file, root), "missing required key \"tasks\""))
		return
	}
	if n.Kind != yaml.MappingNode {
		*errs = append(*errs, Errorf(PosOf(file, n), "tasks must be a mapping of task name to task, got %s", yamlstrict.Describe(n)))
		return
	}
	if len(n.Content) == 0 {
		*errs = append(*errs, Errorf(PosOf(file, n), "a route needs at least one task"))
		return
	}
	pairs, perr := yamlstrict.MappingPairs(file, n)
	seen := map[string]bool{}
	for _, p := range pairs {
		k, v := p[0], p[1]
		name := k.Value
		pos := PosOf(file, k)
		if k.Kind != yaml.ScalarNode || !taskNameRe.MatchString(name) {
			*errs = append(*errs, Errorf(pos, "invalid task name %q: use letters, digits and '_', starting with a letter", name))
			continue
		}
		if seen[name] {
			*errs = append(*errs, Errorf(pos, "duplicate task %q", name))
			continue
		}
		seen[name] = true
		t := &Task{Name: name, NamePos: pos}
		if err := Decode(file, v, t); err != nil {
			errs.Add(pos, Prefix(err, fmt.Sprintf("task %q: ", name)))
			continue
		}
		if t.Type.Value == "" {
			*errs = append(*errs, Errorf(PosOf(file, yamlstrict.Resolve(v)), "task %q: missing required key \"type\"", name))
		}
		if t.Output != nil {
			if err := CheckOutputPath(t.Output.Path); err != nil {
				*errs = append(*errs, Errorf(t.Output.Path.Pos, "task %q: %v", name, err))
			}
		}
		for _, a := range t.After {
			if a.Value == name {
				*errs = append(*errs, Errorf(a.Pos, "task %q: cannot run after itself", name))
			}
		}
		r.Tasks = append(r.Tasks, t)
	}
	errs.Add(PosOf(file, n), perr)
}

// CheckOutputPath checks the syntax of an output path.
func CheckOutputPath(p String) error {
	path := p.Value
	switch {
	case path == "":
		return fmt.Errorf("output needs a path (response.body, response.body.<field>, response.headers.<Name> or response.status)")
	case path == "response.body" || path == "response.status":
		return nil
	case strings.HasPrefix(path, "response.body."):
		for _, seg := range strings.Split(strings.TrimPrefix(path, "response.body."), ".") {
			if seg == "" {
				return fmt.Errorf("output path %q has an empty field name", path)
			}
		}
		return nil
	case strings.HasPrefix(path, "response.headers."):
		h := strings.TrimPrefix(path, "response.headers.")
		if !headerRe.MatchString(h) {
			return fmt.Errorf("output path %q: %q is not a valid header name", path, h)
		}
		return nil
	}
	return fmt.Errorf("output path %q must be response.body, response.body.<field>, response.headers.<Name> or response.status", path)
}

// LoadFile reads and parses one route file.
func LoadFile(path string) (*Route, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, Errors{Errorf(Pos{File: path}, "%v", err)}
	}
	return Parse(path, data)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read route file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxRouteFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read route file: %w", err)
	}
	if len(data) > MaxRouteFileSize {
		return nil, fmt.Errorf("route file is larger than %d bytes", MaxRouteFileSize)
	}
	return data, nil
}

// RouteFiles lists the route files of dir: *.yaml and *.yml, sorted, not
// descending into folders, skipping hidden names (such as the ..data links
// of a Kubernetes ConfigMap volume) and tenant.yaml.
func RouteFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot list routes folder: %w", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || name == TenantFile {
			continue
		}
		ext := filepath.Ext(name)
		if ext != ".yaml" && ext != ".yml" {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue
		}
		files = append(files, p)
	}
	sort.Strings(files)
	return files, nil
}
