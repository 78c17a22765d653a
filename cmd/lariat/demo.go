package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/lariat-gw/lariat/demo"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/gateway"
	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/tasks"
)

func demoCmd(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var sf serverFlags
	sf.register(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode("lariat demo", err, os.Stderr)
	}
	log := sf.logger()
	d, err := demo.Start()
	if err != nil {
		log.Error("cannot start example models", "error", err)
		return 1
	}
	defer d.Stop()
	dir, err := os.MkdirTemp("", "lariat-demo-routes-")
	if err != nil {
		log.Error("cannot create routes folder", "error", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := demo.WriteRoutes(dir); err != nil {
		log.Error("cannot write example routes", "error", err)
		return 1
	}
	resolve, err := sf.resolveMap(d.Resolve)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lariat demo:", err)
		return 2
	}
	env := sf.env(resolve, log)
	views, store, err := featurefetch.NewDemoStore()
	if err != nil {
		log.Error("cannot load example features", "error", err)
		return 1
	}
	tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store})
	g := gateway.New(sf.options(dir, env, log))
	if errs := g.Load(); len(errs) > 0 {
		log.Error("example routes did not load", "error", strings.Join(errs, "; "))
		return 1
	}
	return runServers(g, &sf, log, func(traffic, admin net.Addr) {
		fmt.Printf(`
Lariat demo is running. Example routes are in %s.
Try a prediction (both models are called in parallel and merged):

  curl -s -X POST http://%s/v1/allocate -H 'Content-Type: application/json' \
    -d '%s'

Rank candidate drivers with their online features (a feature lookup feeds the
ranking model while the fraud model runs in parallel):

  curl -s -X POST http://%s/v1/rank-drivers -H 'Content-Type: application/json' \
    -d '%s'

Routes:  curl -s http://%s/routes
Metrics: curl -s http://%s/metrics
Stop with Ctrl-C.
`, dir, traffic, demo.ExampleRequest, traffic, demo.ExampleRankRequest, admin, admin)
	})
}
