package scenario

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/bench"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/router"
	"github.com/lariat-gw/lariat/tasks"
)

func TestLassoRouteIsTheGatewayTestdata(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join("..", "..", "gateway", "testdata", "lasso-route.yaml"))
	if err != nil {
		t.Fatalf("cannot read the gateway's copy: %v", err)
	}
	if !bytes.Equal(orig, lassoRoute) {
		t.Fatal("bench/scenario/testdata/lasso-route.yaml differs from gateway/testdata/lasso-route.yaml; copy it again")
	}
}

// TestRoutesCompile loads every scenario's route file into the router, as
// lariat serve does, and checks the floor configuration of each.
func TestRoutesCompile(t *testing.T) {
	views, err := featurefetch.ParseViews("views.yaml", ViewsYAML())
	if err != nil {
		t.Fatal(err)
	}
	store := featurefetch.NewMemoryStore()
	n, err := views.Seed(context.Background(), store, "", SeedRows())
	if err != nil || n != featureEntities {
		t.Fatalf("seeded %d rows: %v", n, err)
	}
	for _, sp := range specs {
		models := map[string]string{}
		for i, m := range sp.models {
			models[m.key] = fmt.Sprintf("127.0.0.1:%d", 19999+i)
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "route.yaml")
		if err := os.WriteFile(file, sp.route(models), 0o644); err != nil {
			t.Fatal(err)
		}
		env := tasks.NewEnv(nil)
		tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store})
		table, errs := router.LoadFiles([]string{file}, env)
		if len(errs) > 0 {
			t.Fatalf("%s: route does not load: %v\n%s", sp.name, errs, sp.route(models))
		}
		if p := table.Lookup([]byte(sp.endpoint)); p == nil || p.Timeout() != sp.routeTimeout {
			t.Fatalf("%s: no route at %s with timeout %s", sp.name, sp.endpoint, sp.routeTimeout)
		}
		cfg, err := FloorConfig(sp.name, models, "127.0.0.1:6379")
		if err != nil || len(cfg.Models) != len(sp.models) || (cfg.Features != nil) != sp.features {
			t.Fatalf("%s: floor config %+v, %v", sp.name, cfg, err)
		}
		if _, err := bench.ParseTemplate(sp.body); err != nil {
			t.Fatalf("%s: body template: %v", sp.name, err)
		}
	}
	if _, err := FloorConfig("nope", nil, ""); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Fatalf("unknown scenario: %v", err)
	}
	if _, err := FloorConfig(Fanout2, map[string]string{"m1": "127.0.0.1:1"}, ""); err == nil || !strings.Contains(err.Error(), `model "m2"`) {
		t.Fatalf("missing model: %v", err)
	}
	if _, err := FloorConfig(FeaturesFanout2, map[string]string{"m1": "a:1", "m2": "b:1"}, ""); err == nil || !strings.Contains(err.Error(), "feature store") {
		t.Fatalf("missing redis: %v", err)
	}
}

func TestOptionsErrors(t *testing.T) {
	f := func(o Options, want string) {
		t.Helper()
		_, err := Run(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one containing %q", err, want)
		}
	}
	f(Options{Name: "nope"}, `unknown scenario "nope"`)
	f(Options{Name: Fanout2, Mode: bench.ModeOpen}, "open mode needs a rate")
	f(Options{Name: Fanout2, Rate: 10}, "a rate applies only to open mode")
	f(Options{Name: Fanout2, OpenAtHalf: true, Mode: bench.ModeOpen, Rate: 10}, "sets its own mode and rate")
	f(Options{Name: Fanout2, Mode: "burst"}, `unknown mode "burst"`)
	f(Options{Name: Fanout2, Connections: -1}, "must not be negative")
	f(Options{Name: Fanout2, Rounds: -1}, "must not be negative")
	f(Options{Name: Fanout2, Duration: time.Second, Rounds: 20}, "less than 100ms per round")
	f(Options{Name: Faults, Timeout: 50 * time.Millisecond}, "at least the route timeout plus the deadline margin")
	neg := -time.Millisecond
	f(Options{Name: Fanout2, ModelLatency: &neg}, "must not be negative")
}

func TestSeedRowsAreDeterministic(t *testing.T) {
	if !bytes.Equal(SeedRows(), SeedRows()) {
		t.Fatal("seed rows differ between calls")
	}
	if n := bytes.Count(SeedRows(), []byte("\n")); n != featureEntities {
		t.Fatalf("%d rows, want %d", n, featureEntities)
	}
}
