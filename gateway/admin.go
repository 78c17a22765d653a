package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/promexpo"
	"github.com/lariat-gw/lariat/router"
)

func (g *Gateway) handleAdmin(rc *fasthttp.RequestCtx) {
	path := string(rc.Path())
	tenant := ""
	if path != "/healthz" && path != "/readyz" {
		var ok bool
		if tenant, ok = g.adminIdentity(rc); !ok {
			router.WriteError(rc, fasthttp.StatusUnauthorized, "admin endpoints need Authorization: Bearer <token>", "", "")
			rc.Response.Header.Set("WWW-Authenticate", `Bearer realm="lariat-admin"`)
			return
		}
	}
	if rest, ok := strings.CutPrefix(path, "/tenants/"); ok {
		name, sub, _ := strings.Cut(rest, "/")
		if tenant != "" && name != tenant {
			router.WriteError(rc, fasthttp.StatusForbidden, fmt.Sprintf("the admin token of tenant %q opens /tenants/%s/ only", tenant, tenant), "", "")
			return
		}
		g.serveTenantAdmin(rc, name, "/"+sub)
		return
	}
	if tenant != "" && path != "/healthz" && path != "/readyz" {
		router.WriteError(rc, fasthttp.StatusForbidden, fmt.Sprintf("the admin token of tenant %q opens /tenants/%s/ only", tenant, tenant), "", "")
		return
	}
	switch path {
	case "/-/reload":
		if !rc.IsPost() {
			router.WriteError(rc, fasthttp.StatusMethodNotAllowed, "use POST /-/reload", "", "")
			rc.Response.Header.Set("Allow", "POST")
			return
		}
		res := g.Reload()
		if !res.OK {
			rc.SetStatusCode(fasthttp.StatusUnprocessableEntity)
		}
		writeJSON(rc, res)
	case "/healthz":
		rc.SetContentType("application/json")
		rc.SetBodyString(`{"status":"ok"}`)
	case "/readyz":
		g.serveReady(rc)
	case "/metrics":
		rc.SetContentType(promexpo.ContentType)
		promexpo.WritePrometheus(rc)
	case "/routes":
		g.serveRoutes(rc, nil)
	case "/routes/stats":
		g.serveStats(rc, nil)
	case "/tenants":
		g.serveTenants(rc)
	case "/", "/ui":
		g.serveUI(rc, nil)
	default:
		if name, ok := strings.CutPrefix(path, "/debug/pprof/"); ok {
			servePprof(rc, name)
			return
		}
		router.WriteError(rc, fasthttp.StatusNotFound, "unknown admin path; see / (routes page), /healthz, /readyz, /metrics, /routes, /routes/stats, /tenants, /debug/pprof/, POST /-/reload", "", "")
	}
}

// adminIdentity says who an admin request comes from: the operator
// (tenant "") or a tenant, by its bearer token. Without --admin-token the
// listener is open: a request without a token is the operator's, one with
// a tenant's token the tenant's.
func (g *Gateway) adminIdentity(rc *fasthttp.RequestCtx) (tenant string, ok bool) {
	h := rc.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	var tok []byte
	if len(h) > len(prefix) && strings.EqualFold(string(h[:len(prefix)]), prefix) {
		tok = h[len(prefix):]
	}
	if tok != nil && g.opts.AdminToken != "" && subtle.ConstantTimeCompare(tok, []byte(g.opts.AdminToken)) == 1 {
		return "", true
	}
	if tok != nil {
		for _, t := range g.table.Load().Tenants {
			if t.AdminAllows(tok) {
				return t.Name(), true
			}
		}
	}
	return "", g.opts.AdminToken == ""
}

// serveTenantAdmin serves the admin paths of one tenant, under
// /tenants/<name>/: its routes page, routes, stats and reload.
func (g *Gateway) serveTenantAdmin(rc *fasthttp.RequestCtx, name, sub string) {
	t := g.table.Load().Tenant(name)
	if t == nil {
		router.WriteError(rc, fasthttp.StatusNotFound, fmt.Sprintf("no tenant %q is loaded", name), "", "")
		return
	}
	in := func(p *router.Plan) bool { return p.TenantName() == name }
	switch sub {
	case "/", "/ui":
		g.serveUI(rc, t)
	case "/routes":
		g.serveRoutes(rc, t)
	case "/routes/stats":
		g.serveStats(rc, in)
	case "/-/reload":
		if !rc.IsPost() {
			router.WriteError(rc, fasthttp.StatusMethodNotAllowed, "use POST /tenants/"+name+"/-/reload", "", "")
			rc.Response.Header.Set("Allow", "POST")
			return
		}
		res := g.ReloadTenant(name)
		if !res.OK {
			rc.SetStatusCode(fasthttp.StatusUnprocessableEntity)
		}
		writeJSON(rc, res)
	default:
		router.WriteError(rc, fasthttp.StatusNotFound, "unknown tenant admin path; see /tenants/"+name+"/ (routes page), /tenants/"+name+"/routes, /tenants/"+name+"/routes/stats, POST /tenants/"+name+"/-/reload", "", "")
	}
}

// TenantInfo is one tenant as GET /tenants shows it.
type TenantInfo struct {
	Name      string   `json:"name"`
	File      string   `json:"file"`
	Version   string   `json:"version"`
	Endpoints []string `json:"endpoints"`
	Routes    []string `json:"routes"`
	InFlight  int      `json:"in_flight"`
}

func (g *Gateway) serveTenants(rc *fasthttp.RequestCtx) {
	t := g.table.Load()
	out := []TenantInfo{}
	for _, tn := range t.Tenants {
		ti := TenantInfo{Name: tn.Name(), File: tn.Config.File, Version: tn.Config.Hash, Endpoints: []string{}, Routes: []string{}, InFlight: tn.InFlight()}
		for _, e := range tn.Config.Endpoints {
			ti.Endpoints = append(ti.Endpoints, e.Value)
		}
		for _, p := range t.Plans() {
			if p.Tenant() == tn {
				ti.Routes = append(ti.Routes, p.Name())
			}
		}
		out = append(out, ti)
	}
	writeJSON(rc, out)
}

func (g *Gateway) serveReady(rc *fasthttp.RequestCtx) {
	type detail struct {
		Ready   bool           `json:"ready"`
		Routes  int            `json:"routes"`
		Errors  int            `json:"route_errors"`
		Details map[string]any `json:"details,omitempty"`
	}
	t := g.table.Load()
	d := detail{Ready: g.ready.Load(), Routes: len(t.Plans()), Errors: len(t.Errors)}
	if len(g.opts.ReadyDetails) > 0 {
		d.Details = map[string]any{}
		for name, f := range g.opts.ReadyDetails {
			d.Details[name] = f()
		}
	}
	if !d.Ready {
		rc.SetStatusCode(fasthttp.StatusServiceUnavailable)
	}
	writeJSON(rc, d)
}

// RouteInfo is one route as GET /routes shows it.
type RouteInfo struct {
	// Tenant is the tenant whose folder holds the route, left out for
	// none.
	Tenant    string            `json:"tenant,omitempty"`
	Name      string            `json:"name"`
	Endpoint  string            `json:"endpoint"`
	Methods   []string          `json:"methods"`
	TimeoutMs int64             `json:"timeout_ms"`
	File      string            `json:"file"`
	Version   string            `json:"version"`
	Tasks     []router.TaskInfo `json:"tasks"`
	Edges     [][2]string       `json:"edges"`
}

// RoutesInfo lists the loaded routes and the problems of files that did not
// load.
func (g *Gateway) RoutesInfo() (routes []RouteInfo, errs []string) {
	return g.routesInfo(nil)
}

// routesInfo lists the routes and problems of tenant t's folder, or of
// every file for t nil.
func (g *Gateway) routesInfo(t *router.Tenant) (routes []RouteInfo, errs []string) {
	tbl := g.table.Load()
	routes = []RouteInfo{}
	for _, p := range tbl.Plans() {
		if t != nil && p.Tenant() != t {
			continue
		}
		ri := RouteInfo{
			Tenant:    p.TenantName(),
			Name:      p.Name(),
			Endpoint:  p.Endpoint(),
			Methods:   p.Methods(),
			TimeoutMs: p.Timeout().Milliseconds(),
			File:      p.Route.File,
			Version:   p.Route.Hash,
			Tasks:     p.Tasks(),
			Edges:     [][2]string{},
		}
		for _, ti := range ri.Tasks {
			for _, a := range ti.After {
				ri.Edges = append(ri.Edges, [2]string{a, ti.Name})
			}
		}
		routes = append(routes, ri)
	}
	errs = []string{}
	for _, e := range tbl.Errors.Sorted() {
		if inTenant(t, e.Pos.File) {
			errs = append(errs, e.Error())
		}
	}
	return routes, errs
}

// inTenant reports whether file is in tenant t's folder (every file for
// t nil).
func inTenant(t *router.Tenant, file string) bool {
	if t == nil {
		return true
	}
	return strings.HasPrefix(file, filepath.Dir(t.Config.File)+string(filepath.Separator))
}

func (g *Gateway) serveRoutes(rc *fasthttp.RequestCtx, t *router.Tenant) {
	routes, errs := g.routesInfo(t)
	warnings := []string{}
	for _, w := range g.table.Load().Warnings.Sorted() {
		if inTenant(t, w.Pos.File) {
			warnings = append(warnings, w.Error())
		}
	}
	out := map[string]any{"routes": routes, "errors": errs, "warnings": warnings}
	if t != nil {
		out["tenant"] = t.Name()
	}
	writeJSON(rc, out)
}

func writeJSON(rc *fasthttp.RequestCtx, v any) {
	rc.SetContentType("application/json")
	enc := json.NewEncoder(rc)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		router.WriteError(rc, fasthttp.StatusInternalServerError, "cannot encode answer: "+err.Error(), "", "")
	}
}
