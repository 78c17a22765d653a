package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// TestServeStartsWithRedisDown: lariat serve started while its feature
// store's Redis is down (a failover, a restart, pods started in any
// order) serves its routes: those without feature tasks answer, feature
// reads fail until Redis answers, then work without a restart.
func TestServeStartsWithRedisDown(t *testing.T) {
	bin := sharedLariat(t)
	srv := redistest.Start(t)
	srv.Stop()
	model := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.5}`))
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes")
	views := filepath.Join(dir, "views.yaml")
	for name, data := range map[string]string{
		filepath.Join(routes, "plain.yaml"): fmt.Sprintf("name: plain\nendpoint: /plain\ntasks:\n  m: {type: http, inputs: {address: %s}, output: {path: response.body}}\n", model.URL("/")),
		filepath.Join(routes, "feat.yaml"):  "name: feat\nendpoint: /feat\ntasks:\n  f: {type: feature, inputs: {entities: {driver_id: '{{ .request.drivers }}'}, features: [driver_stats:conv_rate], timeout: 200ms}, output: {path: response.body}}\n",
		views:                               string(featurefetch.DemoViewsYAML()),
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	url := startGatewayProc(t, bin, "serve", "--routes", routes, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--feature-views", views, "--redis", srv.Addr()).url
	post := func(path string) (int, string) {
		resp, err := http.Post(url+path, "application/json", strings.NewReader(`{"drivers":[1001]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("/plain"); code != 200 || body != `{"score":0.5}` {
		t.Fatalf("route without features, Redis down: %d %s", code, body)
	}
	if code, body := post("/feat"); code != 502 || !strings.Contains(body, "redis has not answered yet") {
		t.Fatalf("feature route, Redis down: %d %s", code, body)
	}
	srv.Restart()
	var code int
	var body string
	if !testwait.Within(testwait.Timeout, func() bool { code, body = post("/feat"); return code == 200 }) {
		t.Fatalf("feature route once Redis answers: %d %s", code, body)
	}
	if body != `[{"driver_id":1001,"conv_rate":null}]` {
		t.Fatalf("feature route once Redis answers: %s", body)
	}
}
