package tasks

import (
	"fmt"
	"reflect"
	"sort"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/VictoriaMetrics/metrics"
	"github.com/lariat-gw/lariat/config"
)

// Task is a compiled task. Run is called once per request, possibly from
// many goroutines at once: per-request state lives in the Exchange and the
// Result. Run writes the task's result into r (reusing r.Body's capacity)
// and returns an error when the task failed. It must return by x.Deadline.
type Task interface {
	Run(x *Exchange, r *Result) error
}

// Gate is a task that chooses which tasks run after it (switch, split):
// each branch names tasks that run only when Run picks that branch by
// setting Result.Branch (and Result.BranchName for reporting). Tasks of
// branches not taken are skipped: they neither run nor write outputs.
type Gate interface {
	Task
	// Branches lists, per branch, the names of the tasks it runs.
	Branches() []Branch
}

// Branch is one way out of a Gate.
type Branch struct {
	Name  string
	Tasks []config.String
}

// Kind is a task kind: a name as written in a route's `type`, the type its
// inputs decode into, and the constructor that compiles a task of that
// kind.
type Kind struct {
	// Name is the `type` value that selects the kind.
	Name string
	// Inputs is the struct type the task's `inputs` decode into (with
	// Spec.Decode). It is the one description of the kind's settings: the
	// route-file JSON Schema is generated from it, its doc comments and its
	// `jsonschema` field tags (see internal/schemagen).
	Inputs reflect.Type
	// New compiles a task from its spec. It reports problems with
	// Spec.Errorf so they carry the file position.
	New func(s *Spec) (Task, error)
	// UsesContext is set for kinds whose tasks read Exchange.Ctx.
	UsesContext bool
}

// Compile compiles a task of kind k from s: it is how the router calls
// k.New.
func (k Kind) Compile(s *Spec) (Task, error) {
	s.inputs = k.Inputs
	return k.New(s)
}

// Describer is implemented by tasks that say what they call or read, for
// the graph view of a route (lariat graph, the admin page).
type Describer interface {
	Describe() Detail
}

// Detail is what a task shows of itself in the graph view.
type Detail struct {
	// Target names what the task calls or reads: an upstream host, a
	// registry model ("model fraud@production"), the feature views read, a
	// gate's cases or arms. Empty for nothing to show.
	Target string
	// Model is the registry model reference the task calls, "" for none;
	// the admin page shows the version it resolves to now.
	Model string
}

var (
	kindsMu sync.RWMutex
	kinds   = map[string]Kind{}
)

// Register adds a kind. It is meant for init functions; registering a name
// twice, or a kind without a New function or a struct Inputs type, is a
// bug and panics.
func Register(k Kind) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, ok := kinds[k.Name]; ok {
		panic("BUG: task kind " + k.Name + " registered twice")
	}
	if k.New == nil || k.Inputs == nil || k.Inputs.Kind() != reflect.Struct {
		panic("BUG: task kind " + k.Name + " needs New and a struct Inputs type")
	}
	kinds[k.Name] = k
}

// Lookup returns the kind registered under name.
func Lookup(name string) (Kind, bool) {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	k, ok := kinds[name]
	return k, ok
}

// KindNames lists the registered kinds, sorted.
func KindNames() []string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Spec is what a kind's constructor gets: the task as written, the route it
// belongs to, the shared runtime services and the scope its templates
// resolve names in.
type Spec struct {
	Route *config.Route
	Task  *config.Task
	Env   *Env
	Scope Scope
	// Index is the task's index in the route's plan.
	Index int
	// Labels are the metric labels that identify the task, as
	// `route="...",task="..."`, preceded by `tenant="...",` for a
	// tenant's route.
	Labels string
	// Tenant is the tenant whose folder holds the route, nil for none: a
	// kind checks what the task calls and reads against it (CheckUpstream,
	// CheckFeatureView).
	Tenant *config.Tenant
	// Metrics is the set of the route's series: a kind creates its
	// series there (on first use, see internal/lazymetric), so they go
	// when the route's plan is retired. nil means the default set.
	Metrics *metrics.Set

	// inputs is the Inputs type of the kind compiling the task.
	inputs reflect.Type
}

// Cleaner is a task that holds resources beyond a request (goroutines,
// shared batchers, caches). Cleanup releases them; it is called once,
// when the route's plan is retired and no request runs the task any
// more, or when the route failed to compile after the task was made.
type Cleaner interface {
	Cleanup()
}

// Decode decodes the task's inputs strictly into v, a pointer to the
// kind's Inputs type.
func (s *Spec) Decode(v any) error {
	if t := reflect.TypeOf(v); s.inputs != nil && (t.Kind() != reflect.Pointer || t.Elem() != s.inputs) {
		panic(fmt.Sprintf("BUG: task kind %s declares inputs %s but decodes into %s", s.Task.Type.Value, s.inputs, t))
	}
	n := &s.Task.Inputs
	if n.Kind == 0 {
		n = &yaml.Node{Kind: yaml.MappingNode, Line: s.Task.NamePos.Line, Column: s.Task.NamePos.Col}
	}
	return config.Prefix(config.Decode(s.Route.File, n, v), fmt.Sprintf("task %q: inputs: ", s.Task.Name))
}

func (s *Spec) tenantName() string {
	if s.Tenant == nil {
		return ""
	}
	return s.Tenant.Name
}

// CheckUpstream returns an error at pos when the route's tenant may not
// call host (a URL's host, with or without port).
func (s *Spec) CheckUpstream(pos config.Pos, field, host string) error {
	if s.Tenant.AllowsUpstream(host) {
		return nil
	}
	return s.Errorf(pos, "%s: host %q is not among the upstreams of tenant %q (%s: %s)", field, host, s.Tenant.Name, s.Tenant.File, s.Tenant.UpstreamList())
}

// CheckFeatureView returns an error at pos when the route's tenant may
// not read feature view view.
func (s *Spec) CheckFeatureView(pos config.Pos, field, view string) error {
	if s.Tenant.AllowsFeatureView(view) {
		return nil
	}
	return s.Errorf(pos, "%s: feature view %q is not among the feature_views of tenant %q (%s: %s)", field, view, s.Tenant.Name, s.Tenant.File, s.Tenant.FeatureViewList())
}

// Errorf returns an error at pos that names the task.
func (s *Spec) Errorf(pos config.Pos, format string, args ...any) error {
	if pos.File == "" {
		pos = s.Task.NamePos
	}
	return config.Errorf(pos, "task %q: %s", s.Task.Name, fmt.Sprintf(format, args...))
}

// CheckTimeout checks a timeout setting of the task, the same way for
// every kind: it must be positive and at most the route timeout.
func (s *Spec) CheckTimeout(field string, d config.Duration) error {
	switch {
	case d.D <= 0:
		return s.Errorf(d.Pos, "%s must be positive, got %s", field, d.D)
	case d.D > s.Route.Timeout.D:
		return s.Errorf(d.Pos, "%s %s is longer than the route timeout %s", field, d.D, s.Route.Timeout.D)
	}
	return nil
}

// Template compiles the input field (named for messages) written at str.
func (s *Spec) Template(field string, str config.String, mode Mode) (*Template, error) {
	t, err := CompileTemplate(str.Value, mode, s.Scope)
	if err != nil {
		return nil, s.Errorf(str.Pos, "inputs.%s: %v", field, err)
	}
	return t, nil
}
