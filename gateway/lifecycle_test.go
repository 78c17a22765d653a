package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// seriesOf returns the sample lines of /metrics that contain sub.
func seriesOf(t *testing.T, tg *testGateway, sub string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(tg.adminGet(t, "/metrics").body, "\n") {
		if line != "" && line[0] != '#' && strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return out
}

func (tg *testGateway) reloadOK(t *testing.T) {
	t.Helper()
	if r := tg.g.Reload(); len(r.Errors) > 0 {
		t.Fatalf("reload: %v", r.Errors)
	}
}

// TestRouteDeletedLeavesNothingBehind: a route that served (with
// failures, retries and a micro-batched model) and is then deleted by a
// reload leaves no series and no goroutine of its own.
func TestRouteDeletedLeavesNothingBehind(t *testing.T) {
	failing := upstreamtest.Start(t, upstreamtest.Status(503))
	features := upstreamtest.Start(t, featureEcho)
	model := startV2Fake(t, "/v2/models/ranker/infer")
	route := inferGatewayRoute("zz", features.URL("/f"), model.URL(""), "      batch: {max_size: 8, max_wait: 1ms}") + fmt.Sprintf(`
  old_task:
    type: http
    inputs: {address: %s, timeout: 100ms, retries: 1, backoff: {base: 1ms, max: 1ms}}
    output: {path: response.body.old}
    on_error: {default: null}
`, failing.URL("/"))
	tg := startGateway(t, map[string]string{"zz.yaml": route, "keep.yaml": plainRoute("keep", features.URL("/f"))}, nil)
	for i := 0; i < 3; i++ {
		if a := tg.post(t, "/zz", `{"drivers":[1,2]}`); a.status != 200 {
			t.Fatalf("answer %d %s", a.status, a.body)
		}
	}
	if a := tg.post(t, "/keep", `{"drivers":[1]}`); a.status != 200 {
		t.Fatalf("keep: %d %s", a.status, a.body)
	}
	if s := seriesOf(t, tg, `route="zz"`); len(s) < 5 {
		t.Fatalf("the route's series after traffic: %v", s)
	}
	if s := seriesOf(t, tg, `lariat_batch_rows_count{model="ranker"}`); len(s) != 1 {
		t.Fatalf("batch series: %v", s)
	}
	if err := os.Remove(filepath.Join(tg.dir, "zz.yaml")); err != nil {
		t.Fatal(err)
	}
	tg.reloadOK(t)
	if s := seriesOf(t, tg, `route="zz"`); len(s) != 0 {
		t.Fatalf("series of the deleted route:\n%s", strings.Join(s, "\n"))
	}
	if s := seriesOf(t, tg, `lariat_batch_rows`); len(s) != 0 {
		t.Fatalf("batch series of the deleted route:\n%s", strings.Join(s, "\n"))
	}
	if s := seriesOf(t, tg, `route="keep"`); len(s) == 0 {
		t.Fatal("the other route lost its series")
	}
	waitNoGoroutinesIn(t, "lariat/tasks.(*batcher)")
}

// TestRetiredUpstreamLeavesNothingBehind: reloads that move a route from
// one model server to another retire the first one's breaker, limit and
// connections (an open breaker's gauge would otherwise stay 1 for a host
// no route calls); a reload that keeps a model server keeps its
// connections warm and what its limit learned.
func TestRetiredUpstreamLeavesNothingBehind(t *testing.T) {
	one := upstreamtest.Start(t, upstreamtest.Status(503))
	two := upstreamtest.Start(t, upstreamtest.JSON(`{"ok":true}`))
	route := func(addr, extra string) string {
		return fmt.Sprintf("name: r\nendpoint: /r\ntasks:\n  m: {type: http, inputs: {address: %s, breaker: {failures: 1, open_for: 1h}%s}, output: {path: response.body}}\n", addr, extra)
	}
	tg := startGateway(t, map[string]string{"r.yaml": route(one.URL("/"), "")}, nil)
	tg.post(t, "/r", `{}`)
	if v := metricValue(t, tg, `lariat_breaker_open{upstream="http://`+one.Addr+`"}`); v != 1 {
		t.Fatalf("breaker of the failing server: %v, want open (1)", v)
	}
	tg.write(t, "r.yaml", route(two.URL("/"), ""))
	tg.reloadOK(t)
	if a := tg.post(t, "/r", `{}`); a.status != 200 {
		t.Fatalf("after moving to the second server: %d %s", a.status, a.body)
	}
	if s := seriesOf(t, tg, one.Addr); len(s) != 0 {
		t.Fatalf("series of the server no route calls:\n%s", strings.Join(s, "\n"))
	}
	if s := seriesOf(t, tg, `lariat_upstream_limit{upstream="http://`+two.Addr+`"}`); len(s) != 1 {
		t.Fatalf("limit series of the server called: %v", s)
	}
	// A reload that keeps the server keeps its connections.
	conns := two.Conns.Load()
	tg.write(t, "r.yaml", route(two.URL("/"), ", timeout: 500ms"))
	tg.reloadOK(t)
	if a := tg.post(t, "/r", `{}`); a.status != 200 {
		t.Fatalf("after a reload keeping the server: %d %s", a.status, a.body)
	}
	if n := two.Conns.Load(); n != conns {
		t.Fatalf("the server saw %d new connections after a reload that kept it", n-conns)
	}
}

// TestIdleRouteCostsNoSeries: a route that never served exposes no series.
func TestIdleRouteCostsNoSeries(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{}`))
	route := fmt.Sprintf(`
name: idle
endpoint: /idle
tasks:
  a: {type: http, inputs: {address: %s, timeout: 100ms, retries: 2, hedge_after: 50ms}, output: {path: response.body.a}}
  b: {type: http, inputs: {address: %s}, output: {path: response.body.b}}
`, up.URL("/a"), up.URL("/b"))
	tg := startGateway(t, map[string]string{"idle.yaml": route}, nil)
	if s := seriesOf(t, tg, `route="idle"`); len(s) > 5 {
		t.Fatalf("an idle route exposes %d series (want at most 5):\n%s", len(s), strings.Join(s, "\n"))
	}
}

// TestReloadsDoNotGrowMetrics: reloads that rename tasks, with traffic in
// between, leave /metrics the size it was.
func TestReloadsDoNotGrowMetrics(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{}`))
	tg := startGateway(t, map[string]string{"r.yaml": fmt.Sprintf("name: r\nendpoint: /r\ntasks:\n  task_0: {type: http, inputs: {address: %s}, output: {path: response.body}}\n", up.URL("/"))}, nil)
	var sizes []int
	for i := 0; i < 30; i++ {
		if i > 0 {
			route := fmt.Sprintf("name: r\nendpoint: /r\ntasks:\n  task_%d: {type: http, inputs: {address: %s}, output: {path: response.body}}\n", i, up.URL("/"))
			if err := os.WriteFile(filepath.Join(tg.dir, "r.yaml"), []byte(route), 0o644); err != nil {
				t.Fatal(err)
			}
			tg.reloadOK(t)
		}
		if a := tg.post(t, "/r", `{}`); a.status != 200 {
			t.Fatalf("answer %d %s", a.status, a.body)
		}
		sizes = append(sizes, len(seriesOf(t, tg, `route="r"`)))
	}
	if sizes[len(sizes)-1] != sizes[0] {
		t.Fatalf("series of the route by reload: %v; want them constant", sizes)
	}
	if s := seriesOf(t, tg, `task="task_0"`); len(s) != 0 {
		t.Fatalf("series of a renamed task: %v", s)
	}
}

// TestTaskHistogramsOff: a route can turn its per-task histograms off.
func TestTaskHistogramsOff(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{}`))
	route := fmt.Sprintf("name: nohist\nendpoint: /nohist\nmetrics: {task_histograms: false}\ntasks:\n  m: {type: http, inputs: {address: %s}, output: {path: response.body}}\n", up.URL("/"))
	tg := startGateway(t, map[string]string{"n.yaml": route}, nil)
	if a := tg.post(t, "/nohist", `{}`); a.status != 200 {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if s := seriesOf(t, tg, `lariat_task_duration_seconds_count{route="nohist"`); len(s) != 0 {
		t.Fatalf("task histogram exposed: %v", s)
	}
	if s := seriesOf(t, tg, `lariat_request_duration_seconds_count{route="nohist"}`); len(s) != 1 {
		t.Fatalf("route histogram: %v", s)
	}
}
