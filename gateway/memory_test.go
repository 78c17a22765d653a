package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/tasks"
)

// helperRoutesEnv, when set, makes TestHelperGatewayProcess serve the
// routes folder it names: the test binary becomes a gateway process whose
// memory another test can read.
const helperRoutesEnv = "LARIAT_TEST_HELPER_ROUTES"

// TestHelperGatewayProcess is not a test of its own: it is the gateway
// process TestHugeAnswersKeepMemoryFlat starts.
func TestHelperGatewayProcess(t *testing.T) {
	dir := os.Getenv(helperRoutesEnv)
	if dir == "" {
		t.Skip("runs only as the helper process of TestHugeAnswersKeepMemoryFlat")
	}
	g := New(Options{RoutesDir: dir, Env: tasks.NewEnv(nil), Logger: discardLogger()})
	if errs := g.Load(); len(errs) > 0 {
		t.Fatal(errs)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	fmt.Println(ln.Addr().String())
	// Serve until the parent closes stdin.
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// TestHugeAnswersKeepMemoryFlat: 40 requests at once whose upstream
// answers are 100 MB each (chunked). The gateway answers each with an
// error naming the cause (too large, out of answer memory, or the
// deadline when the answers come slowly), and its peak resident memory
// stays under 150 MB.
func TestHugeAnswersKeepMemoryFlat(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Huge(100<<20))
	addr, pid := startGatewayProcess(t, fmt.Sprintf("name: huge\nendpoint: /huge\ntimeout: 2s\ntasks:\n  m: {type: http, inputs: {address: %s}, output: {path: response.body}}\n", up.URL("/")))
	url := "http://" + addr + "/huge"
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	var worst time.Duration
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := client.Post(url, "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			mu.Lock()
			statuses[resp.StatusCode]++
			worst = max(worst, took)
			mu.Unlock()
			switch {
			case resp.StatusCode == 502 && strings.Contains(string(body), "too large"):
			case resp.StatusCode == 503 && strings.Contains(string(body), "answer memory"):
			case resp.StatusCode == 504 && strings.Contains(string(body), "deadline"):
			default:
				t.Errorf("answer %d %s", resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	peak := peakRSS(t, pid)
	t.Logf("statuses %v, slowest answer %s (deadline 2s), gateway peak RSS %d MB", statuses, worst.Round(time.Millisecond), peak>>20)
	// How late past the deadline the answers come is for bench/ to
	// measure: on a loaded machine it says more about the machine.
	if peak > 150<<20 {
		t.Fatalf("gateway peak RSS %d MB, want under 150 MB", peak>>20)
	}
}

// startGatewayProcess serves route in a gateway process of its own (the
// test binary running TestHelperGatewayProcess), stopped when the test
// ends, and returns its traffic address and process id.
func startGatewayProcess(t *testing.T, route string) (addr string, pid int) {
	t.Helper()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read a process's peak memory")
	}
	if raceEnabled {
		t.Skip("the race detector multiplies memory; the bound is checked without it")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "route.yaml"), []byte(route), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperGatewayProcess$")
	cmd.Env = append(os.Environ(), helperRoutesEnv+"="+dir)
	if os.Getenv("DEBUG_GC") != "" {
		cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
		cmd.Stderr = os.Stderr
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper gateway did not start: %v", err)
	}
	return strings.TrimSpace(line), cmd.Process.Pid
}

// TestLargeBodiesKeepMemoryFlat: 300 requests at once, each with a body
// of 1 MB (the largest accepted). The gateway reads as many at once as
// its request body memory holds and answers the others 503 with
// Retry-After before reading them; its peak resident memory stays under
// 200 MB. Without the request body memory it reached 481 MB; with it,
// 79–151 MB: the bodies read go to the collector, which on a loaded
// machine runs late, so the peak moves with the machine's load.
func TestLargeBodiesKeepMemoryFlat(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Echo())
	addr, pid := startGatewayProcess(t, fmt.Sprintf("name: big\nendpoint: /big\ntimeout: 5s\ntasks:\n  m: {type: http, inputs: {address: %s, body: '{\"n\": {{ .request.n }}}'}, output: {path: response.body}}\n", up.URL("/")))
	body := `{"n":1,"pad":"` + strings.Repeat("x", 1<<20-32) + `"}`
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 300, MaxIdleConnsPerHost: 300}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post("http://"+addr+"/big", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
			switch {
			case resp.StatusCode == 200 && string(answer) == `{"n": 1}`:
			case resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "":
			default:
				t.Errorf("answer %d %.200s", resp.StatusCode, answer)
			}
		}()
	}
	wg.Wait()
	peak := peakRSS(t, pid)
	t.Logf("statuses %v, gateway peak RSS %d MB", statuses, peak>>20)
	if statuses[200] == 0 {
		t.Fatalf("no request served")
	}
	if peak > 200<<20 {
		t.Fatalf("gateway peak RSS %d MB, want under 200 MB", peak>>20)
	}
}

// peakRSS reads a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
