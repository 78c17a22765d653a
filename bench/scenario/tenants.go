package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/lariat-gw/lariat/bench"
	"github.com/lariat-gw/lariat/bench/fakemodel"
)

// Tenants is the scenario of two tenants sharing one gateway: tenant a is
// offered three times its quota while tenant b runs at a steady rate.
const Tenants = "tenants"

// TenantsAbout describes the tenants scenario.
const TenantsAbout = "tenant a offered 3x its quota while tenant b runs steady on the same gateway: a's 429 latency, b's p99 against b alone; then tenant g, with a global quota kept in Redis, offered 3x it through two gateways"

// Defaults of the tenants scenario.
const (
	// DefaultTenantQuota is tenant a's quota in requests per second.
	DefaultTenantQuota = 500.0
	// DefaultTenantRate is tenant b's steady rate.
	DefaultTenantRate = 500.0
)

// TenantsOptions configure a run of the tenants scenario. Zero values take
// the defaults of Options.
type TenantsOptions struct {
	// Quota is tenant a's quota (requests per second, burst a tenth of
	// it); a is offered three times as much.
	Quota float64
	// Rate is tenant b's steady rate (no quota).
	Rate float64
	// ModelLatency is the fake model's latency (jitter a half of it).
	ModelLatency time.Duration
	// RedisServer: as in Options.
	RedisServer string
	Own
}

// TenantsOutcome is what the tenants scenario measured.
type TenantsOutcome struct {
	Header
	QuotaA   float64 `json:"quota_a_rps"`
	OfferedA float64 `json:"offered_a_rps"`
	RateB    float64 `json:"rate_b_rps"`
	// BAlone is tenant b alone; A and B the two tenants in the same run.
	BAlone *bench.Result `json:"b_alone"`
	A      *bench.Result `json:"a"`
	B      *bench.Result `json:"b"`
	// Figures read from the results.
	AAdmittedRPS  float64 `json:"a_admitted_rps"`
	A429P50Ms     float64 `json:"a_429_p50_ms"`
	A429P99Ms     float64 `json:"a_429_p99_ms"`
	BAloneP99Ms   float64 `json:"b_alone_p99_ms"`
	BWithAP99Ms   float64 `json:"b_with_a_p99_ms"`
	BWithAErrors  int64   `json:"b_with_a_errors"`
	BP99RatioToB0 float64 `json:"b_p99_ratio"`
	// A429ServiceP99Ms is the p99 of a's 429 answers from the actual send
	// time: the time the gateway took to refuse, without generator lag.
	A429ServiceP99Ms float64 `json:"a_429_service_p99_ms"`

	// G1 and G2 are tenant g (quota QuotaA, scope global) offered half of
	// three times its quota through each of two gateways sharing a Redis;
	// GAdmittedRPS is what both admitted together, GRatio that over QuotaA.
	G1           *bench.Result `json:"g_gateway1"`
	G2           *bench.Result `json:"g_gateway2"`
	GAdmittedRPS float64       `json:"g_admitted_rps"`
	GRatio       float64       `json:"g_admitted_ratio"`
}

// RunTenants runs the tenants scenario: one fake model, one gateway
// serving tenants a (with a quota) and b (without), both calling the
// model; first b alone at its rate, then a at three times its quota and b
// at its rate together, in open loops.
func RunTenants(ctx context.Context, o TenantsOptions) (*TenantsOutcome, error) {
	if o.Quota == 0 {
		o.Quota = DefaultTenantQuota
	}
	if o.Rate == 0 {
		o.Rate = DefaultTenantRate
	}
	if o.ModelLatency == 0 {
		o.ModelLatency = DefaultModelLatency
	}
	o.setDefaults()
	if o.Quota < 0 || o.Rate < 0 || o.Duration < 0 {
		return nil, errors.New("quota, rate and duration must not be negative")
	}
	lat, jit := o.ModelLatency, o.ModelLatency/2
	sp := &spec{
		name:     Tenants,
		endpoint: "/a/score",
		models:   []modelSpec{{key: "m", cfg: fakemodel.Config{Body: []byte(bodyM1)}}},
	}
	e, done, err := ownEnv(&o.Own, sp, Options{Name: Tenants, ModelLatency: &lat, ModelJitter: &jit})
	if err != nil {
		return nil, err
	}
	defer done()
	e.opt.RedisServer = o.RedisServer
	bases, err := e.startTenants(ctx, o.Quota)
	if err != nil {
		return nil, err
	}
	base := bases[0]
	run := func(name, path string, rate float64) bench.Config {
		return bench.Config{
			Name: name, URL: path, Method: "POST", Body: `{"request_id":{{seq}}}`,
			Mode: bench.ModeOpen, Rate: rate, Connections: max(50, int(rate/20)),
			Duration: o.Duration, Timeout: DefaultTimeout,
		}
	}
	// Warm the connections and the model up (results dropped).
	e.logf("warmup")
	if _, err := bench.Run(ctx, bench.Config{URL: base + "/b/score", Method: "POST", Body: `{}`, Mode: bench.ModeClosed, Connections: 8, Duration: time.Second}); err != nil {
		return nil, err
	}
	out := &TenantsOutcome{
		Header: newHeader(Tenants, TenantsAbout, e.setup),
		QuotaA: o.Quota, OfferedA: 3 * o.Quota, RateB: o.Rate,
	}
	e.logf("phase 1: tenant b alone at %g/s for %s", o.Rate, o.Duration)
	if out.BAlone, err = bench.Run(ctx, run("b-alone", base+"/b/score", o.Rate)); err != nil {
		return nil, err
	}
	e.logf("phase 2: tenant a at %g/s (3x its quota of %g/s) and tenant b at %g/s, for %s", 3*o.Quota, o.Quota, o.Rate, o.Duration)
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() { defer wg.Done(); out.A, errA = bench.Run(ctx, run("a", base+"/a/score", 3*o.Quota)) }()
	go func() { defer wg.Done(); out.B, errB = bench.Run(ctx, run("b", base+"/b/score", o.Rate)) }()
	wg.Wait()
	if err := errors.Join(errA, errB); err != nil {
		return nil, err
	}
	if out.A.ElapsedS > 0 {
		out.AAdmittedRPS = float64(out.A.OK) / out.A.ElapsedS
	}
	if l := out.A.LatencyShed; l != nil {
		out.A429P50Ms, out.A429P99Ms = l.P50Ms, l.P99Ms
	}
	if l := out.A.ServiceTimeShed; l != nil {
		out.A429ServiceP99Ms = l.P99Ms
	}
	out.BAloneP99Ms, out.BWithAP99Ms = out.BAlone.Latency.P99Ms, out.B.Latency.P99Ms
	out.BWithAErrors = out.B.Requests - out.B.OK
	if out.BAloneP99Ms > 0 {
		out.BP99RatioToB0 = out.BWithAP99Ms / out.BAloneP99Ms
	}

	e.logf("phase 3: tenant g (global quota %g/s in Redis) at %g/s through each of two gateways, for %s", o.Quota, 1.5*o.Quota, o.Duration)
	wg.Add(2)
	var err1, err2 error
	go func() {
		defer wg.Done()
		out.G1, err1 = bench.Run(ctx, run("g-gateway1", bases[0]+"/g/score", 1.5*o.Quota))
	}()
	go func() {
		defer wg.Done()
		out.G2, err2 = bench.Run(ctx, run("g-gateway2", bases[1]+"/g/score", 1.5*o.Quota))
	}()
	wg.Wait()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	if el := max(out.G1.ElapsedS, out.G2.ElapsedS); el > 0 {
		out.GAdmittedRPS = float64(out.G1.OK+out.G2.OK) / el
		out.GRatio = out.GAdmittedRPS / o.Quota
	}

	fmt.Fprintf(o.Stdout, "tenant a: offered %.0f/s (3x its quota of %g/s), admitted %.0f/s; 429 answers %d, latency p50 %.3f ms, p99 %.3f ms (%.3f ms from the actual send)\n",
		3*o.Quota, o.Quota, out.AAdmittedRPS, out.A.StatusCodes["429"], out.A429P50Ms, out.A429P99Ms, out.A429ServiceP99Ms)
	fmt.Fprintf(o.Stdout, "tenant b at %g/s: p99 %.3f ms alone, %.3f ms next to a (%.2fx); %d of %d not OK next to a\n",
		o.Rate, out.BAloneP99Ms, out.BWithAP99Ms, out.BP99RatioToB0, out.BWithAErrors, out.B.Requests)
	fmt.Fprintf(o.Stdout, "tenant g: offered %.0f/s through two gateways (3x its global quota of %g/s), admitted %.0f/s together (%.3fx the quota); 429 answers %d\n",
		3*o.Quota, o.Quota, out.GAdmittedRPS, out.GRatio, out.G1.StatusCodes["429"]+out.G2.StatusCodes["429"])
	path, err := writeSummary(o.Out, Tenants, out)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Stdout, "summary: %s\n", path)
	return out, nil
}

// startTenants starts a redis-server, the fake model and two gateways
// sharing the redis-server for global quotas, each serving tenant a (a
// quota of quota requests per second, burst a tenth of it, per gateway),
// tenant b (no quota) and tenant g (the same quota, global), each with a
// route calling the model. It returns the gateways' base URLs.
func (e *env) startTenants(ctx context.Context, quota float64) ([]string, error) {
	if err := e.prepareBinaries(ctx); err != nil {
		return nil, err
	}
	if err := e.startRedis(ctx); err != nil {
		return nil, err
	}
	if err := e.startModels(ctx); err != nil {
		return nil, err
	}
	routes := filepath.Join(e.tmp, "routes")
	route := func(tenant string) string {
		return fmt.Sprintf("name: %s-score\nendpoint: /%s/score\ntimeout: 1s\ntasks:\n  m:\n    type: http\n    inputs: {address: \"http://model.%s/predict\", body: '{{ .request }}'}\n    output: {path: response.body}\n", tenant, tenant, tenant)
	}
	burst := max(1, int(quota/10))
	files := map[string]string{
		"a/tenant.yaml": fmt.Sprintf("endpoints: [/a/]\nupstreams: [model.a]\nquotas: {requests_per_second: %g, burst: %d}\n", quota, burst),
		"a/score.yaml":  route("a"),
		"b/tenant.yaml": "endpoints: [/b/]\nupstreams: [model.b]\n",
		"b/score.yaml":  route("b"),
		"g/tenant.yaml": fmt.Sprintf("endpoints: [/g/]\nupstreams: [model.g]\nquotas: {requests_per_second: %g, burst: %d, scope: global}\n", quota, burst),
		"g/score.yaml":  route("g"),
	}
	for name, data := range files {
		p := filepath.Join(routes, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return nil, err
		}
	}
	m := e.models["m"]
	e.sp.gatewayFlags = []string{"--resolve", "model.a=" + m, "--resolve", "model.b=" + m, "--resolve", "model.g=" + m, "--quota-redis", e.redis}
	var bases []string
	for i := range 2 {
		p, base, _, err := e.startLariat(ctx, routes, e.sp.gatewayFlags, "/g/score")
		if err != nil {
			return nil, err
		}
		e.procs = append(e.procs, p)
		bases = append(bases, base)
		e.logf("lariat %d serving tenants a, b and g on %s", i+1, base)
	}
	e.setup = append(e.setup,
		fmt.Sprintf("two lariat serve processes sharing redis-server %s for global quotas: tenant a (quota %g/s, burst %d, per gateway), tenant b (no quota) and tenant g (quota %g/s, burst %d, global), one route each calling the model; phases 1 and 2 use the first gateway only", e.redis, quota, burst, quota, burst))
	return bases, nil
}
