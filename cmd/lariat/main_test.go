package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildLariat returns the binary, built once per test process.
func buildLariat(t *testing.T) string {
	t.Helper()
	return sharedLariat(t)
}

func TestCLI(t *testing.T) {
	bin := buildLariat(t)
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	// validate: good files exit 0, bad ones print file:line:col and exit 1.
	if _, stderr, code := run("validate", "--feature-views", "../../featurefetch/demo/featureviews.yaml", "../../demo/routes"); code != 0 || !strings.Contains(stderr, "2 route(s) OK") {
		t.Fatalf("validate demo routes: %d %s", code, stderr)
	}
	out, _, code := run("validate", "../../router/testdata/bad/cycle.yaml")
	if code != 1 || !strings.Contains(out, "cycle.yaml:4:3: task \"a\": dependency cycle a -> b -> c -> a") {
		t.Fatalf("validate bad file: %d %s", code, out)
	}
	// A tenant folder is checked against its tenant.yaml.
	out, _, code = run("validate", "testdata/tenants/team-a")
	if code != 1 || !strings.Contains(out, `testdata/tenants/team-a/fraud.yaml:6:23: task "score": inputs.address: host "fraud.models" is not among the upstreams of tenant "team-a"`) || strings.Contains(out, "rank.yaml") {
		t.Fatalf("validate tenant folder: %d %s", code, out)
	}
	if out, stderr, code := run("validate", "testdata/tenants/team-b", "testdata/tenants/team-a/rank.yaml"); code != 0 || !strings.Contains(stderr, "2 route(s) OK") {
		t.Fatalf("validate good tenant files: %d %s %s", code, out, stderr)
	}
	out, stderr, code := run("validate", "../../router/testdata/warn/default-lacks-from.yaml")
	if code != 0 || !strings.Contains(out, `default-lacks-from.yaml:9:25: warning: task "fraud": on_error.default has no "score" (output.from)`) || !strings.Contains(stderr, "1 route(s) OK, 1 warning(s)") {
		t.Fatalf("validate file with a warning: %d %s %s", code, out, stderr)
	}
	if out, _, code := run("graph", "../../demo/routes/allocate.yaml", "--format", "dot"); code != 0 || !strings.HasPrefix(out, "digraph") {
		t.Fatalf("graph: %d %s", code, out)
	}
	if out, _, code := run("schema"); code != 0 || !strings.Contains(out, `"$schema"`) {
		t.Fatalf("schema: %d", code)
	}
	if _, stderr, code := run("serve", "--routes", filepath.Join(t.TempDir(), "missing")); code != 1 || !strings.Contains(stderr, "cannot list routes folder") {
		t.Fatalf("serve without a routes folder: %d %s", code, stderr)
	}
	if _, stderr, code := run("nope"); code != 2 || !strings.Contains(stderr, `unknown command "nope"`) {
		t.Fatalf("unknown verb: %d %s", code, stderr)
	}

	// Every flag can come from its LARIAT_<FLAG> variable; the command line wins.
	runEnv := func(env []string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return stderr.String(), cmd.ProcessState.ExitCode()
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if stderr, code := runEnv([]string{"LARIAT_ROUTES=" + missing}, "serve"); code != 1 || !strings.Contains(stderr, "cannot list routes folder") {
		t.Fatalf("serve with LARIAT_ROUTES: %d %s", code, stderr)
	}
	if stderr, code := runEnv([]string{"LARIAT_MAX_BODY_SIZE=big"}, "serve", "--routes", missing); code != 2 || !strings.Contains(stderr, `invalid value "big" for LARIAT_MAX_BODY_SIZE (flag -max-body-size)`) {
		t.Fatalf("serve with a bad LARIAT_MAX_BODY_SIZE: %d %s", code, stderr)
	}
	if stderr, code := runEnv([]string{"LARIAT_MAX_BODY_SIZE=big", "LARIAT_ROUTES=" + missing}, "serve", "--max-body-size", "1000"); code != 1 || !strings.Contains(stderr, "cannot list routes folder") {
		t.Fatalf("serve with --max-body-size over LARIAT_MAX_BODY_SIZE: %d %s", code, stderr)
	}
	if stderr, code := runEnv([]string{"LARIAT_FEATURE_VIEWS=" + missing}, "validate", "../../demo/routes"); code != 1 || !strings.Contains(stderr, "missing") {
		t.Fatalf("validate with LARIAT_FEATURE_VIEWS: %d %s", code, stderr)
	}
}

// TestDemoAnswersAndStopsOnSIGTERM runs `lariat demo` as a newcomer would,
// follows the printed curl lines, then stops it with SIGTERM: exit 0.
func TestDemoAnswersAndStopsOnSIGTERM(t *testing.T) {
	bin := buildLariat(t)
	cmd := exec.Command(bin, "demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	calls := demoCalls(t, stdout)
	for _, c := range calls {
		resp, err := http.Post(c[1], "application/json", strings.NewReader(c[2]))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"ranking":[{"driver_id":`) || !strings.Contains(string(body), `"fraud":{"model":"fraud-score"`) {
			t.Fatalf("%s: %d %s", c[1], resp.StatusCode, body)
		}
	}
	// The same call with curl -d and no Content-Type header: 415 naming the
	// header to send.
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, "-s", "-w", "\n%{http_code}", "-d", calls[0][2], calls[0][1]).Output()
		if err != nil || !strings.HasSuffix(string(out), "\n415") || !strings.Contains(string(out), "send the header Content-Type: application/json") {
			t.Fatalf("curl -d: %v %s", err, out)
		}
	} else {
		t.Log("no curl on PATH: the curl -d check did not run")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop on SIGTERM")
	}
}

// demoCalls reads the banner of `lariat demo` from stdout until its
// routes line and returns the URL and body of each curl line.
func demoCalls(t *testing.T, stdout io.Reader) [][]string {
	t.Helper()
	// Read the banner until the routes line.
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var banner strings.Builder
	timeout := time.After(20 * time.Second)
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break read
			}
			banner.WriteString(l + "\n")
			if strings.HasPrefix(l, "Routes:") {
				break read
			}
		case <-timeout:
			t.Fatalf("demo printed no banner:\n%s", banner.String())
		}
	}
	text := strings.ReplaceAll(banner.String(), "\\\n", "")
	re := regexp.MustCompile(`curl -s -X POST (http://\S+) -H 'Content-Type: application/json'\s+-d '([^']+)'`)
	calls := re.FindAllStringSubmatch(text, -1)
	if len(calls) != 2 {
		t.Fatalf("banner has %d curl lines:\n%s", len(calls), text)
	}
	return calls
}

// TestDemoServesPastItsFileLimit: a burst of connections past the
// process's file descriptor limit (150 here) neither stops the gateway
// nor drops the connections it could not accept yet: they wait in the
// listen backlog, and are served once descriptors are free again.
func TestDemoServesPastItsFileLimit(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH to lower the file limit with")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max < 150 {
		t.Skipf("the file limit cannot be set to 150 here (hard limit %d, %v)", lim.Max, err)
	}
	bin := buildLariat(t)
	logPath := filepath.Join(t.TempDir(), "stderr")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(sh, "-c", `ulimit -n 150 && exec "$0" "$@"`, bin, "demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	calls := demoCalls(t, stdout)
	target, err := url.Parse(calls[0][1])
	if err != nil {
		t.Fatal(err)
	}

	// 260 connections: the kernel completes them all (those not accepted
	// wait in the backlog), the gateway runs out of descriptors accepting
	// them.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 260; i++ {
		c, err := net.DialTimeout("tcp", target.Host, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// Free descriptors by closing the first 160, then ask on the last
	// connection, which waited in the backlog.
	for _, c := range conns[:160] {
		c.Close()
	}
	last := conns[len(conns)-1]
	_ = last.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(last, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		target.RequestURI(), target.Host, len(calls[0][2]), calls[0][2])
	resp, err := http.ReadResponse(bufio.NewReader(last), nil)
	if err != nil {
		t.Fatalf("request on a connection that waited in the backlog: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("request on a connection that waited in the backlog: %d %s", resp.StatusCode, body)
	}
	for _, c := range conns[160:] {
		c.Close()
	}
	conns = nil

	// Still serving new connections, and the shortage was logged.
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err = client.Post(calls[0][1], "application/json", strings.NewReader(calls[0][2]))
	if err != nil {
		t.Fatalf("new connection after the burst: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("new connection after the burst: %d", resp.StatusCode)
	}
	logged, _ := os.ReadFile(logPath)
	if !strings.Contains(string(logged), "cannot accept connections") || !strings.Contains(string(logged), "too many open files") {
		t.Fatalf("the shortage was not logged:\n%s", logged)
	}
}
