package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/registrytest"
	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/tasks"
)

// startRegistry serves a registry on 127.0.0.1 with an on-disk store.
func startRegistry(t *testing.T) *registry.Client {
	return registry.NewClient(registrytest.Start(t), &http.Client{Timeout: 2 * time.Second})
}

func TestAliasMoveUnderLoad(t *testing.T) {
	ctx := context.Background()
	v1 := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.1,"served_by":"v1"}`))
	v2 := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.2,"served_by":"v2"}`))
	reg := startRegistry(t)
	if _, err := reg.CreateModel(ctx, registry.CreateModelRequest{Name: "fraud"}); err != nil {
		t.Fatal(err)
	}
	for _, up := range []*upstreamtest.Server{v1, v2} {
		if _, err := reg.CreateVersion(ctx, registry.CreateVersionRequest{Name: "fraud", Source: "file:///models/fraud", ServingEndpoint: up.URL("/predict")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.SetAlias(ctx, "fraud", "production", "1"); err != nil {
		t.Fatal(err)
	}
	res := registry.NewResolver(reg, registry.ResolverOptions{Interval: 50 * time.Millisecond})
	defer res.Stop()
	route := `
name: fraud
endpoint: /fraud
timeout: 1s
tasks:
  fraud:
    type: http
    inputs: {model: fraud@production, body: '{{ .request }}'}
    output: {path: response.body}
`
	models := RegistryModels{R: res}
	tg := startGateway(t, map[string]string{"f.yaml": route}, nil, func(o *Options) {
		tasks.ModelRegistry.Provide(o.Env, models)
		o.ReadyDetails = map[string]func() any{"registry": models.Status}
	})
	if a := tg.post(t, "/fraud", `{}`); a.status != 200 || a.header.Get("X-Lariat-Models") != "fraud=fraud/1" || !strings.Contains(a.body, "v1") {
		t.Fatalf("before the move: %d %s %v", a.status, a.body, a.header)
	}
	// Steady load from two clients while the alias moves; bounded in count
	// and time.
	var sent, failed, onV2 atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	for c := 0; c < 2; c++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a := tg.post(t, "/fraud", `{"x":1}`)
				sent.Add(1)
				switch {
				case a.status != 200:
					failed.Add(1)
				case a.header.Get("X-Lariat-Models") == "fraud=fraud/2" && strings.Contains(a.body, "v2"):
					onV2.Add(1)
				case a.header.Get("X-Lariat-Models") != "fraud=fraud/1" || !strings.Contains(a.body, "v1"):
					failed.Add(1)
				}
			}
		}()
	}
	testwait.Until(t, "load before the move", func() bool { return sent.Load() >= 20 })
	if err := reg.SetAlias(ctx, "fraud", "production", "2"); err != nil {
		t.Fatal(err)
	}
	testwait.Within(testwait.Timeout, func() bool { return onV2.Load() >= 20 })
	close(stop)
	<-done
	<-done
	t.Logf("requests %d, failed %d, answered by v2 %d", sent.Load(), failed.Load(), onV2.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the alias move", failed.Load(), sent.Load())
	}
	if onV2.Load() < 20 {
		t.Fatalf("alias move not picked up: %d answers from v2", onV2.Load())
	}
	if a := tg.adminGet(t, "/readyz"); !strings.Contains(a.body, `"registry"`) {
		t.Fatalf("readyz lacks registry detail: %s", a.body)
	}
	if m := tg.adminGet(t, "/metrics").body; !strings.Contains(m, `lariat_model_calls_total{route="fraud",task="fraud",model="fraud",version="2"}`) {
		t.Fatalf("metrics lack per-version calls")
	}
	// The server of version 1, which no route calls any more, is let go.
	if s := seriesOf(t, tg, v1.Addr); len(s) != 0 {
		t.Fatalf("series of the server version 1 moved away from:\n%s", strings.Join(s, "\n"))
	}
	if s := seriesOf(t, tg, `lariat_upstream_limit{upstream="http://`+v2.Addr+`"}`); len(s) != 1 {
		t.Fatalf("limit series of the server of version 2: %v", s)
	}
}

func TestModelRouteErrors(t *testing.T) {
	reg := startRegistry(t)
	res := registry.NewResolver(reg, registry.ResolverOptions{Interval: time.Second})
	defer res.Stop()
	route := func(model string) string {
		return fmt.Sprintf("name: m\nendpoint: /m\ntasks:\n  m:\n    type: http\n    inputs: {model: %s}\n", model)
	}
	tg := startGateway(t, map[string]string{"m.yaml": route("nope@production")}, nil, func(o *Options) { tasks.ModelRegistry.Provide(o.Env, RegistryModels{R: res}) })
	_, errs := tg.g.RoutesInfo()
	if len(errs) != 1 || !strings.Contains(errs[0], `m.yaml:6:21: task "m": inputs.model: cannot resolve "nope@production"`) {
		t.Fatalf("errors %v", errs)
	}
	tg = startGateway(t, map[string]string{"m.yaml": route("fraud/1")}, nil)
	_, errs = tg.g.RoutesInfo()
	if len(errs) != 1 || !strings.Contains(errs[0], "naming a model needs a model registry") {
		t.Fatalf("errors %v", errs)
	}
}

// X-Lariat-Models names each task that called a model once, with the
// model version that answered it.
func TestModelsHeaderNamesTasks(t *testing.T) {
	ctx := context.Background()
	fraud := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.1}`))
	rank := upstreamtest.Start(t, upstreamtest.JSON(`{"rank":1}`))
	reg := startRegistry(t)
	for name, up := range map[string]*upstreamtest.Server{"fraud": fraud, "rank": rank} {
		if _, err := reg.CreateModel(ctx, registry.CreateModelRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.CreateVersion(ctx, registry.CreateVersionRequest{Name: name, Source: "file:///models/" + name, ServingEndpoint: up.URL("/predict")}); err != nil {
			t.Fatal(err)
		}
		if err := reg.SetAlias(ctx, name, "production", "1"); err != nil {
			t.Fatal(err)
		}
	}
	res := registry.NewResolver(reg, registry.ResolverOptions{Interval: time.Second})
	defer res.Stop()
	route := `
name: three
endpoint: /three
timeout: 1s
tasks:
  first:
    type: http
    inputs: {model: fraud@production}
    output: {path: response.body.first}
  ranking:
    type: http
    inputs: {model: rank@production}
    output: {path: response.body.ranking}
  again:
    type: http
    inputs: {model: fraud@production}
    output: {path: response.body.again}
`
	tg := startGateway(t, map[string]string{"t.yaml": route}, nil, func(o *Options) { tasks.ModelRegistry.Provide(o.Env, RegistryModels{R: res}) })
	a := tg.post(t, "/three", `{}`)
	got := strings.Split(a.header.Get("X-Lariat-Models"), ",")
	slices.Sort(got)
	if a.status != 200 || strings.Join(got, ",") != "again=fraud/1,first=fraud/1,ranking=rank/1" {
		t.Fatalf("answer %d %s, X-Lariat-Models %q", a.status, a.body, a.header.Get("X-Lariat-Models"))
	}
}

func TestReadyzRegistryDetail(t *testing.T) {
	f := func(s registry.ResolverStatus, want string) {
		t.Helper()
		got, err := json.Marshal(newRegistryStatus(s))
		if err != nil || string(got) != want {
			t.Errorf("%+v: got %s, %v; want %s", s, got, err, want)
		}
	}
	f(registry.ResolverStatus{}, `{"refs":0,"last_refresh":null,"last_success":null,"stale":false}`)
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f(registry.ResolverStatus{Refs: 2, LastRefresh: at, LastError: "registry down", Stale: true},
		`{"refs":2,"last_refresh":"2025-03-01T12:00:00Z","last_success":null,"last_error":"registry down","stale":true}`)
	f(registry.ResolverStatus{Refs: 1, LastRefresh: at, LastSuccess: at},
		`{"refs":1,"last_refresh":"2025-03-01T12:00:00Z","last_success":"2025-03-01T12:00:00Z","stale":false}`)

	// Through the gateway, with a registry that never answers: no zero
	// timestamps, snake_case keys.
	res := registry.NewResolver(registry.NewClient("http://127.0.0.1:1", &http.Client{Timeout: time.Second}), registry.ResolverOptions{Interval: time.Hour})
	defer res.Stop()
	models := RegistryModels{R: res}
	tg := startGateway(t, nil, nil, func(o *Options) {
		tasks.ModelRegistry.Provide(o.Env, models)
		o.ReadyDetails = map[string]func() any{"registry": models.Status}
	})
	a := tg.adminGet(t, "/readyz")
	var v struct {
		Details map[string]map[string]any `json:"details"`
	}
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("readyz %s: %v", a.body, err)
	}
	reg := v.Details["registry"]
	if strings.Contains(a.body, "0001-01-01") || reg == nil || reg["last_success"] != nil || len(reg) < 4 {
		t.Fatalf("readyz: %s", a.body)
	}
	for k := range reg {
		if k != strings.ToLower(k) {
			t.Errorf("readyz key %q is not snake_case: %s", k, a.body)
		}
	}
}

// TestModelRouteLoadsWhileRegistryIsDown: a gateway started while its
// model registry is down serves a route naming a model: its calls fail
// (the model is not resolved) until the registry answers, then succeed,
// without a reload.
func TestModelRouteLoadsWhileRegistryIsDown(t *testing.T) {
	ctx := context.Background()
	model := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.3}`))
	store := registrytest.OpenBolt(t)
	first := registrytest.Serve(t, store)
	if _, err := first.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://x", ServingEndpoint: model.URL("/predict")}); err != nil {
		t.Fatal(err)
	}
	if err := first.Client.SetAlias(ctx, "eta", "production", "1"); err != nil {
		t.Fatal(err)
	}
	addr := first.Addr
	first.Stop()
	res := registry.NewResolver(first.Client, registry.ResolverOptions{Interval: 50 * time.Millisecond})
	defer res.Stop()
	route := "name: eta\nendpoint: /eta\ntasks:\n  m: {type: http, inputs: {model: eta@production}, output: {path: response.body}}\n"
	tg := startGateway(t, map[string]string{"eta.yaml": route}, nil, func(o *Options) {
		tasks.ModelRegistry.Provide(o.Env, RegistryModels{R: res})
	})
	if errs := tg.g.Table().Errors; len(errs) != 0 {
		t.Fatalf("route naming a model, registry down: %v", errs)
	}
	if a := tg.post(t, "/eta", `{}`); a.status != 502 || !strings.Contains(a.body, "not resolved") {
		t.Fatalf("registry down: %d %s", a.status, a.body)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	registrytest.ServeOn(t, store, ln)
	var last answer
	if !testwait.Within(testwait.Timeout, func() bool { last = tg.post(t, "/eta", `{}`); return last.status == 200 }) || last.body != `{"score":0.3}` {
		t.Fatalf("registry back: %d %s", last.status, last.body)
	}
}
