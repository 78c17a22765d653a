package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/rueidis"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/quota"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tenantRoute is a route at endpoint calling http://host/path.
func tenantRoute(name, endpoint, host string) string {
	return fmt.Sprintf(`name: %s
endpoint: %s
timeout: 2s
tasks:
  m:
    type: http
    inputs: {address: "http://%s/p"}
    output: {path: response.body}
`, name, endpoint, host)
}

// twoTenants is a routes folder with tenants a and b, each with an admin
// token and a route calling its own model host, plus a route without a
// tenant.
func twoTenants(extraA string) map[string]string {
	return map[string]string{
		"top.yaml":      tenantRoute("top", "/top", "shared.models"),
		"a/tenant.yaml": "endpoints: [/a/]\nupstreams: [a.models, shared.models]\nadmin_tokens: [" + sha("token-a") + "]\n" + extraA,
		"a/one.yaml":    tenantRoute("a-one", "/a/one", "a.models"),
		"a/two.yaml":    tenantRoute("a-two", "/a/two", "shared.models"),
		"b/tenant.yaml": "endpoints: [/b/]\nupstreams: [b.models, shared.models]\nadmin_tokens: [" + sha("token-b") + "]\n",
		"b/one.yaml":    tenantRoute("b-one", "/b/one", "b.models"),
	}
}

func (tg *testGateway) admin2(t testing.TB, method, path, token string) answer {
	t.Helper()
	req, err := http.NewRequest(method, tg.admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func (tg *testGateway) write(t testing.TB, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(tg.dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTenantUpstreamsAndAdminAccess(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"ok":true}`))
	resolve := map[string]string{"a.models": up.Addr, "b.models": up.Addr, "shared.models": up.Addr, "evil.models": up.Addr}
	routes := twoTenants("")
	routes["a/bad.yaml"] = tenantRoute("a-bad", "/a/bad", "evil.models")
	routes["a/outside.yaml"] = tenantRoute("a-outside", "/b/mine", "a.models")
	tg := startGateway(t, routes, resolve, func(o *Options) { o.AdminToken = "operator" })

	res := tg.g.Reload()
	errs := strings.Join(res.Errors, "\n")
	if res.OK || !strings.Contains(errs, filepath.Join(tg.dir, "a/bad.yaml")+`:7:23: task "m": inputs.address: host "evil.models" is not among the upstreams of tenant "a"`) {
		t.Fatalf("errors:\n%s", errs)
	}
	if !strings.Contains(errs, filepath.Join(tg.dir, "a/outside.yaml")+`:2:11: endpoint "/b/mine" is outside the endpoints of tenant "a"`) {
		t.Fatalf("errors:\n%s", errs)
	}
	for _, p := range []string{"/top", "/a/one", "/a/two", "/b/one"} {
		if a := tg.post(t, p, `{}`); a.status != 200 {
			t.Fatalf("%s: %d %s", p, a.status, a.body)
		}
	}
	if a := tg.post(t, "/a/bad", `{}`); a.status != 404 {
		t.Fatalf("rejected route answered %d", a.status)
	}
	before := up.Requests.Load()

	// Tenant a's admin token: its own routes, stats, page and reload.
	a := tg.admin2(t, "GET", "/tenants/a/routes", "token-a")
	if a.status != 200 || !strings.Contains(a.body, `"a-one"`) || strings.Contains(a.body, `"b-one"`) || strings.Contains(a.body, `"top"`) || !strings.Contains(a.body, "evil.models") {
		t.Fatalf("own routes: %d %s", a.status, a.body)
	}
	for _, p := range []string{"/tenants/a/routes/stats", "/tenants/a/"} {
		if a := tg.admin2(t, "GET", p, "token-a"); a.status != 200 || strings.Contains(a.body, "b-one") {
			t.Fatalf("%s: %d %s", p, a.status, a.body)
		}
	}
	if a := tg.admin2(t, "POST", "/tenants/a/-/reload", "token-a"); a.status != 422 || !strings.Contains(a.body, "evil.models") || strings.Contains(a.body, "b/one") {
		t.Fatalf("own reload: %d %s", a.status, a.body)
	}
	// ... and nothing else.
	forbidden := func(method, path string) {
		t.Helper()
		a := tg.admin2(t, method, path, "token-a")
		var body struct{ Error string }
		if a.status != 403 || json.Unmarshal([]byte(a.body), &body) != nil || !strings.Contains(body.Error, `tenant "a" opens /tenants/a/ only`) {
			t.Fatalf("%s %s with a's token: %d %s", method, path, a.status, a.body)
		}
	}
	forbidden("GET", "/tenants/b/routes")
	forbidden("GET", "/tenants/b/routes/stats")
	forbidden("GET", "/tenants/b/")
	forbidden("POST", "/tenants/b/-/reload")
	forbidden("GET", "/routes")
	forbidden("POST", "/-/reload")
	forbidden("GET", "/metrics")
	forbidden("GET", "/")
	if a := tg.admin2(t, "GET", "/tenants/a/routes", "wrong"); a.status != 401 {
		t.Fatalf("wrong token: %d", a.status)
	}
	// The operator sees everything.
	if a := tg.admin2(t, "GET", "/tenants/b/routes", "operator"); a.status != 200 || !strings.Contains(a.body, `"b-one"`) {
		t.Fatalf("operator: %d %s", a.status, a.body)
	}
	if a := tg.admin2(t, "GET", "/routes", "operator"); a.status != 200 || !strings.Contains(a.body, `"tenant": "b"`) {
		t.Fatalf("operator routes: %d %s", a.status, a.body)
	}
	if a := tg.admin2(t, "GET", "/", "operator"); a.status != 200 || !strings.Contains(a.body, `Tenant a`) || !strings.Contains(a.body, `Tenant b`) {
		t.Fatalf("operator page: %d", a.status)
	}
	if up.Requests.Load() != before {
		t.Fatal("admin calls reached the upstream")
	}
	// Route series carry the tenant label; routes without a tenant have none.
	m := tg.admin2(t, "GET", "/metrics", "operator").body
	for _, want := range []string{`lariat_requests_total{tenant="a",route="a-one",status="200"} 1`, `lariat_requests_total{route="top",status="200"} 1`} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}

func TestTenantBrokenFilesStayIsolated(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"ok":true}`))
	resolve := map[string]string{"a.models": up.Addr, "b.models": up.Addr, "shared.models": up.Addr}
	routes := twoTenants("")
	routes["a/broken.yaml"] = "name: a-broken\nendpoint: /a/broken\ntasks: [\n"
	tg := startGateway(t, routes, resolve)
	serving := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			if a := tg.post(t, p, `{}`); a.status != 200 {
				t.Fatalf("%s: %d %s", p, a.status, a.body)
			}
		}
	}
	serving("/top", "/a/one", "/a/two", "/b/one")

	// A file of a turns bad: its last good version serves; the rest too.
	tg.write(t, "a/two.yaml", "name: a-two\nendpoint: /a/two\ntasks: {m: {type: nope}}\n")
	res := tg.g.Reload()
	if res.OK || !strings.Contains(strings.Join(res.Kept, " "), "a/two.yaml") || !strings.Contains(strings.Join(res.Errors, "\n"), `a/two.yaml:3:19: task "m": unknown type "nope"`) {
		t.Fatalf("reload: %+v", res)
	}
	serving("/top", "/a/one", "/a/two", "/b/one")

	// a's tenant file turns bad: a's routes keep serving under its last
	// good version; b is untouched.
	tg.write(t, "a/tenant.yaml", "endpoints: [/a/]\nquota: {}\n")
	res = tg.g.Reload()
	if !strings.Contains(strings.Join(res.Errors, "\n"), `a/tenant.yaml:2:1: unknown key "quota" (did you mean "quotas"?)`) || !strings.Contains(strings.Join(res.Kept, " "), "a/tenant.yaml") {
		t.Fatalf("reload: %+v", res)
	}
	serving("/top", "/a/one", "/a/two", "/b/one")

	// a's failing upstream opens a's breaker for shared.models, not b's.
	shared := upstreamtest.Start(t, func(_ int64, rc *fasthttp.RequestCtx) {
		if strings.Contains(string(rc.Request.Header.Peek("X-Tenant")), "a") {
			rc.SetStatusCode(500)
		}
		rc.SetContentType("application/json")
		rc.SetBodyString(`{"ok":true}`)
	})
	routeWithHeader := func(name, endpoint, tenant string) string {
		return fmt.Sprintf("name: %s\nendpoint: %s\ntimeout: 2s\ntasks:\n  m:\n    type: http\n    inputs: {address: \"http://shared.models/p\", headers: {X-Tenant: %s}}\n    output: {path: response.body}\n", name, endpoint, tenant)
	}
	tg2 := startGateway(t, map[string]string{
		"a/tenant.yaml": "endpoints: [/a/]\nupstreams: [shared.models]\n",
		"a/r.yaml":      routeWithHeader("a-r", "/a/r", "a"),
		"b/tenant.yaml": "endpoints: [/b/]\nupstreams: [shared.models]\n",
		"b/r.yaml":      routeWithHeader("b-r", "/b/r", "b"),
	}, map[string]string{"shared.models": shared.Addr})
	for i := 0; i < 8; i++ {
		if a := tg2.post(t, "/a/r", `{}`); a.status != 502 {
			t.Fatalf("a's failing call answered %d %s", a.status, a.body)
		}
	}
	if a := tg2.post(t, "/a/r", `{}`); a.status != 502 || !strings.Contains(a.body, "circuit breaker open") {
		t.Fatalf("a's breaker not open: %d %s", a.status, a.body)
	}
	for i := 0; i < 3; i++ {
		if a := tg2.post(t, "/b/r", `{}`); a.status != 200 {
			t.Fatalf("b's call to the same host: %d %s", a.status, a.body)
		}
	}
}

func TestTenantQuotas(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	up := upstreamtest.Start(t, func(_ int64, rc *fasthttp.RequestCtx) {
		if string(rc.Request.Header.Peek("X-Hang")) == "1" {
			<-release
		}
		rc.SetContentType("application/json")
		rc.SetBodyString(`{"ok":true}`)
	})
	defer releaseOnce.Do(func() { close(release) })
	resolve := map[string]string{"m.models": up.Addr}
	hangRoute := "name: f-hang\nendpoint: /f/hang\ntimeout: 5s\ntasks:\n  m:\n    type: http\n    inputs: {address: \"http://m.models/p\", headers: {X-Hang: \"1\"}}\n    output: {path: response.body}\n"
	// Rates refill one request per 1000 s: only bursts pass within the
	// test, whatever the machine's speed.
	routes := map[string]string{
		"a/tenant.yaml": "endpoints: [/a/]\nupstreams: [m.models]\nquotas: {requests_per_second: 0.001, burst: 3}\n",
		"a/r.yaml":      tenantRoute("a-r", "/a/r", "m.models"),
		"k/tenant.yaml": `endpoints: [/k/]
upstreams: [m.models]
auth:
  api_keys:
    - {name: k1, hash: ` + sha("key-1") + `}
    - {name: k2, hash: ` + sha("key-2") + `, quota: {requests_per_second: 0.001, burst: 4}}
quotas:
  per_key: {requests_per_second: 0.001, burst: 2}
`,
		"k/r.yaml":      tenantRoute("k-r", "/k/r", "m.models"),
		"f/tenant.yaml": "endpoints: [/f/]\nupstreams: [m.models]\nquotas: {in_flight: 1}\n",
		"f/r.yaml":      tenantRoute("f-r", "/f/r", "m.models"),
		"f/hang.yaml":   hangRoute,
		"b/tenant.yaml": "endpoints: [/b/]\nupstreams: [m.models]\n",
		"b/r.yaml":      tenantRoute("b-r", "/b/r", "m.models"),
	}
	tg := startGateway(t, routes, resolve)
	rejected := []string{
		`lariat_quota_rejected_total{tenant="a",quota="rate"}`,
		`lariat_quota_rejected_total{tenant="k",key="k1",quota="key_rate"}`,
		`lariat_quota_rejected_total{tenant="f",quota="in_flight"}`,
	}
	var before []float64
	for _, r := range rejected {
		before = append(before, metricValue(t, tg, r))
	}
	calls := func() int64 { return up.Requests.Load() }
	pass := func(n int, path string, hdr ...string) {
		t.Helper()
		for i := 0; i < n; i++ {
			if a := tg.post(t, path, `{}`, hdr...); a.status != 200 {
				t.Fatalf("%s request %d: %d %s", path, i, a.status, a.body)
			}
		}
	}
	over := func(a answer, tenant, quota, key string) {
		t.Helper()
		var body struct{ Error, Route, Tenant, Quota, Key string }
		if a.status != 429 || json.Unmarshal([]byte(a.body), &body) != nil || body.Quota != quota || body.Key != key || body.Tenant != tenant || body.Route == "" || !strings.Contains(body.Error, "over its quota") {
			t.Fatalf("want 429 for %s %s %s: %d %s", tenant, quota, key, a.status, a.body)
		}
		if ra := a.header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Fatalf("Retry-After %q", ra)
		}
	}

	// Tenant rate: the burst of 3 passes, then 429 before any work: the
	// upstream sees no call, and a body that is not JSON is not read.
	pass(3, "/a/r")
	n := calls()
	over(tg.post(t, "/a/r", `{}`), "a", "rate", "")
	over(tg.post(t, "/a/r", `not json`), "a", "rate", "")
	if calls() != n {
		t.Fatal("a request over quota reached the upstream")
	}
	pass(3, "/b/r") // b is untouched

	// Per-key rate: k1 has per_key's burst of 2, k2 its own of 4.
	if a := tg.post(t, "/k/r", `{}`); a.status != 401 {
		t.Fatalf("without a key: %d %s", a.status, a.body)
	}
	pass(2, "/k/r", "X-API-Key", "key-1")
	n = calls()
	over(tg.post(t, "/k/r", `{}`, "X-API-Key", "key-1"), "k", "key_rate", "k1")
	pass(4, "/k/r", "Authorization", "Bearer key-2")
	over(tg.post(t, "/k/r", `{}`, "X-API-Key", "key-2"), "k", "key_rate", "k2")
	if calls() != n+4 {
		t.Fatalf("upstream calls %d, want %d", calls(), n+4)
	}

	// In flight: one request of f hangs upstream; the next is refused at
	// once; once it is answered, f passes again.
	done := make(chan answer, 1)
	go func() { done <- tg.post(t, "/f/hang", `{}`) }()
	deadline := time.Now().Add(5 * time.Second)
	for up.InFlight.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if up.InFlight.Load() != 1 {
		t.Fatal("hanging request never reached the upstream")
	}
	n = calls()
	over(tg.post(t, "/f/r", `{}`), "f", "in_flight", "")
	pass(2, "/b/r")
	if calls() != n+2 {
		t.Fatalf("upstream calls %d, want %d", calls(), n+2)
	}
	releaseOnce.Do(func() { close(release) })
	if a := <-done; a.status != 200 {
		t.Fatalf("hanging request: %d %s", a.status, a.body)
	}
	pass(2, "/f/r")

	for i, want := range []float64{2, 1, 1} {
		if got := metricValue(t, tg, rejected[i]) - before[i]; got != want {
			t.Errorf("%s grew by %g, want %g", rejected[i], got, want)
		}
	}
	// Route series are the route's own: they start at zero.
	if got := metricValue(t, tg, `lariat_requests_total{tenant="a",route="a-r",status="429"}`); got != 2 {
		t.Errorf("429s of route a-r: %g", got)
	}
}

// TestTenantGlobalQuotaAcrossReplicas: two gateways sharing a Redis hold
// tenant g to one burst between them. The rate refills one request per
// 1000 s, so the count admitted does not depend on the machine's speed.
func TestTenantGlobalQuotaAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"ok":true}`))
	routes := map[string]string{
		"g/tenant.yaml": "endpoints: [/g/]\nupstreams: [m.models]\nquotas: {requests_per_second: 0.001, burst: 40, scope: global}\n",
		"g/r.yaml":      tenantRoute("g-r", "/g/r", "m.models"),
	}
	store := func(o *Options) {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		rs := quota.NewRedis(c, "lariat:quota:")
		// A loaded machine may be slow: a decision past the timeout would
		// admit (fail open) and blur the count.
		rs.Timeout = 10 * time.Second
		o.QuotaStore = rs
	}
	replicas := []*testGateway{
		startGateway(t, routes, map[string]string{"m.models": up.Addr}, store),
		startGateway(t, routes, map[string]string{"m.models": up.Addr}, store),
	}
	const rejectedSeries = `lariat_quota_rejected_total{tenant="g",quota="rate"}`
	rejectedBefore := metricValue(t, replicas[0], rejectedSeries)
	errorsBefore := metricValue(t, replicas[0], "lariat_quota_store_errors_total")
	const offered = 120
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < offered; i += 4 {
				switch a := replicas[i%2].post(t, "/g/r", `{}`); a.status {
				case 200:
					admitted.Add(1)
				case 429:
					refused.Add(1)
				default:
					t.Errorf("answer %d %s", a.status, a.body)
				}
			}
		}()
	}
	wg.Wait()
	if e := metricValue(t, replicas[0], "lariat_quota_store_errors_total"); e != errorsBefore {
		t.Fatalf("%g quota store errors during the run", e-errorsBefore)
	}
	// GCRA admits the burst exactly; 10% is the bound asked of it.
	if got := admitted.Load(); got < 36 || got > 44 || got+refused.Load() != offered {
		t.Fatalf("admitted %d, refused %d of %d; want about the burst of 40", got, refused.Load(), offered)
	}
	if up.Requests.Load() != admitted.Load() {
		t.Fatalf("upstream saw %d calls for %d admitted", up.Requests.Load(), admitted.Load())
	}
	if got := metricValue(t, replicas[0], rejectedSeries) - rejectedBefore; got != float64(refused.Load()) {
		t.Fatalf("refusals counted %g, refused %d", got, refused.Load())
	}

	// Redis down: the quota fails open, visibly.
	srv.Stop()
	if a := replicas[0].post(t, "/g/r", `{}`); a.status != 200 {
		t.Fatalf("with the quota store down: %d %s", a.status, a.body)
	}
	if metricValue(t, replicas[0], "lariat_quota_store_errors_total") <= errorsBefore || !strings.Contains(replicas[0].adminGet(t, "/metrics").body, "lariat_quota_store_up 0") {
		t.Fatal("quota store failure not visible in metrics")
	}
}

// TestTenantHostAndJWKS: a tenant's routes answer for its host only, and
// its JWT auth reads RS256 keys from a JWKS URL and requires a claim.
func TestTenantHostAndJWKS(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := upstreamtest.Start(t, func(_ int64, rc *fasthttp.RequestCtx) {
		rc.SetContentType("application/json")
		fmt.Fprintf(rc, `{"keys":[{"kty":"RSA","kid":"k1","use":"sig","n":%q,"e":%q}]}`,
			base64.RawURLEncoding.EncodeToString(key.N.Bytes()), base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()))
	})
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"ok":true}`))
	tg := startGateway(t, map[string]string{
		"h/tenant.yaml": `endpoints: [h.example.com/h/]
upstreams: [m.models]
auth:
  jwt:
    jwks_url: ` + jwks.URL("/jwks.json") + `
    issuer: https://issuer.example
    required_claims: {scope: predict}
`,
		"h/r.yaml": tenantRoute("h-r", "/h/r", "m.models"),
	}, map[string]string{"m.models": up.Addr})
	token := func(scope string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://issuer.example", "exp": time.Now().Add(time.Hour).Unix(), "scope": scope})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	call := func(host, tok string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", tg.url+"/h/r", strings.NewReader(`{}`))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	f := func(host, tok string, want int) {
		t.Helper()
		if got := call(host, tok); got != want {
			t.Fatalf("host %s: %d, want %d", host, got, want)
		}
	}
	f("h.example.com", token("read predict"), 200)
	f("H.example.com:8080", token("predict"), 200)
	f("other.example.com", token("predict"), 404)
	f("h.example.com", token("read"), 401)
	f("h.example.com", "", 401)
}

// TestTenantFeatureViews: a tenant's route that reads a feature view
// outside the tenant's feature_views is rejected at load with file:line:col,
// while its route reading an allowed view serves from the real store.
func TestTenantFeatureViews(t *testing.T) {
	feat := func(name, endpoint, feature string) string {
		return fmt.Sprintf(`name: %s
endpoint: %s
timeout: 500ms
tasks:
  features:
    type: feature
    inputs:
      entities: {driver_id: '{{ .request.candidates }}'}
      features: [%s]
    output: {path: response.body.features}
`, name, endpoint, feature)
	}
	tg, _ := startFeatureGateway(t, map[string]string{
		"f/tenant.yaml": "endpoints: [/f/]\nfeature_views: [driver_stats]\n",
		"f/ok.yaml":     feat("f-ok", "/f/ok", "driver_stats:conv_rate"),
		"f/bad.yaml":    feat("f-bad", "/f/bad", "driver_trips:recent_trip_km"),
	})
	res := tg.g.Reload()
	errs := strings.Join(res.Errors, "\n")
	want := filepath.Join(tg.dir, "f/bad.yaml") + `:9:18: task "features": inputs.features: feature view "driver_trips" is not among the feature_views of tenant "f"`
	if res.OK || !strings.Contains(errs, want) {
		t.Fatalf("errors:\n%s\nwant %s", errs, want)
	}
	if a := tg.post(t, "/f/ok", `{"candidates":[1001]}`); a.status != 200 || !strings.Contains(a.body, `"conv_rate":0.388`) {
		t.Fatalf("allowed view: %d %s", a.status, a.body)
	}
	if a := tg.post(t, "/f/bad", `{"candidates":[1001]}`); a.status != 404 {
		t.Fatalf("rejected route answered %d %s", a.status, a.body)
	}
}
