package gateway

import (
	"fmt"
	"html"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/graph"
	"github.com/lariat-gw/lariat/router"
)

// RouteStats is one route's live latency, as GET /routes/stats shows it.
type RouteStats struct {
	// Tenant is the route's tenant, left out for none.
	Tenant string                `json:"tenant,omitempty"`
	Route  string                `json:"route"`
	Total  router.LatencySummary `json:"total"`
	Tasks  []router.TaskStats    `json:"tasks"`
}

// serveStats answers the live latency of the routes in reports true of
// (every route for nil).
func (g *Gateway) serveStats(rc *fasthttp.RequestCtx, in func(*router.Plan) bool) {
	out := []RouteStats{}
	for _, p := range g.table.Load().Plans() {
		if in != nil && !in(p) {
			continue
		}
		total, tasks := p.Stats()
		out = append(out, RouteStats{Tenant: p.TenantName(), Route: p.Name(), Total: total, Tasks: tasks})
	}
	writeJSON(rc, out)
}

// serveUI renders the admin page: every route (of tenant only, when not
// nil) with its task graph and live per-task latency, grouped by tenant
// when there are tenants. It is self-contained (inline SVG, CSS and
// script; no external resources), so it works offline.
func (g *Gateway) serveUI(rc *fasthttp.RequestCtx, tenant *router.Tenant) {
	t := g.table.Load()
	var plans []*router.Plan
	for _, p := range t.Plans() {
		if tenant == nil || p.Tenant() == tenant {
			plans = append(plans, p)
		}
	}
	var errs config.Errors
	for _, e := range t.Errors {
		if inTenant(tenant, e.Pos.File) {
			errs = append(errs, e)
		}
	}
	// Group by tenant: routes without a tenant first, then each tenant.
	grouped := len(t.Tenants) > 0
	slices.SortStableFunc(plans, func(a, b *router.Plan) int { return strings.Compare(a.TenantName(), b.TenantName()) })
	var b strings.Builder
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>Lariat routes</title><style>
body{font-family:sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;margin:28px 0 4px}
.meta{color:#555;font-size:13px}.err{color:#b00;font-family:monospace;white-space:pre-wrap}
.gw{overflow-x:auto;margin-top:8px}.graph{border:1px solid #ddd;border-radius:6px;background:#fafafa;display:block}
.total{font-size:13px;color:#06c}
</style></head><body><h1>Lariat routes</h1>`)
	if len(errs) > 0 {
		b.WriteString(`<h2>Route files with problems</h2><div class="err">`)
		for _, e := range errs.Sorted() {
			b.WriteString(html.EscapeString(e.Error()))
			b.WriteByte('\n')
		}
		b.WriteString(`</div>`)
	}
	if len(plans) == 0 {
		b.WriteString(`<p>No routes loaded.</p>`)
	}
	group := "\x00"
	for _, p := range plans {
		if tn := p.TenantName(); grouped && tn != group {
			group = tn
			if tn == "" {
				b.WriteString(`<h1 class="tenant">Routes without a tenant</h1>`)
			} else {
				fmt.Fprintf(&b, `<h1 class="tenant" data-tenant="%s">Tenant %s</h1>`, html.EscapeString(tn), html.EscapeString(tn))
			}
		}
		svg, err := graph.Render(p, graph.SVG)
		if err != nil {
			svg = `<p class="err">` + html.EscapeString(err.Error()) + `</p>`
		}
		fmt.Fprintf(&b, `<section data-route="%s"><h2>%s</h2><div class="meta">%s %s · timeout %s · version %s · %s</div><div class="total">–</div><div class="gw">%s</div></section>`,
			html.EscapeString(p.Name()), html.EscapeString(p.Name()),
			html.EscapeString(strings.Join(p.Methods(), ", ")), html.EscapeString(p.Endpoint()),
			p.Timeout(), html.EscapeString(p.Route.Hash), html.EscapeString(p.Route.File), svg)
	}
	b.WriteString(`<script>
function lat(s){return s.count?'p50 '+s.p50_ms.toFixed(2)+' ms · p99 '+s.p99_ms.toFixed(2)+' ms':'no calls yet'}
function cnt(s){return s.count?s.count+' calls'+(s.errors?' · '+s.errors+' failed':''):''}
async function refresh(){
 try{
  const r=await fetch('routes/stats',{cache:'no-store'});const all=await r.json();
  for(const rs of all){
   const sec=document.querySelector('section[data-route="'+CSS.escape(rs.route)+'"]');if(!sec)continue;
   sec.querySelector('.total').textContent='route: '+lat(rs.total)+(rs.total.count?' · '+cnt(rs.total):'');
   for(const ts of rs.tasks){
    const q=k=>sec.querySelector('.'+k+'[data-task="'+CSS.escape(ts.task)+'"]');
    const l=q('lat'),c=q('cnt');if(l)l.textContent=lat(ts);if(c)c.textContent=cnt(ts);
   }
  }
 }catch(e){}
}
refresh();setInterval(refresh,2000);
</script></body></html>`)
	rc.SetContentType("text/html; charset=utf-8")
	rc.SetBodyString(b.String())
}
