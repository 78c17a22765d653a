// Command lariat is the inference gateway: it serves routes (serve), checks
// route files (validate) and runs an embedded example (demo).
package main

import (
	"fmt"
	"os"
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
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serveCmd(args[1:])
	case "validate":
		return validateCmd(args[1:])
	case "demo":
		return demoCmd(args[1:])
	case "graph":
		return graphCmd(args[1:])
	case "schema":
		return schemaCmd(args[1:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "lariat: unknown verb %q\n\n%s", args[0], usage)
	return 2
}
