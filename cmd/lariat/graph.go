package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lariat-gw/lariat/graph"
	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/router"
)

// graphCmd prints the task graph of one route file as a Mermaid flowchart
// or a Graphviz digraph. The file is loaded as the gateway loads it, so a
// bad file prints its problems (file:line:col) and exits 1.
func graphCmd(args []string) int {
	fs := flag.NewFlagSet("graph", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lariat graph FILE [--format mermaid|dot] [--feature-views FILE]")
		fmt.Fprintln(os.Stderr, "Prints the route's task graph; render dot output with `dot -Tsvg`.")
		fs.PrintDefaults()
	}
	format := fs.String("format", graph.Mermaid, "output format: mermaid (a flowchart for Markdown) or dot (Graphviz)")
	viewsFile := fs.String("feature-views", "", "feature-view definitions (YAML), needed to load routes with feature tasks")
	// Flags may come before or after the file name.
	files, err := cli.ParseInterspersed(fs, args)
	if err != nil {
		return cli.ExitCode("lariat graph", err, os.Stderr)
	}
	if len(files) != 1 {
		fs.Usage()
		return 2
	}
	if *format != graph.Mermaid && *format != graph.DOT {
		fmt.Fprintf(os.Stderr, "lariat graph: unknown --format %q: use mermaid or dot\n", *format)
		return 2
	}
	env, err := offlineEnv(*viewsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lariat graph:", err)
		return 1
	}
	table, errs := router.LoadFiles(files, env)
	if len(errs) > 0 {
		for _, e := range errs.Sorted() {
			fmt.Fprintln(os.Stderr, e.Error())
		}
		return 1
	}
	plans := table.Plans()
	if len(plans) != 1 {
		fmt.Fprintf(os.Stderr, "lariat graph: %s holds no route\n", files[0])
		return 1
	}
	out, err := graph.Render(plans[0], *format)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lariat graph:", err)
		return 2
	}
	fmt.Print(out)
	return 0
}
