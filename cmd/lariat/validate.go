package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

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
	// Route files and tenant folders: a folder with a tenant.yaml (or a
	// file in one) is checked against it.
	var lay config.Layout
	var errs config.Errors
	addTenant := func(td config.TenantDir) {
		for i := range lay.Tenants {
			if lay.Tenants[i].Dir == td.Dir {
				lay.Tenants[i].Files = append(lay.Tenants[i].Files, td.Files...)
				return
			}
		}
		lay.Tenants = append(lay.Tenants, td)
	}
	for _, a := range fs.Args() {
		st, err := os.Stat(a)
		if err != nil {
			errs = append(errs, config.Errorf(config.Pos{File: a}, "%v", err))
			continue
		}
		if !st.IsDir() {
			if dir := filepath.Dir(a); config.IsTenantDir(dir) {
				addTenant(config.TenantDir{Name: filepath.Base(filepath.Clean(dir)), Dir: dir, Files: []string{a}})
			} else {
				lay.Files = append(lay.Files, a)
			}
			continue
		}
		l, err := config.ReadLayout(a)
		if err != nil {
			errs = append(errs, config.Errorf(config.Pos{File: a}, "%v", err))
		}
		lay.Files = append(lay.Files, l.Files...)
		for _, td := range l.Tenants {
			addTenant(td)
		}
	}
	files := len(lay.Files)
	for _, td := range lay.Tenants {
		files += len(td.Files) + 1
	}
	env, err := offlineEnv(*viewsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lariat validate:", err)
		return 1
	}
	loader := router.NewLoader(env)
	loader.Tenants = router.TenantOptions{Offline: true}
	t, res := loader.LoadLayout(lay)
	loader.Close()
	errs = append(errs, res.Errors...)
	for _, e := range errs.Sorted() {
		fmt.Println(e.Error())
	}
	for _, w := range t.Warnings.Sorted() {
		fmt.Printf("%s: warning: %s\n", w.Pos, w.Msg)
	}
	if len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "%d problem(s) in %d file(s)\n", len(errs), files)
		return 1
	}
	if n := len(t.Warnings); n > 0 {
		fmt.Fprintf(os.Stderr, "%d route(s) OK, %d warning(s)\n", len(t.Plans()), n)
		return 0
	}
	fmt.Fprintf(os.Stderr, "%d route(s) OK\n", len(t.Plans()))
	return 0
}
