// Command schemagen writes the JSON Schema of route files, generated from
// the Go types route files decode into (see package schemagen). It runs
// from `go generate ./config`:
//
//	schemagen -o route.schema.json
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lariat-gw/lariat/internal/schemagen"
)

func main() { os.Exit(run()) }

func run() int {
	out := flag.String("o", "", "file to write (standard output when empty)")
	flag.Parse()
	b, err := schemagen.Generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		return 1
	}
	if *out == "" {
		_, err = os.Stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		return 1
	}
	return 0
}
