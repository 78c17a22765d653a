package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/router"
)

func validateCmd(args []string) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lariat validate [--feature-views FILE] DIR|FILE...")
		fs.PrintDefaults()
	}
	viewsFile := fs.String("feature-views", "", "feature-view definitions (YAML), to check routes with feature tasks")
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode("lariat validate", err, os.Stderr)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	var files []string
	var errs config.Errors
	for _, a := range fs.Args() {
		st, err := os.Stat(a)
		if err != nil {
			errs = append(errs, config.Errorf(config.Pos{File: a}, "%v", err))
			continue
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		fl, err := config.RouteFiles(a)
		if err != nil {
			errs = append(errs, config.Errorf(config.Pos{File: a}, "%v", err))
		}
		files = append(files, fl...)
	}
	env, err := offlineEnv(*viewsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lariat validate:", err)
		return 1
	}
	t, loadErrs := router.LoadFiles(files, env)
	errs = append(errs, loadErrs...)
	for _, e := range errs.Sorted() {
		fmt.Println(e.Error())
	}
	for _, w := range t.Warnings.Sorted() {
		fmt.Printf("%s: warning: %s\n", w.Pos, w.Msg)
	}
	if len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "%d problem(s) in %d file(s)\n", len(errs), len(files))
		return 1
	}
	if n := len(t.Warnings); n > 0 {
		fmt.Fprintf(os.Stderr, "%d route(s) OK, %d warning(s)\n", len(t.Plans()), n)
		return 0
	}
	fmt.Fprintf(os.Stderr, "%d route(s) OK\n", len(t.Plans()))
	return 0
}
