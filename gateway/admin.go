package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"strings"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/lariat-gw/lariat/internal/promexpo"
	"github.com/lariat-gw/lariat/router"
)

func (g *Gateway) handleAdmin(rc *fasthttp.RequestCtx) {
	path := string(rc.Path())
	if g.opts.AdminToken != "" && path != "/healthz" && path != "/readyz" && !g.adminAuthorized(rc) {
		router.WriteError(rc, fasthttp.StatusUnauthorized, "admin endpoints need Authorization: Bearer <token>", "", "")
		rc.Response.Header.Set("WWW-Authenticate", `Bearer realm="lariat-admin"`)
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
		g.serveRoutes(rc)
	case "/routes/stats":
		g.serveStats(rc)
	case "/", "/ui":
		g.serveUI(rc)
	default:
		if strings.HasPrefix(path, "/debug/pprof/") {
			pprofhandler.PprofHandler(rc)
			return
		}
		router.WriteError(rc, fasthttp.StatusNotFound, "unknown admin path; see / (routes page), /healthz, /readyz, /metrics, /routes, /routes/stats, /debug/pprof/, POST /-/reload", "", "")
	}
}

func (g *Gateway) adminAuthorized(rc *fasthttp.RequestCtx) bool {
	h := rc.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(string(h[:len(prefix)]), prefix) {
		return false
	}
	return subtle.ConstantTimeCompare(h[len(prefix):], []byte(g.opts.AdminToken)) == 1
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
	t := g.table.Load()
	routes = []RouteInfo{}
	for _, p := range t.Plans() {
		ri := RouteInfo{
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
	for _, e := range t.Errors.Sorted() {
		errs = append(errs, e.Error())
	}
	return routes, errs
}

func (g *Gateway) serveRoutes(rc *fasthttp.RequestCtx) {
	routes, errs := g.RoutesInfo()
	warnings := []string{}
	for _, w := range g.table.Load().Warnings.Sorted() {
		warnings = append(warnings, w.Error())
	}
	writeJSON(rc, map[string]any{"routes": routes, "errors": errs, "warnings": warnings})
}

func writeJSON(rc *fasthttp.RequestCtx, v any) {
	rc.SetContentType("application/json")
	enc := json.NewEncoder(rc)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		router.WriteError(rc, fasthttp.StatusInternalServerError, "cannot encode answer: "+err.Error(), "", "")
	}
}
