package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

func adminPost(t *testing.T, tg *testGateway, path string, hdr ...string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tg.admin+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func versionRoute(addr, from string) string {
	return fmt.Sprintf(`
name: v
endpoint: /v
timeout: 1s
tasks:
  m:
    type: http
    inputs: {address: %s}
    output: {path: response.body, from: %s}
`, addr, from)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReloadKeepsLastGoodVersion(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"a":"one","b":"two"}`))
	other := upstreamtest.Start(t, upstreamtest.JSON(`{"ok":true}`))
	tg := startGateway(t, map[string]string{
		"v.yaml":     versionRoute(up.URL("/"), "a"),
		"other.yaml": strings.NewReplacer("name: v", "name: other", "/v", "/other").Replace(versionRoute(other.URL("/"), "ok")),
	}, nil)
	if a := tg.post(t, "/v", `{}`); a.body != `"one"` {
		t.Fatalf("before: %s", a.body)
	}
	// Break the file: the route keeps serving its last good version.
	writeFile(t, filepath.Join(tg.dir, "v.yaml"), "name: v\nendpoint: /v\ntasks:\n  m:\n    type: http\n    inputs: {adress: x}\n")
	a := adminPost(t, tg, "/-/reload")
	var res ReloadResult
	if err := json.Unmarshal([]byte(a.body), &res); err != nil {
		t.Fatalf("reload answer %d %s", a.status, a.body)
	}
	if a.status != 422 || res.OK || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], `v.yaml:6:14: task "m": inputs: unknown key "adress"`) || len(res.Kept) != 1 || res.Routes != 2 {
		t.Fatalf("reload answer %d %s", a.status, a.body)
	}
	if a := tg.post(t, "/v", `{}`); a.status != 200 || a.body != `"one"` {
		t.Fatalf("broken file took the route down: %d %s", a.status, a.body)
	}
	if a := tg.post(t, "/other", `{}`); a.status != 200 {
		t.Fatalf("other route: %d %s", a.status, a.body)
	}
	if r := tg.adminGet(t, "/routes"); !strings.Contains(r.body, `unknown key \"adress\"`) {
		t.Fatalf("/routes lacks the error: %s", r.body)
	}
	m := tg.adminGet(t, "/metrics").body
	if !strings.Contains(m, "lariat_config_last_reload_successful 0") || !strings.Contains(m, `lariat_config_file_errors_total{file="v.yaml"}`) {
		t.Fatal("reload failure not in metrics")
	}
	// Fix it: the new version serves; unchanged files are skipped.
	writeFile(t, filepath.Join(tg.dir, "v.yaml"), versionRoute(up.URL("/"), "b"))
	res = ReloadResult{}
	a = adminPost(t, tg, "/-/reload")
	if err := json.Unmarshal([]byte(a.body), &res); err != nil || a.status != 200 || !res.OK || len(res.Changed) != 1 {
		t.Fatalf("reload answer %d %s", a.status, a.body)
	}
	if a := tg.post(t, "/v", `{}`); a.body != `"two"` {
		t.Fatalf("after fix: %s", a.body)
	}
	if r := tg.g.Reload(); len(r.Changed) != 0 || !r.OK {
		t.Fatalf("unchanged reload: %+v", r)
	}
}

// startWatch watches the gateway's routes folder until the test ends, as
// Watch does; events are seen from its return on.
func startWatch(t *testing.T, tg *testGateway) {
	t.Helper()
	w, err := tg.g.watchFolder()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchLoop(ctx, w.Events, w.Errors, func() { tg.g.Reload() }, tg.g.log)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		w.Close()
	})
}

func TestWatchReloadsOnSave(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"a":"one","b":"two"}`))
	tg := startGateway(t, map[string]string{"v.yaml": versionRoute(up.URL("/"), "a")}, nil)
	startWatch(t, tg)
	start := time.Now()
	writeFile(t, filepath.Join(tg.dir, "v.yaml"), versionRoute(up.URL("/"), "b"))
	waitBody(t, tg, "/v", `"two"`)
	t.Logf("change served after %s", time.Since(start).Round(time.Millisecond))
}

// TestWatchDebounce runs the watch loop under virtual time: a burst of
// events makes one reload, watchSettle after its last event; attribute
// changes alone make none; an error of the watcher makes one; a quiet
// folder is reloaded every watchPeriod.
func TestWatchDebounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		events := make(chan fsnotify.Event)
		errs := make(chan error)
		var reloads atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			watchLoop(ctx, events, errs, func() { reloads.Add(1) }, discardLogger())
		}()
		start := time.Now()
		at := func(d time.Duration) {
			t.Helper()
			time.Sleep(time.Until(start.Add(d)))
			synctest.Wait()
		}
		want := func(n int64) {
			t.Helper()
			if got := reloads.Load(); got != n {
				t.Fatalf("%d reloads after %s, want %d", got, time.Since(start), n)
			}
		}
		write := fsnotify.Event{Name: "v.yaml", Op: fsnotify.Write}
		// A burst: three events 40ms apart.
		for i := range 3 {
			at(time.Duration(i) * 40 * time.Millisecond)
			events <- write
		}
		at(80*time.Millisecond + watchSettle - time.Millisecond)
		want(0)
		at(80*time.Millisecond + watchSettle)
		want(1)
		// Attribute changes alone.
		events <- fsnotify.Event{Name: "v.yaml", Op: fsnotify.Chmod}
		at(time.Second)
		want(1)
		// An error of the watcher.
		errs <- errors.New("queue overflow")
		at(time.Second + watchSettle)
		want(2)
		// Nothing happens: the periodic reload.
		at(watchPeriod - time.Millisecond)
		want(2)
		at(watchPeriod)
		want(3)
		cancel()
		<-done
	})
}

// TestWatchConfigMapSwap lays the folder out as a Kubernetes ConfigMap
// volume does (files are links through a ..data link to a timestamped
// folder) and updates it the way the kubelet does: a new folder, then an
// atomic swap of ..data.
func TestWatchConfigMapSwap(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"a":"one","b":"two"}`))
	tg := startGateway(t, nil, nil)
	dir := tg.dir
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "..2026_11_28_1"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "..2026_11_28_1", "v.yaml"), []byte(versionRoute(up.URL("/"), "a")), 0o644))
	must(os.Symlink("..2026_11_28_1", filepath.Join(dir, "..data")))
	must(os.Symlink("..data/v.yaml", filepath.Join(dir, "v.yaml")))
	if r := tg.g.Reload(); !r.OK || r.Routes != 1 {
		t.Fatalf("initial load: %+v", r)
	}
	startWatch(t, tg)
	must(os.Mkdir(filepath.Join(dir, "..2026_11_28_2"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "..2026_11_28_2", "v.yaml"), []byte(versionRoute(up.URL("/"), "b")), 0o644))
	must(os.Symlink("..2026_11_28_2", filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(os.RemoveAll(filepath.Join(dir, "..2026_11_28_1")))
	waitBody(t, tg, "/v", `"two"`)
}

// waitBody polls path until it answers want, for a bounded time.
func waitBody(t *testing.T, tg *testGateway, path, want string) {
	t.Helper()
	var last answer
	if !testwait.Within(testwait.Timeout, func() bool { last = tg.post(t, path, `{}`); return last.body == want }) {
		t.Fatalf("%s still answers %d %s after %s, want %s", path, last.status, last.body, testwait.Timeout, want)
	}
}

func TestAdminToken(t *testing.T) {
	tg := startGateway(t, nil, nil, func(o *Options) { o.AdminToken = "s3cret" })
	if a := tg.adminGet(t, "/routes"); a.status != 401 || !strings.Contains(a.body, "Bearer") {
		t.Fatalf("without token: %d %s", a.status, a.body)
	}
	if a := adminPost(t, tg, "/-/reload", "Authorization", "Bearer wrong"); a.status != 401 {
		t.Fatalf("wrong token: %d", a.status)
	}
	if a := adminPost(t, tg, "/-/reload", "Authorization", "Bearer s3cret"); a.status != 200 {
		t.Fatalf("right token: %d %s", a.status, a.body)
	}
	if a := tg.adminGet(t, "/healthz"); a.status != 200 {
		t.Fatalf("healthz needs no token: %d", a.status)
	}
}

// TestReloadStorm reloads the routes 100 times, 20 of them with a broken
// file, under steady load: no request fails because of a reload.
func TestReloadStorm(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"a":"one","b":"two"}`))
	tg := startGateway(t, map[string]string{"v.yaml": versionRoute(up.URL("/"), "a")}, nil)
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a := tg.post(t, "/v", `{}`)
			sent.Add(1)
			if a.status != 200 || (a.body != `"one"` && a.body != `"two"`) {
				failed.Add(1)
			}
		}
	}()
	broken := 0
	for i := 0; i < 100; i++ {
		var data string
		switch {
		case i%5 == 4:
			data = "name: v\nendpoint: /v\ntasks: {m: {type: http, inputs: {address: 'ftp://x'}}}\n"
			broken++
		case i%2 == 0:
			data = versionRoute(up.URL("/"), "a")
		default:
			data = versionRoute(up.URL("/"), "b")
		}
		before := sent.Load()
		writeFile(t, filepath.Join(tg.dir, "v.yaml"), data)
		tg.g.Reload()
		// The load goes on between reloads.
		testwait.Until(t, "a request answered after the reload", func() bool { return sent.Load() > before })
	}
	close(stop)
	<-done
	t.Logf("reloads 100 (broken %d), requests %d, failed %d", broken, sent.Load(), failed.Load())
	if failed.Load() != 0 || sent.Load() == 0 {
		t.Fatalf("%d of %d requests failed during the reload storm", failed.Load(), sent.Load())
	}
}

func TestAdminRoutesPage(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"a":"one"}`))
	tg := startGateway(t, map[string]string{"v.yaml": versionRoute(up.URL("/"), "a")}, nil)
	tg.post(t, "/v", `{}`)
	page := tg.adminGet(t, "/")
	if page.status != 200 || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Fatalf("page %d %v", page.status, page.header)
	}
	for _, want := range []string{`<section data-route="v">`, `<svg`, `data-task="m"`, `routes/stats`} {
		if !strings.Contains(page.body, want) {
			t.Fatalf("page lacks %s", want)
		}
	}
	if strings.Contains(page.body, `src="http`) || strings.Contains(page.body, `href="http`) {
		t.Fatal("page loads external resources")
	}
	var stats []RouteStats
	if err := json.Unmarshal([]byte(tg.adminGet(t, "/routes/stats").body), &stats); err != nil || len(stats) != 1 || stats[0].Tasks[0].Count != 1 || stats[0].Total.Count != 1 {
		t.Fatalf("stats %+v %v", stats, err)
	}
}

func TestAccessLog(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"a":"one"}`))
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	tg := startGateway(t, map[string]string{"v.yaml": versionRoute(up.URL("/"), "a")}, nil, func(o *Options) {
		o.AccessLogSample = 1
		o.Logger = log
	})
	tg.post(t, "/v", `{"secret":"s3cr3t"}`)
	tg.post(t, "/nope", `{}`)
	out := buf.String()
	if !strings.Contains(out, `"msg":"request","method":"POST","path":"/v","status":200`) || !strings.Contains(out, `"path":"/nope","status":404`) {
		t.Fatalf("access log:\n%s", out)
	}
	if strings.Contains(out, "s3cr3t") {
		t.Fatal("the access log holds a request body")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func namedRoute(name, endpoint, addr string) string {
	return fmt.Sprintf("name: %s\nendpoint: %s\ntimeout: 1s\ntasks:\n  m:\n    type: http\n    inputs: {address: %s}\n    output: {path: response.body}\n", name, endpoint, addr)
}

// A change that makes a file clash with another file's route is rejected:
// the changed (or added) file keeps its last good version and the error
// names it; the other file is untouched. Whether the changed file sorts
// before or after the other makes no difference.
func TestReloadConflictRejectsTheChangedFile(t *testing.T) {
	ups := map[string]string{}
	for _, v := range []string{"a", "b", "new"} {
		ups[v] = upstreamtest.Start(t, upstreamtest.JSON(`"`+v+`"`)).URL("/")
	}
	f := func(changed string, edit func(tg *testGateway), want map[string]string, wantErr string) {
		t.Helper()
		tg := startGateway(t, map[string]string{
			"a.yaml": namedRoute("a", "/a", ups["a"]),
			"b.yaml": namedRoute("b", "/b", ups["b"]),
		}, nil)
		edit(tg)
		a := adminPost(t, tg, "/-/reload")
		var res ReloadResult
		if err := json.Unmarshal([]byte(a.body), &res); err != nil {
			t.Fatalf("reload answer %d %s", a.status, a.body)
		}
		if a.status != 422 || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], wantErr) ||
			!strings.HasPrefix(res.Errors[0], filepath.Join(tg.dir, changed)+":") {
			t.Fatalf("reload of %s: answer %d %s, want one error on %s containing %q", changed, a.status, a.body, changed, wantErr)
		}
		if changed != "c.yaml" && changed != "0.yaml" && (len(res.Kept) != 1 || res.Kept[0] != filepath.Join(tg.dir, changed)) {
			t.Fatalf("reload of %s: kept_last_good %v", changed, res.Kept)
		}
		for path, body := range want {
			got := tg.post(t, path, `{}`)
			if body == "" && got.status != 404 || body != "" && (got.status != 200 || got.body != body) {
				t.Fatalf("reload of %s: POST %s answered %d %s, want %q", changed, path, got.status, got.body, body)
			}
		}
		if r := tg.adminGet(t, "/routes"); !strings.Contains(r.body, filepath.Base(changed)) || strings.Count(r.body, `"file"`) < 2 {
			t.Fatalf("/routes: %s", r.body)
		}
	}
	write := func(name, data string) func(tg *testGateway) {
		return func(tg *testGateway) { writeFile(t, filepath.Join(tg.dir, name), data) }
	}
	// Endpoint clash, the changed file sorting first and last.
	f("a.yaml", write("a.yaml", namedRoute("a", "/b", ups["new"])),
		map[string]string{"/a": `"a"`, "/b": `"b"`}, `endpoint "/b" is already served by route "b"`)
	f("b.yaml", write("b.yaml", namedRoute("b", "/a", ups["new"])),
		map[string]string{"/a": `"a"`, "/b": `"b"`}, `endpoint "/a" is already served by route "a"`)
	// Name clash, both orders.
	f("a.yaml", write("a.yaml", namedRoute("b", "/a", ups["new"])),
		map[string]string{"/a": `"a"`, "/b": `"b"`}, `route name "b" is already used`)
	f("b.yaml", write("b.yaml", namedRoute("a", "/b", ups["new"])),
		map[string]string{"/a": `"a"`, "/b": `"b"`}, `route name "a" is already used`)
	// A new file clashing with a serving one, sorting after and before it.
	f("c.yaml", write("c.yaml", namedRoute("c", "/a", ups["new"])),
		map[string]string{"/a": `"a"`, "/b": `"b"`}, `endpoint "/a" is already served by route "a"`)
	f("0.yaml", write("0.yaml", namedRoute("a", "/zero", ups["new"])),
		map[string]string{"/a": `"a"`, "/b": `"b"`, "/zero": ""}, `route name "a" is already used`)
	f("0.yaml", write("0.yaml", namedRoute("zero", "/b", ups["new"])),
		map[string]string{"/a": `"a"`, "/b": `"b"`}, `endpoint "/b" is already served by route "b"`)
}

// Once the route a change clashed with is gone, the changed file's new
// version serves.
func TestReloadConflictClearsWhenTheOtherFileGoes(t *testing.T) {
	upA := upstreamtest.Start(t, upstreamtest.JSON(`"a"`))
	upB := upstreamtest.Start(t, upstreamtest.JSON(`"b"`))
	upNew := upstreamtest.Start(t, upstreamtest.JSON(`"new"`))
	tg := startGateway(t, map[string]string{
		"a.yaml": namedRoute("a", "/a", upA.URL("/")),
		"b.yaml": namedRoute("b", "/b", upB.URL("/")),
	}, nil)
	writeFile(t, filepath.Join(tg.dir, "a.yaml"), namedRoute("a", "/b", upNew.URL("/")))
	if r := tg.g.Reload(); r.OK || len(r.Kept) != 1 {
		t.Fatalf("clashing reload: %+v", r)
	}
	if err := os.Remove(filepath.Join(tg.dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	if r := tg.g.Reload(); !r.OK || len(r.Kept) != 0 {
		t.Fatalf("reload after removing b.yaml: %+v", r)
	}
	if a := tg.post(t, "/b", `{}`); a.status != 200 || a.body != `"new"` {
		t.Fatalf("POST /b: %d %s", a.status, a.body)
	}
	if a := tg.post(t, "/a", `{}`); a.status != 404 {
		t.Fatalf("POST /a: %d %s", a.status, a.body)
	}
}

// An on_error default without the field output.from reads is reported at
// load, with its position; the route serves.
func TestReloadWarnsOfDefaultWithoutOutputField(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.5}`))
	route := fmt.Sprintf("name: w\nendpoint: /w\ntimeout: 1s\ntasks:\n  fraud:\n    type: http\n    inputs: {address: %s}\n    output: {path: response.body.fraud, from: score}\n    on_error: {default: {scroe: 0}}\n", up.URL("/"))
	tg := startGateway(t, map[string]string{"w.yaml": route}, nil)
	a := adminPost(t, tg, "/-/reload")
	var res ReloadResult
	if err := json.Unmarshal([]byte(a.body), &res); err != nil || a.status != 200 || !res.OK {
		t.Fatalf("reload answer %d %s", a.status, a.body)
	}
	want := filepath.Join(tg.dir, "w.yaml") + `:9:25: task "fraud": on_error.default has no "score" (output.from)`
	if len(res.Warnings) != 1 || !strings.HasPrefix(res.Warnings[0], want) {
		t.Fatalf("warnings %q, want %q", res.Warnings, want)
	}
	if r := tg.adminGet(t, "/routes"); !strings.Contains(r.body, `on_error.default has no \"score\"`) {
		t.Fatalf("/routes lacks the warning: %s", r.body)
	}
	if a := tg.post(t, "/w", `{}`); a.status != 200 || a.body != `{"fraud":0.5}` {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
}
