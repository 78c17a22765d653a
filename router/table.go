package router

import (
	"bytes"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/tasks"
)

// Table maps request paths to compiled routes. It is immutable: a reload
// builds a new Table and swaps it in whole.
type Table struct {
	byPath map[string]*Plan
	plans  []*Plan
	// Errors holds the problems of the files that did not load.
	Errors config.Errors
	// Warnings holds the problems that do not stop a route from serving.
	Warnings config.Errors
	// Tenants are the tenants loaded (with or without routes), by name.
	Tenants []*Tenant
}

// Tenant returns the loaded tenant named name, or nil.
func (t *Table) Tenant(name string) *Tenant {
	for _, tn := range t.Tenants {
		if tn.Config.Name == name {
			return tn
		}
	}
	return nil
}

// NewTable builds a table from compiled plans, which must have distinct
// endpoints.
func NewTable(plans []*Plan, errs config.Errors) *Table {
	t := &Table{byPath: make(map[string]*Plan, len(plans)), plans: plans, Errors: errs}
	for _, p := range plans {
		t.byPath[p.Endpoint()] = p
	}
	return t
}

// Lookup returns the route serving path, or nil.
func (t *Table) Lookup(path []byte) *Plan {
	return t.byPath[string(path)]
}

// Plans returns the routes in the order they were loaded.
func (t *Table) Plans() []*Plan { return t.plans }

// Allows reports whether the route accepts method.
func (p *Plan) Allows(method []byte) bool {
	for _, m := range p.methods {
		if string(method) == m {
			return true
		}
	}
	return false
}

// AllowHeader returns the methods for an Allow header.
func (p *Plan) AllowHeader() []byte {
	var b bytes.Buffer
	for i, m := range p.methods {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m)
	}
	return b.Bytes()
}

// LoadFiles parses and compiles route files. A file with problems is left
// out and its problems returned; the others load.
func LoadFiles(files []string, env *tasks.Env) (*Table, config.Errors) {
	t, res := NewLoader(env).Load(files)
	return t, res.Errors
}

// LoadDir loads every route file of dir (see config.RouteFiles).
func LoadDir(dir string, env *tasks.Env) (*Table, config.Errors) {
	files, err := config.RouteFiles(dir)
	if err != nil {
		return NewTable(nil, nil), config.Errors{config.Errorf(config.Pos{File: dir}, "%v", err)}
	}
	return LoadFiles(files, env)
}
