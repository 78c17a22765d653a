package floor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/bench/fakemodel"
	"github.com/lariat-gw/lariat/bench/floor"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/redistest"
)

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startModel serves a fake model on 127.0.0.1 and returns its address.
func startModel(t testing.TB, cfg fakemodel.Config) (*fakemodel.Server, string) {
	t.Helper()
	s, err := fakemodel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	go s.Serve(ln) //nolint:errcheck // ends at Shutdown
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, ln.Addr().String()
}

// startFloor serves cfg on 127.0.0.1 and returns its base URL.
func startFloor(t testing.TB, cfg floor.Config) string {
	t.Helper()
	s, err := floor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	go s.Serve(ln) //nolint:errcheck // ends at Shutdown
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

var client = &fasthttp.Client{}

func post(t testing.TB, url, body string) (int, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod("POST")
	req.SetBodyString(body)
	if err := client.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp.StatusCode(), string(resp.Body())
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	code, body, err := client.GetTimeout(nil, url, 5*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return code, string(body)
}

func sameJSON(t testing.TB, got, want string) {
	t.Helper()
	dec := func(s string) any {
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("invalid JSON %q: %v", s, err)
		}
		return v
	}
	if !reflect.DeepEqual(dec(got), dec(want)) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestFanoutMerges(t *testing.T) {
	m1, a1 := startModel(t, fakemodel.Config{Body: []byte(`{"score":1}`)})
	m2, a2 := startModel(t, fakemodel.Config{Body: []byte(`{"score":2,"tags":["x"]}`)})
	url := startFloor(t, floor.Config{Models: []floor.Model{
		{Key: "m1", Addr: a1, Timeout: time.Second},
		{Key: "m2", Addr: a2, Timeout: time.Second},
	}})
	for i := 0; i < 3; i++ {
		code, body := post(t, url+"/v1/x", `{"user":"u1"}`)
		if code != 200 || body != `{"m1":{"score":1},"m2":{"score":2,"tags":["x"]}}` {
			t.Fatalf("answer %d %s", code, body)
		}
	}
	if m1.Stats().Requests != 3 || m2.Stats().Requests != 3 {
		t.Fatalf("model requests %d, %d; want 3 each", m1.Stats().Requests, m2.Stats().Requests)
	}
	if code, body := get(t, url+"/-/healthz"); code != 200 || body != `{"status":"ok"}` {
		t.Fatalf("healthz %d %s", code, body)
	}
}

func TestSingleModelPassesThrough(t *testing.T) {
	_, addr := startModel(t, fakemodel.Config{Body: []byte(`{"allocation":7}`)})
	url := startFloor(t, floor.Config{Models: []floor.Model{{Addr: addr, Timeout: time.Second}}})
	code, _ := post(t, "http://"+addr+"/-/capture", "")
	if code != 200 {
		t.Fatalf("arm capture: %d", code)
	}
	if code, body := post(t, url+"/ja-allocation", `{"order":1}`); code != 200 || body != `{"allocation":7}` {
		t.Fatalf("answer %d %s", code, body)
	}
	if _, sent := get(t, "http://"+addr+"/-/captured"); sent != `{"order":1}` {
		t.Fatalf("the model received %q, want the request body", sent)
	}
}

func TestFailures(t *testing.T) {
	_, ok := startModel(t, fakemodel.Config{Body: []byte(`{"score":1}`)})
	_, failing := startModel(t, fakemodel.Config{ErrorRate: 1})
	_, slow := startModel(t, fakemodel.Config{SlowRate: 1, Slow: 500 * time.Millisecond})

	f := func(name string, models []floor.Model, wantCode int, wantBody string) {
		t.Helper()
		url := startFloor(t, floor.Config{Models: models})
		code, body := post(t, url+"/", `{}`)
		if code != wantCode || !strings.Contains(body, wantBody) {
			t.Fatalf("%s: answer %d %s; want %d with %q", name, code, body, wantCode, wantBody)
		}
	}
	def := []byte(`{"score":null}`)
	f("status 500 without default", []floor.Model{{Key: "a", Addr: ok, Timeout: time.Second}, {Key: "b", Addr: failing, Timeout: time.Second}},
		502, `"error":"model call failed`)
	f("status 500 with default", []floor.Model{{Key: "a", Addr: ok, Timeout: time.Second}, {Key: "b", Addr: failing, Timeout: time.Second, Default: def}},
		200, `{"a":{"score":1},"b":{"score":null}}`)
	f("timeout without default", []floor.Model{{Addr: slow, Timeout: 50 * time.Millisecond}},
		504, `model call timed out`)
	f("timeout with default", []floor.Model{{Key: "a", Addr: slow, Timeout: 50 * time.Millisecond, Default: def}, {Key: "b", Addr: ok, Timeout: time.Second}},
		200, `{"a":{"score":null},"b":{"score":1}}`)
	closed := listen(t)
	addr := closed.Addr().String()
	closed.Close()
	f("connection refused", []floor.Model{{Addr: addr, Timeout: time.Second}}, 502, "model call failed")
}

func TestConfigErrors(t *testing.T) {
	f := func(cfg floor.Config, want string) {
		t.Helper()
		_, err := floor.New(cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one containing %q", err, want)
		}
	}
	f(floor.Config{}, "no models")
	f(floor.Config{Models: []floor.Model{{Addr: "127.0.0.1:1"}}}, "needs an address and a timeout")
	f(floor.Config{Models: []floor.Model{{Addr: "127.0.0.1:1", Timeout: 1}, {Key: "b", Addr: "127.0.0.1:1", Timeout: 1}}}, "has no key")
	f(floor.Config{Models: []floor.Model{{Addr: "127.0.0.1:1", Timeout: 1}}, Features: &floor.Features{Redis: "127.0.0.1:1"}}, "features need")
}

const testViews = `project: floortest
entities:
  - {name: entity_id, value_type: INT64}
feature_views:
  - name: stats
    entities: [entity_id]
    features:
      - {name: rate, dtype: DOUBLE}
      - {name: share, dtype: FLOAT}
      - {name: trips, dtype: INT64}
      - {name: tier, dtype: STRING}
      - {name: active, dtype: BOOL}
      - {name: recent, dtype: INT32_LIST}
`

const testRows = `{"view":"stats","entities":{"entity_id":1},"features":{"rate":0.25,"share":1.5,"trips":42,"tier":"gold","active":true,"recent":[1,2]}}
{"view":"stats","entities":{"entity_id":2},"features":{"rate":-3.75,"trips":7,"tier":"q\"uote","active":false,"recent":[]}}
{"view":"stats","entities":{"entity_id":3},"features":{"rate":1e-7,"share":0.125,"trips":-1,"tier":"","active":true,"recent":[3]}}
`

// seedFeatures starts a redis-server seeded with testRows and returns its
// address and the views.
func seedFeatures(t testing.TB) (string, *featurefetch.Views) {
	t.Helper()
	srv := redistest.Start(t)
	views, err := featurefetch.ParseViews("views.yaml", []byte(testViews))
	if err != nil {
		t.Fatal(err)
	}
	store, err := featurefetch.NewRedisStore(featurefetch.RedisOptions{Addrs: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := views.Seed(context.Background(), store, "", []byte(testRows)); err != nil {
		t.Fatal(err)
	}
	return srv.Addr(), views
}

var featureNames = []string{"rate", "share", "trips", "tier", "active", "recent"}

func featureConfig(redis, model string) floor.Config {
	return floor.Config{
		Models: []floor.Model{{Key: "m1", Addr: model, Timeout: time.Second}},
		Features: &floor.Features{
			Redis: redis, Project: "floortest", JoinKey: "entity_id", View: "stats", Names: featureNames,
			IDs: "ids", ModelBodyPrefix: `{"features": `, ModelBodySuffix: `}`,
		},
	}
}

// TestFeaturesMatchFeaturefetch checks that the floor's hand-written read
// sends the models exactly the rows the gateway's feature task builds.
func TestFeaturesMatchFeaturefetch(t *testing.T) {
	redis, views := seedFeatures(t)
	_, model := startModel(t, fakemodel.Config{Body: []byte(`{"score":1}`)})
	url := startFloor(t, featureConfig(redis, model))

	refs := make([]string, len(featureNames))
	for i, f := range featureNames {
		refs[i] = "stats:" + f
	}
	plan, err := views.NewPlan("", refs, featurefetch.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := featurefetch.NewRedisStore(featurefetch.RedisOptions{Addrs: []string{redis}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	for _, ids := range []string{`[1,2,3]`, `[3,3,1]`, `[2,99]`, `[]`} {
		if code, _ := post(t, "http://"+model+"/-/capture", ""); code != 200 {
			t.Fatal("cannot arm capture")
		}
		code, body := post(t, url+"/", `{"request_id":1,"ids":`+ids+`}`)
		if code != 200 || body != `{"m1":{"score":1}}` {
			t.Fatalf("ids %s: answer %d %s", ids, code, body)
		}
		_, sent := get(t, "http://"+model+"/-/captured")
		rows, err := plan.Fetch(context.Background(), store, [][]byte{[]byte(ids)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, sent, `{"features": `+string(rows)+`}`)
		if !bytes.HasPrefix([]byte(sent), []byte(`{"features": [`)) {
			t.Fatalf("model body %q", sent)
		}
	}
}

func TestFeatureFailures(t *testing.T) {
	srv := redistest.Start(t)
	_, model := startModel(t, fakemodel.Config{})
	url := startFloor(t, featureConfig(srv.Addr(), model))
	if code, body := post(t, url+"/", `{"no_ids":1}`); code != 502 || !strings.Contains(body, `no \"ids\" array`) {
		t.Fatalf("missing ids: %d %s", code, body)
	}
	srv.Stop()
	if code, body := post(t, url+"/", `{"ids":[1]}`); code != 502 || !strings.Contains(body, "cannot read features") {
		t.Fatalf("redis down: %d %s", code, body)
	}
}
