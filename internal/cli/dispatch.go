package cli

import (
	"fmt"
	"io"
)

// Verb runs one command of a binary with several, given the arguments
// after its name, and returns the process exit status.
type Verb func(args []string) int

// Dispatch runs the verb args[0] names with the rest of args and returns its
// exit status. With no arguments it prints usage on stderr (2); "help",
// "-h", "-help" and "--help" print it on stdout (0); an unknown verb is named
// on stderr above the usage (2).
func Dispatch(prog, usage string, args []string, stdout, stderr io.Writer, verbs map[string]Verb) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if v := verbs[args[0]]; v != nil {
		return v(args[1:])
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n%s", prog, args[0], usage)
	return 2
}
