package router

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/tasks"
)

// memorySink keeps copies of the records written.
type memorySink struct {
	mu   sync.Mutex
	recs []predlog.Record
}

func (s *memorySink) Write(recs []*predlog.Record) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		c := *r
		c.Tasks = append([]predlog.Task(nil), r.Tasks...)
		c.Arms = append([]predlog.Arm(nil), r.Arms...)
		c.Features = append([]predlog.Feature(nil), r.Features...)
		c.Outputs = append([]predlog.Output(nil), r.Outputs...)
		s.recs = append(s.recs, c)
	}
	return 0, nil
}
func (s *memorySink) Flush() (int, error) { return 0, nil }
func (s *memorySink) Close() (int, error) { return 0, nil }
func (s *memorySink) Check() error        { return nil }

// logPlan compiles a route (with the demo feature store) and attaches a
// prediction log writing into a memorySink.
func loggedPlan(t testing.TB, src string) (*Plan, *predlog.Log, *memorySink) {
	t.Helper()
	views, store, err := featurefetch.NewDemoStore()
	if err != nil {
		t.Fatal(err)
	}
	env := tasks.NewEnv(nil)
	tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store})
	r, err := config.Parse("r.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(r, env)
	if err != nil {
		t.Fatal(err)
	}
	sink := &memorySink{}
	l := predlog.New(sink, "memory", predlog.Options{FlushInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { l.Close() })
	return p, l, sink
}

func serveJSON(p *Plan, rc *fasthttp.RequestCtx, req *fasthttp.Request, body string) {
	if len(rc.Request.Header.Method()) == 0 || string(rc.Request.RequestURI()) != "/r" {
		req.Header.SetMethod("POST")
		req.SetRequestURI("/r")
		req.Header.SetContentType("application/json")
		rc.Init(req, nil, nil)
	}
	rc.Request.SetBodyString(body)
	rc.Response.Reset()
	p.Serve(rc)
}

const splitRoute = `name: r
endpoint: /r
tasks:
  features:
    type: feature
    inputs:
      entities: {driver_id: '{{ .request.driver }}'}
      features: [driver_stats:conv_rate]
  s:
    type: split
    inputs:
      sticky: '{{ .request.user }}'
      arms: [{name: a, weight: 1, run: []}, {name: b, weight: 1, run: []}]
    output: {path: response.body.arm, from: branch}
`

// TestServeAllocsWithLogOff shows the prediction log costs no allocation
// per request when it is off, and none when a route samples nothing.
func TestServeAllocsWithLogOff(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	// Without the feature task, whose context allocates.
	src := strings.Replace(splitRoute, "  features:\n    type: feature\n    inputs:\n      entities: {driver_id: '{{ .request.driver }}'}\n      features: [driver_stats:conv_rate]\n", "", 1)
	p, l, _ := loggedPlan(t, src+"log: {sample: 0}\n")
	var rc fasthttp.RequestCtx
	var req fasthttp.Request
	body := `{"user":"u1","driver":1001}`
	f := func(name string) {
		t.Helper()
		for i := 0; i < 10; i++ {
			serveJSON(p, &rc, &req, body)
		}
		if rc.Response.StatusCode() != 200 {
			t.Fatalf("%s: %d %s", name, rc.Response.StatusCode(), rc.Response.Body())
		}
		if n := testing.AllocsPerRun(200, func() { serveJSON(p, &rc, &req, body) }); n != 0 {
			t.Errorf("%s: %v allocs per request, want 0", name, n)
		}
	}
	f("log off")
	p.plog = l
	f("log on, sample 0")
	if len(rc.Response.Header.Peek("X-Request-Id")) != 32 {
		t.Fatalf("no generated X-Request-Id: %s", rc.Response.Header.String())
	}
}

func TestLogSampling(t *testing.T) {
	count := func(src string, n int, body func(i int) string) (map[string]int, []predlog.Record) {
		t.Helper()
		p, l, sink := loggedPlan(t, src)
		p.plog = l
		var rc fasthttp.RequestCtx
		var req fasthttp.Request
		ids := map[string]int{}
		for i := 0; i < n; i++ {
			serveJSON(p, &rc, &req, body(i))
			ids[string(rc.Response.Header.Peek("X-Request-Id"))] = i
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if len(ids) != n {
			t.Fatalf("%d distinct request ids for %d requests", len(ids), n)
		}
		return ids, sink.recs
	}

	// Sticky by user: a user's requests are all kept or all dropped.
	ids, recs := count(splitRoute+"log: {sample: 0.5, sticky: '{{ .request.user }}'}\n", 400, func(i int) string {
		return fmt.Sprintf(`{"user":"u%d","driver":1001}`, i%40)
	})
	users := map[int]int{}
	for _, r := range recs {
		users[ids[r.RequestID]%40]++
	}
	for u, c := range users {
		if c != 10 {
			t.Errorf("user u%d: %d of 10 requests recorded", u, c)
		}
	}
	if len(users) < 8 || len(users) > 32 {
		t.Errorf("%d of 40 users recorded at sample 0.5", len(users))
	}

	// Random: about the share asked for.
	_, recs = count(splitRoute+"log: {sample: 0.3}\n", 1000, func(i int) string { return `{"user":"u","driver":1001}` })
	if len(recs) < 200 || len(recs) > 400 {
		t.Errorf("%d of 1000 requests recorded at sample 0.3", len(recs))
	}

	// features: false leaves the values out; the default keeps them.
	_, recs = count(splitRoute+"log: {features: false}\n", 5, func(i int) string { return `{"user":"u","driver":1001}` })
	if len(recs) != 5 || len(recs[0].Features) != 0 || recs[0].Request != "" {
		t.Errorf("features: false: %+v", recs)
	}
	_, recs = count(splitRoute, 5, func(i int) string { return `{"user":"u","driver":1002}` })
	if len(recs) != 5 || len(recs[0].Features) != 1 || recs[0].Features[0].Value != "0.176" || recs[0].Features[0].Entity != `{"driver_id":1002}` {
		t.Errorf("default log block: %+v", recs)
	}
}

func TestLogStickyErrors(t *testing.T) {
	f := func(block, want string) {
		t.Helper()
		r, err := config.Parse("r.yaml", []byte(splitRoute+block))
		if err == nil {
			views, store, _ := featurefetch.NewDemoStore()
			env := tasks.NewEnv(nil)
			tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store})
			_, err = Compile(r, env)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got %v, want %q", block, err, want)
		}
	}
	f("log: {sticky: '{{ .tasks.s.body }}'}\n", "r.yaml:15:15: log.sticky: cannot reference tasks")
	f("log: {sticky: '{{ .request.user '}\n", "r.yaml:15:15: log.sticky: unclosed {{")
}
