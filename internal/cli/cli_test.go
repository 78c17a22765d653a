package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExitCode(t *testing.T) {
	f := func(err error, wantCode int, wantOut string) {
		t.Helper()
		var buf bytes.Buffer
		if code := ExitCode("prog", err, &buf); code != wantCode || buf.String() != wantOut {
			t.Fatalf("ExitCode(%v) = %d, %q; want %d, %q", err, code, buf.String(), wantCode, wantOut)
		}
	}
	f(nil, 0, "")
	f(flag.ErrHelp, 0, "")
	f(Usagef("bad %s", "flag"), 2, "prog: usage error: bad flag\n")
	f(fmt.Errorf("wrapped: %w", Usagef("x")), 2, "prog: wrapped: usage error: x\n")
	f(errors.New("boom"), 1, "prog: boom\n")
}

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v := fs.Bool("v", false, "")
	n := fs.Int("n", 0, "")
	pos, err := ParseInterspersed(fs, []string{"a", "-v", "b", "-n", "3", "c"})
	if err != nil || !*v || *n != 3 || !reflect.DeepEqual(pos, []string{"a", "b", "c"}) {
		t.Fatalf("got %q, v=%v n=%d, err %v", pos, *v, *n, err)
	}
	if _, err := ParseInterspersed(fs, []string{"a", "-nope"}); !errors.Is(err, ErrUsage) {
		t.Fatalf("unknown flag: got %v, want a usage error", err)
	}
	if _, err := ParseInterspersed(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: got %v, want flag.ErrHelp", err)
	}
}

func TestOutput(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSONList[int](&buf, nil); err != nil || buf.String() != "[]\n" {
		t.Fatalf("nil list: %q, %v", buf.String(), err)
	}
	buf.Reset()
	if err := WriteJSON(&buf, map[string]int{"a": 1}); err != nil || buf.String() != "{\n  \"a\": 1\n}\n" {
		t.Fatalf("WriteJSON: %q, %v", buf.String(), err)
	}
	if got := JoinMap(map[string]float64{"b": 0.5, "a": 2}, ",", func(f float64) string { return fmt.Sprint(f) }); got != "a=2,b=0.5" {
		t.Fatalf("JoinMap = %q", got)
	}
	if Dash("") != "-" || Dash("x") != "x" {
		t.Fatal("Dash")
	}
	buf.Reset()
	tw := NewTable(&buf)
	fmt.Fprintf(tw, "a\tbb\nccc\td\n")
	if err := tw.Flush(); err != nil || buf.String() != "a    bb\nccc  d\n" {
		t.Fatalf("table: %q, %v", buf.String(), err)
	}
}

// getThenStop makes a request to the server at addr, then cancels its
// context and waits for it to stop without an error.
func getThenStop(t *testing.T, addr string, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("server stopped with %v", err)
	}
}

func TestServeShutsDownOnCancel(t *testing.T) {
	ln, err := Listen("-listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, srv, ln, ServeOptions{ShutdownTimeout: 5 * time.Second, Logger: log.New(&logs, "", 0),
			Ready: func(addr string) { ready <- addr }})
	}()
	addr := <-ready
	getThenStop(t, addr, cancel, done)
	for _, want := range []string{"listening on " + addr, "shutting down", "server stopped in"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

func TestServeReportsServerStop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve fails at once on a closed listener
	err = Serve(context.Background(), &http.Server{}, ln, ServeOptions{Logger: log.New(io.Discard, "", 0)})
	if err == nil || !strings.Contains(err.Error(), "server stopped") {
		t.Fatalf("got %v, want a server stopped error", err)
	}
}

func TestListenError(t *testing.T) {
	if _, err := Listen("--listen", "127.0.0.1:-1"); err == nil || !strings.Contains(err.Error(), `--listen="127.0.0.1:-1"`) {
		t.Fatalf("got %v", err)
	}
}

func TestEnvName(t *testing.T) {
	f := func(flagName, want string) {
		t.Helper()
		if got := EnvName(flagName); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flagName, got, want)
		}
	}
	f("listen", "LARIAT_LISTEN")
	f("redis-password", "LARIAT_REDIS_PASSWORD")
	f("max-body-size", "LARIAT_MAX_BODY_SIZE")
	f("train-server", "LARIAT_TRAIN_SERVER")
}

// envFlags is a flag set like a command's: strings, a duration, a boolean, a
// repeatable flag and aliases.
type envFlags struct {
	fs       *flag.FlagSet
	stderr   bytes.Buffer
	listen   string
	registry string
	timeout  time.Duration
	verbose  bool
	tags     []string
}

func newEnvFlags() *envFlags {
	e := &envFlags{fs: flag.NewFlagSet("t", flag.ContinueOnError)}
	e.fs.SetOutput(&e.stderr)
	e.fs.StringVar(&e.listen, "listen", "127.0.0.1:1", "listen address")
	e.fs.StringVar(&e.registry, "registry", "", "registry URL")
	Alias(e.fs, "server", "registry")
	e.fs.DurationVar(&e.timeout, "request-timeout", time.Second, "timeout")
	e.fs.BoolVar(&e.verbose, "verbose", false, "more output")
	Alias(e.fs, "v", "verbose")
	e.fs.Func("tag", "tag (repeatable)", func(s string) error { e.tags = append(e.tags, s); return nil })
	return e
}

func TestParseFlagsFromEnv(t *testing.T) {
	f := func(env map[string]string, args []string, want envFlags, wantWarning string) {
		t.Helper()
		for _, k := range []string{"LARIAT_LISTEN", "LARIAT_REGISTRY", "LARIAT_REGISTRY_URL", "LARIAT_SERVER", "LARIAT_REQUEST_TIMEOUT", "LARIAT_VERBOSE", "LARIAT_V", "LARIAT_TAG"} {
			t.Setenv(k, env[k])
		}
		e := newEnvFlags()
		pos, err := ParseInterspersed(e.fs, args)
		if err != nil {
			t.Fatalf("env %v args %q: %v", env, args, err)
		}
		if e.listen != want.listen || e.registry != want.registry || e.timeout != want.timeout || e.verbose != want.verbose ||
			!reflect.DeepEqual(e.tags, want.tags) || len(pos) != 0 {
			t.Errorf("env %v args %q: got listen %q registry %q timeout %v verbose %v tags %q, pos %q",
				env, args, e.listen, e.registry, e.timeout, e.verbose, e.tags, pos)
		}
		if got := e.stderr.String(); got != wantWarning {
			t.Errorf("env %v args %q: stderr %q, want %q", env, args, got, wantWarning)
		}
	}
	def := envFlags{listen: "127.0.0.1:1", timeout: time.Second}
	f(nil, nil, def, "")
	f(map[string]string{"LARIAT_LISTEN": ":9", "LARIAT_REQUEST_TIMEOUT": "3s", "LARIAT_VERBOSE": "true", "LARIAT_TAG": "a=b"}, nil,
		envFlags{listen: ":9", timeout: 3 * time.Second, verbose: true, tags: []string{"a=b"}}, "")
	// The command line wins, also through an alias; an empty variable is unset.
	f(map[string]string{"LARIAT_LISTEN": ":9", "LARIAT_REGISTRY": "http://env", "LARIAT_VERBOSE": ""}, []string{"-listen", ":8", "-server", "http://arg"},
		envFlags{listen: ":8", registry: "http://arg", timeout: time.Second}, "")
	// Aliases have no variable of their own.
	f(map[string]string{"LARIAT_SERVER": "http://alias", "LARIAT_V": "true"}, nil, def, "")
	// A deprecated name works, with a warning, unless the new one is set.
	f(map[string]string{"LARIAT_REGISTRY_URL": "http://old"}, nil,
		envFlags{listen: "127.0.0.1:1", registry: "http://old", timeout: time.Second}, "warning: LARIAT_REGISTRY_URL is deprecated; use LARIAT_REGISTRY\n")
	f(map[string]string{"LARIAT_REGISTRY_URL": "http://old", "LARIAT_REGISTRY": "http://new"}, nil,
		envFlags{listen: "127.0.0.1:1", registry: "http://new", timeout: time.Second}, "")
}

func TestParseFlagsEnvErrors(t *testing.T) {
	t.Setenv("LARIAT_REQUEST_TIMEOUT", "soon")
	e := newEnvFlags()
	err := ParseFlags(e.fs, nil)
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), `invalid value "soon" for LARIAT_REQUEST_TIMEOUT (flag -request-timeout)`) {
		t.Fatalf("got %v", err)
	}
	// The command line does not read the variable it overrides.
	e = newEnvFlags()
	if err := ParseFlags(e.fs, []string{"-request-timeout", "2s"}); err != nil || e.timeout != 2*time.Second {
		t.Fatalf("got %v, %v", e.timeout, err)
	}
}

func TestFlagHelpNamesVariables(t *testing.T) {
	e := newEnvFlags()
	if err := ParseFlags(e.fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	// Parsing twice (ParseInterspersed does) does not repeat the note.
	_, _ = ParseInterspersed(e.fs, []string{"-h"})
	help := e.stderr.String()
	for _, want := range []string{
		"listen address (env LARIAT_LISTEN) (default \"127.0.0.1:1\")\n",
		"timeout (env LARIAT_REQUEST_TIMEOUT) (default 1s)\n",
		"\tsame as -registry\n",
		"\tsame as -verbose\n",
	} {
		if strings.Count(help, want) != 2 {
			t.Errorf("help lacks %q twice:\n%s", want, help)
		}
	}
	// An alias of a boolean flag takes no value.
	e = newEnvFlags()
	if pos, err := ParseInterspersed(e.fs, []string{"-v", "x"}); err != nil || !e.verbose || !reflect.DeepEqual(pos, []string{"x"}) {
		t.Fatalf("-v x: %v %q %v", e.verbose, pos, err)
	}
}

func TestSidecarRun(t *testing.T) {
	var logs bytes.Buffer
	var extra string
	closed := false
	s := Sidecar{
		Listen: "127.0.0.1:0",
		Flags:  func(fs *flag.FlagSet) { fs.StringVar(&extra, "extra", "", "a flag of the command") },
		Open: func(ctx context.Context, _ *log.Logger) (*Opened, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("Open has no deadline")
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
			return &Opened{Server: srv, Ready: "thing opened", Close: func() error { closed = true; return nil }, Closed: "thing closed"}, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, []string{"-extra", "x", "-shutdown-timeout", "5s"}, &logs, func(addr string) { ready <- addr })
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("Run: %v\n%s", err, logs.String())
	}
	getThenStop(t, addr, cancel, done)
	if extra != "x" || !closed {
		t.Fatalf("extra flag %q, closed %v", extra, closed)
	}
	out := logs.String()
	last := -1
	for _, want := range []string{"thing opened in ", "listening on " + addr, "shutting down", "server stopped in ", "thing closed in "} {
		i := strings.Index(out, want)
		if i < 0 || i < last {
			t.Fatalf("logs lack %q after the steps before it:\n%s", want, out)
		}
		last = i
	}

	f := func(args []string, open error, want string) {
		t.Helper()
		s := Sidecar{Listen: "127.0.0.1:0", Open: func(context.Context, *log.Logger) (*Opened, error) { return nil, open }}
		err := s.Run(context.Background(), args, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run(%q): %v, want %q", args, err, want)
		}
	}
	f([]string{"extra"}, nil, `usage error: serve takes no arguments, got ["extra"]`)
	f([]string{"-nope"}, nil, "usage error: flag provided but not defined: -nope")
	f(nil, errors.New("store is locked"), "store is locked")
}

func TestDispatch(t *testing.T) {
	var got []string
	verbs := map[string]Verb{
		"load": func(args []string) int { got = args; return 7 },
	}
	run := func(args ...string) (code int, stdout, stderr string) {
		var out, errOut strings.Builder
		code = Dispatch("prog", "usage text\n", args, &out, &errOut, verbs)
		return code, out.String(), errOut.String()
	}
	if code, _, _ := run("load", "a", "-b"); code != 7 || !slices.Equal(got, []string{"a", "-b"}) {
		t.Errorf("load a -b: exit %d, verb got %q", code, got)
	}
	if code, out, errOut := run(); code != 2 || out != "" || errOut != "usage text\n" {
		t.Errorf("no arguments: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, h := range []string{"help", "-h", "-help", "--help"} {
		if code, out, errOut := run(h); code != 0 || out != "usage text\n" || errOut != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", h, code, out, errOut)
		}
	}
	if code, out, errOut := run("nope", "x"); code != 2 || out != "" ||
		errOut != "prog: unknown command \"nope\"\n\nusage text\n" {
		t.Errorf("nope: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
