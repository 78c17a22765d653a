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
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
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
