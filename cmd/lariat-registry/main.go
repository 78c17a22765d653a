// Command lariat-registry runs the model registry service (an MLflow Model Registry
// 2.0 compatible REST API on an embedded bbolt file or PostgreSQL) and offers client
// verbs against a running server.
//
//	lariat-registry serve --listen 127.0.0.1:8070 --store bolt:/var/lib/lariat/registry.db
//	lariat-registry serve --store postgres://user:pass@db:5432/registry
//	lariat-registry models create eta --description "arrival time" --tag team=ml
//	lariat-registry models list|show ...
//	lariat-registry versions create eta --source s3://models/eta/3 --serving-endpoint http://eta:8080/v2/models/eta/infer
//	lariat-registry versions list eta
//	lariat-registry alias set eta champion 3
//	lariat-registry alias get eta champion
package main

import (
	"context"
	"flag"
	"io"
	"log"
	"os"
	"time"

	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/registry/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: lariat-registry <command> [flags]

commands:
  serve                          run the registry server
  models create NAME             register a model
  models list                    list registered models
  models show NAME               show a model and its latest versions
  versions create NAME --source URI
                                 register a new version of a model
  versions list NAME             list the versions of a model
  alias set NAME ALIAS VERSION   point an alias at a version
  alias get NAME ALIAS           show the version an alias points at

Client commands talk to --registry (default http://127.0.0.1:8070).
Run "lariat-registry <command> -h" for the flags of a command; every flag
can also be set by its environment variable, LARIAT_<FLAG> (--registry:
LARIAT_REGISTRY).
`

// run executes the command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	exit := func(err error) int { return cli.ExitCode("lariat-registry", err, stderr) }
	// A client command reads its object (models, versions, alias) itself.
	client := func([]string) int { return exit(clientCommand(args, stdout, stderr)) }
	return cli.Dispatch("lariat-registry", usage, args, stdout, stderr, map[string]cli.Verb{
		"serve":    func(a []string) int { return exit(serve(a, stderr)) },
		"models":   client,
		"versions": client,
		"alias":    client,
	})
}

func serve(args []string, stderr io.Writer) error {
	var storeSpec string
	var requestTimeout time.Duration
	return cli.Sidecar{
		Listen: "127.0.0.1:8070",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&storeSpec, "store", "bolt:lariat-registry.db",
				"where records live: bolt:/path/registry.db (embedded file) or postgres://user:pass@host:5432/db")
			fs.DurationVar(&requestTimeout, "request-timeout", 30*time.Second, "limit on the store work of one request")
		},
		Open: func(ctx context.Context, logger *log.Logger) (*cli.Opened, error) {
			store, err := server.OpenStore(ctx, storeSpec)
			if err != nil {
				return nil, err
			}
			srv := server.NewServer(server.NewService(store), server.ServerOptions{
				RequestTimeout: requestTimeout,
				Logf:           logger.Printf,
			})
			return &cli.Opened{Server: srv, Ready: "store opened", Close: store.Close, Closed: "store closed"}, nil
		},
	}.Run(context.Background(), args, stderr, nil)
}
