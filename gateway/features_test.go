package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/tasks"
	"github.com/lariat-gw/lariat/upstream"
)

// startFeatureGateway serves routes with a feature store on a real
// redis-server seeded with the demo rows, its breaker off.
func startFeatureGateway(t *testing.T, routes map[string]string) (*testGateway, *redistest.Server) {
	return startFeatureGatewayWith(t, routes, upstream.BreakerSettings{Disabled: true})
}

// startFeatureGatewayWith is startFeatureGateway with the store's breaker
// settings bs (zero: the defaults).
func startFeatureGatewayWith(t *testing.T, routes map[string]string, bs upstream.BreakerSettings) (*testGateway, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	views, err := featurefetch.DemoViews()
	if err != nil {
		t.Fatal(err)
	}
	store, err := featurefetch.NewRedisStore(featurefetch.RedisOptions{Addrs: []string{srv.Addr()}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := views.Seed(context.Background(), store, "", featurefetch.DemoSeed()); err != nil {
		t.Fatal(err)
	}
	fe := &tasks.FeatureEnv{Views: views, Store: store, Name: "redis://" + srv.Addr(), Breaker: bs}
	return startGateway(t, routes, nil, func(o *Options) { tasks.FeatureStore.Provide(o.Env, fe) }), srv
}

const featureRoute = `
name: feat
endpoint: /feat
timeout: 500ms
tasks:
  features:
    type: feature
    inputs:
      entities: {driver_id: '{{ .request.candidates }}'}
      features: [driver_stats:conv_rate, driver_stats:rating, driver_trips:recent_trip_km]
      defaults: {driver_stats:rating: 4.0}
      timeout: 200ms
    output: {path: response.body.features}
%s
`

func TestFeatureTaskFeedsModel(t *testing.T) {
	model := upstreamtest.Start(t, upstreamtest.Echo())
	route := fmt.Sprintf(featureRoute, fmt.Sprintf(`  rank:
    type: http
    inputs: {address: %s, body: '{"drivers": {{ .tasks.features.body }}}'}
    output: {path: response.body.model}`, model.URL("/predict")))
	tg, _ := startFeatureGateway(t, map[string]string{"f.yaml": route})
	a := tg.post(t, "/feat", `{"candidates":[1001,1002,99999]}`)
	if a.status != 200 {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	want := `[{"driver_id":1001,"conv_rate":0.388,"rating":3.57,"recent_trip_km":[27.3]},`
	if got := gjson.Get(a.body, "features").Raw; !strings.HasPrefix(got, want) {
		t.Fatalf("features %s, want prefix %s", got, want)
	}
	if got := gjson.Get(a.body, "features.2").Raw; got != `{"driver_id":99999,"conv_rate":null,"rating":4,"recent_trip_km":null}` {
		t.Fatalf("missing entity: %s", got)
	}
	// The model received exactly the feature rows.
	if got, want := gjson.Get(model.LastBody(), "drivers").Raw, gjson.Get(a.body, "features").Raw; got != want {
		t.Fatalf("model got %s, want %s", got, want)
	}
	// Bad entity values are the client's fault.
	if a := tg.post(t, "/feat", `{"candidates":["not-a-number"]}`); a.status != 400 || !strings.Contains(a.body, `invalid INT64`) {
		t.Fatalf("bad entity: %d %s", a.status, a.body)
	}
}

// TestFeatureTaskEntityOrder checks that rows name the join keys in the
// order the route writes them, not sorted.
func TestFeatureTaskEntityOrder(t *testing.T) {
	route := `
name: order
endpoint: /order
tasks:
  features:
    type: feature
    inputs:
      entities:
        driver_id: '{{ .request.driver }}'
        customer_id: '{{ .request.customer }}'
      features: [customer_profile:tier, driver_stats:avg_daily_trips]
    output: {path: response.body}
`
	tg, _ := startFeatureGateway(t, map[string]string{"o.yaml": route})
	a := tg.post(t, "/order", `{"driver":1001,"customer":"c1002"}`)
	if want := `[{"driver_id":1001,"customer_id":"c1002","tier":"gold",`; a.status != 200 || !strings.HasPrefix(a.body, want) {
		t.Fatalf("answer %d %s, want prefix %s", a.status, a.body, want)
	}
}

func TestFeatureStoreDownAndBack(t *testing.T) {
	route := fmt.Sprintf(featureRoute, "") + `
  plain:
    type: feature
    inputs:
      entities: {driver_id: '{{ .request.candidates }}'}
      features: [driver_stats:acc_rate]
      timeout: 200ms
    output: {path: response.body.plain}
    on_error: {default: []}
`
	route = strings.Replace(route, "    output: {path: response.body.features}\n", "    output: {path: response.body.features}\n    on_error: {default: \"unavailable\"}\n", 1)
	tg, srv := startFeatureGateway(t, map[string]string{"f.yaml": route})
	req := `{"candidates":[1001]}`
	if a := tg.post(t, "/feat", req); a.status != 200 || a.header.Get("X-Lariat-Incomplete") != "" {
		t.Fatalf("before: %d %s", a.status, a.body)
	}
	srv.Stop()
	start := time.Now()
	a := tg.post(t, "/feat", req)
	if a.status != 200 || a.body != `{"features":"unavailable","plain":[]}` || a.header.Get("X-Lariat-Incomplete") == "" {
		t.Fatalf("redis down: %d %s %v", a.status, a.body, a.header)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("answer took %s with Redis down; the task timeout is 200ms", took)
	}
	srv.Restart()
	// The gateway reconnects by itself: a bounded number of tries.
	last := servedInFull(t, tg, "/feat", req, "after restart")
	// A restarted server is empty: values are missing, not errors.
	if got := gjson.Get(last.body, "features.0.conv_rate").Raw; got != "null" {
		t.Fatalf("after restart: %s", last.body)
	}
}

// TestPausedStoreOpensItsBreaker: a Redis that stops answering without
// closing its connections (a slow command, a paused machine) makes the
// reads of a feature task with no timeout of its own wait out the route
// deadline. After five of them the store's breaker opens, and requests
// take the task's default at once instead of each waiting out the
// deadline; once Redis answers again, so do the reads.
func TestPausedStoreOpensItsBreaker(t *testing.T) {
	route := `
name: feat
endpoint: /feat
timeout: 200ms
tasks:
  features:
    type: feature
    inputs:
      entities: {driver_id: '{{ .request.candidates }}'}
      features: [driver_stats:conv_rate]
    on_error: {default: "unavailable"}
    output: {path: response.body.features}
`
	tg, srv := startFeatureGatewayWith(t, map[string]string{"f.yaml": route}, upstream.BreakerSettings{})
	req := `{"candidates":[1001]}`
	for i := 0; i < 5; i++ {
		if a := tg.post(t, "/feat", req); a.status != 200 || a.header.Get("X-Lariat-Incomplete") != "" {
			t.Fatalf("before the pause: %d %s", a.status, a.body)
		}
	}
	srv.Pause()
	for i := 0; i < 10; i++ {
		if a := tg.post(t, "/feat", req); a.status != 200 || a.body != `{"features":"unavailable"}` {
			t.Fatalf("request %d with Redis paused: %d %s, want the default", i, a.status, a.body)
		}
	}
	opened := `lariat_breaker_state_changes_total{upstream="redis://` + srv.Addr() + `",to="open"}`
	if m := tg.adminGet(t, "/metrics").body; !strings.Contains(m, opened) {
		t.Fatalf("the store's breaker did not open:\n%s", grepLines(m, "breaker"))
	}
	srv.Resume()
	servedInFull(t, tg, "/feat", req, "after the pause")
}

// servedInFull posts req to path until an answer is 200 with no task
// defaulted (a bounded number of tries, testwait.Timeout) and returns it;
// the test fails, naming when, if none is.
func servedInFull(t *testing.T, tg *testGateway, path, req, when string) answer {
	t.Helper()
	var last answer
	testwait.Within(testwait.Timeout, func() bool {
		last = tg.post(t, path, req)
		return last.status == 200 && last.header.Get("X-Lariat-Incomplete") == ""
	})
	if last.status != 200 || last.header.Get("X-Lariat-Incomplete") != "" {
		t.Fatalf("%s: %d %s (incomplete: %q)", when, last.status, last.body, last.header.Get("X-Lariat-Incomplete"))
	}
	return last
}

func TestFeatureStoreDownFailsWithoutDefault(t *testing.T) {
	tg, srv := startFeatureGateway(t, map[string]string{"f.yaml": fmt.Sprintf(featureRoute, "")})
	srv.Stop()
	a := tg.post(t, "/feat", `{"candidates":[1001]}`)
	if a.status != 502 && a.status != 504 || !strings.Contains(a.body, `"task":"features"`) || !strings.Contains(a.body, "feature store") {
		t.Fatalf("redis down: %d %s", a.status, a.body)
	}
}

func TestGetOnlineFeatures(t *testing.T) {
	tg, _ := startFeatureGateway(t, nil)
	a := tg.post(t, OnlineFeaturesPath, `{"features":["driver_stats:conv_rate","driver_stats:avg_daily_trips"],"entities":{"driver_id":[1001,424242]}}`)
	if a.status != 200 {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	f := func(path, want string) {
		t.Helper()
		if got := gjson.Get(a.body, path).Raw; got != want {
			t.Fatalf("%s = %s, want %s in %s", path, got, want, a.body)
		}
	}
	f("metadata.feature_names", `["driver_id","conv_rate","avg_daily_trips"]`)
	f("results.0.values", `[1001,424242]`)
	f("results.1.values", `[0.388,null]`)
	f("results.1.statuses", `["PRESENT","NOT_FOUND"]`)
	f("results.2.values", `[44,null]`)
	if n := len(gjson.Get(a.body, "results.1.event_timestamps").Array()); n != 2 {
		t.Fatalf("event_timestamps: %s", a.body)
	}
	if a := tg.post(t, OnlineFeaturesPath, `{"features":["nope:x"],"entities":{"driver_id":[1]}}`); a.status != 400 || !strings.Contains(a.body, "nope") {
		t.Fatalf("bad request: %d %s", a.status, a.body)
	}
}

func TestFeatureRouteNeedsStore(t *testing.T) {
	tg := startGateway(t, map[string]string{"f.yaml": fmt.Sprintf(featureRoute, "")}, nil)
	_, errs := tg.g.RoutesInfo()
	if len(errs) != 1 || !strings.Contains(errs[0], `f.yaml:7:11: task "features": feature tasks need a feature store`) {
		t.Fatalf("errors %v", errs)
	}
}

// TestRedisKilledUnderLoad stops Redis while two routes take steady load,
// with the store's breaker at its defaults: the route whose feature task
// has a default never fails; the other fails only while Redis is down,
// and reads succeed again soon after Redis accepts connections: once the
// breaker's 250ms open time has passed, not after a long backoff. The
// bound on that is generous for a loaded machine.
func TestRedisKilledUnderLoad(t *testing.T) {
	const recovery = 3 * time.Second
	withDefault := strings.NewReplacer("name: feat", "name: soft", "endpoint: /feat", "endpoint: /soft").Replace(fmt.Sprintf(featureRoute, "")) +
		"    on_error: {default: []}\n"
	tg, srv := startFeatureGatewayWith(t, map[string]string{
		"hard.yaml": fmt.Sprintf(featureRoute, ""),
		"soft.yaml": withDefault,
	}, upstream.BreakerSettings{})
	type sample struct {
		start, end time.Time
		status     int
	}
	var mu sync.Mutex
	var hard, soft []sample
	// count returns how many samples of s started after t0 match ok.
	count := func(s *[]sample, t0 time.Time, ok func(sample) bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, x := range *s {
			if x.start.After(t0) && ok(x) {
				n++
			}
		}
		return n
	}
	every := func(sample) bool { return true }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, path := range []string{"/feat", "/soft"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				a := tg.post(t, path, `{"candidates":[1001,1002]}`)
				mu.Lock()
				if path == "/feat" {
					hard = append(hard, sample{start, time.Now(), a.status})
				} else {
					soft = append(soft, sample{start, time.Now(), a.status})
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // paced, not flat out
			}
		}()
	}
	var zero time.Time
	testwait.Until(t, "load on both routes", func() bool { return count(&hard, zero, every) >= 20 && count(&soft, zero, every) >= 20 })
	down := time.Now()
	srv.Stop()
	// Redis is down: both routes take requests, the one without a default
	// fails them.
	testwait.Until(t, "the outage seen", func() bool {
		return count(&hard, down, func(s sample) bool { return s.status != 200 }) >= 5 && count(&soft, down, every) >= 5
	})
	srv.Restart() // returns once Redis answers PING
	up := time.Now()
	testwait.Within(testwait.Timeout, func() bool {
		return count(&hard, up, func(s sample) bool { return s.status == 200 }) > 0 && count(&soft, up, every) >= 5
	})
	close(stop)
	wg.Wait()
	hardFailed, hardFailedBefore, softFailed := 0, 0, 0
	var firstOK time.Time
	for _, s := range hard {
		switch {
		case s.status != 200:
			hardFailed++
			if s.end.Before(down) {
				hardFailedBefore++
			}
		case s.start.After(up) && firstOK.IsZero():
			firstOK = s.end
		}
	}
	for _, s := range soft {
		if s.status != 200 {
			softFailed++
		}
	}
	t.Logf("route without default: %d requests, %d failed; route with default: %d requests, %d failed; first read after Redis was back: %s",
		len(hard), hardFailed, len(soft), softFailed, firstOK.Sub(up).Round(time.Millisecond))
	if softFailed != 0 {
		t.Fatalf("the route with a default failed %d times", softFailed)
	}
	if hardFailed == 0 || hardFailedBefore != 0 {
		t.Fatalf("route without default: %d failures, %d before the outage", hardFailed, hardFailedBefore)
	}
	if firstOK.IsZero() || firstOK.Sub(up) > recovery {
		t.Fatalf("first successful read %s after Redis was back, want within %s", firstOK.Sub(up), recovery)
	}
}

// An entity with no feature row is listed in the task's missing value and
// the X-Lariat-Missing header; on_missing chooses what its features are,
// or fails the task.
func TestFeatureOnMissing(t *testing.T) {
	model := upstreamtest.Start(t, upstreamtest.Echo())
	route := func(name, onMissing string) string {
		r := strings.Replace(fmt.Sprintf(featureRoute, fmt.Sprintf(`  rank:
    type: http
    inputs: {address: %s, body: '{"missing": {{ .tasks.features.missing }}}'}
    output: {path: response.body.model}`, model.URL("/predict"))), "name: feat\nendpoint: /feat", "name: "+name+"\nendpoint: /"+name, 1)
		if onMissing != "" {
			r = strings.Replace(r, "      timeout: 200ms\n", "      timeout: 200ms\n      on_missing: "+onMissing+"\n", 1)
		}
		return r
	}
	tg, _ := startFeatureGateway(t, map[string]string{
		"dflt.yaml": route("dflt", ""),
		"pass.yaml": route("pass", "pass"),
		"fail.yaml": route("fail", "fail"),
	})
	f := func(path, req string, status int, wantMissing, wantRow string) {
		t.Helper()
		a := tg.post(t, path, req)
		if a.status != status {
			t.Fatalf("%s %s: answer %d %s", path, req, a.status, a.body)
		}
		if status != 200 {
			if !strings.Contains(a.body, wantMissing) {
				t.Fatalf("%s %s: answer %s, want it to name %s", path, req, a.body, wantMissing)
			}
			return
		}
		if got := gjson.Get(a.body, "model.missing").Raw; got != wantMissing {
			t.Fatalf("%s %s: the model got missing %s, want %s", path, req, got, wantMissing)
		}
		if h := a.header.Get("X-Lariat-Missing"); (wantMissing == "null") != (h == "") || h != "" && h != "features" {
			t.Fatalf("%s %s: X-Lariat-Missing %q", path, req, h)
		}
		if wantRow != "" {
			if got := gjson.Get(a.body, "features.1").Raw; got != wantRow {
				t.Fatalf("%s %s: row %s, want %s", path, req, got, wantRow)
			}
		}
	}
	for _, path := range []string{"/dflt", "/pass", "/fail"} {
		f(path, `{"candidates":[1001,1002]}`, 200, "null", "")
	}
	f("/dflt", `{"candidates":[1001,99999]}`, 200, `[{"driver_id":99999}]`, `{"driver_id":99999,"conv_rate":null,"rating":4,"recent_trip_km":null}`)
	f("/pass", `{"candidates":[1001,99999]}`, 200, `[{"driver_id":99999}]`, `{"driver_id":99999,"conv_rate":null,"rating":null,"recent_trip_km":null}`)
	f("/fail", `{"candidates":[1001,99999,99998]}`, 400, `feature rows missing for entities [{\"driver_id\":99999},{\"driver_id\":99998}]`, "")
}

// TestFeatureKeyOfWrongTypeIsNotTheStores: an entity whose key holds
// something other than a hash (written there by another program) fails
// the requests that read it, with the key's fault named, and does not
// open the store's breaker for the requests that read other entities.
func TestFeatureKeyOfWrongTypeIsNotTheStores(t *testing.T) {
	tg, srv := startFeatureGatewayWith(t, map[string]string{"f.yaml": fmt.Sprintf(featureRoute, "")}, upstream.BreakerSettings{})
	views, err := featurefetch.DemoViews()
	if err != nil {
		t.Fatal(err)
	}
	id, err := featurefetch.ParseEntityValue(featurefetch.TypeInt64, []byte("1002"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := featurefetch.AppendEntityKey(nil, views.Project, []string{"driver_id"}, []featurefetch.EntityValue{id})
	if err != nil {
		t.Fatal(err)
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(context.Background(), c.B().Set().Key(string(key)).Value("not a hash").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// Twice the failures that open the store's breaker.
	for i := range 2 * int(tasks.DefaultStoreBreaker.Failures) {
		a := tg.post(t, "/feat", `{"candidates":[1002]}`)
		if a.status != 502 || !strings.Contains(a.body, `row of {\"driver_id\":1002} in views driver_stats, driver_trips holds a value that is not a hash: WRONGTYPE`) {
			t.Fatalf("request %d for the entity of the wrong type: %d %s", i, a.status, a.body)
		}
	}
	if a := tg.post(t, "/feat", `{"candidates":[1001]}`); a.status != 200 {
		t.Fatalf("another entity after those: %d %s", a.status, a.body)
	}
	if v := metricValue(t, tg, `lariat_breaker_state_changes_total{upstream="redis://`+srv.Addr()+`",to="open"}`); v != 0 {
		t.Fatalf("store breaker opened %v times", v)
	}
}

// failingStore is a feature store that cannot be reached; it counts the
// reads asked of it.
type failingStore struct{ reads atomic.Int64 }

func (s *failingStore) ReadHashes(_ context.Context, _ []featurefetch.HashRead, _ time.Duration, dst []featurefetch.FieldValue) ([]featurefetch.FieldValue, error) {
	s.reads.Add(1)
	return dst, errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
}

// TestGetOnlineFeaturesSharesTheStoreBreaker: the Feast serving API
// shares the store's breaker with the feature tasks: once the store has
// failed enough reads in a row, requests are answered 503 with
// Retry-After at once, without asking the store (nor waiting out the
// read timeout, when it stalls).
func TestGetOnlineFeaturesSharesTheStoreBreaker(t *testing.T) {
	views, err := featurefetch.DemoViews()
	if err != nil {
		t.Fatal(err)
	}
	store := &failingStore{}
	fe := &tasks.FeatureEnv{Views: views, Store: store, Name: "down", Breaker: upstream.BreakerSettings{OpenFor: time.Hour}}
	tg := startGateway(t, nil, nil, func(o *Options) { tasks.FeatureStore.Provide(o.Env, fe) })
	req := `{"features":["driver_stats:conv_rate"],"entities":{"driver_id":[1001]}}`
	failures := int(tasks.DefaultStoreBreaker.Failures)
	for i := range failures + 5 {
		a := tg.post(t, OnlineFeaturesPath, req)
		switch {
		case i < failures && a.status == 502 && strings.Contains(a.body, "connection refused"):
		case i >= failures && a.status == 503 && a.header.Get("Retry-After") == "1" && strings.Contains(a.body, "breaker is open"):
		default:
			t.Fatalf("request %d: %d %v %s", i, a.status, a.header, a.body)
		}
	}
	if n := store.reads.Load(); n != int64(failures) {
		t.Fatalf("the store was asked %d reads, want %d", n, failures)
	}
}

// TestTightFeatureTimeoutKeepsTheStoreBreakerClosed: the feature store's
// breaker is shared by the feature tasks of every route. One route reads
// thousands of entities under a 1ms timeout, which its reads never meet,
// while another route's reads are answered: the store is up, and the
// other route's reads are not cut off. Each round's six tight reads, one
// more than the breaker's failures, come well within a second of the
// other route's answer.
func TestTightFeatureTimeoutKeepsTheStoreBreakerClosed(t *testing.T) {
	tight := strings.NewReplacer("name: feat", "name: tight", "endpoint: /feat", "endpoint: /tight", "timeout: 200ms", "timeout: 1ms").Replace(fmt.Sprintf(featureRoute, ""))
	tg, srv := startFeatureGatewayWith(t, map[string]string{"f.yaml": fmt.Sprintf(featureRoute, ""), "t.yaml": tight}, upstream.BreakerSettings{})
	ids := make([]string, 5000)
	for i := range ids {
		ids[i] = strconv.Itoa(100000 + i)
	}
	many := `{"candidates":[` + strings.Join(ids, ",") + `]}`
	for round := range 5 {
		if a := tg.post(t, "/feat", `{"candidates":[1001]}`); a.status != 200 || a.header.Get("X-Lariat-Incomplete") != "" {
			t.Fatalf("round %d: the other route: %d %s", round, a.status, a.body)
		}
		for i := range 6 {
			if a := tg.post(t, "/tight", many); a.status != 504 {
				t.Fatalf("round %d, tight read %d: %d %.200s, want 504", round, i, a.status, a.body)
			}
		}
	}
	opened := `lariat_breaker_state_changes_total{upstream="redis://` + srv.Addr() + `",to="open"}`
	if m := tg.adminGet(t, "/metrics").body; strings.Contains(m, opened) {
		t.Fatalf("the store's breaker opened:\n%s", grepLines(m, "breaker"))
	}
}
