package router

import (
	"bytes"
	"os"

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

	env   *tasks.Env
	files map[string]*loadedFile
	// workers run the tasks of every plan the loader builds.
	workers *workerPool
	// refs are the plans the files hold; serving those of the last table.
	refs, serving map[*Plan]bool
}

type loadedFile struct {
	data []byte
	// plan is what data compiled to, or nil when it has problems.
	plan *Plan
	errs config.Errors
	// good is the plan the file serves in the current table, if any.
	good *Plan
}

// NewLoader returns a Loader whose routes use env.
func NewLoader(env *tasks.Env) *Loader {
	return &Loader{env: env, files: map[string]*loadedFile{}, workers: newWorkerPool()}
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

// Load reads files and returns the routing table to serve.
//
// Routes must have distinct names and endpoints. A file that keeps serving
// what it served before keeps its name and endpoint: a changed or added
// file whose route would take them is rejected (the error names it) and
// serves its last good version, if it has one. Among changed files, the
// first in the order given wins.
func (l *Loader) Load(files []string) (*Table, LoadResult) {
	var res LoadResult
	seen := make(map[string]bool, len(files))
	lfs := make([]*loadedFile, len(files))
	for i, f := range files {
		seen[f] = true
		lf := l.load(f, &res)
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
	l.workers.close()
}

// load returns the state of file f, reading and compiling it when its
// bytes changed.
func (l *Loader) load(f string, res *LoadResult) *loadedFile {
	data, err := os.ReadFile(f)
	lf := l.files[f]
	if lf == nil {
		lf = &loadedFile{}
		l.files[f] = lf
	}
	if err == nil && lf.data != nil && bytes.Equal(data, lf.data) {
		return lf
	}
	res.Changed = append(res.Changed, f)
	lf.data, lf.plan, lf.errs = data, nil, nil
	if err != nil {
		lf.data = nil
		lf.errs = config.Errors{config.Errorf(config.Pos{File: f}, "cannot read route file: %v", err)}
	} else if r, perr := config.Parse(f, data); perr != nil {
		lf.errs.Add(config.Pos{File: f}, perr)
	} else if p, cerr := Compile(r, l.env); cerr != nil {
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
