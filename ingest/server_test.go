package ingest

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/promexpo"
)

type testServer struct {
	url string
	r   *testRedis
}

func startServer(t *testing.T, r *testRedis, opts ServerOptions) *testServer {
	t.Helper()
	opts.Logf = t.Logf
	srv, err := NewServer(r.w, testViews(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return &testServer{url: "http://" + ln.Addr().String(), r: r}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

type reply struct {
	status int
	body   string
	header http.Header
}

func (ts *testServer) do(t *testing.T, method, path, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: string(b), header: resp.Header}
}

const pushDF = `"df": {
	"driver_id": [1001, 1002],
	"event_timestamp": ["2026-05-01 10:00:00+00:00", "2026-05-01T10:00:00Z"],
	"conv_rate": [0.7, 0.25], "acc_rate": [0.5, null], "avg_daily_trips": [12, 3],
	"rating": [4.5, 3.25], "vehicle_type": ["sedan", "bike"], "is_active": [true, false],
	"created": ["ignored", "ignored"]}`

func TestServerPushRoundTrip(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	ts := startServer(t, r, ServerOptions{PushSources: map[string][]string{"driver_stats_push": {"driver_stats"}}})

	rep := ts.do(t, "POST", "/push", `{"push_source_name": "driver_stats_push", `+pushDF+`, "to": "online", "allow_registry_cache": true}`)
	if rep.status != 200 || rep.body != "" || rep.header.Get("X-Lariat-Rows-Written") != "2" {
		t.Fatalf("push: %d %q %v", rep.status, rep.body, rep.header)
	}
	want := `[{"driver_id":1001,"conv_rate":0.7,"acc_rate":0.5,"avg_daily_trips":12,"rating":4.5,"vehicle_type":"sedan","is_active":true},` +
		`{"driver_id":1002,"conv_rate":0.25,"acc_rate":null,"avg_daily_trips":3,"rating":3.25,"vehicle_type":"bike","is_active":false}]`
	if got := fetchRows(t, v, r.c, "driver_stats", "[1001,1002]"); got != want {
		t.Fatalf("read back\n got %s\nwant %s", got, want)
	}

	// The same event time again is skipped, as in Feast: the stored row stays.
	rep = ts.do(t, "POST", "/push", `{"push_source_name": "driver_stats_push", "df": {
		"driver_id": [1001], "event_timestamp": ["2026-05-01T10:00:00Z"],
		"conv_rate": [0.3], "acc_rate": [0.3], "avg_daily_trips": [3], "rating": [3],
		"vehicle_type": ["equal"], "is_active": [false]}}`)
	if rep.status != 200 || rep.header.Get("X-Lariat-Rows-Written") != "0" || rep.header.Get("X-Lariat-Rows-Skipped") != "1" {
		t.Fatalf("push of an equal event time: %d %q %v", rep.status, rep.body, rep.header)
	}
	if got := fetchRows(t, v, r.c, "driver_stats", "[1001,1002]"); got != want {
		t.Fatalf("read back after an equal event time\n got %s\nwant %s", got, want)
	}

	// An older row is skipped; a newer one through /write-to-online-store wins.
	rep = ts.do(t, "POST", "/write-to-online-store", `{"feature_view_name": "driver_stats", "df": {
		"driver_id": [1001, 1002], "event_timestamp": ["2026-04-01T00:00:00Z", 1777640400],
		"conv_rate": [0.1, 0.9], "acc_rate": [0.1, 0.9], "avg_daily_trips": [1, 9], "rating": [1, 9],
		"vehicle_type": ["old", "new"], "is_active": [false, true]}}`)
	if rep.status != 200 || rep.body != "null" || rep.header.Get("X-Lariat-Rows-Written") != "1" || rep.header.Get("X-Lariat-Rows-Skipped") != "1" {
		t.Fatalf("write-to-online-store: %d %q %v", rep.status, rep.body, rep.header)
	}
	want = `[{"driver_id":1001,"conv_rate":0.7,"acc_rate":0.5,"avg_daily_trips":12,"rating":4.5,"vehicle_type":"sedan","is_active":true},` +
		`{"driver_id":1002,"conv_rate":0.9,"acc_rate":0.9,"avg_daily_trips":9,"rating":9,"vehicle_type":"new","is_active":true}]`
	if got := fetchRows(t, v, r.c, "driver_stats", "[1001,1002]"); got != want {
		t.Fatalf("read back\n got %s\nwant %s", got, want)
	}

	// A push source named like a view feeds it; an empty df writes nothing.
	rep = ts.do(t, "POST", "/push", `{"push_source_name": "zone_stats", "df": {"zone_id": [7], "event_timestamp": ["2026-05-01"], "demand": [1.5]}}`)
	if rep.status != 200 {
		t.Fatalf("push to view name: %d %s", rep.status, rep.body)
	}
	if got := fetchRows(t, v, r.c, "zone_stats", "7"); got != `[{"zone_id":7,"demand":1.5}]` {
		t.Fatalf("zone read back %s", got)
	}
	rep = ts.do(t, "POST", "/push", `{"push_source_name": "zone_stats", "df": {}}`)
	if rep.status != 200 || rep.header.Get("X-Lariat-Rows-Written") != "0" {
		t.Fatalf("empty push: %d %s", rep.status, rep.body)
	}

	rep = ts.do(t, "GET", "/metrics", "")
	for _, line := range []string{
		`lariat_ingest_rows_written_total{view="driver_stats"} `,
		`lariat_ingest_rows_skipped_total{view="driver_stats"} `,
		`lariat_ingest_requests_total{path="/push",code="200"} `,
	} {
		if !strings.Contains(rep.body, line) {
			t.Fatalf("metrics lack %q", line)
		}
	}
	if !strings.Contains(rep.body, `lariat_ingest_request_duration_seconds_bucket{path="/push",le="0.005"} `) {
		t.Fatalf("the request duration has no le buckets: %s", rep.body)
	}
	if err := promexpo.Check(rep.body); err != nil {
		t.Fatal(err)
	}
}

func TestServerPushToSeveralViews(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	ts := startServer(t, r, ServerOptions{PushSources: map[string][]string{"customers": {"customer_profile", "customer_recent"}}})
	rep := ts.do(t, "POST", "/push", `{"push_source_name": "customers", "df": {"customer_id": ["c1"],
		"event_timestamp": ["2026-05-01T10:00:00Z"], "current_balance": [10.5], "tier": ["gold"], "last_order": ["o-9"]}}`)
	if rep.status != 200 || rep.header.Get("X-Lariat-Rows-Written") != "2" {
		t.Fatalf("push: %d %s %v", rep.status, rep.body, rep.header)
	}
	if got := fetchRows(t, v, r.c, "customer_profile", `"c1"`); got != `[{"customer_id":"c1","current_balance":10.5,"tier":"gold"}]` {
		t.Fatalf("customer_profile %s", got)
	}
	if got := fetchRows(t, v, r.c, "customer_recent", `"c1"`); got != `[{"customer_id":"c1","last_order":"o-9"}]` {
		t.Fatalf("customer_recent %s", got)
	}
}

func TestServerErrors(t *testing.T) {
	r := startRedis(t)
	ts := startServer(t, r, ServerOptions{MaxRequestBodySize: 4096, WriteTimeout: time.Second, PushSources: map[string][]string{"p": {"driver_stats"}}})
	f := func(method, path, body string, wantStatus int, wantBody string) {
		t.Helper()
		rep := ts.do(t, method, path, body)
		if rep.status != wantStatus || rep.body != wantBody {
			t.Fatalf("%s %s %.60s:\n got %d %s\nwant %d %s", method, path, body, rep.status, rep.body, wantStatus, wantBody)
		}
		if wantStatus >= 400 && rep.header.Get("Content-Type") != "application/json" {
			t.Fatalf("content type %q", rep.header.Get("Content-Type"))
		}
	}
	e := func(status int, msg string) string {
		return `{"error":` + jsonString(msg) + `,"status_code":` + itoa(status) + `}`
	}
	f("POST", "/push", `{"push_source_name":`, 400, e(400, "request body is not valid JSON"))
	f("POST", "/push", `[1]`, 400, e(400, "request body must be a JSON object"))
	f("POST", "/push", `{"df": {}}`, 400, e(400, `"push_source_name" must be a non-empty string`))
	f("POST", "/push", `{"push_source_name": "nope", "df": {}}`, 404, e(404, `push source "nope" not found`))
	f("POST", "/push", `{"push_source_name": "p", "df": {}, "to": "offline"}`, 400,
		e(400, `"to": "offline" is not supported; this server writes the online store only ("online")`))
	f("POST", "/push", `{"push_source_name": "p", "df": {}, "to": "elsewhere"}`, 400, e(400, `"to" must be "online", "offline" or "online_and_offline"`))
	f("POST", "/push", `{"push_source_name": "p", "df": [1]}`, 400, e(400, `"df" must be an object mapping column names to lists of values`))
	f("POST", "/push", `{"push_source_name": "p", "df": {"driver_id": 1}}`, 400, e(400, `df: column "driver_id" must be a list of values`))
	f("POST", "/push", `{"push_source_name": "p", "df": {"driver_id": [1, 2], "conv_rate": [1]}}`, 400,
		e(400, `df: column "conv_rate" has 1 values, column "driver_id" has 2`))
	f("POST", "/push", `{"push_source_name": "p", "df": {"driver_id": [1], "conv_rate": [1]}}`, 400,
		e(400, `df: feature view "driver_stats" needs missing columns "acc_rate", "avg_daily_trips", "event_timestamp", "is_active", "rating", "vehicle_type"`))
	f("POST", "/write-to-online-store", `{"df": {}}`, 400, e(400, `"feature_view_name" must be a non-empty string`))
	f("POST", "/write-to-online-store", `{"feature_view_name": "nope", "df": {}}`, 404, e(404, `feature view "nope" not found`))
	// One bad row rejects the request; the good row is not written.
	f("POST", "/write-to-online-store", `{"feature_view_name": "driver_stats", "df": {
		"driver_id": [1, 2, 3], "event_timestamp": ["2026-05-01T10:00:00Z", "later", "2026-05-01T10:00:00Z"],
		"conv_rate": [0.5, 0.5, "abc"], "acc_rate": [0.5, 0.5, 0.5], "avg_daily_trips": [1, 1, 1], "rating": [1, 1, 1],
		"vehicle_type": ["a", "b", "c"], "is_active": [true, true, true]}}`, 400,
		e(400, `2 rows rejected; nothing written: df row 1: column "event_timestamp": "later" is not a timestamp (want RFC 3339 or epoch seconds); `+
			`df row 2: column "conv_rate": "abc" is not a FLOAT`))
	if n := len(dump(t, r.c)); n != 0 {
		t.Fatalf("%d keys written by rejected requests", n)
	}
	f("GET", "/push", "", 405, e(405, "method GET not allowed; use POST"))
	f("GET", "/nope", "", 404, e(404, "no route /nope; the routes are POST /push, POST /write-to-online-store, GET /healthz, GET /metrics"))
	rep := ts.do(t, "POST", "/push", `{"push_source_name": "p", "df": {"x": ["`+strings.Repeat("a", 8000)+`"]}}`)
	if rep.status != 413 {
		t.Fatalf("large body: %d %s", rep.status, rep.body)
	}
	f("GET", "/healthz", "", 200, "ok\n")

	// Redis gone: writes answer 503, and so does /healthz.
	r.srv.Stop()
	rep = ts.do(t, "POST", "/push", `{"push_source_name": "p", `+pushDF+`}`)
	if rep.status != 503 || !strings.Contains(rep.body, "cannot write rows to redis") {
		t.Fatalf("push without redis: %d %s", rep.status, rep.body)
	}
	rep = ts.do(t, "GET", "/healthz", "")
	if rep.status != 503 || !strings.Contains(rep.body, "redis ping failed") {
		t.Fatalf("healthz without redis: %d %s", rep.status, rep.body)
	}
}

func TestNewServerErrors(t *testing.T) {
	r := startRedis(t)
	v := testViews(t)
	if _, err := NewServer(r.w, v, ServerOptions{PushSources: map[string][]string{"p": {"nope"}}}); err == nil ||
		err.Error() != `push source "p": unknown feature view "nope"` {
		t.Fatalf("error %v", err)
	}
	if _, err := NewServer(r.w, v, ServerOptions{PushSources: map[string][]string{"p": nil}}); err == nil ||
		err.Error() != `push source "p" feeds no view` {
		t.Fatalf("error %v", err)
	}
}
