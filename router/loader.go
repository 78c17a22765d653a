package router

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/tasks"
)

// Loader builds routing tables from route files and remembers what it
// built, so a reload recompiles only the files whose bytes changed and a
// file that turns bad keeps serving its last good version.
// It is not safe for concurrent use; callers serialize reloads.
type Loader struct {
	// PredictionLog, when set before the first Load, records the requests
	// of the routes loaded.
	PredictionLog *predlog.Log
	// Tenants is what compiling tenant files needs (the quota store).
	Tenants TenantOptions

	env   *tasks.Env
	files map[string]*loadedFile
	// workers run the tasks of every plan the loader builds.
	workers *workerPool
	// refs are the plans the files hold; serving those of the last table.
	refs, serving map[*Plan]bool
	// tenants holds the state of each tenant file, by folder; last are
	// the sources of the last load.
	tenants map[string]*tenantState
	last    []Source
}

// Source is a route file to load and the tenant whose folder holds it
// (nil: none).
type Source struct {
	File   string
	Tenant *Tenant
	// keep serves the file's current state without reading it again.
	keep bool
}

func (s Source) tenantName() string {
	if s.Tenant == nil {
		return ""
	}
	return s.Tenant.Config.Name
}

// tenantState is what a tenant file compiled to.
type tenantState struct {
	data []byte
	// good is the last tenant that compiled; errs the problems of the
	// file as it is now.
	good *Tenant
	errs config.Errors
}

type loadedFile struct {
	data []byte
	// tenant is the tenant plan was compiled for.
	tenant *Tenant
	// plan is what data compiled to, or nil when it has problems.
	plan *Plan
	errs config.Errors
	// good is the plan the file serves in the current table, if any.
	good *Plan
}

// NewLoader returns a Loader whose routes use env.
func NewLoader(env *tasks.Env) *Loader {
	return &Loader{env: env, files: map[string]*loadedFile{}, workers: newWorkerPool(), tenants: map[string]*tenantState{}}
}

// LoadResult says what a Load did.
type LoadResult struct {
	// Changed lists the files read anew (added, changed or removed).
	Changed []string
	// Errors holds every problem; a file with problems serves its last
	// good version, if it had one.
	Errors config.Errors
	// Kept lists the files serving a last good version despite errors.
	Kept []string
	// Warnings holds the problems that do not stop a route from serving.
	Warnings config.Errors
}

// Load reads files, none of a tenant, and returns the routing table to
// serve; see LoadSources.
func (l *Loader) Load(files []string) (*Table, LoadResult) {
	srcs := make([]Source, len(files))
	for i, f := range files {
		srcs[i] = Source{File: f}
	}
	return l.LoadSources(srcs)
}

// LoadLayout loads a routes folder: its top-level route files and its
// tenant folders. A tenant file is compiled when its bytes change; one
// with problems keeps its last good version (its routes keep serving
// under it), and a tenant that never compiled serves no routes. A changed
// tenant file recompiles the tenant's route files.
func (l *Loader) LoadLayout(lay config.Layout) (*Table, LoadResult) {
	var res LoadResult
	srcs := make([]Source, 0, len(lay.Files))
	for _, f := range lay.Files {
		srcs = append(srcs, Source{File: f})
	}
	seen := map[string]bool{}
	for _, td := range lay.Tenants {
		seen[td.Dir] = true
		srcs = append(srcs, l.tenantSources(td, &res)...)
	}
	for dir := range l.tenants {
		if !seen[dir] {
			delete(l.tenants, dir)
			res.Changed = append(res.Changed, filepath.Join(dir, config.TenantFile))
		}
	}
	return l.loadWith(srcs, res)
}

// ReloadTenant reloads the folder of tenant name only: its tenant file
// and route files are read again; every other file keeps its state
// unread.
func (l *Loader) ReloadTenant(lay config.Layout, name string) (*Table, LoadResult) {
	var res LoadResult
	var srcs []Source
	for _, s := range l.last {
		if s.tenantName() != name {
			s.keep = true
			srcs = append(srcs, s)
		}
	}
	for _, td := range lay.Tenants {
		if td.Name == name {
			srcs = append(srcs, l.tenantSources(td, &res)...)
		}
	}
	sort.SliceStable(srcs, func(i, j int) bool { return srcs[i].tenantName() < srcs[j].tenantName() })
	return l.loadWith(srcs, res)
}

// tenantSources compiles the tenant file of td when it changed and
// returns the tenant's route files with the tenant to serve them under.
func (l *Loader) tenantSources(td config.TenantDir, res *LoadResult) []Source {
	file := filepath.Join(td.Dir, config.TenantFile)
	ts := l.tenants[td.Dir]
	if ts == nil {
		ts = &tenantState{}
		l.tenants[td.Dir] = ts
	}
	data, err := os.ReadFile(file)
	switch {
	case err != nil:
		ts.data = nil
		ts.errs = config.Errors{config.Errorf(config.Pos{File: file}, "cannot read tenant file: %v", err)}
		res.Changed = append(res.Changed, file)
	case ts.data != nil && bytes.Equal(data, ts.data):
	default:
		ts.data, ts.errs = data, nil
		res.Changed = append(res.Changed, file)
		c, perr := config.ParseTenant(file, td.Name, data)
		if perr == nil {
			var t *Tenant
			if t, perr = NewTenant(c, l.Tenants); perr == nil {
				ts.good = t
			}
		}
		ts.errs.Add(config.Pos{File: file}, perr)
	}
	res.Errors = append(res.Errors, ts.errs...)
	if ts.good == nil {
		if len(td.Files) > 0 {
			res.Errors = append(res.Errors, config.Errorf(config.Pos{File: file, Line: 1, Col: 1}, "tenant %q serves none of its %d route file(s) until its tenant file loads", td.Name, len(td.Files)))
		}
		return nil
	}
	if len(ts.errs) > 0 {
		res.Kept = append(res.Kept, file)
	}
	srcs := make([]Source, len(td.Files))
	for i, f := range td.Files {
		srcs[i] = Source{File: f, Tenant: ts.good}
	}
	return srcs
}

// LoadSources reads the route files of srcs and returns the routing table
// to serve.
//
// Routes must have distinct names and endpoints. A file that keeps serving
// what it served before keeps its name and endpoint: a changed or added
// file whose route would take them is rejected (the error names it) and
// serves its last good version, if it has one. Among changed files, the
// first in the order given wins.
func (l *Loader) LoadSources(srcs []Source) (*Table, LoadResult) {
	return l.loadWith(srcs, LoadResult{})
}

func (l *Loader) loadWith(srcs []Source, res LoadResult) (*Table, LoadResult) {
	l.last = srcs
	files := make([]string, len(srcs))
	seen := make(map[string]bool, len(srcs))
	lfs := make([]*loadedFile, len(srcs))
	for i, src := range srcs {
		files[i] = src.File
		seen[src.File] = true
		lf := l.load(src, &res)
		lfs[i] = lf
		res.Errors = append(res.Errors, lf.errs...)
		if lf.plan != nil {
			res.Warnings = append(res.Warnings, lf.plan.Warnings()...)
		}
	}
	for f := range l.files {
		if !seen[f] {
			delete(l.files, f)
			res.Changed = append(res.Changed, f)
		}
	}

	// Every file serving a route holds its name and endpoint; a changed
	// file may reuse its own.
	c := claims{byEndpoint: map[string]*Plan{}, byName: map[string]*Plan{}}
	for _, lf := range lfs {
		if lf.good != nil {
			c.take(lf.good)
		}
	}
	chosen := make([]*Plan, len(files))
	for i, lf := range lfs {
		switch {
		case lf.plan == nil, lf.plan == lf.good:
			chosen[i] = lf.good
		default:
			if err := c.check(lf.plan, lf.good); err != nil {
				res.Errors = append(res.Errors, err)
				chosen[i] = lf.good
				break
			}
			if lf.good != nil {
				c.release(lf.good)
			}
			c.take(lf.plan)
			chosen[i] = lf.plan
		}
		if chosen[i] != nil && chosen[i] != lf.plan {
			res.Kept = append(res.Kept, files[i])
		}
	}
	var out []*Plan
	for i, lf := range lfs {
		lf.good = chosen[i]
		if lf.good != nil {
			out = append(out, lf.good)
		}
	}
	l.track(out)
	t := NewTable(out, res.Errors)
	t.Warnings = res.Warnings
	for _, ts := range l.tenants {
		if ts.good != nil {
			t.Tenants = append(t.Tenants, ts.good)
		}
	}
	sort.Slice(t.Tenants, func(i, j int) bool { return t.Tenants[i].Name() < t.Tenants[j].Name() })
	return t, res
}

// track starts and ends the lifecycles of plans: a plan entering the
// table is activated (its series exposed); a plan no file holds any more
// is retired (its series dropped and, once drained, its tasks released).
func (l *Loader) track(table []*Plan) {
	refs := make(map[*Plan]bool, len(l.files))
	for _, lf := range l.files {
		if lf.plan != nil {
			refs[lf.plan] = true
		}
		if lf.good != nil {
			refs[lf.good] = true
		}
	}
	for p := range l.refs {
		if !refs[p] {
			p.Retire()
		}
	}
	serving := make(map[*Plan]bool, len(table))
	for _, p := range table {
		serving[p] = true
		if !l.serving[p] {
			p.Activate()
		}
	}
	for p := range l.serving {
		if !serving[p] && refs[p] {
			p.Deactivate()
		}
	}
	l.refs, l.serving = refs, serving
}

// Close retires every plan and stops the loader's task workers. Call it
// once the gateway serves no more requests.
func (l *Loader) Close() {
	for p := range l.refs {
		p.Retire()
	}
	l.refs, l.serving = nil, nil
	clear(l.files)
	clear(l.tenants)
	l.workers.close()
}

// load returns the state of the file of src, reading and compiling it
// when its bytes or its tenant changed.
func (l *Loader) load(src Source, res *LoadResult) *loadedFile {
	f := src.File
	lf := l.files[f]
	if lf != nil && src.keep {
		return lf
	}
	data, err := os.ReadFile(f)
	if lf == nil {
		lf = &loadedFile{}
		l.files[f] = lf
	}
	if err == nil && lf.data != nil && bytes.Equal(data, lf.data) && lf.tenant == src.Tenant {
		return lf
	}
	res.Changed = append(res.Changed, f)
	lf.data, lf.plan, lf.errs, lf.tenant = data, nil, nil, src.Tenant
	if err != nil {
		lf.data = nil
		lf.errs = config.Errors{config.Errorf(config.Pos{File: f}, "cannot read route file: %v", err)}
	} else if r, perr := config.Parse(f, data); perr != nil {
		lf.errs.Add(config.Pos{File: f}, perr)
	} else if p, cerr := CompileFor(r, l.env, src.Tenant); cerr != nil {
		lf.errs.Add(config.Pos{File: f}, cerr)
	} else {
		p.workers = l.workers
		p.plog = l.PredictionLog
		lf.plan = p
	}
	return lf
}

// claims records which plan holds each route name and endpoint.
type claims struct {
	byEndpoint map[string]*Plan
	byName     map[string]*Plan
}

func (c *claims) take(p *Plan) {
	c.byEndpoint[p.Endpoint()] = p
	c.byName[p.Name()] = p
}

func (c *claims) release(p *Plan) {
	if c.byEndpoint[p.Endpoint()] == p {
		delete(c.byEndpoint, p.Endpoint())
	}
	if c.byName[p.Name()] == p {
		delete(c.byName, p.Name())
	}
}

// check reports whether p may take its name and endpoint: free, or held
// by own (the file's previous plan).
func (c *claims) check(p, own *Plan) *config.Error {
	r := p.Route
	if o := c.byEndpoint[p.Endpoint()]; o != nil && o != own {
		return config.Errorf(r.Endpoint.Pos, "endpoint %q is already served by route %q (%s)", r.Endpoint.Value, o.Name(), o.Route.Endpoint.Pos)
	}
	if o := c.byName[p.Name()]; o != nil && o != own {
		return config.Errorf(r.Name.Pos, "route name %q is already used (%s)", r.Name.Value, o.Route.Name.Pos)
	}
	return nil
}
