// Command lariat-bench is the load generator: it sends open- or closed-loop
// HTTP load to one URL and reports latency percentiles, throughput, errors
// and a per-second timeline as text, JSON and a self-contained HTML page.
//
//	lariat-bench run --url URL [flags]            one run
//	lariat-bench report --html out.html a.json b.json
//	                                               runs from JSON files side by side
//	lariat-bench scenario NAME [flags]             an end-to-end scenario: the same load
//	                                               through the gateway and the direct floor
//	lariat-bench upstream --listen ADDR [flags]    a fake model server
//	lariat-bench floor --scenario NAME [flags]     the direct floor of a scenario
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/lariat-gw/lariat/bench"
	"github.com/lariat-gw/lariat/internal/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  lariat-bench run --url URL [flags]        send load to URL and report (run -h for flags)
  lariat-bench report --html FILE JSON...   put runs from JSON reports side by side
  lariat-bench scenario NAME [flags]        run an end-to-end scenario: the gateway against the direct floor
  lariat-bench upstream --listen ADDR       a fake model server (latency, jitter, error and slow rates)
  lariat-bench floor --scenario NAME        the direct floor of a scenario
`

func run(args []string, stdout, stderr io.Writer) int {
	return cli.Dispatch("lariat-bench", usage, args, stdout, stderr, map[string]cli.Verb{
		"run":      func(a []string) int { return runCmd(a, stdout, stderr) },
		"report":   func(a []string) int { return reportCmd(a, stdout, stderr) },
		"scenario": func(a []string) int { return scenarioCmd(a, stdout, stderr) },
		"upstream": func(a []string) int { return upstreamCmd(a, stderr) },
		"floor":    func(a []string) int { return floorCmd(a, stderr) },
	})
}

type headerFlags []bench.Header

func (h *headerFlags) String() string { return "" }

func (h *headerFlags) Set(s string) error {
	hd, err := bench.ParseHeader(s)
	if err != nil {
		return err
	}
	*h = append(*h, hd)
	return nil
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg        bench.Config
		headers    headerFlags
		mode       string
		bodyFile   string
		jsonOut    string
		htmlOut    string
		title      string
		cpuProfile string
		quiet      bool
	)
	fs.StringVar(&cfg.Name, "name", bench.DefaultName, "label of the run in reports")
	fs.StringVar(&cfg.URL, "url", "", "target `URL` (http:// or https://); the only address requests go to")
	fs.StringVar(&cfg.Method, "method", "", "HTTP method (default GET, or POST with a body)")
	fs.StringVar(&cfg.Body, "body", "", "request body `template`; {{seq}} is the request number, {{rand A B}} a random integer in [A, B]")
	fs.StringVar(&bodyFile, "body-file", "", "JSONL `file` of request bodies, one per request, cycled")
	fs.Var(&headers, "header", "request header `\"Name: Value\"` (repeatable)")
	fs.StringVar(&mode, "mode", string(bench.ModeClosed), "load mode: open (fixed --rate) or closed (--connections in flight)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open mode: requests per second")
	fs.IntVar(&cfg.Connections, "connections", bench.DefaultConnections, "connections (workers); in open mode the most requests in flight")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run length, e.g. 10s (at least one of --duration and --requests)")
	fs.Int64Var(&cfg.Requests, "requests", 0, "number of requests to send")
	fs.DurationVar(&cfg.Timeout, "timeout", bench.DefaultTimeout, "per-request timeout")
	fs.DurationVar(&cfg.Deadline, "deadline", 0, "count the answers that arrive within this `duration` of their send, e.g. a route timeout plus a margin (0: off)")
	fs.StringVar(&jsonOut, "json", "", "write the JSON report to `file`")
	fs.StringVar(&htmlOut, "html", "", "write the HTML report to `file`")
	fs.StringVar(&title, "title", "", "report title (default: the run's name and URL)")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the generator to `file`")
	fs.BoolVar(&quiet, "quiet", false, "no progress output on stderr")
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode("lariat-bench", err, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", fs.Args())
		return 2
	}
	cfg.Mode = bench.Mode(mode)
	cfg.Headers = headers
	if bodyFile != "" {
		if cfg.Body != "" {
			fmt.Fprintln(stderr, "use either --body or --body-file")
			return 2
		}
		bodies, err := bench.LoadBodies(bodyFile)
		if err != nil {
			fmt.Fprintf(stderr, "cannot load --body-file: %s\n", err)
			return 2
		}
		cfg.Bodies = bodies
	}
	if !quiet {
		cfg.Progress = os.Stderr
		cfg.ProgressRedraw = bench.IsTerminal(os.Stderr)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "invalid run: %s\n", err)
		return 2
	}

	if cpuProfile != "" {
		stop, err := startCPUProfile(cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer stop()
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "run failed: %s\n", err)
		return 1
	}
	if err := res.WriteText(stdout); err != nil {
		fmt.Fprintf(stderr, "cannot write summary: %s\n", err)
		return 1
	}
	if title == "" {
		title = res.Name + " · " + res.Method + " " + res.URL
	}
	rep, err := bench.NewReport(title, "", res)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return writeReport(rep, jsonOut, htmlOut, stderr)
}

func reportCmd(args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	title := fs.String("title", "Load test report", "report title")
	baseline := fs.String("baseline", "", "`name` of the run ratios are relative to (default: the first run)")
	jsonOut := fs.String("json", "", "write the combined JSON report to `file`")
	htmlOut := fs.String("html", "", "write the combined HTML report to `file`")
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode("lariat-bench", err, stderr)
	}
	if fs.NArg() == 0 || (*jsonOut == "" && *htmlOut == "") {
		fmt.Fprintln(stderr, "usage: lariat-bench report [--title T] [--baseline NAME] [--json FILE] [--html FILE] REPORT.json...")
		return 2
	}
	var runs []*bench.Result
	for _, path := range fs.Args() {
		rep, err := readReport(path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		runs = append(runs, rep.Runs...)
	}
	rep, err := bench.NewReport(*title, *baseline, runs...)
	if err != nil {
		fmt.Fprintf(stderr, "cannot combine reports: %s\n", err)
		return 1
	}
	return writeReport(rep, *jsonOut, *htmlOut, stderr)
}

func readReport(path string) (*bench.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open report: %w", err)
	}
	defer f.Close()
	rep, err := bench.ReadReport(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

func writeReport(rep *bench.Report, jsonOut, htmlOut string, stderr io.Writer) int {
	outs := []struct {
		path  string
		write func(io.Writer) error
	}{{jsonOut, rep.WriteJSON}, {htmlOut, rep.WriteHTML}}
	code := 0
	for _, o := range outs {
		if o.path == "" {
			continue
		}
		if err := writeFile(o.path, o.write); err != nil {
			fmt.Fprintln(stderr, err)
			code = 1
		}
	}
	return code
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cannot create report file: %w", err)
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

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cannot create -cpuprofile file: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot start cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
