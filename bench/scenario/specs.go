package scenario

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/bench/fakemodel"
	"github.com/lariat-gw/lariat/bench/floor"
)

// Scenario names.
const (
	Fanout2         = "fanout2"
	FeaturesFanout2 = "features+fanout2"
	Lasso           = "lasso"
	Faults          = "faults"
	Hang            = "hang"
	HangDefaults    = "hang-defaults"
)

// Default latency of the fake models: base and uniform jitter.
const (
	DefaultModelLatency = time.Millisecond
	DefaultModelJitter  = 500 * time.Microsecond
)

// The feature data of features+fanout2: one INT64-keyed view of ten
// features, seeded for entities 1..featureEntities; each request names
// entitiesPerRequest of them.
const (
	featureProject     = "lariat_bench"
	featureView        = "bench_stats"
	featureJoinKey     = "entity_id"
	featureEntities    = 1000
	entitiesPerRequest = 20
)

var (
	featureNames = []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"}
	featureTypes = []string{"DOUBLE", "DOUBLE", "DOUBLE", "DOUBLE", "FLOAT", "FLOAT", "INT64", "INT64", "STRING", "BOOL"}
)

// Fixed answers of the fake models.
const (
	bodyM1      = `{"score":0.734,"model":"m1","version":"3"}`
	bodyM2      = `{"score":0.291,"model":"m2","version":"8","labels":["a","b"]}`
	bodyControl = `{"allocation":{"driver_id":4711,"score":0.912},"model":"ja-control","version":"21"}`
	// faultDefault is what the faults route (and floor) use for a failed call.
	faultDefault = `{"score":null}`
)

// lassoRoute is gateway/testdata/lasso-route.yaml, byte for byte.
//
//go:embed testdata/lasso-route.yaml
var lassoRoute []byte

// lassoHost is the upstream host lassoRoute names; the gateway is started
// with --resolve mapping it to the fake model.
const lassoHost = "ja-control.allocation.svc.cluster.local"

// modelSpec is one fake model process of a scenario.
type modelSpec struct {
	key string
	cfg fakemodel.Config
}

// spec defines a scenario.
type spec struct {
	name  string
	about string
	// endpoint is the gateway path; the floor answers on any path.
	endpoint string
	// body is the generator's request body template.
	body         string
	routeTimeout time.Duration
	models       []modelSpec
	// features: the scenario needs a seeded redis-server.
	features bool
	// parity: deterministic answers, so the gateway's and the floor's
	// answers (and what the models receive) are compared before the load.
	parity bool
	// deadline: count the answers within the route timeout.
	deadline bool
	// targets: the throughput and p99 targets apply.
	targets bool
	// route returns the route file for the models' addresses (by key).
	route func(models map[string]string) []byte
	// resolve returns --resolve flags for the gateway.
	resolve func(models map[string]string) []string
	// gatewayFlags are more flags of lariat serve.
	gatewayFlags []string
	// floor returns the floor's configuration.
	floor func(models map[string]string, redis string) floor.Config
}

func randList(n int, lo, hi int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("{{rand %d %d}}", lo, hi)
	}
	return strings.Join(parts, ",")
}

var specs = []*spec{
	{
		name:         Fanout2,
		about:        "two model calls in parallel, merged into response.body.m1 and m2",
		endpoint:     "/v1/fanout2",
		body:         `{"request_id":{{seq}},"user":{"id":"u{{rand 1 100000}}","country":"DE"},"items":[` + randList(3, 1, 1000) + `]}`,
		routeTimeout: time.Second,
		models:       twoModels(),
		parity:       true,
		targets:      true,
		route: func(m map[string]string) []byte {
			return fanoutRoute("fanout2", "/v1/fanout2", time.Second, m, "", "'{{ .request }}'", "")
		},
		floor: func(m map[string]string, _ string) floor.Config {
			return floor.Config{Models: floorModels(m, []string{"m1", "m2"}, time.Second, nil)}
		},
	},
	{
		name:         FeaturesFanout2,
		about:        fmt.Sprintf("a feature lookup (%d entities x %d features, one pipelined HMGET per entity) feeding two parallel model calls", entitiesPerRequest, len(featureNames)),
		endpoint:     "/v1/features-fanout2",
		body:         `{"request_id":{{seq}},"ids":[` + randList(entitiesPerRequest, 1, featureEntities) + `]}`,
		routeTimeout: time.Second,
		models:       twoModels(),
		features:     true,
		parity:       true,
		targets:      true,
		route: func(m map[string]string) []byte {
			refs := make([]string, len(featureNames))
			for i, f := range featureNames {
				refs[i] = featureView + ":" + f
			}
			pre := fmt.Sprintf(`  features:
    type: feature
    inputs:
      entities: {%s: '{{ .request.ids }}'}
      features: [%s]
`, featureJoinKey, strings.Join(refs, ", "))
			return fanoutRoute("features-fanout2", "/v1/features-fanout2", time.Second, m, pre, `'{"features": {{ .tasks.features.body }}}'`, "")
		},
		floor: func(m map[string]string, redis string) floor.Config {
			return floor.Config{
				Models: floorModels(m, []string{"m1", "m2"}, time.Second, nil),
				Features: &floor.Features{
					Redis:           redis,
					Project:         featureProject,
					JoinKey:         featureJoinKey,
					View:            featureView,
					Names:           featureNames,
					IDs:             "ids",
					ModelBodyPrefix: `{"features": `,
					ModelBodySuffix: `}`,
					Timeout:         time.Second,
				},
			}
		},
	},
	{
		name:         Lasso,
		about:        "gateway/testdata/lasso-route.yaml unchanged: one model call with the request as its body, the answer as the response",
		endpoint:     "/ja-allocation",
		body:         `{"order_id":"o{{seq}}","pickup":{"lat":52.52,"lon":13.405},"candidates":[` + randList(10, 1, 5000) + `]}`,
		routeTimeout: 140 * time.Millisecond,
		models:       []modelSpec{{key: "control", cfg: fakemodel.Config{Body: []byte(bodyControl)}}},
		parity:       true,
		route:        func(map[string]string) []byte { return slices.Clone(lassoRoute) },
		resolve: func(m map[string]string) []string {
			return []string{lassoHost + "=" + m["control"]}
		},
		floor: func(m map[string]string, _ string) floor.Config {
			return floor.Config{Models: []floor.Model{{Addr: m["control"], Timeout: 140 * time.Millisecond}}}
		},
	},
	{
		name: Faults,
		about: "m1 slow (5% of answers after 500ms) and m2 failing (5% status 500), both with on_error defaults " +
			"and no circuit breaker, under a 100ms route timeout; counts the answers within the deadline",
		endpoint:     "/v1/faults",
		body:         `{"request_id":{{seq}},"user":{"id":"u{{rand 1 100000}}","country":"DE"},"items":[` + randList(3, 1, 1000) + `]}`,
		routeTimeout: 100 * time.Millisecond,
		models: []modelSpec{
			{key: "m1", cfg: fakemodel.Config{Body: []byte(bodyM1), SlowRate: 0.05, Slow: 500 * time.Millisecond}},
			{key: "m2", cfg: fakemodel.Config{Body: []byte(bodyM2), ErrorRate: 0.05}},
		},
		deadline: true,
		route: func(m map[string]string) []byte {
			// No circuit breaker: the floor has none, and the scenario
			// measures answers at the deadline, not answers skipped at once.
			return fanoutRoute("faults", "/v1/faults", 100*time.Millisecond, m, "", "'{{ .request }}'",
				"      breaker: {disabled: true}\n    on_error: {default: "+faultDefault+"}\n")
		},
		floor: func(m map[string]string, _ string) floor.Config {
			return floor.Config{Models: floorModels(m, []string{"m1", "m2"}, 100*time.Millisecond, []byte(faultDefault))}
		},
	},
	hangSpec(Hang, "m1 and m2 never answer in time (every answer after 30s), both with on_error defaults and no circuit "+
		"breaker, under a 200ms route timeout: every answer is the defaults at the deadline; counts the answers "+
		"within it (run it with --connections 200)",
		// No breaker and no concurrency limit: the scenario measures
		// answers at the deadline, not answers refused at once.
		"      breaker: {disabled: true}\n", "--upstream-limit-off"),
	hangSpec(HangDefaults, "hang with Lariat's default breakers and limits: the models' breakers open after five hung tries in a row "+
		"(about a second) and the answers are the defaults at once, with a trial call every 5s; the floor, which has none, "+
		"waits out the deadline on every request (run it with --connections 200)", ""),
}

// hangSpec is a scenario of two models that never answer in time (every
// answer after 30s) under a 200ms route timeout, both with on_error
// defaults; inputs is added to each call's inputs, gatewayFlags to lariat
// serve's.
func hangSpec(name, about, inputs string, gatewayFlags ...string) *spec {
	return &spec{
		name:         name,
		about:        about,
		endpoint:     "/v1/hang",
		body:         `{"request_id":{{seq}},"user":{"id":"u{{rand 1 100000}}","country":"DE"},"items":[` + randList(3, 1, 1000) + `]}`,
		routeTimeout: 200 * time.Millisecond,
		models: []modelSpec{
			{key: "m1", cfg: fakemodel.Config{Body: []byte(bodyM1), SlowRate: 1, Slow: 30 * time.Second}},
			{key: "m2", cfg: fakemodel.Config{Body: []byte(bodyM2), SlowRate: 1, Slow: 30 * time.Second}},
		},
		deadline:     true,
		gatewayFlags: gatewayFlags,
		route: func(m map[string]string) []byte {
			return fanoutRoute("hang", "/v1/hang", 200*time.Millisecond, m, "", "'{{ .request }}'",
				inputs+"    on_error: {default: "+faultDefault+"}\n")
		},
		floor: func(m map[string]string, _ string) floor.Config {
			return floor.Config{Models: floorModels(m, []string{"m1", "m2"}, 200*time.Millisecond, []byte(faultDefault))}
		},
	}
}

func twoModels() []modelSpec {
	return []modelSpec{
		{key: "m1", cfg: fakemodel.Config{Body: []byte(bodyM1)}},
		{key: "m2", cfg: fakemodel.Config{Body: []byte(bodyM2)}},
	}
}

func floorModels(addrs map[string]string, keys []string, timeout time.Duration, def []byte) []floor.Model {
	ms := make([]floor.Model, len(keys))
	for i, k := range keys {
		ms[i] = floor.Model{Key: k, Addr: addrs[k], Timeout: timeout, Default: def}
	}
	return ms
}

// fanoutRoute writes a route calling models m1 and m2 in parallel with
// body, their answers going to response.body.m1 and m2. pre is inserted at
// the top of the task list; extra is appended to each model task.
func fanoutRoute(name, endpoint string, timeout time.Duration, addrs map[string]string, pre, body, extra string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nname: %s\nendpoint: %s\ntimeout: %s\ntasks:\n%s", name, endpoint, timeout, pre)
	for _, k := range []string{"m1", "m2"} {
		fmt.Fprintf(&b, "  %s:\n    type: http\n    inputs:\n      address: http://%s/predict\n      body: %s\n%s    output: {path: response.body.%s}\n",
			k, addrs[k], body, extra, k)
	}
	return []byte(b.String())
}

func lookup(name string) *spec {
	for _, s := range specs {
		if s.name == name {
			return s
		}
	}
	return nil
}

// Names lists the scenarios, in the order they are documented.
func Names() []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	return names
}

// About returns a one-line description of scenario name.
func About(name string) (string, bool) {
	s := lookup(name)
	if s == nil {
		return "", false
	}
	return s.about, true
}

// FloorConfig returns the floor's configuration for scenario name, given
// the fake models' addresses by key (m1 and m2, or control for lasso) and
// the feature store's address (features+fanout2 only).
func FloorConfig(name string, models map[string]string, redis string) (floor.Config, error) {
	s := lookup(name)
	if s == nil {
		return floor.Config{}, fmt.Errorf("unknown scenario %q (available: %s)", name, strings.Join(Names(), ", "))
	}
	for _, m := range s.models {
		if models[m.key] == "" {
			return floor.Config{}, fmt.Errorf("scenario %s: the floor needs the address of model %q", name, m.key)
		}
	}
	if s.features && redis == "" {
		return floor.Config{}, fmt.Errorf("scenario %s: the floor needs the feature store's address", name)
	}
	return s.floor(models, redis), nil
}

// ViewsYAML returns the feature-view file of features+fanout2.
func ViewsYAML() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "project: %s\nentities:\n  - name: %s\n    value_type: INT64\nfeature_views:\n  - name: %s\n    entities: [%s]\n    features:\n",
		featureProject, featureJoinKey, featureView, featureJoinKey)
	for i, f := range featureNames {
		fmt.Fprintf(&b, "      - {name: %s, dtype: %s}\n", f, featureTypes[i])
	}
	return []byte(b.String())
}

// SeedRows returns the rows of features+fanout2 in featurefetch's seed
// format (JSON lines): entities 1..1000, deterministic values.
func SeedRows() []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var b []byte
	for id := 1; id <= featureEntities; id++ {
		feats := make(map[string]any, len(featureNames))
		for i, f := range featureNames {
			switch featureTypes[i] {
			case "DOUBLE":
				feats[f] = float64(rng.IntN(1_000_000)) / 1000
			case "FLOAT":
				feats[f] = float64(rng.IntN(1000)) / 8
			case "INT64":
				feats[f] = rng.Int64N(1 << 40)
			case "STRING":
				feats[f] = fmt.Sprintf("tier-%d", rng.IntN(5))
			case "BOOL":
				feats[f] = rng.IntN(2) == 1
			}
		}
		row := map[string]any{
			"view":     featureView,
			"entities": map[string]any{featureJoinKey: id},
			"features": feats,
		}
		line, _ := json.Marshal(row) // plain values cannot fail
		b = append(append(b, line...), '\n')
	}
	return b
}
