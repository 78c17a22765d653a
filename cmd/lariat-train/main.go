// Command lariat-train runs the training-job sidecar (local processes, Kubernetes
// Jobs or Kubeflow PyTorchJob/TFJob; models registered in lariat-registry) and
// offers client verbs against a running server.
//
//	lariat-train serve --listen 127.0.0.1:8060 --state-dir /var/lib/lariat/train \
//	    --registry http://127.0.0.1:8070 --backend local|kubernetes|kubeflow
//	lariat-train submit job.yaml [--wait] [--follow]
//	lariat-train status ID
//	lariat-train logs ID [--follow]
//	lariat-train cancel ID [--wait]
//	lariat-train list [--study ID] [--phase Running]
//	lariat-train study submit|status|list|cancel ...
//	lariat-train validate [--study] FILE...
//	lariat-train dataset --predictions DIR --labels labels.csv --on request_id --out train.parquet
//	lariat-train report --predictions DIR [--labels labels.csv] --html report.html --json report.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/training"
)

func main() {
	ctx, stop := cli.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: lariat-train <command> [flags]

commands:
  serve                    run the training sidecar
  submit FILE              submit a job spec (YAML or JSON)
  status ID                show a job
  logs ID                  print a job's output (--follow to stream it)
  cancel ID                stop a job
  list                     list jobs
  study submit FILE        submit a hyperparameter study
  study status ID          show a study and its trials
  study list               list studies
  study cancel ID          stop a study and its trials
  validate FILE...         check job specs (--study: study specs) without a server
  dataset                  join labels to the features served (--predictions DIR --labels CSV --out FILE)
  report                   compare arms and model versions from a prediction log (--predictions DIR [--labels CSV] --html FILE)

Client commands talk to --train-server (default http://127.0.0.1:8060).
Run "lariat-train <command> -h" for the flags of a command; every flag can
also be set by its environment variable, LARIAT_<FLAG> (--train-server:
LARIAT_TRAIN_SERVER).
`

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	exit := func(err error) int {
		if errors.Is(err, errJobFailed) {
			fmt.Fprintf(stderr, "lariat-train: %v\n", err)
			return 3
		}
		return cli.ExitCode("lariat-train", err, stderr)
	}
	// A client command reads its verb (submit, status, ...) itself.
	client := func([]string) int { return exit(clientCommand(ctx, args, stdout, stderr)) }
	verbs := map[string]cli.Verb{
		"serve":    func(a []string) int { return exit(serve(ctx, a, stderr, nil)) },
		"validate": func(a []string) int { return exit(validate(a, stdout, stderr)) },
		"dataset":  func(a []string) int { return exit(datasetCmd(a, stdout, stderr)) },
		"report":   func(a []string) int { return exit(reportCmd(a, stdout, stderr)) },
	}
	for _, v := range []string{"submit", "status", "logs", "cancel", "list", "study"} {
		verbs[v] = client
	}
	return cli.Dispatch("lariat-train", usage, args, stdout, stderr, verbs)
}

// errJobFailed marks a waited-for job or study that failed (exit code 3).
var errJobFailed = errors.New("failed")

// serveOptions are the flags of serve.
type serveOptions struct {
	stateDir, registryURL, backend string
	maxConcurrent                  int
	grace, pollInterval            time.Duration
	kubeconfig, namespace          string
}

// serve runs the sidecar until ctx ends. ready, when set, receives the listen
// address once the server accepts connections.
func serve(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	var o serveOptions
	return cli.Sidecar{
		Listen: "127.0.0.1:8060",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.stateDir, "state-dir", "lariat-train-state", "directory for job and study records, logs and local artifacts")
			fs.StringVar(&o.registryURL, "registry", "", "lariat-registry URL (e.g. http://127.0.0.1:8070); required by specs with a register section")
			fs.StringVar(&o.backend, "backend", "local", "where jobs run: local (child processes), kubernetes (batch/v1 Job) or kubeflow (PyTorchJob/TFJob)")
			fs.IntVar(&o.maxConcurrent, "max-concurrent", 2, "local backend: jobs running at once; others queue")
			fs.DurationVar(&o.grace, "grace", 10*time.Second, "local backend: time between SIGTERM and SIGKILL when a job is stopped")
			fs.DurationVar(&o.pollInterval, "poll-interval", 10*time.Second, "Kubernetes backends: how often job status is read")
			fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Kubernetes backends: kubeconfig file (default: in-cluster config, then $KUBECONFIG or ~/.kube/config)")
			fs.StringVar(&o.namespace, "namespace", "default", "Kubernetes backends: namespace of jobs that name none")
		},
		Open: func(_ context.Context, logger *log.Logger) (*cli.Opened, error) {
			backend, err := newBackend(&o, logger)
			if err != nil {
				return nil, err
			}
			var reg *registry.Client
			if o.registryURL != "" {
				reg = registry.NewClient(o.registryURL, nil)
			}
			m, err := training.NewManager(training.Options{StateDir: o.stateDir, Backend: backend, Registry: reg, Logf: logger.Printf})
			if err != nil {
				return nil, err
			}
			srv := &http.Server{
				Handler:           training.NewServer(m, training.ServerOptions{Logf: logger.Printf}),
				ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout:       2 * time.Minute,
			}
			return &cli.Opened{
				Server: srv,
				Ready: fmt.Sprintf("%s backend ready, %d job(s) and %d stud(ies) loaded from %s", backend.Name(),
					len(m.Jobs(training.JobFilter{})), len(m.Studies()), o.stateDir),
				Close:  func() error { m.Close(); return nil },
				Closed: "manager stopped (jobs keep running and are resumed by the next start)",
			}, nil
		},
	}.Run(ctx, args, stderr, ready)
}

func newBackend(o *serveOptions, logger *log.Logger) (training.Backend, error) {
	switch o.backend {
	case "local":
		return training.NewLocal(training.LocalOptions{MaxConcurrent: o.maxConcurrent, Grace: o.grace}), nil
	case "kubernetes", "kubeflow":
	default:
		return nil, cli.Usagef("-backend must be local, kubernetes or kubeflow, got %q", o.backend)
	}
	cfg, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	api, err := training.NewKubeAPI(cfg)
	if err != nil {
		return nil, err
	}
	if o.backend == "kubernetes" {
		return training.NewKubernetes(training.KubernetesOptions{Client: api, Namespace: o.namespace,
			PollInterval: o.pollInterval, Logf: logger.Printf}), nil
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot make a Kubernetes client: %w", err)
	}
	return training.NewKubeflow(training.KubeflowOptions{Dynamic: dyn, Client: api, Namespace: o.namespace,
		PollInterval: o.pollInterval, Logf: logger.Printf}), nil
}

// kubeConfig loads -kubeconfig, or the in-cluster configuration, or the default
// kubeconfig loading rules ($KUBECONFIG, ~/.kube/config).
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("cannot load the Kubernetes configuration (-kubeconfig=%q): %w", path, err)
	}
	return cfg, nil
}

// validate checks spec files and prints every problem.
func validate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	study := fs.Bool("study", false, "the files are study specs")
	files, err := cli.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return cli.Usagef("validate needs at least one file")
	}
	bad := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil {
			if *study {
				_, err = training.ParseStudySpec(f, data)
			} else {
				_, err = training.ParseJobSpec(f, data)
			}
		}
		if err != nil {
			bad++
			fmt.Fprintln(stderr, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", f)
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d file(s) invalid", bad, len(files))
	}
	return nil
}
