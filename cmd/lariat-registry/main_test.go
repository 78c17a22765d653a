package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/registrytest"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/registry/server"
)

// runMainEnv makes the test binary act as lariat-registry with its arguments.
const runMainEnv = "LARIAT_REGISTRY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// startRegistry serves a registry on 127.0.0.1 in-process and returns its URL.
func startRegistry(t *testing.T) string { return registrytest.Start(t) }

// cli runs the command in-process and returns exit code, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestClientVerbs(t *testing.T) {
	url := startRegistry(t)
	ok := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(append(args, "--server", url)...)
		if code != 0 {
			t.Fatalf("%q exited %d: %s", args, code, errOut)
		}
		return out
	}
	fails := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, _, errOut := runCLI(append(args, "--server", url)...)
		if code != wantCode || !strings.Contains(errOut, wantErr) {
			t.Fatalf("%q = exit %d, stderr %q; want exit %d mentioning %q", args, code, errOut, wantCode, wantErr)
		}
	}

	out := ok("models", "create", "eta", "--description", "arrival time", "--tag", "team=ml")
	if !strings.Contains(out, "arrival time") || !strings.Contains(out, "team=ml") {
		t.Fatalf("models create printed:\n%s", out)
	}
	ok("models", "create", "fraud")

	var v registry.ModelVersion
	out = ok("versions", "create", "eta", "--source", "s3://models/eta/1", "--serving-endpoint", "http://127.0.0.1:9001",
		"--training-job", "job-1", "--param", "depth=6", "--metric", "auc=0.93", "--feature-view", "driver_stats",
		"--feature-view", "trips", "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("versions create -o json printed %q: %v", out, err)
	}
	if v.Version != "1" || v.ServingEndpoint != "http://127.0.0.1:9001" || v.Params["depth"] != "6" ||
		v.Metrics["auc"] != 0.93 || len(v.FeatureViews) != 2 || v.TrainingJob != "job-1" {
		t.Fatalf("created version: %+v", v)
	}
	ok("versions", "create", "eta", "--source", "s3://models/eta/2", "--serving-endpoint", "http://127.0.0.1:9002")

	out = ok("alias", "set", "eta", "champion", "2")
	if strings.TrimSpace(out) != "eta@champion -> version 2" {
		t.Fatalf("alias set printed %q", out)
	}
	out = ok("alias", "get", "eta", "champion")
	if !strings.Contains(out, "http://127.0.0.1:9002") || !strings.Contains(out, "champion") {
		t.Fatalf("alias get printed:\n%s", out)
	}
	if err := json.Unmarshal([]byte(ok("alias", "get", "eta", "champion", "-o", "json")), &v); err != nil || v.Version != "2" {
		t.Fatalf("alias get -o json: %+v, %v", v, err)
	}

	out = ok("models", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[1], "eta") ||
		!strings.Contains(lines[1], "champion=2") || !strings.HasPrefix(lines[2], "fraud") {
		t.Fatalf("models list printed:\n%s", out)
	}
	var ms []registry.RegisteredModel
	if err := json.Unmarshal([]byte(ok("models", "list", "--filter", "name LIKE 'fr%'", "-o", "json")), &ms); err != nil || len(ms) != 1 || ms[0].Name != "fraud" {
		t.Fatalf("models list --filter: %+v, %v", ms, err)
	}
	out = ok("models", "show", "eta")
	if !strings.Contains(out, "champion=2") || !strings.Contains(out, "latest versions:") {
		t.Fatalf("models show printed:\n%s", out)
	}

	out = ok("versions", "list", "eta")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "2") || !strings.HasPrefix(lines[2], "1") {
		t.Fatalf("versions list printed:\n%s", out)
	}
	var vs []registry.ModelVersion
	if err := json.Unmarshal([]byte(ok("versions", "list", "fraud", "-o", "json")), &vs); err != nil || len(vs) != 0 {
		t.Fatalf("versions list of a model without versions: %+v, %v", vs, err)
	}

	// API errors and usage errors.
	fails(1, "RESOURCE_ALREADY_EXISTS", "models", "create", "eta")
	fails(1, "RESOURCE_DOES_NOT_EXIST", "models", "show", "nope")
	fails(1, "RESOURCE_DOES_NOT_EXIST", "versions", "list", "nope")
	fails(1, "INVALID_PARAMETER_VALUE", "alias", "set", "eta", "latest", "1")
	fails(1, "RESOURCE_DOES_NOT_EXIST", "alias", "set", "eta", "champion", "9")
	fails(2, "needs -source", "versions", "create", "eta")
	fails(2, "takes 3 argument(s)", "alias", "set", "eta", "champion")
	fails(2, "not a number", "versions", "create", "eta", "--source", "s3://x", "--metric", "auc=high")
	fails(2, "want key=value", "models", "create", "x", "--tag", "novalue")
	fails(2, "-output must be table or json", "models", "list", "-o", "yaml")
	fails(2, "unknown command", "models", "explode")
	if code, _, _ := runCLI("frobnicate"); code != 2 {
		t.Fatalf("unknown command exited %d", code)
	}
	// A server that is not there is a plain error.
	if code, _, errOut := runCLI("models", "list", "--server", "http://127.0.0.1:1", "--timeout", "2s"); code != 1 || errOut == "" {
		t.Fatalf("unreachable server: exit %d, %q", code, errOut)
	}
}

// TestServeStopsGracefullyOnSIGTERM runs "serve" as a real process, writes through it,
// stops it with SIGTERM and checks the exit status and that the data is on disk.
func TestServeStopsGracefullyOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	dbPath := filepath.Join(t.TempDir(), "registry.db")
	cmd := exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", "--store", "bolt:"+dbPath)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var addr string
	var logText strings.Builder
	timeout := time.After(30 * time.Second)
	for addr == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("serve exited before listening:\n%s", logText.String())
			}
			logText.WriteString(line + "\n")
			if _, after, found := strings.Cut(line, "listening on "); found {
				addr = strings.TrimSpace(after)
			}
		case <-timeout:
			t.Fatalf("serve did not start listening:\n%s", logText.String())
		}
	}

	url := "http://" + addr
	if code, _, errOut := runCLI("models", "create", "eta", "--server", url); code != 0 {
		t.Fatalf("models create: %s", errOut)
	}
	if code, _, errOut := runCLI("versions", "create", "eta", "--source", "s3://x", "--server", url); code != 0 {
		t.Fatalf("versions create: %s", errOut)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for line := range lines {
		logText.WriteString(line + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM:\n%s", err, logText.String())
	}
	for _, want := range []string{"shutting down", "server stopped", "store closed"} {
		if !strings.Contains(logText.String(), want) {
			t.Fatalf("serve log lacks %q:\n%s", want, logText.String())
		}
	}

	// The file was closed (its lock released) and holds the writes.
	store, err := server.OpenBoltStore(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	v, err := server.NewService(store).GetVersion(context.Background(), "eta", "1")
	if err != nil || v.Source != "s3://x" {
		t.Fatalf("after restart: %+v, %v", v, err)
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	f := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, _, errOut := runCLI(args...)
		if code != wantCode || !strings.Contains(errOut, wantErr) {
			t.Fatalf("%q = exit %d, stderr %q; want exit %d mentioning %q", args, code, errOut, wantCode, wantErr)
		}
	}
	f(1, "unsupported store", "serve", "--store", "mysql://x")
	f(1, "missing file path", "serve", "--store", "bolt:")
	f(1, "cannot listen", "serve", "--listen", "256.0.0.1:1", "--store", "bolt:"+filepath.Join(t.TempDir(), "r.db"))
	f(2, "takes no arguments", "serve", "extra")
	f(2, "flag provided but not defined", "serve", "--bogus")
}

// TestClientServerFromEnvironment: the client verbs find the server in
// LARIAT_REGISTRY, as the gateway does, or in the older LARIAT_REGISTRY_URL
// with a warning; the command line wins.
func TestClientServerFromEnvironment(t *testing.T) {
	url := startRegistry(t)
	f := func(registryEnv, oldEnv string, args []string, wantCode int, wantStderr string) {
		t.Helper()
		t.Setenv("LARIAT_REGISTRY", registryEnv)
		t.Setenv("LARIAT_REGISTRY_URL", oldEnv)
		code, _, errOut := runCLI(append([]string{"models", "list", "--timeout", "5s"}, args...)...)
		if code != wantCode || !strings.Contains(errOut, wantStderr) || (wantStderr == "" && errOut != "") {
			t.Fatalf("LARIAT_REGISTRY=%q LARIAT_REGISTRY_URL=%q %q: exit %d, stderr %q; want %d with %q",
				registryEnv, oldEnv, args, code, errOut, wantCode, wantStderr)
		}
	}
	f(url, "", nil, 0, "")
	f("", url, nil, 0, "warning: LARIAT_REGISTRY_URL is deprecated; use LARIAT_REGISTRY")
	f(url, "http://127.0.0.1:1", nil, 0, "")
	f("http://127.0.0.1:1", "", []string{"--registry", url}, 0, "")
	f("http://127.0.0.1:1", "", []string{"--server", url}, 0, "")
	f("http://127.0.0.1:1", "", nil, 1, "127.0.0.1:1")
	t.Setenv("LARIAT_TIMEOUT", "soon")
	f(url, "", nil, 0, "") // --timeout on the command line
	code, _, errOut := runCLI("models", "list")
	if code != 2 || !strings.Contains(errOut, `invalid value "soon" for LARIAT_TIMEOUT (flag -timeout)`) {
		t.Fatalf("bad LARIAT_TIMEOUT: exit %d, %q", code, errOut)
	}
}
