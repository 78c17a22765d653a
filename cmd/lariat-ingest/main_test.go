package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/internal/testwait"
)

// childArgsEnv makes the test binary run the command line it holds (a JSON
// array) instead of the tests: the child processes of the tests below.
const childArgsEnv = "LARIAT_INGEST_TEST_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		var a []string
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			fmt.Fprintf(os.Stderr, "bad %s: %v\n", childArgsEnv, err)
			os.Exit(2)
		}
		os.Exit(run(a, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// childCommand returns the test binary set up to run args as lariat-ingest.
func childCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+string(a))
	return cmd
}

const views = "testdata/featureviews.yaml"

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut strings.Builder
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func client(t *testing.T, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

const header = "driver_id,event_timestamp,conv_rate,avg_daily_trips,vehicle_type\n"

func TestLoadCommand(t *testing.T) {
	srv := redistest.Start(t)
	good := writeFile(t, "good.csv", header+"1,2026-05-01T10:00:00Z,0.5,3,sedan\n2,2026-05-01T10:00:00Z,0.25,4,bike\n")
	code, out, errOut := runCLI("load", "--views", views, "--view", "driver_stats", "--redis", srv.Addr(), good)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(good) + `: 2 rows read in \S+ \(\d+ rows/s\)\n` +
		`  written:            2\n  skipped, not newer: 0\n  rejected:           0\n$`).MatchString(out) {
		t.Fatalf("summary:\n%s", out)
	}
	// Standard error is not a terminal: progress lines, the last one final.
	if !strings.HasPrefix(errOut, "progress: ") || !strings.Contains(errOut, "progress: 100.0% 2 rows read, 2 written, 0 skipped, 0 rejected, ") {
		t.Fatalf("progress:\n%s", errOut)
	}

	// Again: the same rows and an older one are skipped; a bad one fails the run.
	more := writeFile(t, "more.jsonl", `{"driver_id":1,"event_timestamp":"2026-04-01T00:00:00Z","conv_rate":0.9,"avg_daily_trips":9,"vehicle_type":"old"}`+"\n"+
		`{"driver_id":3,"event_timestamp":"2026-05-01T00:00:00Z","conv_rate":"x","avg_daily_trips":9,"vehicle_type":"van"}`+"\n")
	code, out, errOut = runCLI("load", "--views", views, "--view", "driver_stats", "--redis", srv.Addr(), "--progress", "none", good, more)
	if code != 1 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"  written:            0\n  skipped, not newer: 2\n  rejected:           0\n",
		more + ": 2 rows read in ",
		"  written:            0\n  skipped, not newer: 1\n  rejected:           1 (wrong_type 1)\n",
		"  " + more + `:2: column "conv_rate": "x" is not a FLOAT` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("summary lacks %q:\n%s", want, out)
		}
	}

	// --max-errors stops a file; --show-errors bounds the rows printed.
	var sb strings.Builder
	sb.WriteString(header)
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&sb, "%d,2026-05-01T10:00:00Z,bad,3,sedan\n", i)
	}
	bad := writeFile(t, "bad.csv", sb.String())
	code, out, errOut = runCLI("load", "--views", views, "--view", "driver_stats", "--redis", srv.Addr(), "--progress", "none",
		"--max-errors", "2", "--show-errors", "1", bad)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	if want := "lariat-ingest: " + bad + ": too many rejected rows: stopped after 3 (--max-errors=2)\n"; errOut != want {
		t.Fatalf("stderr %q, want %q", errOut, want)
	}
	if !strings.Contains(out, "  rejected:           3 (wrong_type 3)\n  "+bad+`:2: column "conv_rate": "bad" is not a FLOAT`+"\n  ... and 2 more rejected rows\n") {
		t.Fatalf("summary:\n%s", out)
	}

	// Standard input, with an explicit format.
	stdin := writeFile(t, "in.csv", header+"9,2026-05-01T10:00:00Z,0.5,3,sedan\n")
	f, err := os.Open(stdin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := childCommand(t, "load", "--views", views, "--view", "driver_stats", "--redis", srv.Addr(), "--format", "csv", "-")
	cmd.Stdin = f
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "stdin: 1 rows read in ") || !strings.Contains(string(b), "progress: 1 rows read, 1 written") {
		t.Fatalf("stdin: %v\n%s", err, b)
	}
}

func TestCommandErrors(t *testing.T) {
	srv := redistest.Start(t)
	good := writeFile(t, "good.csv", header+"1,2026-05-01T10:00:00Z,0.5,3,sedan\n")
	f := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, _, errOut := runCLI(args...)
		if code != wantCode || !strings.Contains(errOut, wantErr) {
			t.Fatalf("%q: exit %d, stderr %q; want %d and %q", args, code, errOut, wantCode, wantErr)
		}
	}
	f(2, "usage: lariat-ingest <command>")
	f(2, `unknown command "nope"`, "nope")
	f(2, "lariat-ingest: usage error: --view is required", "load", "--views", views, good)
	f(2, "lariat-ingest: usage error: --views is required", "load", "--view", "driver_stats", good)
	f(2, "lariat-ingest: usage error: no input file given", "load", "--views", views, "--view", "driver_stats")
	f(2, `usage error: --progress="fancy": want auto, bar, lines or none`, "load", "--views", views, "--view", "driver_stats", "--progress", "fancy", good)
	f(2, `usage error: --format: unknown format "xml"`, "load", "--views", views, "--view", "driver_stats", "--format", "xml", good)
	f(2, `usage error: --key-ttl="soon"`, "load", "--views", views, "--view", "driver_stats", "--key-ttl", "soon", good)
	f(2, "flag provided but not defined: -nope", "load", "--nope")
	f(1, `lariat-ingest: --view: unknown feature view "drivers"; known views: driver_stats`,
		"load", "--views", views, "--view", "drivers", "--redis", srv.Addr(), good)
	f(1, "lariat-ingest: cannot read feature views", "load", "--views", "nope.yaml", "--view", "driver_stats", good)
	f(1, `missing column "vehicle_type"`, "load", "--views", views, "--view", "driver_stats", "--redis", srv.Addr(), "--progress", "none",
		writeFile(t, "x.csv", "driver_id,event_timestamp,conv_rate,avg_daily_trips\n"))
	f(2, `usage error: serve takes no arguments`, "serve", "--views", views, "extra")
	f(2, `want NAME=VIEW[,VIEW...], got "x"`, "serve", "--views", views, "--push-source", "x")
	if code, out, _ := runCLI("help"); code != 0 || !strings.Contains(out, "commands:") {
		t.Fatalf("help: %d %s", code, out)
	}
}

func TestServeCommand(t *testing.T) {
	srv := redistest.Start(t)
	cmd := childCommand(t, "serve", "--listen", "127.0.0.1:0", "--views", views, "--redis", srv.Addr(),
		"--push-source", "stats_push=driver_stats")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var addr string
	timeout := time.After(20 * time.Second)
	for addr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("serve exited before listening")
			}
			if _, a, found := strings.Cut(l, "listening on "); found {
				addr = a
			}
		case <-timeout:
			t.Fatal("serve did not start listening")
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Post("http://"+addr+"/push", "application/json", strings.NewReader(`{"push_source_name":"stats_push","df":{
		"driver_id":[5],"event_timestamp":["2026-05-01 10:00:00+00:00"],"conv_rate":[0.5],"avg_daily_trips":[1],"vehicle_type":["van"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Lariat-Rows-Written") != "1" {
		t.Fatalf("push: %d %s", resp.StatusCode, body)
	}
	rc := client(t, srv.Addr())
	n, err := rc.Do(context.Background(), rc.B().Dbsize().Build()).AsInt64()
	if err != nil || n != 1 {
		t.Fatalf("DBSIZE %d %v", n, err)
	}

	// SIGTERM: a clean stop, exit status 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	err = cmd.Wait()
	killed = true
	if err != nil {
		t.Fatalf("serve exit: %v\n%s", err, strings.Join(rest, "\n"))
	}
	if !strings.Contains(strings.Join(rest, "\n"), "server stopped in") {
		t.Fatalf("shutdown log:\n%s", strings.Join(rest, "\n"))
	}
}

// writeKillData writes rows for a few thousand drivers with event times in
// a narrow range, so that rows of a driver often tie: the earlier row of the
// file must win (a later one with the same event time is skipped), as must
// the newest.
func writeKillData(t *testing.T, rows int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	sb.WriteString(header)
	base := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for i := 0; i < rows; i++ {
		ts := base.Add(time.Duration(rng.IntN(600)) * time.Second)
		fmt.Fprintf(&sb, "%d,%s,%g,%d,v%d\n", rng.IntN(2000), ts.Format(time.RFC3339), float32(rng.Float64()), i, rng.IntN(10))
	}
	return writeFile(t, "kill.csv", sb.String())
}

// dump returns every key with its hash fields.
func dump(t *testing.T, c rueidis.Client) map[string]map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]map[string]string{}
	var cursor uint64
	for i := 0; i < 100_000; i++ {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range e.Elements {
			h, err := c.Do(ctx, c.B().Hgetall().Key(k).Build()).AsStrMap()
			if err != nil {
				t.Fatal(err)
			}
			out[k] = h
		}
		if cursor = e.Cursor; cursor == 0 {
			return out
		}
	}
	t.Fatal("SCAN did not finish")
	return nil
}

func scriptCalls(t *testing.T, c rueidis.Client) int {
	t.Helper()
	info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// TestKillAndRerun SIGKILLs a load half-way, runs it again to the end, and
// compares every key and hash with one clean run into a fresh server.
func TestKillAndRerun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	const rows = 60_000
	data := writeKillData(t, rows)
	args := func(addr string) []string {
		return []string{"load", "--views", views, "--view", "driver_stats", "--redis", addr, "--progress", "none",
			"--batch-size", "32", "--rows-per-script", "4", data}
	}
	killed := redistest.Start(t)
	kc := client(t, killed.Addr())
	cmd := childCommand(t, args(killed.Addr())...)
	var childOut strings.Builder
	cmd.Stdout, cmd.Stderr = &childOut, &childOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	const total = rows / 4
	calls := 0
	if !testwait.Within(testwait.Timeout, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("the load ended (%v) after %d of %d script calls, before it could be killed:\n%s", err, calls, total, childOut.String())
		default:
		}
		calls = scriptCalls(t, kc)
		return calls >= total/4
	}) {
		t.Fatalf("only %d script calls after %s", calls, testwait.Timeout)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child: %v", err)
	}
	calls = scriptCalls(t, kc)
	if calls >= total {
		t.Fatalf("the load made all %d script calls before the kill", calls)
	}
	t.Logf("killed after %d of %d script calls", calls, total)

	// Run again to the end.
	if code, out, errOut := runCLI(args(killed.Addr())...); code != 0 {
		t.Fatalf("rerun: exit %d\n%s%s", code, out, errOut)
	}

	clean := redistest.Start(t)
	if code, out, errOut := runCLI(args(clean.Addr())...); code != 0 || !strings.Contains(out, fmt.Sprintf(": %d rows read in ", rows)) {
		t.Fatalf("clean run: exit %d\n%s%s", code, out, errOut)
	}
	got, want := dump(t, kc), dump(t, client(t, clean.Addr()))
	if len(want) != 2000 {
		t.Fatalf("clean run wrote %d keys, want 2000", len(want))
	}
	if len(got) != len(want) {
		t.Fatalf("killed and rerun: %d keys, clean run: %d", len(got), len(want))
	}
	for k, hw := range want {
		hg := got[k]
		if len(hg) != len(hw) {
			t.Fatalf("key %x: %d fields, clean run %d", k, len(hg), len(hw))
		}
		for f, v := range hw {
			if hg[f] != v {
				t.Fatalf("key %x field %x: %x, clean run %x", k, f, hg[f], v)
			}
		}
	}
}
