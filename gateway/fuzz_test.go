package gateway

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/tasks"
)

// FuzzHandleRequest sends arbitrary bodies, content types and headers
// through the real request handler of a route that reads the request in
// templates and joins features from the in-memory store: every answer must
// be a JSON document with a 2xx or 4xx status, never a panic.
func FuzzHandleRequest(f *testing.F) {
	dir := f.TempDir()
	route := `
name: fz
endpoint: /fz
timeout: 1s
tasks:
  features:
    type: feature
    inputs:
      entities: {driver_id: '{{ .request.ids }}'}
      features: [driver_stats:conv_rate, driver_trips:recent_ratings]
      defaults: {driver_stats:conv_rate: 0}
    output: {path: response.body.features}
  echo:
    type: feature
    after: [features]
    inputs:
      entities: {driver_id: '{{ .tasks.features.body.0.driver_id }}'}
      features: [driver_stats:rating]
    output: {path: response.body.more, write: append}
    on_error: {default: {failed: true}}
`
	if err := os.WriteFile(filepath.Join(dir, "fz.yaml"), []byte(route), 0o644); err != nil {
		f.Fatal(err)
	}
	views, store, err := featurefetch.NewDemoStore()
	if err != nil {
		f.Fatal(err)
	}
	env := tasks.NewEnv(nil)
	tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store})
	g := New(Options{RoutesDir: dir, Env: env, Logger: discardLogger(), MaxJSONDepth: 32})
	if errs := g.Load(); len(errs) > 0 {
		f.Fatal(errs)
	}
	f.Add([]byte(`{"ids":[1001,1002]}`), "application/json", "v")
	f.Add([]byte(`{"ids":"1001"}`), "", "")
	f.Add([]byte(`{"ids":[null,{},[]]}`), "text/json", "\x00")
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`), "application/json", "")
	f.Add([]byte("{\"ids\":\"\xff\"}"), "application/json; charset=utf-8", "x")
	f.Fuzz(func(t *testing.T, body []byte, contentType, header string) {
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod("POST")
		rc.Request.SetRequestURI("/fz")
		if contentType != "" {
			rc.Request.Header.SetContentType(contentType)
		}
		rc.Request.Header.Set("X-Fuzz", header)
		rc.Request.SetBody(body)
		g.handle(&rc)
		status := rc.Response.StatusCode()
		if status >= 500 || status < 200 {
			t.Fatalf("status %d for body %q: %s", status, body, rc.Response.Body())
		}
		if !gjson.ValidBytes(rc.Response.Body()) {
			t.Fatalf("answer is not JSON for body %q: %q", body, rc.Response.Body())
		}
	})
}
