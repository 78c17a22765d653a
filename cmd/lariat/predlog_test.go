package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/predlogtest"
	"github.com/lariat-gw/lariat/internal/registrytest"
	"github.com/lariat-gw/lariat/internal/testbin"
	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/predlog/sink"
	"github.com/lariat-gw/lariat/registry"
)

// gatewayProc is a lariat serve subprocess.
type gatewayProc struct {
	cmd        *exec.Cmd
	url, admin string
	done       chan error
}

// logFixture is what the subprocess tests share: the binary, a registry
// with two versions of a model behind aliases, the feature files.
type logFixture struct {
	bin, routes, views, seed, registry string
}

// sharedBin is the lariat and lariat-predlog binaries the tests run:
// scripts/test.sh's (see testbin), or else ones built into a temporary
// folder (the gateway starts the sink process from its own folder).
var sharedBin struct {
	once sync.Once
	dir  string
	path string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedBin.dir != "" {
		os.RemoveAll(sharedBin.dir)
	}
	os.Exit(code)
}

func sharedLariat(t *testing.T) string {
	t.Helper()
	sharedBin.once.Do(func() {
		if os.Getenv(testbin.Env) == "" {
			dir, err := os.MkdirTemp("", "lariat-bin-")
			if err != nil {
				t.Fatal(err)
			}
			sharedBin.dir = dir
		}
		testbin.Path(t, "lariat-predlog", sharedBin.dir)
		sharedBin.path = testbin.Path(t, "lariat", sharedBin.dir)
	})
	if sharedBin.path == "" {
		t.Fatal("no lariat binary: building it failed in an earlier test")
	}
	return sharedBin.path
}

func newLogFixture(t *testing.T) *logFixture {
	t.Helper()
	fx := &logFixture{bin: sharedLariat(t)}
	dir := t.TempDir()
	fx.routes = filepath.Join(dir, "routes")
	if err := os.Mkdir(fx.routes, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fx.routes, "ranked.yaml"), []byte(predlogtest.RankedRoute("5s", "4s", 70, "log: {outputs: [response.body.score]}")), 0o644); err != nil {
		t.Fatal(err)
	}
	fx.views = filepath.Join(dir, "views.yaml")
	fx.seed = filepath.Join(dir, "seed.jsonl")
	if err := os.WriteFile(fx.views, featurefetch.DemoViewsYAML(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fx.seed, featurefetch.DemoSeed(), 0o644); err != nil {
		t.Fatal(err)
	}
	v1 := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.25}`))
	v2 := upstreamtest.Start(t, upstreamtest.JSON(`{"score":0.75}`))
	fx.registry = registrytest.Start(t)
	reg := registry.NewClient(fx.registry, nil)
	ctx := context.Background()
	if _, err := reg.CreateModel(ctx, registry.CreateModelRequest{Name: "rank"}); err != nil {
		t.Fatal(err)
	}
	for _, up := range []*upstreamtest.Server{v1, v2} {
		if _, err := reg.CreateVersion(ctx, registry.CreateVersionRequest{Name: "rank", Source: "file:///models/rank", ServingEndpoint: up.URL("/predict")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.SetAlias(ctx, "rank", "control", "1"); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetAlias(ctx, "rank", "canary", "2"); err != nil {
		t.Fatal(err)
	}
	return fx
}

var listenRe = regexp.MustCompile(`msg=serving listen=(\S+) admin=(\S+)`)

// start runs lariat serve with the prediction log at url and waits until
// it listens.
func (fx *logFixture) start(t *testing.T, url string, extra ...string) *gatewayProc {
	t.Helper()
	args := append([]string{"serve", "--routes", fx.routes, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--feature-views", fx.views, "--feature-seed", fx.seed, "--registry", fx.registry, "--prediction-log", url}, extra...)
	return startGatewayProc(t, fx.bin, args...)
}

// startGatewayProc runs bin with args (a lariat serve listening on
// 127.0.0.1:0), waits until it listens and kills it when the test ends.
// It fails the test when the process exits or does not listen within
// 30s, showing its log.
func startGatewayProc(t *testing.T, bin string, args ...string) *gatewayProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	gp := &gatewayProc{cmd: cmd, done: make(chan error, 1)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-gp.done
	})
	addr := make(chan []string, 1)
	exited := make(chan struct{})
	var logMu sync.Mutex
	var logText strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logText.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1:]
			}
		}
		close(exited)
		gp.done <- cmd.Wait()
	}()
	log := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return logText.String()
	}
	select {
	case a := <-addr:
		gp.url, gp.admin = "http://"+a[0], "http://"+a[1]
	case <-exited:
		t.Fatalf("lariat serve exited before listening:\n%s", log())
	case <-time.After(30 * time.Second):
		t.Fatalf("lariat serve did not start:\n%s", log())
	}
	return gp
}

// answer is what the test remembers of one answer.
type answered struct {
	arm, version string
	driver       int
	at           time.Time
}

var clientPool = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// ask sends one request and returns what the answer's headers say.
func ask(gp *gatewayProc, i int) (string, answered, error) {
	driver := 1001 + i%5
	body := fmt.Sprintf(`{"user":"u%d","driver":%d}`, i%97, driver)
	resp, err := clientPool.Post(gp.url+"/ranked", "application/json", strings.NewReader(body))
	if err != nil {
		return "", answered{}, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", answered{}, fmt.Errorf("request %d: %d %s", i, resp.StatusCode, b)
	}
	a := answered{
		arm:    strings.TrimPrefix(resp.Header.Get("X-Lariat-Branch"), "experiment="),
		driver: driver,
		at:     time.Now(),
	}
	// X-Lariat-Models: ctrl=rank/1 or cand=rank/2.
	_, a.version, _ = strings.Cut(resp.Header.Get("X-Lariat-Models"), "=rank/")
	wantScore := map[string]string{"1": `{"score":0.25}`, "2": `{"score":0.75}`}[a.version]
	if string(b) != wantScore || (a.arm == "control") != (a.version == "1") {
		return "", a, fmt.Errorf("request %d: arm %q version %q answered %s", i, a.arm, a.version, b)
	}
	return resp.Header.Get("X-Request-Id"), a, nil
}

// seedValues maps driver id to its driver_stats values in the demo seed.
func seedValues(t *testing.T) map[int]map[string]json.RawMessage {
	t.Helper()
	out := map[int]map[string]json.RawMessage{}
	for _, line := range strings.Split(strings.TrimSpace(string(featurefetch.DemoSeed())), "\n") {
		var row struct {
			View     string
			Entities struct {
				DriverID int `json:"driver_id"`
			}
			Features map[string]json.RawMessage
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		if row.View == "driver_stats" {
			out[row.Entities.DriverID] = row.Features
		}
	}
	return out
}

// checkRecord compares a record with the answer of its request.
func checkRecord(r *predlog.Record, a answered, seed map[int]map[string]json.RawMessage) error {
	if r.Route != "ranked" || r.Status != 200 || len(r.Arms) != 1 || r.Arms[0].Arm != a.arm {
		return fmt.Errorf("record %s: route %s status %d arms %+v, want arm %s", r.RequestID, r.Route, r.Status, r.Arms, a.arm)
	}
	ran := "ctrl"
	if a.arm == "canary" {
		ran = "cand"
	}
	found := false
	for _, tk := range r.Tasks {
		if tk.Name == ran {
			found = tk.Model == "rank" && tk.Version == a.version && tk.Status == predlog.TaskOK
		}
	}
	if !found {
		return fmt.Errorf("record %s: tasks %+v, want %s answered by rank %s", r.RequestID, r.Tasks, ran, a.version)
	}
	if len(r.Features) != 2 {
		return fmt.Errorf("record %s: features %+v", r.RequestID, r.Features)
	}
	for _, f := range r.Features {
		want := seed[a.driver][f.Name]
		if string(f.Entity) != fmt.Sprintf(`{"driver_id":%d}`, a.driver) || string(f.Value) != string(want) || f.Status != "PRESENT" {
			return fmt.Errorf("record %s: feature %+v, want driver %d value %s", r.RequestID, f, a.driver, want)
		}
	}
	wantScore := map[string]predlog.JSON{"1": "0.25", "2": "0.75"}[a.version]
	if len(r.Outputs) != 1 || r.Outputs[0].Value != wantScore {
		return fmt.Errorf("record %s: outputs %+v", r.RequestID, r.Outputs)
	}
	return nil
}

// sendAll sends n requests over conns connections and returns the
// answers by request id.
func sendAll(t *testing.T, gp *gatewayProc, n, conns int) map[string]answered {
	t.Helper()
	var mu sync.Mutex
	got := make(map[string]answered, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				id, a, err := ask(gp, i)
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				got[id] = a
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d distinct request ids for %d requests", len(got), n)
	}
	return got
}

func waitExit(t *testing.T, gp *gatewayProc) error {
	t.Helper()
	select {
	case err := <-gp.done:
		gp.done <- err
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("lariat serve did not stop")
		return nil
	}
}

// TestPredictionLogSIGTERM serves 10,000 requests through a split route
// with every request recorded to file://, stops the gateway with SIGTERM,
// and reads back exactly one record per request with the arm and model
// version that answered it and the feature values served.
func TestPredictionLogSIGTERM(t *testing.T) {
	fx := newLogFixture(t)
	dir := t.TempDir()
	gp := fx.start(t, "file://"+dir)
	const n = 10_000
	sent := sendAll(t, gp, n, 8)
	if err := gp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, gp); err != nil {
		t.Fatalf("lariat serve after SIGTERM: %v", err)
	}
	seed := seedValues(t)
	seen := make(map[string]bool, n)
	arms := map[string]int{}
	err := sink.Read(dir, func(r *predlog.Record) error {
		a, ok := sent[r.RequestID]
		if !ok || seen[r.RequestID] {
			return fmt.Errorf("record %q: unknown or read twice", r.RequestID)
		}
		seen[r.RequestID] = true
		arms[a.arm]++
		return checkRecord(r, a, seed)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("read %d records of %d requests", len(seen), n)
	}
	if arms["control"] < n/2 || arms["canary"] < n/10 {
		t.Fatalf("arms %v", arms)
	}
	assertNoTempFiles(t, dir)
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".tmp") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

// TestPredictionLogKill9 kills the gateway with SIGKILL while it serves:
// every Parquet file left is complete, every request answered more than
// a flush interval before the kill is in the log, and the next start
// removes the dead process's temporary files.
func TestPredictionLogKill9(t *testing.T) {
	fx := newLogFixture(t)
	dir := t.TempDir()
	const flush = 200 * time.Millisecond
	gp := fx.start(t, "file://"+dir, "--prediction-log-flush", flush.String())
	var mu sync.Mutex
	sent := map[string]answered{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := c; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				id, a, err := ask(gp, i)
				if err != nil {
					return // the gateway was killed
				}
				mu.Lock()
				sent[id] = a
				mu.Unlock()
			}
		}(c)
	}
	// margin allows for the flush running late on a loaded machine.
	const margin = time.Second
	testwait.Until(t, "50 requests answered more than a flush interval ago", func() bool {
		cut := time.Now().Add(-flush - margin)
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range sent {
			if a.at.Before(cut) {
				n++
			}
		}
		return n >= 50
	})
	killed := time.Now()
	if err := gp.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = waitExit(t, gp)
	close(stop)
	wg.Wait()

	// Every complete file reads; requests answered before the last flush
	// interval (plus the margin) are all there.
	seed := seedValues(t)
	found := map[string]bool{}
	err := sink.Read(dir, func(r *predlog.Record) error {
		a, ok := sent[r.RequestID]
		if !ok {
			return fmt.Errorf("record %q of an unknown request", r.RequestID)
		}
		found[r.RequestID] = true
		return checkRecord(r, a, seed)
	})
	if err != nil {
		t.Fatal(err)
	}
	cutoff := killed.Add(-flush - margin)
	missing, before := 0, 0
	for id, a := range sent {
		if a.at.Before(cutoff) {
			before++
			if !found[id] {
				missing++
			}
		}
	}
	if before < 50 || missing > 0 {
		t.Fatalf("%d of %d requests answered before the last flush interval are missing (%d answered, %d recorded)", missing, before, len(sent), len(found))
	}
	t.Logf("%d requests answered, %d recorded; %d lost in the last %s", len(sent), len(found), len(sent)-len(found), time.Since(cutoff).Round(time.Millisecond))

	// A new gateway on the same folder removes the dead one's temporary
	// files and adds its own records.
	gp2 := fx.start(t, "file://"+dir)
	if _, _, err := ask(gp2, 1); err != nil {
		t.Fatal(err)
	}
	if err := gp2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, gp2); err != nil {
		t.Fatal(err)
	}
	assertNoTempFiles(t, dir)
	n := 0
	if err := sink.Read(dir, func(*predlog.Record) error { n++; return nil }); err != nil || n != len(found)+1 {
		t.Fatalf("after restart: %d records (%v), want %d", n, err, len(found)+1)
	}
}
