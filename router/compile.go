package router

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tidwall/gjson"
	"go.opentelemetry.io/otel/trace"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/lazymetric"
	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/tasks"
	"github.com/lariat-gw/lariat/upstream"
)

// Plan is a compiled route, ready to serve requests. It is immutable and
// safe for concurrent use.
type Plan struct {
	Route *config.Route

	name     string
	methods  []string
	timeout  time.Duration
	nodes    []node
	roots    []int
	headers  []string
	readJSON bool
	useCtx   bool
	// descendants[i] has bit j set when task j depends on task i directly
	// or transitively (only for routes of at most 64 tasks).
	descendants []uint64
	layout      layout

	pool   sync.Pool
	tracer trace.Tracer
	env    *tasks.Env
	limit  *limiter
	auth   *authenticator
	// tenant is the tenant whose folder holds the route (nil: none);
	// tenantAuth is set when the route uses the tenant's auth.
	tenant     *Tenant
	tenantAuth bool
	// hosts are the Host names the route answers for (nil: any).
	hosts [][]byte
	// labels identify the route's series: [tenant="...",]route="...".
	labels string
	// plog is the prediction log (nil: off); logPlan the route's log block.
	plog    *predlog.Log
	logPlan *logPlan

	// warnings are problems that do not stop the route from serving.
	warnings config.Errors

	// set holds the route's series, made on first use: exposed while the
	// plan serves, dropped when it is retired.
	set       *metrics.Set
	durations *lazymetric.Histogram
	stats     latencyStats
	statuses  [600]atomic.Pointer[metrics.Counter]

	// workers run the plan's tasks off the handler goroutine; nil runs
	// each on a goroutine of its own (plans that never serve for long).
	workers *workerPool
	// inflight counts requests being served; retired is set when the plan
	// left the table; release runs once both say the plan is done.
	inflight atomic.Int64
	retired  atomic.Bool
	released sync.Once
}

type node struct {
	name       string
	kind       string
	task       tasks.Task
	deps       []int
	dependents []int
	def        []byte
	hasDefault bool
	// out is the index of the node's output in the layout, or -1.
	out int
	// gate is the index of the Gate task whose branch runs this task, or
	// -1; branch is that branch's index.
	gate, branch int
	isGate       bool

	// duration is nil when the route's task histograms are off.
	duration *lazymetric.Histogram
	failures *lazymetric.Counter
	defaults *lazymetric.Counter
	stats    latencyStats
	// scope is the task's template scope while the route compiles.
	scope *scope
}

// branchName names the branch that runs task i.
func (p *Plan) branchName(i int) string {
	n := &p.nodes[i]
	if n.gate < 0 {
		return ""
	}
	return p.nodes[n.gate].task.(tasks.Gate).Branches()[n.branch].Name
}

// ReadsRequestJSON reports whether the route's templates read the request
// body as JSON (so it must be valid JSON).
func (p *Plan) ReadsRequestJSON() bool { return p.readJSON }

// Name returns the route's name.
func (p *Plan) Name() string { return p.Route.Name.Value }

// Tenant returns the tenant whose folder holds the route, nil for none.
func (p *Plan) Tenant() *Tenant { return p.tenant }

// TenantName returns the route's tenant's name, "" for none.
func (p *Plan) TenantName() string {
	if p.tenant == nil {
		return ""
	}
	return p.tenant.Config.Name
}

// MatchesHost reports whether the route answers requests for host (the
// Host header, with or without port).
func (p *Plan) MatchesHost(host []byte) bool {
	if p.hosts == nil {
		return true
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		host = host[:i]
	}
	for _, h := range p.hosts {
		if bytes.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// Endpoint returns the route's path.
func (p *Plan) Endpoint() string { return p.Route.Endpoint.Value }

// Methods returns the HTTP methods the route accepts.
func (p *Plan) Methods() []string { return p.methods }

// Timeout returns the route deadline.
func (p *Plan) Timeout() time.Duration { return p.timeout }

// TaskInfo describes one task of a compiled route.
type TaskInfo struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	After []string `json:"after,omitempty"`
}

// Tasks describes the route's tasks with their dependencies, in file order.
func (p *Plan) Tasks() []TaskInfo {
	out := make([]TaskInfo, len(p.nodes))
	for i := range p.nodes {
		n := &p.nodes[i]
		out[i] = TaskInfo{Name: n.name, Type: n.kind}
		for _, d := range n.deps {
			out[i].After = append(out[i].After, p.nodes[d].name)
		}
	}
	return out
}

// Env returns the environment the plan was compiled in.
func (p *Plan) Env() *tasks.Env { return p.env }

// Node is a task of a compiled route as views of the route (the graph, the
// admin page) show it.
type Node struct {
	TaskInfo
	// Gate is the switch or split whose branch runs the task, "" for
	// none; Branch names that branch (case or arm).
	Gate, Branch string
	// Detail is what the task says of itself (tasks.Describer); zero for
	// a task that says nothing.
	Detail tasks.Detail
	// Config is the task as written in the route file.
	Config *config.Task
}

// Nodes describes the route's tasks for views, in file order.
func (p *Plan) Nodes() []Node {
	infos := p.Tasks()
	out := make([]Node, len(p.nodes))
	for i := range p.nodes {
		n := &p.nodes[i]
		out[i] = Node{TaskInfo: infos[i], Config: p.Route.Tasks[i]}
		if n.gate >= 0 {
			out[i].Gate, out[i].Branch = p.nodes[n.gate].name, p.branchName(i)
		}
		if d, ok := n.task.(tasks.Describer); ok {
			out[i].Detail = d.Describe()
		}
	}
	return out
}

// Compile builds the plan of route r. Problems are returned as
// config.Errors with file positions.
func Compile(r *config.Route, env *tasks.Env) (*Plan, error) {
	return CompileFor(r, env, nil)
}

// CompileFor builds the plan of route r of tenant t (nil: none). A
// tenant's route must live under the tenant's endpoints and call only
// what the tenant allows; it uses the tenant's auth unless it has its own,
// and the tenant's quotas.
func CompileFor(r *config.Route, env *tasks.Env, t *Tenant) (*Plan, error) {
	p := &Plan{Route: r, name: r.Name.Value, timeout: r.Timeout.D, tracer: env.Tracer, env: env, set: metrics.NewSet(), tenant: t}
	var tc *config.Tenant
	if t != nil {
		tc = t.Config
		hosts, ok := tc.EndpointHosts(r.Endpoint.Value)
		if !ok {
			return nil, config.Errors{config.Errorf(r.Endpoint.Pos, "endpoint %q is outside the endpoints of tenant %q (%s: %s)", r.Endpoint.Value, tc.Name, tc.File, tc.EndpointList())}
		}
		for _, h := range hosts {
			p.hosts = append(p.hosts, []byte(h))
		}
	}
	taskHistograms := !env.NoTaskHistograms
	if m := r.Metrics; m != nil && m.TaskHistograms != nil {
		taskHistograms = *m.TaskHistograms
	}
	for _, m := range r.Methods {
		p.methods = append(p.methods, m.Value)
	}
	c := &compiler{plan: p, index: map[string]int{}}
	for i, t := range r.Tasks {
		c.index[t.Name] = i
	}
	p.nodes = make([]node, len(r.Tasks))
	var errs config.Errors
	type gateRef struct {
		i int
		g tasks.Gate
	}
	var gated []gateRef
	routeLabel := fmt.Sprintf("route=%q", p.name)
	if tc != nil {
		routeLabel = config.TenantLabel(tc.Name) + routeLabel
	}
	p.labels = routeLabel
	for i, t := range r.Tasks {
		n := &p.nodes[i]
		n.name, n.kind, n.out, n.gate = t.Name, t.Type.Value, -1, -1
		n.def, n.hasDefault = t.OnError.Default, t.OnError.HasDefault
		kind, ok := tasks.Lookup(t.Type.Value)
		if !ok {
			if t.Type.Value != "" {
				errs = append(errs, config.Errorf(t.Type.Pos, "task %q: unknown type %q%s", t.Name, t.Type.Value, config.Suggest(t.Type.Value, tasks.KindNames())))
			}
			continue
		}
		p.useCtx = p.useCtx || kind.UsesContext
		sc := &scope{c: c, self: i, deps: map[int]bool{}}
		labels := fmt.Sprintf("%s,task=%q", routeLabel, t.Name)
		task, err := kind.Compile(&tasks.Spec{Route: r, Task: t, Env: env, Scope: sc, Index: i, Labels: labels, Metrics: p.set, Tenant: tc})
		if err != nil {
			errs.Add(t.NamePos, err)
		}
		for _, a := range t.After {
			j, ok := c.index[a.Value]
			if !ok {
				errs = append(errs, config.Errorf(a.Pos, "task %q: after references unknown task %q%s", t.Name, a.Value, config.Suggest(a.Value, c.names())))
				continue
			}
			if j != i {
				sc.deps[j] = true
			}
		}
		n.task = task
		if g, ok := task.(tasks.Gate); ok {
			n.isGate = true
			gated = append(gated, gateRef{i, g})
		}
		n.scope = sc
		if taskHistograms {
			n.duration = lazymetric.NewHistogram(p.set, `lariat_task_duration_seconds{`+labels+`}`, nil)
		}
		n.failures = lazymetric.NewCounter(p.set, `lariat_task_failures_total{`+labels+`}`)
		n.defaults = lazymetric.NewCounter(p.set, `lariat_task_defaults_total{`+labels+`}`)
	}
	for _, gr := range gated {
		for b, br := range gr.g.Branches() {
			for _, name := range br.Tasks {
				j, ok := c.index[name.Value]
				switch {
				case !ok:
					errs = append(errs, config.Errorf(name.Pos, "task %q: branch %q names unknown task %q%s", p.nodes[gr.i].name, br.Name, name.Value, config.Suggest(name.Value, c.names())))
				case j == gr.i:
					errs = append(errs, config.Errorf(name.Pos, "task %q: a branch cannot run its own gate", p.nodes[gr.i].name))
				case p.nodes[j].gate >= 0:
					errs = append(errs, config.Errorf(name.Pos, "task %q: task %q is already in branch %q of %q", p.nodes[gr.i].name, name.Value, p.branchName(j), p.nodes[p.nodes[j].gate].name))
				default:
					p.nodes[j].gate, p.nodes[j].branch = gr.i, b
					if p.nodes[j].scope != nil {
						p.nodes[j].scope.deps[gr.i] = true
					}
				}
			}
		}
	}
	for i := range p.nodes {
		n := &p.nodes[i]
		if n.scope == nil {
			continue
		}
		for j := range n.scope.deps {
			n.deps = append(n.deps, j)
		}
		sortInts(n.deps)
		n.scope = nil
	}
	if len(errs) > 0 {
		p.release()
		return nil, errs
	}
	if err := p.link(); err != nil {
		p.release()
		return nil, config.Errors{err.(*config.Error)}
	}
	var err error
	if p.layout, err = newLayout(r); err != nil {
		p.release()
		return nil, err
	}
	for i, t := range r.Tasks {
		if t.Output != nil {
			p.nodes[i].out = p.layout.outputIndex(i)
		}
		p.checkDefault(t)
	}
	routeLimit := env.RouteLimit
	if routeLimit == (upstream.LimitSettings{}) {
		routeLimit = DefaultRouteLimit
	}
	p.limit = newLimiter(r.Limits, routeLimit, routeLabel, p.set)
	if p.auth, err = newAuthenticator(r.Auth, routeLabel, p.set); err != nil {
		p.release()
		return nil, config.Errors{err.(*config.Error)}
	}
	if p.auth == nil && t != nil && t.auth != nil {
		p.auth, p.tenantAuth = t.auth.forRoute(routeLabel, p.set), true
	}
	if p.logPlan, err = compileLog(r, c); err != nil {
		p.release()
		return nil, config.Errors{err.(*config.Error)}
	}
	p.durations = lazymetric.NewHistogram(p.set, `lariat_request_duration_seconds{`+routeLabel+`}`, nil)
	p.pool.New = func() any { return newExec(p) }
	return p, nil
}

// Activate exposes the plan's series in /metrics; call it when the plan
// starts serving.
func (p *Plan) Activate() { metrics.RegisterSet(p.set) }

// Deactivate hides the plan's series; the plan may serve again later.
func (p *Plan) Deactivate() { metrics.UnregisterSet(p.set, false) }

// Retire takes the plan out of service: its series leave /metrics at
// once (its replacement, if any, exposes the route's series from then
// on), and once the requests in flight on it have finished, what its
// tasks hold is released (see tasks.Cleaner). Requests that still reach a
// retired plan are served.
func (p *Plan) Retire() {
	metrics.UnregisterSet(p.set, false)
	p.retired.Store(true)
	if p.inflight.Load() == 0 {
		p.release()
	}
}

// release lets go of what the plan's tasks hold and of its series, once.
func (p *Plan) release() {
	p.released.Do(func() {
		for i := range p.nodes {
			if c, ok := p.nodes[i].task.(tasks.Cleaner); ok {
				c.Cleanup()
			}
		}
		p.set.UnregisterAllMetrics()
	})
}

// Warnings returns the route's problems that do not stop it from serving,
// with positions.
func (p *Plan) Warnings() config.Errors { return p.warnings }

// checkDefault warns when the on_error default of t lacks what its output
// reads (output.from): a failure would then write nothing.
func (p *Plan) checkDefault(t *config.Task) {
	if t.Output == nil || t.Output.From.Value == "" || !t.OnError.HasDefault {
		return
	}
	if gjson.GetBytes(t.OnError.Default, t.Output.From.Value).Exists() {
		return
	}
	p.warnings = append(p.warnings, config.Errorf(t.OnError.DefaultPos,
		"task %q: on_error.default has no %q (output.from): when the task fails, nothing is written to %s",
		t.Name, t.Output.From.Value, t.Output.Path.Value))
}

// link fills dependents, roots and descendants and rejects cycles.
func (p *Plan) link() error {
	for i := range p.nodes {
		for _, d := range p.nodes[i].deps {
			p.nodes[d].dependents = append(p.nodes[d].dependents, i)
		}
		if len(p.nodes[i].deps) == 0 {
			p.roots = append(p.roots, i)
		}
	}
	// Depth-first search for cycles, reporting the first found.
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, len(p.nodes))
	var stack []int
	var visit func(i int) []int
	visit = func(i int) []int {
		color[i] = grey
		stack = append(stack, i)
		for _, d := range p.nodes[i].deps {
			switch color[d] {
			case grey:
				for k, s := range stack {
					if s == d {
						return append(append([]int(nil), stack[k:]...), d)
					}
				}
			case white:
				if cyc := visit(d); cyc != nil {
					return cyc
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return nil
	}
	for i := range p.nodes {
		if color[i] != white {
			continue
		}
		if cyc := visit(i); cyc != nil {
			names := make([]string, len(cyc))
			for k := range cyc {
				// The stack follows dependencies; print in run order.
				names[len(cyc)-1-k] = p.nodes[cyc[k]].name
			}
			t := p.Route.Tasks[cyc[0]]
			return config.Errorf(t.NamePos, "task %q: dependency cycle %s", t.Name, strings.Join(names, " -> "))
		}
	}
	if len(p.nodes) <= 64 {
		p.descendants = make([]uint64, len(p.nodes))
		// Nodes in reverse topological order: a node's descendants are its
		// dependents and theirs.
		order := p.topoOrder()
		for k := len(order) - 1; k >= 0; k-- {
			i := order[k]
			for _, d := range p.nodes[i].dependents {
				p.descendants[i] |= 1<<uint(d) | p.descendants[d]
			}
		}
	}
	return nil
}

func (p *Plan) topoOrder() []int {
	pending := make([]int, len(p.nodes))
	var order, queue []int
	for i := range p.nodes {
		pending[i] = len(p.nodes[i].deps)
		if pending[i] == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		order = append(order, i)
		for _, d := range p.nodes[i].dependents {
			if pending[d]--; pending[d] == 0 {
				queue = append(queue, d)
			}
		}
	}
	return order
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

type compiler struct {
	plan  *Plan
	index map[string]int
}

func (c *compiler) names() []string {
	out := make([]string, 0, len(c.index))
	for n := range c.index {
		out = append(out, n)
	}
	return out
}

// scope resolves template references for one task.
type scope struct {
	c    *compiler
	self int
	deps map[int]bool
}

func (s *scope) TaskRef(name string) (int, error) {
	i, ok := s.c.index[name]
	if !ok {
		return 0, fmt.Errorf("references unknown task %q%s", name, config.Suggest(name, s.c.names()))
	}
	if i == s.self {
		return 0, fmt.Errorf("a task cannot reference its own result")
	}
	s.deps[i] = true
	return i, nil
}

func (s *scope) HeaderRef(name string) int {
	p := s.c.plan
	for i, h := range p.headers {
		if strings.EqualFold(h, name) {
			return i
		}
	}
	p.headers = append(p.headers, name)
	return len(p.headers) - 1
}

func (s *scope) RequestRef() { s.c.plan.readJSON = true }
