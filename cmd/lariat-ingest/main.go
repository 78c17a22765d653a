// Command lariat-ingest loads feature rows into the online store (Redis in
// Feast's layout), from files or from streaming writers.
//
//	lariat-ingest load --views featureviews.yaml --view driver_stats --redis 127.0.0.1:6379 data.csv
//	lariat-ingest serve --listen 127.0.0.1:8090 --views featureviews.yaml --redis 127.0.0.1:6379 \
//	    --push-source driver_stats_push=driver_stats
//
// load streams CSV, JSON lines or Parquet files (by extension, or --format)
// and prints a summary per file: rows read, written, skipped (not newer
// than the stored row) and rejected, with reasons and the first rejected rows in full. It exits with
// status 1 when a row was rejected or a file failed, 2 on usage errors.
// Progress goes to standard error: a bar on a terminal, a line every
// --progress-interval otherwise.
//
// serve answers Feast's POST /push and POST /write-to-online-store, plus
// GET /healthz and GET /metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/ingest"
	"github.com/lariat-gw/lariat/internal/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: lariat-ingest <command> [flags]

commands:
  load FILE...   load CSV, JSON lines or Parquet files into Redis
  serve          serve Feast's push API (POST /push, POST /write-to-online-store)

Run "lariat-ingest <command> -h" for the flags of a command.
`

// run executes the command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	exit := func(err error) int {
		if errors.Is(err, errRejected) {
			return 1
		}
		return cli.ExitCode("lariat-ingest", err, stderr)
	}
	return cli.Dispatch("lariat-ingest", usage, args, stdout, stderr, map[string]cli.Verb{
		"load":  func(a []string) int { return exit(loadCommand(a, stdout, stderr)) },
		"serve": func(a []string) int { return exit(serveCommand(a, stderr)) },
	})
}

// errRejected reports that rows were rejected; the summary said which.
var errRejected = errors.New("rows rejected")

// storeFlags are the flags naming the views and the store.
type storeFlags struct {
	views   *string
	redis   *string
	project *string
	keyTTL  *string
}

func addStoreFlags(fs *flag.FlagSet) storeFlags {
	return storeFlags{
		views: fs.String("views", "", "feature view definitions (YAML, as the gateway reads them); required"),
		redis: fs.String("redis", "127.0.0.1:6379",
			"Redis: host:port, or a URL redis://[user:pass@]host:port[/db][?cluster=true|master_set=NAME&addr=host2:port2] (rediss:// for TLS)"),
		project: fs.String("project", "", "Feast project the keys are written under; default: the views file's project"),
		keyTTL: fs.String("key-ttl", "views",
			`expiry of the entity hashes: "views" (the largest ttl of the views sharing the hash, none if one has none), "none", or a duration`),
	}
}

// open loads the views and connects to Redis.
func (f storeFlags) open(ctx context.Context, wo ingest.WriterOptions) (*featurefetch.Views, *ingest.Writer, ingest.SchemaOptions, func(), error) {
	var so ingest.SchemaOptions
	if *f.views == "" {
		return nil, nil, so, nil, cli.Usagef("--views is required")
	}
	so.Project = *f.project
	switch *f.keyTTL {
	case "views", "":
	case "none":
		so.KeyTTL = ingest.NoKeyTTL
	default:
		d, err := time.ParseDuration(*f.keyTTL)
		if err != nil || d <= 0 {
			return nil, nil, so, nil, cli.Usagef(`--key-ttl=%q: want "views", "none" or a positive duration`, *f.keyTTL)
		}
		so.KeyTTL = d
	}
	views, err := featurefetch.LoadViews(*f.views)
	if err != nil {
		return nil, nil, so, nil, err
	}
	var ro featurefetch.RedisOptions
	if strings.Contains(*f.redis, "://") {
		if ro, err = featurefetch.ParseRedisURL(*f.redis); err != nil {
			return nil, nil, so, nil, cli.Usagef("--redis: %v", err)
		}
	} else {
		ro.Addrs = strings.Split(*f.redis, ",")
	}
	ro.DisableCache = true // writes only
	ro.ClientName = "lariat-ingest"
	co, err := ro.ClientOption()
	if err != nil {
		return nil, nil, so, nil, cli.Usagef("--redis: %v", err)
	}
	c, err := rueidis.NewClient(co)
	if err != nil {
		return nil, nil, so, nil, fmt.Errorf("cannot connect to redis at %s: %w", *f.redis, err)
	}
	wo.Cluster = ro.Cluster
	w, err := ingest.NewWriter(ctx, c, wo)
	if err != nil {
		c.Close()
		return nil, nil, so, nil, err
	}
	return views, w, so, c.Close, nil
}

func loadCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: lariat-ingest load --views FILE --view NAME [flags] FILE...\n\n"+
			"FILE is .csv, .jsonl (.json, .ndjson) or .parquet; - reads standard input (needs --format).\n\nflags:\n")
		fs.PrintDefaults()
	}
	sf := addStoreFlags(fs)
	view := fs.String("view", "", "feature view the rows belong to; required")
	format := fs.String("format", "", "input format: csv, jsonl or parquet; default: from the file extension")
	batchSize := fs.Int("batch-size", ingest.DefaultBatchSize, "rows per pipelined round trip to Redis")
	perScript := fs.Int("rows-per-script", ingest.DefaultRowsPerScript, "rows per call of the write script")
	showErrors := fs.Int("show-errors", ingest.DefaultShowErrors, "rejected rows printed in full per file")
	maxErrors := fs.Int64("max-errors", -1, "stop a file once more than this many rows were rejected; -1: never")
	progress := fs.String("progress", "auto", "progress on standard error: auto (bar on a terminal, else lines), bar, lines or none")
	interval := fs.Duration("progress-interval", 5*time.Second, "time between progress lines")
	writeTimeout := fs.Duration("write-timeout", ingest.DefaultWriteTimeout, "limit on writing one batch to Redis, retries included")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *view == "" {
		return cli.Usagef("--view is required")
	}
	if fs.NArg() == 0 {
		return cli.Usagef("no input file given")
	}
	if *batchSize <= 0 || *perScript <= 0 {
		return cli.Usagef("--batch-size and --rows-per-script must be positive")
	}
	var fmtOpt ingest.Format
	if *format != "" {
		f, err := ingest.ParseFormat(*format)
		if err != nil {
			return cli.Usagef("--format: %v", err)
		}
		fmtOpt = f
	}
	mode, err := progressMode(*progress, stderr)
	if err != nil {
		return err
	}
	showN := *showErrors
	if showN == 0 {
		showN = -1
	}
	var abortAfter int64
	if *maxErrors >= 0 {
		abortAfter = *maxErrors + 1
	}

	ctx, stop := cli.SignalContext(context.Background())
	defer stop()
	views, w, so, closeRedis, err := sf.open(ctx, ingest.WriterOptions{RowsPerScript: *perScript})
	if err != nil {
		return err
	}
	defer closeRedis()
	schema, err := ingest.NewSchema(views, *view, so)
	if err != nil {
		return fmt.Errorf("--view: %w", err)
	}

	var failed, rejected bool
	for _, path := range fs.Args() {
		c := new(ingest.Counters)
		p := ingest.StartProgress(stderr, mode, *interval, c)
		st, err := ingest.Load(ctx, w, schema, path, ingest.LoadOptions{
			Format:       fmtOpt,
			BatchSize:    *batchSize,
			ShowErrors:   showN,
			AbortAfter:   abortAfter,
			Counters:     c,
			WriteTimeout: *writeTimeout,
		})
		p.Stop()
		if st.Read > 0 || err == nil {
			_ = st.WriteSummary(stdout)
		}
		if st.Rejected > 0 {
			rejected = true
		}
		if err != nil {
			failed = true
			if errors.Is(err, ingest.ErrTooManyErrors) {
				err = fmt.Errorf("%w (--max-errors=%d)", err, *maxErrors)
			}
			fmt.Fprintf(stderr, "lariat-ingest: %v\n", err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if failed || rejected {
		return errRejected
	}
	return nil
}

// progressMode resolves --progress; auto draws a bar when out is a terminal.
func progressMode(s string, out io.Writer) (ingest.ProgressMode, error) {
	switch s {
	case "bar":
		return ingest.ProgressBar, nil
	case "lines":
		return ingest.ProgressLines, nil
	case "none":
		return ingest.ProgressNone, nil
	case "auto":
		if f, ok := out.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				return ingest.ProgressBar, nil
			}
		}
		return ingest.ProgressLines, nil
	}
	return 0, cli.Usagef("--progress=%q: want auto, bar, lines or none", s)
}

// pushSources collects repeated --push-source NAME=VIEW[,VIEW...] flags.
type pushSources map[string][]string

func (p pushSources) String() string { return "" }

func (p pushSources) Set(s string) error {
	name, views, ok := strings.Cut(s, "=")
	if !ok || name == "" || views == "" {
		return fmt.Errorf("want NAME=VIEW[,VIEW...], got %q", s)
	}
	p[name] = append(p[name], strings.Split(views, ",")...)
	return nil
}

func serveCommand(args []string, stderr io.Writer) error {
	var sf storeFlags
	push := pushSources{}
	var maxBody int
	var writeTimeout time.Duration
	return cli.Sidecar{
		Listen: "127.0.0.1:8090",
		Flags: func(fs *flag.FlagSet) {
			sf = addStoreFlags(fs)
			fs.Var(push, "push-source", "NAME=VIEW[,VIEW...]: the views a push source feeds (repeatable); "+
				"a push source not listed feeds the view of its name")
			fs.IntVar(&maxBody, "max-body", 16<<20, "largest request body in bytes")
			fs.DurationVar(&writeTimeout, "write-timeout", 10*time.Second, "limit on the Redis writes of one request")
		},
		Open: func(ctx context.Context, logger *log.Logger) (*cli.Opened, error) {
			views, w, so, closeRedis, err := sf.open(ctx, ingest.WriterOptions{})
			if err != nil {
				return nil, err
			}
			srv, err := ingest.NewServer(w, views, ingest.ServerOptions{
				PushSources:        push,
				Schema:             so,
				MaxRequestBodySize: maxBody,
				WriteTimeout:       writeTimeout,
				Logf:               logger.Printf,
			})
			if err != nil {
				closeRedis()
				return nil, err
			}
			return &cli.Opened{Server: srv, Ready: "views loaded and redis connected",
				Close: func() error { closeRedis(); return nil }, Closed: "redis client closed"}, nil
		},
	}.Run(context.Background(), args, stderr, nil)
}
