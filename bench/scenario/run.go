package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/bench"
	"github.com/lariat-gw/lariat/bench/fakemodel"
	"github.com/lariat-gw/lariat/featurefetch"
)

// Targets the scenarios report against (never enforce).
const (
	// TargetThroughput is the least closed-loop throughput of the gateway
	// relative to the floor.
	TargetThroughput = 0.85
	// TargetP99 is the most open-loop p99 latency of the gateway relative
	// to the floor, at half of the gateway's closed-loop maximum.
	TargetP99 = 1.2
)

// Defaults of Options.
const (
	DefaultDuration       = 10 * time.Second
	DefaultWarmup         = time.Second
	DefaultConnections    = 50
	DefaultTimeout        = 2 * time.Second
	DefaultDeadlineMargin = 10 * time.Millisecond
	DefaultOut            = "bench-out"
)

// Options configure a scenario run. Zero fields take the defaults above.
type Options struct {
	// Name is the scenario, one of Names().
	Name string
	// Mode is bench.ModeClosed (maximum throughput, the default) or
	// bench.ModeOpen (a fixed Rate).
	Mode bench.Mode
	// Rate is the open-loop request rate.
	Rate float64
	// OpenAtHalf runs the closed loop, then the open loop at half of the
	// gateway's closed-loop throughput. Mode and Rate must then be unset.
	OpenAtHalf bool
	// Duration is the length of each measured run.
	Duration time.Duration
	// Warmup is a closed-loop run before each measured run whose results
	// are dropped; negative for none.
	Warmup time.Duration
	// Connections is the generator's connection count in the closed loop.
	Connections int
	// OpenConnections is the generator's connection count in the open
	// loop: the most requests in flight. Default: Connections, or enough
	// for every request to take 100ms (rate / 10) when that is more, so
	// that slow answers do not hold up the schedule.
	OpenConnections int
	// Rounds splits each measured run into this many parts, alternating
	// between the gateway and the floor, so that a change in the machine's
	// background load affects both alike; the parts are merged. Default 1.
	Rounds int
	// Timeout is the generator's per-request timeout.
	Timeout time.Duration
	// DeadlineMargin is added to the route timeout to count the answers
	// that met the deadline (faults).
	DeadlineMargin time.Duration
	// ModelLatency and ModelJitter override the fake models' latency
	// (DefaultModelLatency, DefaultModelJitter) when not nil.
	ModelLatency *time.Duration
	ModelJitter  *time.Duration
	// Pipeline, when positive, starts the gateway with
	// --upstream-pipeline MODEL=Pipeline for every fake model: its calls
	// are pipelined over that many connections per model (the floor's
	// are not).
	Pipeline int

	// Out is the folder the reports are written to; created if missing.
	Out string
	// CPUProfile, when set, is a folder receiving a CPU profile of the
	// gateway and of the floor for each loop (closed, open), taken through
	// their /debug/pprof/profile endpoints and spanning both runs.
	CPUProfile string

	// LariatBin is the gateway binary; empty builds ./cmd/lariat with
	// "go build" (the working directory must be inside the repository).
	LariatBin string
	// BenchBin is the lariat-bench binary, which runs the fake models and
	// the floor; empty means the running executable.
	BenchBin string
	// RedisServer is the redis-server binary; empty looks it up in PATH.
	RedisServer string

	// Log receives the steps of the run; nil discards them.
	Log io.Writer
	// Stdout receives the summary; nil discards it.
	Stdout io.Writer
	// Progress, when set, receives the generator's live progress.
	Progress       io.Writer
	ProgressRedraw bool
}

// Outcome is what a scenario run measured.
type Outcome struct {
	Header
	Phases []*Phase `json:"phases"`
}

// Header opens the summary of every scenario: which one ran, when and
// where.
type Header struct {
	Scenario  string    `json:"scenario"`
	About     string    `json:"about"`
	Generated time.Time `json:"generated"`
	Host      Host      `json:"host"`
	// Setup describes the processes and their settings.
	Setup []string `json:"setup"`
}

// newHeader returns the header of scenario name on this machine, now.
func newHeader(name, about string, setup []string) Header {
	return Header{
		Scenario: name, About: about, Generated: time.Now().Round(0), Setup: setup,
		Host: Host{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()},
	}
}

// Host describes the machine a scenario ran on.
type Host struct {
	CPUs int    `json:"cpus"`
	OS   string `json:"os"`
	Arch string `json:"arch"`
	Go   string `json:"go"`
}

// Phase is the same load sent through the gateway and through the floor.
type Phase struct {
	Mode bench.Mode `json:"mode"`
	// Rate is the open-loop rate (0 in closed mode).
	Rate float64 `json:"rate,omitempty"`
	// Rounds is the number of alternating parts each run was split into.
	Rounds int     `json:"rounds"`
	Lariat Figures `json:"lariat"`
	Floor  Figures `json:"floor"`
	// Ratio is the gateway's figures over the floor's.
	Ratio bench.Ratio `json:"ratio"`
	// CPURatio is the gateway's CPU time per request over the floor's.
	CPURatio float64  `json:"cpu_ratio,omitempty"`
	Targets  []Target `json:"targets,omitempty"`
	// Models counts what the fake models saw during each measured run, by
	// run ("lariat", "floor") and model key.
	Models map[string]map[string]fakemodel.Stats `json:"models"`
	// JSON and HTML are the report files; Profiles the CPU profiles.
	JSON     string   `json:"json"`
	HTML     string   `json:"html"`
	Profiles []string `json:"profiles,omitempty"`

	// Results are the full measurements.
	Results []*bench.Result `json:"-"`
}

// Figures are the headline numbers of one run.
type Figures struct {
	Requests      int64   `json:"requests"`
	OK            int64   `json:"ok"`
	Errors        int64   `json:"errors"`
	ThroughputRPS float64 `json:"throughput_rps"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p99_9_ms"`
	MaxMs         float64 `json:"max_ms"`
	// ServiceP99Ms (open loop) is the p99 from the actual send time,
	// leaving out the generator's send lag.
	ServiceP99Ms float64              `json:"service_p99_ms,omitempty"`
	Deadline     *bench.DeadlineCount `json:"deadline,omitempty"`
	// CPUSeconds is the CPU time (user and system) the serving process —
	// the gateway or the floor — used during the run, and CPUPerRequestUs
	// that time per request, in microseconds (Linux only). Unlike
	// throughput, it barely depends on what else the machine runs.
	CPUSeconds      float64 `json:"cpu_s,omitempty"`
	CPUPerRequestUs float64 `json:"cpu_per_request_us,omitempty"`
}

func (f *Figures) setCPU(d time.Duration, requests int64) {
	f.CPUSeconds = d.Seconds()
	if requests > 0 {
		f.CPUPerRequestUs = float64(d) / float64(time.Microsecond) / float64(requests)
	}
}

func figures(r *bench.Result) Figures {
	var svc float64
	if r.ServiceTime != nil {
		svc = r.ServiceTime.P99Ms
	}
	return Figures{
		ServiceP99Ms:  svc,
		Requests:      r.Requests,
		OK:            r.OK,
		Errors:        r.Errors.Total,
		ThroughputRPS: r.ThroughputRPS,
		P50Ms:         r.Latency.P50Ms,
		P99Ms:         r.Latency.P99Ms,
		P999Ms:        r.Latency.P999Ms,
		MaxMs:         r.Latency.MaxMs,
		Deadline:      r.Deadline,
	}
}

// Target is a goal a phase is reported against; missing it is not an error.
type Target struct {
	What string  `json:"what"`
	Want string  `json:"want"`
	Got  float64 `json:"got"`
	Met  bool    `json:"met"`
}

// Validate reports whether o describes a runnable scenario, without
// starting anything.
func (o Options) Validate() error {
	_, err := o.prepare()
	return err
}

func (o *Options) prepare() (*spec, error) {
	sp := lookup(o.Name)
	if sp == nil {
		return nil, fmt.Errorf("unknown scenario %q (available: %s)", o.Name, strings.Join(Names(), ", "))
	}
	if o.Mode == "" {
		o.Mode = bench.ModeClosed
	}
	switch {
	case o.OpenAtHalf && (o.Mode != bench.ModeClosed || o.Rate != 0):
		return nil, errors.New("the open loop at half of the closed-loop maximum sets its own mode and rate")
	case o.Mode == bench.ModeOpen && !(o.Rate > 0):
		return nil, errors.New("open mode needs a rate (or run the closed loop, then the open loop at half of its maximum)")
	case o.Mode == bench.ModeClosed && o.Rate != 0:
		return nil, errors.New("a rate applies only to open mode")
	case o.Mode != bench.ModeOpen && o.Mode != bench.ModeClosed:
		return nil, fmt.Errorf("unknown mode %q: want open or closed", o.Mode)
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	if o.Connections == 0 {
		o.Connections = DefaultConnections
	}
	if o.Rounds == 0 {
		o.Rounds = 1
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.DeadlineMargin == 0 {
		o.DeadlineMargin = DefaultDeadlineMargin
	}
	if o.Out == "" {
		o.Out = DefaultOut
	}
	if o.Duration < 0 || o.Connections < 0 || o.OpenConnections < 0 || o.Rounds < 0 || o.Timeout < 0 || o.DeadlineMargin < 0 {
		return nil, errors.New("duration, connections, rounds, timeout and deadline margin must not be negative")
	}
	if o.Duration/time.Duration(o.Rounds) < 100*time.Millisecond {
		return nil, fmt.Errorf("%d rounds leave less than 100ms per round of %s", o.Rounds, o.Duration)
	}
	if sp.deadline && sp.routeTimeout+o.DeadlineMargin > o.Timeout {
		return nil, fmt.Errorf("the request timeout %s must be at least the route timeout plus the deadline margin", o.Timeout)
	}
	if (o.ModelLatency != nil && *o.ModelLatency < 0) || (o.ModelJitter != nil && *o.ModelJitter < 0) {
		return nil, errors.New("model latency and jitter must not be negative")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	return sp, nil
}

// env is one scenario run's processes and addresses.
type env struct {
	opt   Options
	sp    *spec
	tmp   string
	procs []*proc

	redis       string
	models      map[string]string // key -> host:port
	lariatURL   string
	lariatAdmin string
	lariatProc  *proc
	floorURL    string
	floorAdmin  string
	floorProc   *proc
	setup       []string
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.opt.Log, format+"\n", args...)
}

// Run runs scenario opt.Name: it starts the parts as separate processes on
// 127.0.0.1, sends the same load through the gateway and through the floor,
// writes the reports into opt.Out and returns what it measured. Targets that
// are missed are reported, not returned as errors. Cancelling ctx stops the
// load early; the partial results are still reported.
func Run(ctx context.Context, opt Options) (*Outcome, error) {
	sp, err := opt.prepare()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create output folder: %w", err)
	}
	if opt.CPUProfile != "" {
		if err := os.MkdirAll(opt.CPUProfile, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create profile folder: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "lariat-scenario-*")
	if err != nil {
		return nil, fmt.Errorf("cannot create a temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	e := &env{opt: opt, sp: sp, tmp: tmp, models: map[string]string{}}
	defer e.stopAll()

	if err := e.start(ctx); err != nil {
		return nil, err
	}
	if sp.parity {
		if err := e.parity(ctx); err != nil {
			return nil, err
		}
		e.logf("parity: the gateway and the floor give the same answers and send the same model requests")
	}

	out := &Outcome{Header: newHeader(sp.name, sp.about, e.setup)}
	mode, rate := opt.Mode, opt.Rate
	ph, err := e.phase(ctx, mode, rate)
	if err != nil {
		return nil, err
	}
	out.Phases = append(out.Phases, ph)
	if opt.OpenAtHalf && ctx.Err() == nil {
		half := ph.Lariat.ThroughputRPS / 2
		if half <= 0 {
			return nil, errors.New("the gateway completed no request in the closed loop; cannot set the open-loop rate")
		}
		ph, err := e.phase(ctx, bench.ModeOpen, math.Round(half))
		if err != nil {
			return nil, err
		}
		out.Phases = append(out.Phases, ph)
	}
	if err := e.writeSummary(out); err != nil {
		return nil, err
	}
	return out, nil
}

// start builds what is missing and starts every process.
func (e *env) start(ctx context.Context) error {
	if err := e.prepareBinaries(ctx); err != nil {
		return err
	}
	if e.sp.features {
		if err := e.startRedis(ctx); err != nil {
			return err
		}
		if err := e.seedFeatures(ctx); err != nil {
			return err
		}
	}
	if err := e.startModels(ctx); err != nil {
		return err
	}
	if err := e.startGateway(ctx); err != nil {
		return err
	}
	return e.startFloor(ctx)
}

func (e *env) stopAll() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].stop()
	}
	e.procs = nil
}

// prepareBinaries fills in the lariat-bench binary (this executable) and
// builds the gateway when the options name none.
func (e *env) prepareBinaries(ctx context.Context) error {
	opt := &e.opt
	if opt.BenchBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find the lariat-bench executable: %w", err)
		}
		opt.BenchBin = exe
	}
	if opt.LariatBin == "" {
		bin, err := buildGateway(ctx, e.tmp)
		if err != nil {
			return err
		}
		e.logf("built the gateway into %s", bin)
		opt.LariatBin = bin
	}
	return nil
}

// buildGateway builds ./cmd/lariat of the module the working directory is in.
func buildGateway(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("%w: go env GOMOD: %w", errNotBuilt, err)
	}
	gomod := strings.TrimSpace(string(out))
	data, err := os.ReadFile(gomod)
	if err != nil || !strings.Contains(string(data), "module github.com/lariat-gw/lariat\n") {
		return "", errNotBuilt
	}
	bin := filepath.Join(dir, "lariat")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/lariat")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cannot build the gateway: %w\n%s", err, out)
	}
	return bin, nil
}

func (e *env) startRedis(ctx context.Context) error {
	bin := e.opt.RedisServer
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return fmt.Errorf("scenario %s needs redis-server (apt-get install -y redis-server): %w", e.sp.name, err)
		}
	}
	dir := filepath.Join(e.tmp, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create redis folder: %w", err)
	}
	p, addrs, err := startServer(ctx, "redis-server", e.tmp, bin, 1, func(a []string) []string {
		return []string{"--port", strconv.Itoa(portOf(a[0])), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no"}
	}, func(_ context.Context, a []string) error { return redisPing(a[0]) })
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	e.redis = addrs[0]
	e.logf("redis-server on %s", e.redis)
	return nil
}

// seedFeatures writes the scenario's feature rows into e.redis, and its
// feature views into the temporary folder for the gateway.
func (e *env) seedFeatures(ctx context.Context) error {
	views, err := featurefetch.ParseViews("views.yaml", ViewsYAML())
	if err != nil {
		return fmt.Errorf("BUG: scenario feature views do not parse: %w", err)
	}
	store, err := featurefetch.NewRedisStore(featurefetch.RedisOptions{Addrs: []string{e.redis}, DisableCache: true})
	if err != nil {
		return fmt.Errorf("cannot connect to redis-server: %w", err)
	}
	defer store.Close()
	n, err := views.Seed(ctx, store, "", SeedRows())
	if err != nil {
		return fmt.Errorf("cannot seed the feature store: %w", err)
	}
	if err := os.WriteFile(filepath.Join(e.tmp, "views.yaml"), ViewsYAML(), 0o644); err != nil {
		return fmt.Errorf("cannot write feature views: %w", err)
	}
	e.logf("redis-server seeded with %d rows", n)
	e.setup = append(e.setup, fmt.Sprintf("redis-server on %s: %d entities x %d features in Feast's layout", e.redis, n, len(featureNames)))
	return nil
}

func (e *env) startModels(ctx context.Context) error {
	for _, m := range e.sp.models {
		cfg := m.cfg
		cfg.Latency, cfg.Jitter = DefaultModelLatency, DefaultModelJitter
		if e.opt.ModelLatency != nil {
			cfg.Latency = *e.opt.ModelLatency
		}
		if e.opt.ModelJitter != nil {
			cfg.Jitter = *e.opt.ModelJitter
		}
		args := modelArgs(cfg)
		p, addrs, err := startServer(ctx, "model-"+m.key, e.tmp, e.opt.BenchBin, 1, func(a []string) []string {
			return append([]string{"upstream", "--listen", a[0]}, args...)
		}, func(ctx context.Context, a []string) error {
			_, err := httpGet(ctx, "http://"+a[0]+"/-/healthz")
			return err
		})
		if err != nil {
			return err
		}
		e.procs = append(e.procs, p)
		e.models[m.key] = addrs[0]
		desc := fmt.Sprintf("model %s on %s: latency %s ± %s", m.key, addrs[0], cfg.Latency, cfg.Jitter)
		if cfg.SlowRate > 0 {
			desc += fmt.Sprintf(", %g%% slow (%s)", 100*cfg.SlowRate, cfg.Slow)
		}
		if cfg.ErrorRate > 0 {
			desc += fmt.Sprintf(", %g%% status 500", 100*cfg.ErrorRate)
		}
		if cfg.Workers > 0 {
			desc += fmt.Sprintf(", %d workers (the rest wait in line)", cfg.Workers)
		}
		e.logf("%s", desc)
		e.setup = append(e.setup, desc)
	}
	return nil
}

// modelArgs returns the "lariat-bench upstream" flags for cfg.
func modelArgs(cfg fakemodel.Config) []string {
	args := []string{"--latency", cfg.Latency.String(), "--jitter", cfg.Jitter.String()}
	if cfg.ErrorRate > 0 {
		args = append(args, "--error-rate", strconv.FormatFloat(cfg.ErrorRate, 'g', -1, 64))
	}
	if cfg.SlowRate > 0 {
		args = append(args, "--slow-rate", strconv.FormatFloat(cfg.SlowRate, 'g', -1, 64), "--slow", cfg.Slow.String())
	}
	if cfg.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(cfg.Workers))
	}
	if len(cfg.Body) > 0 {
		args = append(args, "--body", string(cfg.Body))
	}
	return args
}

func (e *env) startGateway(ctx context.Context) error {
	routes := filepath.Join(e.tmp, "routes")
	if err := os.MkdirAll(routes, 0o755); err != nil {
		return fmt.Errorf("cannot create routes folder: %w", err)
	}
	if err := os.WriteFile(filepath.Join(routes, "route.yaml"), e.sp.route(e.models), 0o644); err != nil {
		return fmt.Errorf("cannot write route file: %w", err)
	}
	extra := slices.Clone(e.sp.gatewayFlags)
	if e.sp.resolve != nil {
		for _, r := range e.sp.resolve(e.models) {
			extra = append(extra, "--resolve", r)
		}
	}
	if e.sp.features {
		extra = append(extra, "--feature-views", filepath.Join(e.tmp, "views.yaml"), "--redis", e.redis)
	}
	if e.opt.Pipeline > 0 {
		for _, m := range e.sp.models {
			extra = append(extra, "--upstream-pipeline", e.models[m.key]+"="+strconv.Itoa(e.opt.Pipeline))
		}
	}
	p, base, admin, err := e.startLariat(ctx, routes, extra, e.sp.endpoint)
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	e.lariatProc = p
	e.lariatURL = base + e.sp.endpoint
	e.lariatAdmin = admin
	e.logf("lariat serving %s (admin %s)", e.lariatURL, e.lariatAdmin)
	desc := "lariat serve on " + strings.TrimPrefix(base, "http://")
	if len(extra) > 0 {
		desc += " " + strings.ReplaceAll(strings.Join(extra, " "), e.tmp+string(filepath.Separator), "")
	}
	e.setup = append(e.setup, desc)
	return nil
}

// startLariat starts "lariat serve" on the routes folder with flags and
// waits until it is ready and serves endpoint. It returns the process and
// the base URLs of its listener and of its admin listener.
func (e *env) startLariat(ctx context.Context, routes string, flags []string, endpoint string) (p *proc, base, admin string, err error) {
	p, addrs, err := startServer(ctx, "lariat", e.tmp, e.opt.LariatBin, 2, func(a []string) []string {
		return append([]string{"serve", "--routes", routes, "--listen", a[0], "--admin-listen", a[1]}, flags...)
	}, func(ctx context.Context, a []string) error {
		if _, err := httpGet(ctx, "http://"+a[1]+"/readyz"); err != nil {
			return err
		}
		return checkRoute(ctx, "http://"+a[1]+"/routes", endpoint)
	})
	if err != nil {
		return nil, "", "", err
	}
	return p, "http://" + addrs[0], "http://" + addrs[1], nil
}

// checkRoute fails unless the gateway serves endpoint and every route file
// loaded.
func checkRoute(ctx context.Context, url, endpoint string) error {
	data, err := httpGet(ctx, url)
	if err != nil {
		return err
	}
	var info struct {
		Routes []struct {
			Endpoint string `json:"endpoint"`
		} `json:"routes"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return fmt.Errorf("cannot parse /routes: %w", err)
	}
	if len(info.Errors) > 0 {
		return fmt.Errorf("route file did not load: %s", strings.Join(info.Errors, "; "))
	}
	for _, r := range info.Routes {
		if r.Endpoint == endpoint {
			return nil
		}
	}
	return fmt.Errorf("no route serves %s", endpoint)
}

func (e *env) startFloor(ctx context.Context) error {
	extra := []string{"--scenario", e.sp.name}
	for _, m := range e.sp.models {
		extra = append(extra, "--model", m.key+"="+e.models[m.key])
	}
	if e.redis != "" {
		extra = append(extra, "--redis", e.redis)
	}
	p, addrs, err := startServer(ctx, "floor", e.tmp, e.opt.BenchBin, 2, func(a []string) []string {
		return append([]string{"floor", "--listen", a[0], "--admin-listen", a[1]}, extra...)
	}, func(ctx context.Context, a []string) error {
		_, err := httpGet(ctx, "http://"+a[0]+"/-/healthz")
		return err
	})
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	e.floorProc = p
	e.floorURL = "http://" + addrs[0] + e.sp.endpoint
	e.floorAdmin = "http://" + addrs[1]
	e.logf("floor serving %s (admin %s)", e.floorURL, e.floorAdmin)
	e.setup = append(e.setup, fmt.Sprintf("floor (lariat-bench floor) on %s", addrs[0]))
	return nil
}

// phase sends the load through the gateway, then through the floor, and
// writes the report.
func (e *env) phase(ctx context.Context, mode bench.Mode, rate float64) (*Phase, error) {
	opt := &e.opt
	ph := &Phase{Mode: mode, Rate: rate, Rounds: opt.Rounds, Models: map[string]map[string]fakemodel.Stats{}}
	label := string(mode)
	conns := opt.Connections
	if mode == bench.ModeOpen {
		conns = opt.OpenConnections
		if conns == 0 {
			conns = max(opt.Connections, int(math.Ceil(rate/10)))
		}
		e.logf("open loop at %s rps, %d connections, %s per run in %d round(s)", strconv.FormatFloat(rate, 'f', 0, 64), conns, opt.Duration, opt.Rounds)
	} else {
		e.logf("closed loop, %d connections, %s per run in %d round(s)", conns, opt.Duration, opt.Rounds)
	}
	var deadline time.Duration
	if e.sp.deadline {
		deadline = e.sp.routeTimeout + opt.DeadlineMargin
	}
	targets := []struct {
		name, url, admin string
		p                *proc
	}{
		{"lariat", e.lariatURL, e.lariatAdmin, e.lariatProc},
		{"floor", e.floorURL, e.floorAdmin, e.floorProc},
	}
	// Each target's connections are opened by its warmup and kept across
	// the rounds: the runs measure kept-alive connections only.
	pools := make([]*bench.Conns, len(targets))
	for i, t := range targets {
		p, err := bench.NewConns(t.url, conns, nil)
		if err != nil {
			return nil, err
		}
		defer p.Close()
		pools[i] = p
		if opt.Warmup > 0 && ctx.Err() == nil {
			if _, err := bench.Run(ctx, bench.Config{
				Name: "warmup", URL: t.url, Body: e.sp.body, Connections: conns, Conns: p,
				Duration: opt.Warmup, Timeout: opt.Timeout,
			}); err != nil {
				return nil, fmt.Errorf("warmup of %s: %w", t.name, err)
			}
		}
	}

	// A profile spans every round; a process idle during the other's
	// rounds adds (next to) no samples.
	profs := make([]chan error, len(targets))
	if opt.CPUProfile != "" {
		for i, t := range targets {
			path := filepath.Join(opt.CPUProfile, fmt.Sprintf("%s-%s-%s.pprof", fileName(e.sp.name), label, t.name))
			ph.Profiles = append(ph.Profiles, path)
			profs[i] = make(chan error, 1)
			go func() { profs[i] <- cpuProfile(ctx, t.admin, 2*opt.Duration+time.Second, path) }()
		}
	}

	parts := make([][]*bench.Result, len(targets))
	cpu := make([]time.Duration, len(targets))
	cpuOK := true
	seg := opt.Duration / time.Duration(opt.Rounds)
	for r := 0; r < opt.Rounds; r++ {
		if r > 0 && ctx.Err() != nil {
			break
		}
		for i, t := range targets {
			cfg := bench.Config{
				Name: t.name, URL: t.url, Body: e.sp.body, Mode: mode, Rate: rate,
				Connections: conns, Conns: pools[i], Duration: seg, Timeout: opt.Timeout, Deadline: deadline,
				Progress: opt.Progress, ProgressRedraw: opt.ProgressRedraw,
			}
			if opt.Rounds > 1 {
				e.logf("%s, round %d of %d: %s", t.name, r+1, opt.Rounds, t.url)
			} else {
				e.logf("%s: %s", t.name, t.url)
			}
			// The counters are read even after an interrupt, so the partial
			// results are still reported.
			before, err := e.modelStats(context.WithoutCancel(ctx))
			if err != nil {
				return nil, err
			}
			cpuBefore, err1 := processCPU(t.p.cmd.Process.Pid)
			res, err := bench.Run(ctx, cfg)
			if err != nil {
				return nil, fmt.Errorf("load through %s: %w", t.name, err)
			}
			cpuAfter, err2 := processCPU(t.p.cmd.Process.Pid)
			if err1 != nil || err2 != nil {
				cpuOK = false
			}
			cpu[i] += cpuAfter - cpuBefore
			after, err := e.modelStats(context.WithoutCancel(ctx))
			if err != nil {
				return nil, err
			}
			seen := ph.Models[t.name]
			if seen == nil {
				seen = map[string]fakemodel.Stats{}
				ph.Models[t.name] = seen
			}
			for k, a := range after {
				b, sum := before[k], seen[k]
				sum.Requests += a.Requests - b.Requests
				sum.Errors += a.Errors - b.Errors
				sum.Slow += a.Slow - b.Slow
				seen[k] = sum
			}
			parts[i] = append(parts[i], res)
		}
	}
	for i, t := range targets {
		if profs[i] != nil {
			if err := <-profs[i]; err != nil {
				e.logf("warning: no CPU profile of %s: %v", t.name, err)
			}
		}
		res := parts[i][0]
		if len(parts[i]) > 1 {
			var err error
			if res, err = bench.Merge(t.name, parts[i]...); err != nil {
				return nil, fmt.Errorf("cannot merge the rounds of %s: %w", t.name, err)
			}
		}
		ph.Results = append(ph.Results, res)
	}
	lar, flo := ph.Results[0], ph.Results[1]
	ph.Lariat, ph.Floor = figures(lar), figures(flo)
	if cpuOK {
		ph.Lariat.setCPU(cpu[0], lar.Requests)
		ph.Floor.setCPU(cpu[1], flo.Requests)
		if ph.Floor.CPUPerRequestUs > 0 {
			ph.CPURatio = ph.Lariat.CPUPerRequestUs / ph.Floor.CPUPerRequestUs
		}
	}

	title := fmt.Sprintf("%s · %s loop", e.sp.name, label)
	if mode == bench.ModeOpen {
		title += " at " + strconv.FormatFloat(rate, 'f', 0, 64) + " rps"
	}
	rep, err := bench.NewReport(title, "floor", lar, flo)
	if err != nil {
		return nil, err
	}
	ph.Ratio = rep.Ratios[0]
	ph.Targets = e.targets(ph)
	rep.Notes = append(rep.Notes, e.sp.name+": "+e.sp.about+".")
	rep.Notes = append(rep.Notes, fmt.Sprintf("Every part is its own process on 127.0.0.1 of a %d-CPU machine; "+
		"the generator shares the CPUs with them, so absolute figures depend on the machine and its load; compare the ratios.", runtime.NumCPU()))
	rep.Notes = append(rep.Notes, "floor: a minimal hand-written fasthttp server doing the same upstream work with none of the gateway's features.")
	if opt.Rounds > 1 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("Each run is %d rounds of %s alternating between lariat and the floor, merged; "+
			"the timelines are the rounds end to end.", opt.Rounds, opt.Duration/time.Duration(opt.Rounds)))
	}
	rep.Notes = append(rep.Notes, e.setup...)
	for _, t := range targets {
		rep.Notes = append(rep.Notes, t.name+" run: the models saw "+modelSummary(ph.Models[t.name]))
	}
	if ph.CPURatio > 0 {
		rep.Notes = append(rep.Notes, cpuNote(ph))
	}
	for _, t := range ph.Targets {
		rep.Notes = append(rep.Notes, t.String())
	}

	base := filepath.Join(opt.Out, fileName(e.sp.name)+"-"+label)
	ph.JSON, ph.HTML = base+".json", base+".html"
	if err := writeFile(ph.JSON, rep.WriteJSON); err != nil {
		return nil, err
	}
	if err := writeFile(ph.HTML, rep.WriteHTML); err != nil {
		return nil, err
	}
	e.printPhase(ph)
	return ph, nil
}

// cpuNote reads like "CPU per request: lariat 57.1µs, floor 40.5µs (1.41x)".
func cpuNote(ph *Phase) string {
	return fmt.Sprintf("CPU per request of the serving process: lariat %.1fµs, floor %.1fµs (lariat / floor %.2f)",
		ph.Lariat.CPUPerRequestUs, ph.Floor.CPUPerRequestUs, ph.CPURatio)
}

// modelStats reads every fake model's counters.
func (e *env) modelStats(ctx context.Context) (map[string]fakemodel.Stats, error) {
	out := make(map[string]fakemodel.Stats, len(e.models))
	for k, addr := range e.models {
		data, err := httpGet(ctx, "http://"+addr+"/-/stats")
		if err != nil {
			return nil, fmt.Errorf("cannot read the counters of model %s: %w", k, err)
		}
		var st fakemodel.Stats
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("cannot parse the counters of model %s: %w", k, err)
		}
		out[k] = st
	}
	return out, nil
}

// modelSummary reads like "m1 3723 requests (205 slow), m2 3660 requests (183 status 500)".
func modelSummary(m map[string]fakemodel.Stats) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		st := m[k]
		p := fmt.Sprintf("%s %d requests", k, st.Requests)
		var extra []string
		if st.Slow > 0 {
			extra = append(extra, fmt.Sprintf("%d slow", st.Slow))
		}
		if st.Errors > 0 {
			extra = append(extra, fmt.Sprintf("%d status 500", st.Errors))
		}
		if len(extra) > 0 {
			p += " (" + strings.Join(extra, ", ") + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// targets returns the goals that apply to ph.
func (e *env) targets(ph *Phase) []Target {
	if !e.sp.targets {
		return nil
	}
	for _, r := range ph.Results {
		if r.Interrupted {
			return nil // an interrupted run compares nothing
		}
	}
	if ph.Mode == bench.ModeClosed {
		return []Target{{
			What: "closed-loop throughput, lariat / floor",
			Want: ">= " + strconv.FormatFloat(TargetThroughput, 'f', 2, 64),
			Got:  ph.Ratio.Throughput,
			Met:  ph.Ratio.Throughput >= TargetThroughput,
		}}
	}
	return []Target{{
		What: "open-loop p99, lariat / floor",
		Want: "<= " + strconv.FormatFloat(TargetP99, 'f', 2, 64),
		Got:  ph.Ratio.P99,
		Met:  ph.Ratio.P99 > 0 && ph.Ratio.P99 <= TargetP99,
	}}
}

// String reads like "target closed-loop throughput, lariat / floor >= 0.85: 0.91 (met)".
func (t Target) String() string {
	verdict := "met"
	if !t.Met {
		verdict = "missed"
	}
	return fmt.Sprintf("target %s %s: %.2f (%s)", t.What, t.Want, t.Got, verdict)
}

func (e *env) printPhase(ph *Phase) {
	w := e.opt.Stdout
	fmt.Fprintf(w, "== %s, %s loop", e.sp.name, ph.Mode)
	if ph.Mode == bench.ModeOpen {
		fmt.Fprintf(w, " at %s rps", strconv.FormatFloat(ph.Rate, 'f', 0, 64))
	}
	fmt.Fprintln(w)
	for _, r := range ph.Results {
		_ = r.WriteText(w)
	}
	for _, name := range []string{"lariat", "floor"} {
		fmt.Fprintf(w, "  models during the %s run: %s\n", name, modelSummary(ph.Models[name]))
	}
	ra := &ph.Ratio
	fmt.Fprintf(w, "  lariat / floor: throughput %.3f, p50 %.3f, p90 %.3f, p99 %.3f, p99.9 %.3f",
		ra.Throughput, ra.P50, ra.P90, ra.P99, ra.P999)
	if ph.Floor.ServiceP99Ms > 0 {
		fmt.Fprintf(w, " (service-time p99 %.3f)", ph.Lariat.ServiceP99Ms/ph.Floor.ServiceP99Ms)
	}
	fmt.Fprintln(w)
	if ph.CPURatio > 0 {
		fmt.Fprintf(w, "  %s\n", cpuNote(ph))
	}
	for _, t := range ph.Targets {
		fmt.Fprintf(w, "  %s\n", t)
	}
	fmt.Fprintf(w, "  reports: %s, %s\n", ph.JSON, ph.HTML)
	for _, p := range ph.Profiles {
		fmt.Fprintf(w, "  profile: %s (go tool pprof -top %s)\n", p, p)
	}
}

func (e *env) writeSummary(out *Outcome) error {
	_, err := writeSummary(e.opt.Out, out.Scenario, out)
	return err
}

// writeSummary writes v as the summary of scenario name into the folder out
// and returns the file's path.
func writeSummary(out, name string, v any) (string, error) {
	path := filepath.Join(out, fileName(name)+"-summary.json")
	return path, writeFile(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	})
}

// Own holds the options shared by the scenarios that run their own phases
// (tenants, overload). Zero values take the defaults of Options.
type Own struct {
	// Duration is the length of each measured run.
	Duration time.Duration
	// Out is the folder of the JSON summary.
	Out string
	// LariatBin, BenchBin: as in Options.
	LariatBin, BenchBin string
	// Log receives steps; Stdout the summary.
	Log, Stdout io.Writer
}

func (o *Own) setDefaults() {
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Out == "" {
		o.Out = DefaultOut
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
}

// ownEnv prepares a scenario that runs its own phases with options own: it
// creates the output folder and a temporary folder, and returns the
// scenario's env with options opt (binaries and log taken from own); done
// stops the env's processes and removes the temporary folder.
func ownEnv(own *Own, sp *spec, opt Options) (e *env, done func(), err error) {
	opt.LariatBin, opt.BenchBin, opt.Log = own.LariatBin, own.BenchBin, own.Log
	if err := os.MkdirAll(own.Out, 0o755); err != nil {
		return nil, nil, fmt.Errorf("cannot create output folder: %w", err)
	}
	tmp, err := os.MkdirTemp("", "lariat-scenario-*")
	if err != nil {
		return nil, nil, fmt.Errorf("cannot create a temporary folder: %w", err)
	}
	e = &env{opt: opt, sp: sp, tmp: tmp, models: map[string]string{}}
	return e, func() {
		e.stopAll()
		os.RemoveAll(tmp)
	}, nil
}

func fileName(name string) string {
	return strings.ReplaceAll(name, "+", "-")
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}

// cpuProfile fetches a CPU profile of d (whole seconds, at least one) from
// the pprof endpoint under admin and writes it to path.
func cpuProfile(ctx context.Context, admin string, d time.Duration, path string) error {
	secs := max(int(math.Ceil(d.Seconds())), 1)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered status %d", req.URL, resp.StatusCode)
	}
	return writeFile(path, func(w io.Writer) error {
		_, err := io.Copy(w, resp.Body)
		return err
	})
}
