package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/gateway"
	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/quota"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/router"
	"github.com/lariat-gw/lariat/tasks"
	"github.com/lariat-gw/lariat/upstream"
)

// serverFlags are the flags serve and demo share.
type serverFlags struct {
	listen, adminListen string
	resolve             multiFlag
	pipeline            multiFlag
	maxBody             int
	bodyMemory          int64
	readTimeout         time.Duration
	writeTimeout        time.Duration
	idleTimeout         time.Duration
	shutdownTimeout     time.Duration
	logFormat           string
	adminToken          string
	accessLogSample     float64
	accessLogBodies     bool
	logLevel            string
	maxInFlight         int
	upstream            upstream.Options
	breaker             breakerFlags
	limitOff            bool
	routeLimitMax       int
	routeLimitOff       bool
	taskHistograms      bool
}

// breakerFlags set the default circuit breaker of upstreams.
type breakerFlags struct {
	failures uint
	openFor  time.Duration
}

func (f *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "traffic listen address")
	fs.StringVar(&f.adminListen, "admin-listen", "127.0.0.1:8081", "admin listen address (/healthz, /readyz, /metrics, /routes); keep it off public interfaces")
	fs.Var(&f.resolve, "resolve", "HOST[:PORT]=ADDR: dial ADDR for upstream HOST (repeatable), like curl's --resolve")
	fs.IntVar(&f.maxBody, "max-body-size", 1<<20, "largest request body accepted, in bytes (larger gets 413)")
	fs.Int64Var(&f.bodyMemory, "request-body-memory", 32<<20, "memory of request bodies over 8 KiB read and served at once, in bytes; a request whose body does not fit gets 503 with Retry-After before its body is read")
	fs.DurationVar(&f.readTimeout, "read-timeout", 5*time.Second, "time to read a request")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 5*time.Second, "time to write a response")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", gateway.DefaultIdleTimeout, "how long a kept-alive client connection may idle; keep it above the idle timeout of the proxies in front (Envoy and Istio: 1h)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long SIGTERM waits for requests in flight")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.Float64Var(&f.accessLogSample, "access-log-sample", 0, "share of requests written to the access log, 0..1 (0: off)")
	fs.BoolVar(&f.accessLogBodies, "access-log-bodies", false, "include request bodies in access log lines (they may hold personal data)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&f.maxInFlight, "max-in-flight", 4096, "requests served at once; beyond it requests get 503 with Retry-After at once")
	d := upstream.DefaultOptions
	fs.IntVar(&f.upstream.MaxConns, "upstream-max-conns", d.MaxConns, "connections per upstream host; a try that finds them all busy gets 503, not counted against the upstream")
	fs.DurationVar(&f.upstream.IdleTimeout, "upstream-idle-timeout", d.IdleTimeout, "close kept-alive upstream connections idle this long; keep it below the upstreams' own keep-alive timeout (uvicorn and Node: 5s)")
	fs.IntVar(&f.upstream.MaxBodySize, "upstream-max-body-size", d.MaxBodySize, "largest upstream answer body read, in bytes (larger gets 502)")
	fs.Int64Var(&f.upstream.BodyMemory, "upstream-body-memory", d.BodyMemory, "memory of upstream answers read at once across all upstreams (their body buffers); reads past it fail with 503")
	fs.UintVar(&f.breaker.failures, "upstream-breaker-failures", uint(d.Breaker.Failures), "consecutive upstream faults that open its breaker, for tasks that set no breaker")
	fs.DurationVar(&f.breaker.openFor, "upstream-breaker-open-for", d.Breaker.OpenFor, "how long an open breaker waits before a trial request, for tasks that set no breaker")
	fs.IntVar(&f.upstream.Limit.Max, "upstream-limit-max", d.Limit.Max, "most calls in flight to one upstream; the adaptive limit moves below it with the upstream's latency")
	fs.Var(&f.pipeline, "upstream-pipeline", "HOST:PORT=N: pipeline the calls to upstream HOST:PORT over at most N connections (repeatable); fewer system calls per call under load, for upstreams that answer fast (a slow answer delays those queued behind it)")
	fs.BoolVar(&f.limitOff, "upstream-limit-off", false, "turn the adaptive per-upstream concurrency limit off")
	fs.IntVar(&f.routeLimitMax, "route-limit-max", router.DefaultRouteLimit.Max, "most requests in flight on one route without limits of its own; the adaptive limit moves below it with the route's latency")
	fs.BoolVar(&f.routeLimitOff, "route-limit-off", false, "turn the adaptive per-route concurrency limit off (routes with limits keep theirs)")
	fs.BoolVar(&f.taskHistograms, "task-histograms", true, "expose a latency histogram per task (lariat_task_duration_seconds); routes may say otherwise with metrics.task_histograms")
	fs.StringVar(&f.adminToken, "admin-token", "", "bearer token the admin listener requires (except /healthz and /readyz)")
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func (f *serverFlags) logger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if f.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// options returns the gateway options the server flags set.
func (f *serverFlags) options(routes string, env *tasks.Env, log *slog.Logger) gateway.Options {
	return gateway.Options{
		RoutesDir:       routes,
		Env:             env,
		MaxBodySize:     f.maxBody,
		BodyMemory:      f.bodyMemory,
		ReadTimeout:     f.readTimeout,
		WriteTimeout:    f.writeTimeout,
		IdleTimeout:     f.idleTimeout,
		Logger:          log,
		AdminToken:      f.adminToken,
		AccessLogSample: f.accessLogSample,
		AccessLogBodies: f.accessLogBodies,
		MaxInFlight:     f.maxInFlight,
	}
}

// env returns the task environment with the upstream settings the flags
// give; breakers log their changes of state to log.
func (f *serverFlags) env(resolve map[string]string, log *slog.Logger) *tasks.Env {
	o := f.upstream
	o.Logger = log
	o.Breaker = upstream.DefaultBreaker.Merge(upstream.BreakerSettings{Failures: uint32(f.breaker.failures), OpenFor: f.breaker.openFor})
	l := upstream.DefaultLimit
	l.Max = max(o.Limit.Max, l.Min)
	l.Initial = min(l.Initial, l.Max)
	l.Disabled = f.limitOff
	o.Limit = l
	rl := router.DefaultRouteLimit
	rl.Max = max(f.routeLimitMax, rl.Min)
	rl.Initial = min(rl.Initial, rl.Max)
	rl.Disabled = f.routeLimitOff
	return &tasks.Env{Upstreams: upstream.NewPool(resolve, o), NoTaskHistograms: !f.taskHistograms, RouteLimit: rl}
}

// resolveMap returns the --resolve overrides and extra; it also checks
// the --upstream-pipeline values and sets them in the upstream options.
func (f *serverFlags) resolveMap(extra map[string]string) (map[string]string, error) {
	for _, p := range f.pipeline {
		hp, n, ok := strings.Cut(p, "=")
		conns, err := strconv.Atoi(n)
		if _, _, herr := net.SplitHostPort(hp); !ok || herr != nil || err != nil || conns < 1 {
			return nil, fmt.Errorf("invalid --upstream-pipeline %q: want HOST:PORT=N, N at least 1", p)
		}
		if f.upstream.Pipeline == nil {
			f.upstream.Pipeline = map[string]int{}
		}
		f.upstream.Pipeline[strings.ToLower(hp)] = conns
	}
	m := map[string]string{}
	for k, v := range extra {
		m[k] = v
	}
	for _, r := range f.resolve {
		k, v, err := tasks.ParseResolve(r)
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

// defaultGCPercent is the garbage collector's target (GOGC) of the
// gateway when the environment sets none: its live heap is a few MiB, so
// collecting at three times it instead of twice costs little memory and
// about 7% less CPU per request on paths that allocate (feature reads);
// GOMEMLIMIT still bounds the heap.
const defaultGCPercent = 200

// setGCPercent applies defaultGCPercent unless GOGC is set.
func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

func serveCmd(args []string) int {
	setGCPercent()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var sf serverFlags
	sf.register(fs)
	routes := fs.String("routes", "", "folder of route files (*.yaml)")
	var ff featureFlags
	ff.register(fs)
	var tf tracingFlags
	tf.register(fs)
	var pf predlogFlags
	pf.register(fs)
	registryURL := fs.String("registry", "", "model registry URL (lariat-registry); lets http tasks name models as name@alias or name/version")
	registryInterval := fs.Duration("registry-interval", 2*time.Second, "how often model references are refreshed from the registry")
	quotaRedis := fs.String("quota-redis", "", "Redis counting the rates of tenants with quotas.scope global, shared by the replicas: host:port[,host:port...] or a redis:// URL (when it fails, requests are admitted)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode("lariat serve", err, os.Stderr)
	}
	if *routes == "" {
		fmt.Fprintln(os.Stderr, "lariat serve: --routes DIR is required")
		return 2
	}
	resolve, err := sf.resolveMap(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lariat serve:", err)
		return 2
	}
	if _, err := config.ReadLayout(*routes); err != nil {
		fmt.Fprintln(os.Stderr, "lariat serve:", err)
		return 1
	}
	log := sf.logger()
	env := sf.env(resolve, log)
	features, closeFeatures, err := ff.env(log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lariat serve:", err)
		return 1
	}
	defer closeFeatures()
	if features != nil {
		tasks.FeatureStore.Provide(env, features)
	}
	tracer, stopTracing, err := tf.tracer("lariat")
	if err != nil {
		fmt.Fprintln(os.Stderr, "lariat serve:", err)
		return 2
	}
	defer stopTracing()
	env.Tracer = tracer
	ready := map[string]func() any{}
	if *registryURL != "" {
		res := registry.NewResolver(registry.NewClient(*registryURL, &http.Client{Timeout: 5 * time.Second}), registry.ResolverOptions{Interval: *registryInterval})
		defer res.Stop()
		models := gateway.RegistryModels{R: res}
		tasks.ModelRegistry.Provide(env, models)
		ready["registry"] = models.Status
	}
	plog, err := pf.open(log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lariat serve:", err)
		return 2
	}
	if plog != nil {
		defer closeLog(plog, log)
	}
	opts := sf.options(*routes, env, log)
	opts.ReadyDetails = ready
	opts.PredictionLog = plog
	if *quotaRedis != "" {
		opt, err := quotaOptions(*quotaRedis)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lariat serve:", err)
			return 2
		}
		// Quota decisions admit while the quota Redis is down, and so
		// the gateway serves before it answers.
		store := quota.DialRedis(opt, "lariat:quota:", time.Second, func() { log.Info("quota store connected", "redis", *quotaRedis) })
		defer store.Close()
		if !store.Connected() {
			log.Warn("quota store not reachable; serving, and admitting what it cannot count until it answers (tried every second)", "redis", *quotaRedis)
		}
		opts.QuotaStore = store
	}
	g := gateway.New(opts)
	g.Load()
	return runServers(g, &sf, log, nil)
}

// quotaOptions returns the client options of the Redis of --quota-redis.
func quotaOptions(addr string) (rueidis.ClientOption, error) {
	opt := rueidis.ClientOption{InitAddress: strings.Split(addr, ","), DisableCache: true}
	if strings.Contains(addr, "://") {
		var err error
		if opt, err = rueidis.ParseURL(addr); err != nil {
			return opt, fmt.Errorf("--quota-redis: %w", err)
		}
		opt.DisableCache = true
	}
	return opt, nil
}

// runServers serves g until SIGTERM or SIGINT, then shuts down gracefully.
// started, if set, is called once both listeners are open.
func runServers(g *gateway.Gateway, sf *serverFlags, log *slog.Logger, started func(traffic, admin net.Addr)) int {
	// Signals are caught before anything is served: a SIGTERM that comes
	// as soon as the first request is answered still shuts down gracefully.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	ln, err := net.Listen("tcp", sf.listen)
	if err != nil {
		log.Error("cannot listen", "addr", sf.listen, "error", err)
		return 1
	}
	aln, err := net.Listen("tcp", sf.adminListen)
	if err != nil {
		ln.Close()
		log.Error("cannot listen", "addr", sf.adminListen, "error", err)
		return 1
	}
	errc := make(chan error, 2)
	go func() { errc <- g.Serve(ln) }()
	go func() { errc <- g.ServeAdmin(aln) }()
	log.Info("serving", "listen", ln.Addr().String(), "admin", aln.Addr().String())
	if started != nil {
		started(ln.Addr(), aln.Addr())
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go func() {
		if err := g.Watch(watchCtx); err != nil {
			log.Error("route files will reload only on SIGHUP or POST /-/reload", "error", err)
		}
	}()
	code := 0
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				g.Reload()
				continue
			}
			log.Info("shutting down", "signal", s.String())
			break wait
		case err := <-errc:
			log.Error("server stopped", "error", err)
			code = 1
			break wait
		}
	}
	stopWatch()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), sf.shutdownTimeout)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("shutdown incomplete", "error", err)
		code = 1
	}
	log.Info("stopped", "duration", time.Since(start).Round(time.Millisecond))
	return code
}
