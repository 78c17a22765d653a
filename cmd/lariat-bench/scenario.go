package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/lariat-gw/lariat/bench"
	"github.com/lariat-gw/lariat/bench/fakemodel"
	"github.com/lariat-gw/lariat/bench/floor"
	"github.com/lariat-gw/lariat/bench/scenario"
	"github.com/lariat-gw/lariat/internal/cli"
)

func scenarioList() string {
	var b strings.Builder
	for _, n := range scenario.Names() {
		about, _ := scenario.About(n)
		fmt.Fprintf(&b, "  %-18s %s\n", n, about)
	}
	fmt.Fprintf(&b, "  %-18s %s (--rate sets the quota and b's rate, default %g/s)\n", scenario.Tenants, scenario.TenantsAbout, scenario.DefaultTenantRate)
	fmt.Fprintf(&b, "  %-18s %s (--model-workers and --model-latency shape the model server, default %d and %s)\n",
		scenario.Overload, scenario.OverloadAbout, scenario.DefaultOverloadWorkers, scenario.DefaultOverloadLatency)
	return b.String()
}

func scenarioCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scenario", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: lariat-bench scenario NAME [flags]\n\nscenarios:\n%s\nflags:\n", scenarioList())
		fs.PrintDefaults()
	}
	var (
		opt      scenario.Options
		mode     string
		quiet    bool
		latency  time.Duration
		jitter   time.Duration
		noWarmup bool
		workers  int
	)
	fs.DurationVar(&opt.Duration, "duration", scenario.DefaultDuration, "length of each measured run")
	fs.IntVar(&opt.Connections, "connections", scenario.DefaultConnections, "generator connections in the closed loop")
	fs.IntVar(&opt.OpenConnections, "open-connections", 0, "generator connections in the open loop (default: --connections, or rate/10 when more)")
	fs.IntVar(&opt.Rounds, "rounds", 1, "split each run into this many parts alternating between lariat and the floor (evens out a changing background load)")
	fs.StringVar(&mode, "mode", string(bench.ModeClosed), "closed (maximum throughput) or open (fixed --rate)")
	fs.Float64Var(&opt.Rate, "rate", 0, "open mode: requests per second")
	fs.BoolVar(&opt.OpenAtHalf, "open-at-half", false, "run the closed loop, then the open loop at half of lariat's closed-loop throughput")
	fs.DurationVar(&opt.Warmup, "warmup", scenario.DefaultWarmup, "closed-loop warmup before each measured run (results dropped)")
	fs.BoolVar(&noWarmup, "no-warmup", false, "skip the warmups")
	fs.DurationVar(&opt.Timeout, "timeout", scenario.DefaultTimeout, "generator per-request timeout")
	fs.DurationVar(&opt.DeadlineMargin, "deadline-margin", scenario.DefaultDeadlineMargin, "faults: an answer meets the deadline within the route timeout plus this")
	fs.DurationVar(&latency, "model-latency", scenario.DefaultModelLatency, "base latency of the fake models")
	fs.IntVar(&workers, "model-workers", 0, "overload: requests the model server works on at once (default 8)")
	fs.DurationVar(&jitter, "model-jitter", scenario.DefaultModelJitter, "uniform jitter of the fake models' latency (±)")
	fs.IntVar(&opt.Pipeline, "pipeline", 0, "pipeline lariat's calls to each fake model over `N` connections (lariat serve --upstream-pipeline); 0: off")
	fs.StringVar(&opt.Out, "out", scenario.DefaultOut, "`folder` for the JSON and HTML reports")
	fs.StringVar(&opt.CPUProfile, "cpuprofile", "", "`folder` for CPU profiles of the gateway and the floor, one per loop and process")
	fs.StringVar(&opt.LariatBin, "lariat-bin", "", "gateway binary (default: go build ./cmd/lariat of the repository around the working directory)")
	fs.StringVar(&opt.BenchBin, "bench-bin", "", "lariat-bench binary running the fake models and the floor (default: this one)")
	fs.StringVar(&opt.RedisServer, "redis-server", "", "redis-server binary (default: from PATH)")
	fs.BoolVar(&quiet, "quiet", false, "no steps or progress on stderr")

	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode("lariat-bench", err, stderr)
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
		if err := cli.ParseFlags(fs, fs.Args()[1:]); err != nil {
			return cli.ExitCode("lariat-bench", err, stderr)
		}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", fs.Args())
		return 2
	}
	if name == "" {
		fmt.Fprintf(stderr, "usage: lariat-bench scenario NAME [flags]\n\nscenarios:\n%s", scenarioList())
		return 2
	}
	own := scenario.Own{Duration: opt.Duration, Out: opt.Out, LariatBin: opt.LariatBin, BenchBin: opt.BenchBin, Stdout: stdout}
	if !quiet {
		own.Log = stderr
	}
	switch name {
	case scenario.Tenants:
		// Tenant a's quota and tenant b's rate are --rate.
		o := scenario.TenantsOptions{Quota: opt.Rate, Rate: opt.Rate, ModelLatency: latency, RedisServer: opt.RedisServer, Own: own}
		return runOwn(name, stderr, func(ctx context.Context) error {
			_, err := scenario.RunTenants(ctx, o)
			return err
		})
	case scenario.Overload:
		o := scenario.OverloadOptions{Workers: workers, Own: own}
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "model-latency" {
				o.ModelLatency = latency
			}
		})
		return runOwn(name, stderr, func(ctx context.Context) error {
			_, err := scenario.RunOverload(ctx, o)
			return err
		})
	}
	if _, ok := scenario.About(name); !ok {
		fmt.Fprintf(stderr, "unknown scenario %q; available scenarios:\n%s", name, scenarioList())
		return 2
	}
	opt.Name = name
	opt.Mode = bench.Mode(mode)
	if noWarmup {
		opt.Warmup = -1
	}
	opt.ModelLatency, opt.ModelJitter = &latency, &jitter
	opt.Stdout = stdout
	if !quiet {
		opt.Log = stderr
		opt.Progress = stderr
		opt.ProgressRedraw = bench.IsTerminal(os.Stderr)
	}

	if err := opt.Validate(); err != nil {
		fmt.Fprintf(stderr, "invalid scenario run: %s\n", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	out, err := scenario.Run(ctx, opt)
	if err != nil {
		fmt.Fprintf(stderr, "scenario %s: %s\n", name, err)
		return 1
	}
	fmt.Fprintf(stdout, "summary: %s\n", summaryPath(opt.Out, out.Scenario))
	return 0
}

// runOwn runs a scenario that runs its own phases, until it ends or
// SIGTERM or SIGINT.
func runOwn(name string, stderr io.Writer, run func(ctx context.Context) error) int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintf(stderr, "scenario %s: %s\n", name, err)
		return 1
	}
	return 0
}

func summaryPath(dir, name string) string {
	return strings.TrimSuffix(dir, "/") + "/" + strings.ReplaceAll(name, "+", "-") + "-summary.json"
}

// serveUntilSignal serves h on listen until SIGTERM or SIGINT, then shuts it
// down gracefully.
func serveUntilSignal(name, listen string, serve func(net.Listener) error, shutdown func(context.Context) error, stderr io.Writer) int {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot listen: %s\n", name, err)
		return 1
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- serve(ln) }()
	fmt.Fprintf(stderr, "%s: listening on %s\n", name, ln.Addr())
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "%s: server stopped: %s\n", name, err)
		return 1
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := shutdown(sctx); err != nil {
		fmt.Fprintf(stderr, "%s: shutdown: %s\n", name, err)
		return 1
	}
	return 0
}

func upstreamCmd(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg    fakemodel.Config
		listen string
		body   string
	)
	fs.StringVar(&listen, "listen", "127.0.0.1:9001", "listen `address`")
	fs.DurationVar(&cfg.Latency, "latency", 0, "base latency of an answer")
	fs.DurationVar(&cfg.Jitter, "jitter", 0, "uniform jitter around the latency (±)")
	fs.Float64Var(&cfg.ErrorRate, "error-rate", 0, "share of requests answered with status 500, in [0, 1]")
	fs.Float64Var(&cfg.SlowRate, "slow-rate", 0, "share of requests answered after --slow instead, in [0, 1]")
	fs.DurationVar(&cfg.Slow, "slow", 0, "latency of slow answers")
	fs.IntVar(&cfg.Workers, "workers", 0, "work on at most `N` requests at once, the others waiting in line (0: no bound)")
	fs.StringVar(&body, "body", fakemodel.DefaultBody, "the JSON answer")
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode("lariat-bench", err, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", fs.Args())
		return 2
	}
	cfg.Body = []byte(body)
	s, err := fakemodel.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	return serveUntilSignal("upstream", listen, s.Serve, s.Shutdown, stderr)
}

type modelFlags map[string]string

func (m modelFlags) String() string { return "" }

func (m modelFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" {
		return fmt.Errorf("want KEY=HOST:PORT, got %q", s)
	}
	m[k] = v
	return nil
}

func floorCmd(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	models := modelFlags{}
	name := fs.String("scenario", "", "scenario whose work the floor does: "+strings.Join(scenario.Names(), ", "))
	listen := fs.String("listen", "127.0.0.1:9100", "listen `address`")
	admin := fs.String("admin-listen", "", "`address` serving /debug/pprof/ (none by default)")
	redis := fs.String("redis", "", "feature store `host:port` (features+fanout2)")
	fs.Var(models, "model", "fake model address, `KEY=HOST:PORT` (repeatable; keys m1, m2, or control for lasso)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode("lariat-bench", err, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", fs.Args())
		return 2
	}
	cfg, err := scenario.FloorConfig(*name, models, *redis)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	s, err := floor.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer s.Close()
	if *admin != "" {
		aln, err := net.Listen("tcp", *admin)
		if err != nil {
			fmt.Fprintf(stderr, "floor: cannot listen: %s\n", err)
			return 1
		}
		asrv := &fasthttp.Server{Handler: pprofhandler.PprofHandler, Name: "floor-admin", WriteTimeout: 10 * time.Second}
		go asrv.Serve(aln) //nolint:errcheck // ends with the process
	}
	return serveUntilSignal("floor", *listen, s.Serve, s.Shutdown, stderr)
}
