// Command modelserver is the example model server: it loads a logistic-regression
// artifact written by the example trainer and serves it over
//
//   - Open Inference Protocol V2 (JSON): POST /v2/models/{name}[/versions/{v}]/infer,
//     GET /v2/models/{name} (metadata), GET /v2/models/{name}/ready,
//     GET /v2/health/live|ready;
//   - plain JSON: POST /predict with {"instances": [{feature: value}]} →
//     {"predictions": [p]}, or {"drivers": [{driver_id, features...}]} →
//     {"ranking": [{"driver_id", "score"}]}, best first; KServe V1
//     POST /v1/models/{name}:predict takes the instances shape.
//
// Every answer carries X-Model-Name and X-Model-Version, and the JSON answers
// model_name and model_version.
//
//	modelserver --artifact /var/lib/lariat/train/artifacts/driver-rank-1a2b3c \
//	    --listen 127.0.0.1:9001 --version 3
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lariat-gw/lariat/examples/logreg"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "modelserver: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("modelserver", flag.ContinueOnError)
	artifact := fs.String("artifact", "", "artifact directory (holding model.json) or file")
	listen := fs.String("listen", "127.0.0.1:8080", "TCP address to serve on")
	name := fs.String("name", "", "model name served (default: the artifact's)")
	version := fs.String("version", os.Getenv("LARIAT_MODEL_VERSION"), "model version reported (default $LARIAT_MODEL_VERSION)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *artifact == "" {
		return errors.New("-artifact is required")
	}
	a, err := logreg.Load(*artifact)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("cannot listen on -listen=%q: %w", *listen, err)
	}
	s := newServer(a, *name, *version)
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "serving model %s version %s (%d features) on %s\n", s.name, s.version, len(a.Features), ln.Addr())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-done
	return nil
}
