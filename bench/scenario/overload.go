package scenario

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/bench"
	"github.com/lariat-gw/lariat/bench/fakemodel"
)

// Overload is the scenario of a model server offered twice what it can
// serve, through the gateway.
const Overload = "overload"

// OverloadAbout describes the overload scenario.
const OverloadAbout = "one model call to a model server with a fixed worker pool, offered a quarter of its capacity and then twice it, " +
	"through the gateway with its defaults and with its limits off: admitted p99 against unloaded p99, how fast refusals come, goodput, breaker trips"

// Defaults of the overload scenario: a model server working on
// DefaultOverloadWorkers requests at a time, each taking
// DefaultOverloadLatency (jitter a fifth of it).
const (
	DefaultOverloadWorkers = 8
	DefaultOverloadLatency = 5 * time.Millisecond
)

// OverloadOptions configure a run of the overload scenario. Zero values take
// the defaults.
type OverloadOptions struct {
	// Workers and ModelLatency shape the model server: its capacity is
	// about Workers / ModelLatency requests per second.
	Workers      int
	ModelLatency time.Duration
	Own
}

// OverloadOutcome is what the overload scenario measured.
type OverloadOutcome struct {
	Header
	// Capacity is the model server's throughput measured directly in a
	// closed loop with four connections per worker.
	Capacity    *bench.Result `json:"capacity"`
	CapacityRPS float64       `json:"capacity_rps"`
	// Gateways are the runs through each gateway setting.
	Gateways []*OverloadGateway `json:"gateways"`
}

// OverloadGateway is one gateway setting under the two loads.
type OverloadGateway struct {
	Name  string   `json:"name"`
	Flags []string `json:"flags"`
	// Unloaded runs at a quarter of the capacity, Overloaded at twice it
	// from the onset of the overload, Sustained at twice it right after
	// (the gateway has adapted to the overload).
	Unloaded   *bench.Result `json:"unloaded"`
	Overloaded *bench.Result `json:"overloaded"`
	Sustained  *bench.Result `json:"sustained"`
	// Figures read from the results and the gateway's metrics.
	UnloadedP99Ms float64 `json:"unloaded_p99_ms"`
	// AdmittedP99Ms is the p99 of the answers below 400 under overload,
	// from the scheduled send time; P99Ratio is that over UnloadedP99Ms.
	AdmittedP99Ms float64 `json:"admitted_p99_ms"`
	P99Ratio      float64 `json:"admitted_p99_ratio"`
	// SustainedP99Ms and SustainedRatio are the same of the Sustained run.
	SustainedP99Ms float64 `json:"sustained_admitted_p99_ms"`
	SustainedRatio float64 `json:"sustained_admitted_p99_ratio"`
	// Refused* time the 503 and 429 answers from the actual send time.
	Refused         int64   `json:"refused"`
	RefusedP50Ms    float64 `json:"refused_p50_ms"`
	RefusedP99Ms    float64 `json:"refused_p99_ms"`
	RefusedMaxMs    float64 `json:"refused_max_ms"`
	Failed          int64   `json:"failed"`
	GoodputRPS      float64 `json:"goodput_rps"`
	GoodputRatio    float64 `json:"goodput_ratio"`
	BreakerOpenings int64   `json:"breaker_openings"`
	// CPUHeldWindows counts the windows in which the upstream's adaptive
	// limit held because the gateway was short of CPU
	// (lariat_upstream_limit_cpu_held_total): refusals under overload say
	// little on such a machine.
	CPUHeldWindows int64 `json:"limit_windows_held_for_cpu"`
}

// RunOverload runs the overload scenario: one fake model with a worker
// pool, its capacity measured directly, then for each gateway setting (the
// defaults, then route and upstream limits off) an open loop at a quarter of
// that capacity and one at twice it.
func RunOverload(ctx context.Context, o OverloadOptions) (*OverloadOutcome, error) {
	if o.Workers == 0 {
		o.Workers = DefaultOverloadWorkers
	}
	if o.ModelLatency == 0 {
		o.ModelLatency = DefaultOverloadLatency
	}
	o.setDefaults()
	if o.Workers < 0 || o.ModelLatency < 0 || o.Duration < 0 {
		return nil, errors.New("workers, model latency and duration must not be negative")
	}
	lat, jit := o.ModelLatency, o.ModelLatency/5
	sp := &spec{
		name:     Overload,
		endpoint: "/v1/score",
		models:   []modelSpec{{key: "m", cfg: fakemodel.Config{Body: []byte(bodyM1), Workers: o.Workers}}},
	}
	e, done, err := ownEnv(&o.Own, sp, Options{Name: Overload, ModelLatency: &lat, ModelJitter: &jit})
	if err != nil {
		return nil, err
	}
	defer done()
	if err := e.prepareBinaries(ctx); err != nil {
		return nil, err
	}
	if err := e.startModels(ctx); err != nil {
		return nil, err
	}
	routes := filepath.Join(e.tmp, "routes")
	if err := os.MkdirAll(routes, 0o755); err != nil {
		return nil, err
	}
	route := "name: score\nendpoint: /v1/score\ntimeout: 1s\ntasks:\n  m:\n    type: http\n    inputs: {address: \"http://" + e.models["m"] + "/predict\", body: '{{ .request }}'}\n    output: {path: response.body}\n"
	if err := os.WriteFile(filepath.Join(routes, "score.yaml"), []byte(route), 0o644); err != nil {
		return nil, err
	}
	out := &OverloadOutcome{}

	e.logf("capacity: model m directly, closed loop with %d connections, for %s", 4*o.Workers, o.Duration/2)
	direct := "http://" + e.models["m"] + "/predict"
	if _, err := bench.Run(ctx, bench.Config{URL: direct, Method: "POST", Body: `{}`, Mode: bench.ModeClosed, Connections: o.Workers, Duration: time.Second}); err != nil {
		return nil, err
	}
	if out.Capacity, err = bench.Run(ctx, bench.Config{
		Name: "capacity", URL: direct, Method: "POST", Body: `{"request_id":{{seq}}}`,
		Mode: bench.ModeClosed, Connections: 4 * o.Workers, Duration: o.Duration / 2, Timeout: DefaultTimeout,
	}); err != nil {
		return nil, err
	}
	if out.Capacity.ElapsedS <= 0 || out.Capacity.OK == 0 {
		return nil, fmt.Errorf("the model answered nothing when called directly: %v", out.Capacity.StatusCodes)
	}
	out.CapacityRPS = float64(out.Capacity.OK) / out.Capacity.ElapsedS

	for _, g := range []struct {
		name  string
		flags []string
	}{
		{"defaults", nil},
		{"limits off", []string{"--route-limit-off", "--upstream-limit-off"}},
	} {
		og, err := e.overloadGateway(ctx, routes, g.name, g.flags, out.CapacityRPS, o.Duration)
		if err != nil {
			return nil, fmt.Errorf("gateway with %s: %w", g.name, err)
		}
		out.Gateways = append(out.Gateways, og)
	}
	out.Header = newHeader(Overload, OverloadAbout, e.setup)

	fmt.Fprintf(o.Stdout, "model capacity (direct, closed loop): %.0f/s\n", out.CapacityRPS)
	for _, g := range out.Gateways {
		fmt.Fprintf(o.Stdout, "lariat with %s: unloaded p99 %.2f ms at %.0f/s; at %.0f/s, admitted p99 %.2f ms (%.2fx unloaded), then %.2f ms (%.2fx) as it goes on; goodput %.0f/s (%.2fx capacity), "+
			"%d refused (from the send: p50 %.3f ms, p99 %.3f ms, max %.2f ms), %d failed, %d breaker openings, %d limit windows held for want of CPU\n",
			g.Name, g.UnloadedP99Ms, g.Unloaded.Rate, g.Overloaded.Rate, g.AdmittedP99Ms, g.P99Ratio, g.SustainedP99Ms, g.SustainedRatio,
			g.GoodputRPS, g.GoodputRatio, g.Refused, g.RefusedP50Ms, g.RefusedP99Ms, g.RefusedMaxMs, g.Failed, g.BreakerOpenings, g.CPUHeldWindows)
	}
	path, err := writeSummary(o.Out, Overload, out)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Stdout, "summary: %s\n", path)
	return out, nil
}

// overloadGateway starts a gateway with flags on routes, runs the unloaded
// and the overloaded open loops through it, reads its breaker openings and
// the windows its upstream limits held for want of CPU, and stops it.
func (e *env) overloadGateway(ctx context.Context, routes, name string, flags []string, capacity float64, d time.Duration) (*OverloadGateway, error) {
	p, base, admin, err := e.startLariat(ctx, routes, flags, e.sp.endpoint)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	desc := "lariat serve on " + strings.TrimPrefix(base, "http://")
	if len(flags) > 0 {
		desc += " " + strings.Join(flags, " ")
	}
	e.setup = append(e.setup, desc)
	url := base + e.sp.endpoint
	// One set of connections, opened before the first run, serves all
	// runs: the onset of the overload is then the gateway's, not the
	// generator's connection set-up.
	nconns := max(50, int(2*capacity/10))
	conns, err := bench.NewConns(url, nconns, nil)
	if err != nil {
		return nil, err
	}
	defer conns.Close()
	run := func(label string, rate float64) (*bench.Result, error) {
		e.logf("lariat with %s: %s, open loop at %.0f/s for %s", name, label, rate, d)
		return bench.Run(ctx, bench.Config{
			Name: name + ", " + label, URL: url, Method: "POST", Body: `{"request_id":{{seq}}}`,
			Mode: bench.ModeOpen, Rate: rate, Connections: nconns, Conns: conns, Duration: d, Timeout: DefaultTimeout,
		})
	}
	if _, err := bench.Run(ctx, bench.Config{URL: url, Method: "POST", Body: `{}`, Mode: bench.ModeOpen, Rate: capacity / 4, Connections: nconns, Conns: conns, Duration: time.Second}); err != nil {
		return nil, err
	}
	g := &OverloadGateway{Name: name, Flags: flags}
	if g.Unloaded, err = run("a quarter of the capacity", capacity/4); err != nil {
		return nil, err
	}
	if g.Overloaded, err = run("twice the capacity", 2*capacity); err != nil {
		return nil, err
	}
	if g.Sustained, err = run("twice the capacity, continued", 2*capacity); err != nil {
		return nil, err
	}
	metrics, err := httpGet(ctx, admin+"/metrics")
	if err != nil {
		return nil, err
	}
	g.BreakerOpenings = sumSeries(metrics, "lariat_breaker_state_changes_total{", `to="open"`)
	g.CPUHeldWindows = sumSeries(metrics, "lariat_upstream_limit_cpu_held_total{", "")
	g.UnloadedP99Ms = g.Unloaded.Latency.P99Ms
	g.AdmittedP99Ms, g.P99Ratio = admittedP99(g.Overloaded, g.UnloadedP99Ms)
	g.SustainedP99Ms, g.SustainedRatio = admittedP99(g.Sustained, g.UnloadedP99Ms)
	r := g.Overloaded
	if s := r.ServiceTimeShed; s != nil {
		g.Refused, g.RefusedP50Ms, g.RefusedP99Ms, g.RefusedMaxMs = s.Count, s.P50Ms, s.P99Ms, s.MaxMs
	}
	g.Failed = r.Requests - r.OK - g.Refused
	if r.ElapsedS > 0 {
		g.GoodputRPS = float64(r.OK) / r.ElapsedS
		g.GoodputRatio = g.GoodputRPS / capacity
	}
	return g, nil
}

// admittedP99 returns the p99 of r's answers below 400, and its ratio to
// unloaded.
func admittedP99(r *bench.Result, unloaded float64) (p99, ratio float64) {
	if r.LatencyOK != nil {
		p99 = r.LatencyOK.P99Ms
	} else if r.OK == r.Requests {
		p99 = r.Latency.P99Ms
	}
	if unloaded > 0 {
		ratio = p99 / unloaded
	}
	return p99, ratio
}

// sumSeries sums the series of a Prometheus text exposition whose line
// starts with prefix and contains label (any, when empty).
func sumSeries(metrics []byte, prefix, label string) int64 {
	var n int64
	sc := bufio.NewScanner(bytes.NewReader(metrics))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) || !strings.Contains(line, label) {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				n += int64(v)
			}
		}
	}
	return n
}
