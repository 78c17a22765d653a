package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/cli"
)

// schemaCmd prints the JSON Schema of route files, for editors: save it and
// point the YAML language server at it, e.g. with a first line
// `# yaml-language-server: $schema=route.schema.json` in a route file.
func schemaCmd(args []string) int {
	fs := flag.NewFlagSet("schema", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lariat schema > route.schema.json")
		fmt.Fprintln(os.Stderr, "Prints the JSON Schema (draft 2020-12) of route files, for editors.")
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode("lariat schema", err, os.Stderr)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if _, err := os.Stdout.Write(config.Schema()); err != nil {
		fmt.Fprintln(os.Stderr, "lariat schema: cannot write:", err)
		return 1
	}
	return 0
}
