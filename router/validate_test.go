package router

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/tasks"
)

// TestValidationErrors checks the exact message of every kind of problem a
// route file can have, each from a file under testdata.
func TestValidationErrors(t *testing.T) {
	f := func(files []string, want ...string) {
		t.Helper()
		_, errs := LoadFiles(files, tasks.NewEnv(nil))
		var got []string
		for _, e := range errs.Sorted() {
			got = append(got, e.Error())
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("problems of %v:\n%s\nwant:\n%s", files, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	bad := func(name string) []string { return []string{filepath.Join("testdata/bad", name)} }
	f(bad("unknown-key.yaml"),
		`testdata/bad/unknown-key.yaml:9:7: task "m": inputs: unknown key "adress" (did you mean "address"?)`)
	f(bad("unknown-top-key.yaml"),
		`testdata/bad/unknown-top-key.yaml:4:1: unknown key "timeuot" (did you mean "timeout"?)`)
	f(bad("unknown-kind.yaml"),
		`testdata/bad/unknown-kind.yaml:5:11: task "m": unknown type "htp" (did you mean "http"?)`)
	f(bad("unknown-ref.yaml"),
		`testdata/bad/unknown-ref.yaml:9:13: task "model": after references unknown task "feature" (did you mean "features"?)`,
		`testdata/bad/unknown-ref.yaml:12:13: task "model": inputs.body: references unknown task "featurs" (did you mean "features"?)`)
	f(bad("cycle.yaml"),
		`testdata/bad/cycle.yaml:4:3: task "a": dependency cycle a -> b -> c -> a`)
	f(bad("bad-template.yaml"),
		`testdata/bad/bad-template.yaml:8:13: task "m": inputs.body: unclosed {{ at offset 7`,
		`testdata/bad/bad-template.yaml:13:13: task "n": inputs.body: unknown template value ".reqest.id": use .request, .request.<path>, .headers.<Name>, .tasks.<task>.body[.<path>], .tasks.<task>.status or .tasks.<task>.missing`)
	f(bad("bad-url.yaml"),
		`testdata/bad/bad-url.yaml:7:16: task "m": inputs.address: invalid URL "ftp://model.local/predict": want http(s)://host[:port]/path, with templates only in the path and query`,
		`testdata/bad/bad-url.yaml:11:16: task "n": inputs.address: invalid URL "http://{{ .request.host }}/predict": want http(s)://host[:port]/path, with templates only in the path and query`)
	f(bad("timeout-too-long.yaml"),
		`testdata/bad/timeout-too-long.yaml:9:16: task "m": inputs.timeout 250ms is longer than the route timeout 100ms`)
	f(bad("timeouts.yaml"),
		`testdata/bad/timeouts.yaml:5:3: task "retry_no_timeout": inputs.retries: a retry starts only when a whole try fits before the route deadline, so retries need inputs.timeout shorter than the route timeout 200ms`,
		`testdata/bad/timeouts.yaml:10:60: task "zero": inputs.timeout must be positive, got 0s`,
		`testdata/bad/timeouts.yaml:13:115: task "zero_fallback": inputs.fallback.timeout must be positive, got 0s`)
	f(bad("bad-values.yaml"),
		`testdata/bad/bad-values.yaml:2:11: endpoint "no-slash" must start with /`,
		`testdata/bad/bad-values.yaml:3:10: invalid duration "soon": use milliseconds (140) or a unit (150ms, 2s)`,
		`testdata/bad/bad-values.yaml:4:17: unsupported method "FETCH" (did you mean "PATCH"?)`,
		`testdata/bad/bad-values.yaml:9:43: task "m": unknown write mode "upsert" (allowed: append, ignoreIfExists, merge, overwrite)`,
		"testdata/bad/bad-values.yaml:10:15: task \"m\": on_error must be `fail` or `{default: <JSON value>}`, got \"retry\"")
	f(bad("syntax.yaml"),
		`testdata/bad/syntax.yaml:3:1: invalid YAML: did not find expected key`)
	f([]string{"testdata/dup/a.yaml", "testdata/dup/b.yaml"},
		`testdata/dup/b.yaml:2:11: endpoint "/same" is already served by route "first" (testdata/dup/a.yaml:2:11)`)
}

// TestValidationWarnings checks the problems that leave a route serving.
func TestValidationWarnings(t *testing.T) {
	file := "testdata/warn/default-lacks-from.yaml"
	tbl, errs := LoadFiles([]string{file}, tasks.NewEnv(nil))
	if len(errs) != 0 || len(tbl.Plans()) != 1 {
		t.Fatalf("errors %v, %d routes", errs, len(tbl.Plans()))
	}
	var got []string
	for _, w := range tbl.Warnings.Sorted() {
		got = append(got, w.Error())
	}
	want := `testdata/warn/default-lacks-from.yaml:9:25: task "fraud": on_error.default has no "score" (output.from): when the task fails, nothing is written to response.body.fraud`
	if strings.Join(got, "\n") != want {
		t.Fatalf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

func TestValidRouteCompiles(t *testing.T) {
	r, err := config.Parse("ok.yaml", []byte(`
apiVersion: v1
name: ok
endpoint: /ok
methods: [POST, PUT]
timeout: 150ms
tasks:
  f:
    type: http
    inputs: {address: "http://f.local/x?id={{ .request.id }}", method: get}
  m:
    type: http
    after: [f]
    inputs:
      address: https://m.local:8443/predict
      headers: {X-Id: '{{ .headers.X-Id }}'}
      body: '{"f": {{ .tasks.f.body }}, "s": {{ .tasks.f.status }}}'
      timeout: 100
      retries: 2
      backoff: {base: 5ms, max: 20ms}
      retry_on: [connect, timeout, 5xx, 429]
      breaker: {failures: 3, open_for: 2s, half_open_requests: 2}
    output: {path: response.body.m, from: result, write: merge}
    on_error: {default: {}}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(r, tasks.NewEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Tasks(); len(got) != 2 || len(got[1].After) != 1 || got[1].After[0] != "f" {
		t.Fatalf("tasks %+v", got)
	}
	if !p.readJSON || len(p.headers) != 1 || p.Timeout().Milliseconds() != 150 {
		t.Fatalf("plan: readJSON=%v headers=%v timeout=%v", p.readJSON, p.headers, p.Timeout())
	}
}
