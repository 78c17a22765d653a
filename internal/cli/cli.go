// Package cli holds what the commands share: dispatching the verbs of a
// binary (Dispatch), usage errors and exit codes, flag parsing with every
// flag settable from its LARIAT_<FLAG> environment variable, the serve
// command of the sidecars (Sidecar: common flags, open, serve, graceful
// shutdown on SIGTERM or SIGINT, close, each step logged), and the JSON and
// table output of client verbs.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// ErrUsage marks command-line mistakes; ExitCode maps it to exit status 2.
var ErrUsage = errors.New("usage error")

// Usagef returns a usage error (wrapping ErrUsage) with the formatted message.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// ExitCode reports err of the command prog on stderr and returns the process
// exit status: 0 for nil and flag.ErrHelp (nothing reported), 2 for usage
// errors, 1 for anything else.
func ExitCode(prog string, err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", prog, err)
	return 1
}

// ParseFlags parses args into fs, then sets every flag the arguments left
// unset from its environment variable (see SetFromEnv). flag.ErrHelp is
// returned as is; any other parse error becomes a usage error.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	annotateEnv(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	return SetFromEnv(fs, os.LookupEnv)
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return Usagef("%v", err)
	}
	return nil
}

// ParseInterspersed parses flags that may come before, between or after the
// positional arguments, and returns the positional arguments. Flags left unset
// are set from the environment, and errors are those of ParseFlags.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	annotateEnv(fs)
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if err := SetFromEnv(fs, os.LookupEnv); err != nil {
		return nil, err
	}
	return pos, nil
}

// EnvPrefix starts the environment variable of every flag of every command.
const EnvPrefix = "LARIAT_"

// EnvName returns the environment variable that sets the flag called name:
// EnvPrefix, then the name in upper case with dashes as underscores
// (-redis-password: LARIAT_REDIS_PASSWORD).
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// DeprecatedEnv maps the environment variables of earlier releases to the
// variable that replaced them. An old name still sets its flag when the new
// one is unset, with a warning.
var DeprecatedEnv = map[string]string{
	"LARIAT_REGISTRY_URL": EnvName("registry"), // lariat-registry's client verbs
}

// SetFromEnv sets every flag of fs that the command line did not set, except
// aliases (see Alias), from its environment variable (EnvName) when lookup
// finds it set and not empty, or else from a deprecated name of that variable
// (DeprecatedEnv, with a warning on fs.Output()). A repeatable flag takes one
// value from its variable. A value the flag rejects is a usage error naming
// the variable.
func SetFromEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		set[f.Name] = true
		if a, ok := f.Value.(*aliasValue); ok {
			set[a.name] = true
		}
	})
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] || isAlias(f) {
			return
		}
		name := EnvName(f.Name)
		v, ok := lookup(name)
		if !ok || v == "" {
			for _, old := range slices.Sorted(maps.Keys(DeprecatedEnv)) {
				if DeprecatedEnv[old] != name {
					continue
				}
				if v, ok = lookup(old); ok && v != "" {
					fmt.Fprintf(fs.Output(), "warning: %s is deprecated; use %s\n", old, name)
					name = old
					break
				}
			}
		}
		if v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = Usagef("invalid value %q for %s (flag -%s): %v", v, name, f.Name, e)
		}
	})
	return err
}

// envNote is the end of the usage of a flag with an environment variable.
func envNote(name string) string { return " (env " + EnvName(name) + ")" }

// annotateEnv adds the environment variable to the usage of every flag of
// fs but aliases, once.
func annotateEnv(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if !isAlias(f) && !strings.HasSuffix(f.Usage, envNote(f.Name)) {
			f.Usage += envNote(f.Name)
		}
	})
}

// aliasValue is the value of a flag that is another name of a flag.
type aliasValue struct {
	name   string // of the target flag
	target flag.Value
}

// String is empty: the default and the value are those of the target.
func (a *aliasValue) String() string { return "" }

func (a *aliasValue) Set(v string) error { return a.target.Set(v) }

// IsBoolFlag lets an alias of a boolean flag be given without a value.
func (a *aliasValue) IsBoolFlag() bool {
	b, ok := a.target.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func isAlias(f *flag.Flag) bool {
	_, ok := f.Value.(*aliasValue)
	return ok
}

// Alias defines the flag name as another name of the flag target of fs,
// defined before: setting either sets both. An alias has no environment
// variable of its own (-o for -output, or a flag's earlier name).
func Alias(fs *flag.FlagSet, name, target string) {
	t := fs.Lookup(target)
	if t == nil {
		panic("BUG: alias -" + name + " of undefined flag -" + target)
	}
	fs.Var(&aliasValue{target, t.Value}, name, "same as -"+target)
}
