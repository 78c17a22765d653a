package router

import (
	"bytes"
	"os"
	"sort"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/tasks"
)

// Loader builds routing tables from route files and remembers what it
// built, so a reload recompiles only the files whose bytes changed and a
// file that turns bad keeps serving its last good version.
// It is not safe for concurrent use; callers serialize reloads.
type Loader struct {
	env   *tasks.Env
	files map[string]*loadedFile
	// served maps each endpoint to the file that served it last, so a new
	// file cannot take an endpoint from a route already serving it.
	served map[string]string
}

type loadedFile struct {
	data []byte
	// good is the last plan that compiled from this file, if any.
	good *Plan
	errs config.Errors
}

// NewLoader returns a Loader whose routes use env.
func NewLoader(env *tasks.Env) *Loader {
	return &Loader{env: env, files: map[string]*loadedFile{}, served: map[string]string{}}
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
}

// Load reads files and returns the routing table to serve.
func (l *Loader) Load(files []string) (*Table, LoadResult) {
	var res LoadResult
	seen := make(map[string]bool, len(files))
	var routes []*config.Route
	plans := map[*config.Route]*Plan{}
	for _, f := range files {
		seen[f] = true
		data, err := os.ReadFile(f)
		if err != nil {
			data = nil
		}
		lf := l.files[f]
		if lf == nil {
			lf = &loadedFile{}
			l.files[f] = lf
		}
		if err == nil && lf.data != nil && bytes.Equal(data, lf.data) {
			// Unchanged: keep what it gave last time.
			res.Errors = append(res.Errors, lf.errs...)
			if lf.good != nil {
				routes = append(routes, lf.good.Route)
				plans[lf.good.Route] = lf.good
				if len(lf.errs) > 0 {
					res.Kept = append(res.Kept, f)
				}
			}
			continue
		}
		res.Changed = append(res.Changed, f)
		lf.data, lf.errs = data, nil
		var p *Plan
		if err != nil {
			lf.errs = config.Errors{config.Errorf(config.Pos{File: f}, "cannot read route file: %v", err)}
		} else if r, perr := config.Parse(f, data); perr != nil {
			lf.errs.Add(config.Pos{File: f}, perr)
		} else if p, err = Compile(r, l.env); err != nil {
			lf.errs.Add(config.Pos{File: f}, err)
		} else {
			lf.good = p
		}
		res.Errors = append(res.Errors, lf.errs...)
		if p == nil && lf.good != nil {
			p = lf.good
			res.Kept = append(res.Kept, f)
		}
		if p != nil {
			routes = append(routes, p.Route)
			plans[p.Route] = p
		}
	}
	for f := range l.files {
		if !seen[f] {
			delete(l.files, f)
			res.Changed = append(res.Changed, f)
		}
	}
	sort.SliceStable(routes, func(i, j int) bool {
		return l.served[routes[i].Endpoint.Value] == routes[i].File && l.served[routes[j].Endpoint.Value] != routes[j].File
	})
	kept, dupErrs := config.CheckUnique(routes)
	res.Errors = append(res.Errors, dupErrs...)
	out := make([]*Plan, len(kept))
	clear(l.served)
	for i, r := range kept {
		out[i] = plans[r]
		l.served[r.Endpoint.Value] = r.File
	}
	return NewTable(out, res.Errors), res
}
