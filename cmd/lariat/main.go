// Command lariat is the inference gateway: it serves routes (serve), checks
// route files (validate) and runs an embedded example (demo).
package main

import (
	"os"

	"github.com/lariat-gw/lariat/internal/cli"
)

const usage = `lariat is a low-latency online-inference gateway.

Usage:
  lariat serve    --routes DIR [--listen ADDR] [--admin-listen ADDR] [--resolve HOST[:PORT]=ADDR ...]
  lariat validate DIR|FILE...
  lariat graph    FILE [--format mermaid|dot] [--feature-views FILE]
  lariat schema
  lariat demo     [--listen ADDR] [--admin-listen ADDR]

Run "lariat VERB -h" for a verb's flags.
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	return cli.Dispatch("lariat", usage, args, os.Stdout, os.Stderr, map[string]cli.Verb{
		"serve":    serveCmd,
		"validate": validateCmd,
		"demo":     demoCmd,
		"graph":    graphCmd,
		"schema":   schemaCmd,
	})
}
