package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/tasks"
)

// testGateway is a real gateway on loopback listeners.
type testGateway struct {
	g     *Gateway
	url   string
	admin string
	dir   string
}

// startGateway writes routes (file name → YAML) into a folder and serves
// them on 127.0.0.1.
func startGateway(t testing.TB, routes map[string]string, resolve map[string]string, opts ...func(*Options)) *testGateway {
	t.Helper()
	dir := t.TempDir()
	for name, y := range routes {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := Options{RoutesDir: dir, Env: tasks.NewEnv(resolve), Logger: discardLogger()}
	for _, f := range opts {
		f(&o)
	}
	g := New(o)
	g.Load()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	go g.ServeAdmin(aln)
	t.Cleanup(func() {
		// Keep-alive connections of the test's client close first:
		// Shutdown that finds none open returns at once instead of
		// polling for them every 100ms.
		testClient.CloseIdleConnections()
		testwait.Within(200*time.Millisecond, func() bool {
			return g.server.GetOpenConnectionsCount() == 0 && g.admin.GetOpenConnectionsCount() == 0
		})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return &testGateway{g: g, url: "http://" + ln.Addr().String(), admin: "http://" + aln.Addr().String(), dir: dir}
}

var testClient = &http.Client{Timeout: 10 * time.Second}

type answer struct {
	status int
	body   string
	header http.Header
}

func (tg *testGateway) do(t testing.TB, method, path, body string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, tg.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func (tg *testGateway) post(t testing.TB, path, body string, hdr ...string) answer {
	t.Helper()
	return tg.do(t, http.MethodPost, path, body, hdr...)
}

func (tg *testGateway) adminGet(t testing.TB, path string) answer {
	t.Helper()
	resp, err := testClient.Get(tg.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

// waitNoGoroutinesIn waits until no goroutine has a frame whose function
// name contains any of the given package paths (the gateway's request
// path), or fails after a bounded wait showing them.
func waitNoGoroutinesIn(t *testing.T, pkgs ...string) {
	t.Helper()
	var stuck []string
	if testwait.Within(testwait.Timeout, func() bool {
		stuck = stuck[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, p := range pkgs {
				if strings.Contains(g, p) && !strings.Contains(g, "waitNoGoroutinesIn") {
					stuck = append(stuck, g)
					break
				}
			}
		}
		return len(stuck) == 0
	}) {
		return
	}
	t.Fatalf("%d goroutines still in the request path after %s:\n%s", len(stuck), testwait.Timeout, strings.Join(stuck, "\n\n"))
}
