package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/bench"
)

func startServer(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
	})
	return "http://" + ln.Addr().String()
}

func runMain(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestScenarioVerb(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		code, _, stderr := runMain(args...)
		if code != 2 || !strings.Contains(stderr, want) {
			t.Fatalf("%q: code %d stderr %q, want 2 and %q", args, code, stderr, want)
		}
	}
	f(`unknown scenario "smoke"`, "scenario", "smoke")
	f("fanout2", "scenario", "smoke")
	f("features+fanout2", "scenario")
	f("open mode needs a rate", "scenario", "fanout2", "--mode", "open", "--quiet", "--out", t.TempDir())
	f("unexpected arguments", "scenario", "fanout2", "extra")
	f("flag provided but not defined", "scenario", "fanout2", "--nope")
	f("a rate applies only to open mode", "scenario", "--duration", "1s", "lasso", "--rate", "5", "--quiet", "--out", t.TempDir())

	f("rates must be in [0, 1]", "upstream", "--error-rate", "2")
	f("not valid JSON", "upstream", "--body", "{")
	f("unexpected arguments", "upstream", "x")
	f("unknown scenario", "floor", "--scenario", "nope")
	f(`needs the address of model "m2"`, "floor", "--scenario", "fanout2", "--model", "m1=127.0.0.1:1")
	f("want KEY=HOST:PORT", "floor", "--scenario", "fanout2", "--model", "m1")
}

func TestRunAndReportVerbs(t *testing.T) {
	var bad atomic.Int64
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Request.Header.Peek("X-A")) != "b" || !ctx.IsPost() || !bytes.HasPrefix(ctx.PostBody(), []byte(`{"a":`)) {
			bad.Add(1)
		}
	})
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	code, stdout, stderr := runMain("run", "--name", "lariat", "--url", url+"/x", "--body", `{"a":{{seq}}}`,
		"--header", "X-A: b", "--mode", "open", "--rate", "200", "--connections", "4", "--requests", "40",
		"--timeout", "1s", "--json", p("lariat.json"), "--html", p("lariat.html"), "--cpuprofile", p("cpu.pprof"), "--quiet")
	if code != 0 || bad.Load() != 0 {
		t.Fatalf("code %d, bad requests %d, stderr %q", code, bad.Load(), stderr)
	}
	if !strings.Contains(stdout, "requests    40 (ok 40)") || !strings.Contains(stdout, "POST "+url+"/x, open mode at 200 rps") {
		t.Fatalf("summary:\n%s", stdout)
	}
	for _, f := range []string{"lariat.json", "lariat.html", "cpu.pprof"} {
		if fi, err := os.Stat(p(f)); err != nil || fi.Size() == 0 {
			t.Fatalf("%s not written: %v", f, err)
		}
	}

	code, _, stderr = runMain("run", "--name", "direct", "--url", url+"/x", "--body", `{"a":1}`, "--header", "X-A: b",
		"--connections", "2", "--requests", "30", "--json", p("direct.json"), "--quiet")
	if code != 0 {
		t.Fatalf("code %d stderr %q", code, stderr)
	}

	code, _, stderr = runMain("report", "--title", "overhead", "--baseline", "direct",
		"--json", p("both.json"), "--html", p("both.html"), p("lariat.json"), p("direct.json"))
	if code != 0 {
		t.Fatalf("report: code %d stderr %q", code, stderr)
	}
	f, err := os.Open(p("both.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := bench.ReadReport(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2 || rep.Baseline != "direct" || len(rep.Ratios) != 1 || rep.Runs[1].Requests != 30 {
		t.Fatalf("combined report: baseline %q, %d runs, ratios %+v", rep.Baseline, len(rep.Runs), rep.Ratios)
	}
	html, err := os.ReadFile(p("both.html"))
	if err != nil || !bytes.Contains(html, []byte("lariat / direct")) {
		t.Fatalf("combined html: %v", err)
	}
}

// TestRunVerbCountsAnswersWithinADeadline: --deadline counts the answers
// that came within it of their send.
func TestRunVerbCountsAnswersWithinADeadline(t *testing.T) {
	var n atomic.Int64
	url := startServer(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1)%3 == 0 {
			time.Sleep(1500 * time.Millisecond)
		}
	})
	code, stdout, stderr := runMain("run", "--url", url, "--connections", "1", "--requests", "6",
		"--timeout", "3s", "--deadline", "1s", "--quiet")
	if code != 0 {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "deadline    4 of 6 (66.67%) answered within 1.00s, 4 of them ok") {
		t.Fatalf("summary:\n%s", stdout)
	}
}

func TestRunVerbRejectsBadInput(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		code, _, stderr := runMain(append([]string{"run", "--quiet"}, args...)...)
		if code != 2 || !strings.Contains(stderr, want) {
			t.Fatalf("code %d stderr %q, want 2 and %q", code, stderr, want)
		}
	}
	u := "http://127.0.0.1:9/x"
	f("set a duration or a number of requests", "--url", u)
	f("a rate applies only to open mode", "--url", u, "--rate", "10", "--requests", "1")
	f("open mode needs a rate", "--url", u, "--mode", "open", "--requests", "1")
	f(`cannot parse header "nope"`, "--url", u, "--requests", "1", "--header", "nope")
	f("scheme must be http or https", "--url", "localhost:9", "--requests", "1")
	f("use either --body or --body-file", "--url", u, "--requests", "1", "--body", "{}", "--body-file", "x.jsonl")
	f("cannot load --body-file", "--url", u, "--requests", "1", "--body-file", filepath.Join(t.TempDir(), "missing.jsonl"))
	f("unexpected arguments", "--url", u, "--requests", "1", "extra")
	f("deadline 5s is longer than the request timeout 1s", "--url", u, "--requests", "1", "--timeout", "1s", "--deadline", "5s")

	if code, _, _ := runMain("frobnicate"); code != 2 {
		t.Fatalf("unknown verb: code %d", code)
	}
	if code, _, _ := runMain(); code != 2 {
		t.Fatalf("no verb: code %d", code)
	}
	if code, _, _ := runMain("report", "--html", "x.html"); code != 2 {
		t.Fatalf("report without inputs: code %d", code)
	}
}
