package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/tasks"
)

// testGateway is a real gateway on loopback listeners.
type testGateway struct {
	g     *Gateway
	url   string
	admin string
	dir   string
}

// writeRoutes writes routes (file name → YAML) into a new folder and
// returns it.
func writeRoutes(t testing.TB, routes map[string]string) string {
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
	return dir
}

// startGateway writes routes (file name → YAML) into a folder and serves
// them on 127.0.0.1.
func startGateway(t testing.TB, routes map[string]string, resolve map[string]string, opts ...func(*Options)) *testGateway {
	t.Helper()
	dir := writeRoutes(t, routes)
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

// httpRoute is a route at /name whose one task, m, calls addr with the
// other inputs given (YAML lines); m's answer is the route's answer.
func httpRoute(name, timeout, addr, inputs string) string {
	return fmt.Sprintf(`
name: %[1]s
endpoint: /%[1]s
timeout: %[2]s
tasks:
  m:
    type: http
    inputs:
      address: %[3]s
%[4]s
    output: {path: response.body}
`, name, timeout, addr, indent(inputs, "      "))
}

// oneTaskRoute is httpRoute at /one, 1s, sending the request as the body.
func oneTaskRoute(addr, inputs string) string {
	return httpRoute("one", "1s", addr, "body: '{{ .request }}'\n"+inputs)
}

func indent(s, pre string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = pre + lines[i]
	}
	return strings.Join(lines, "\n")
}

// fanout2Route is a route at /fanout2 that sends the request to m1 and m2
// in parallel and answers with both answers, under the tasks' names;
// extra is YAML added at the route's end.
func fanout2Route(timeout, m1, m2, extra string) string {
	return fmt.Sprintf(`
name: fanout2
endpoint: /fanout2
timeout: %s
tasks:
  m1:
    type: http
    inputs: {address: %s, body: '{{ .request }}'}
    output: {path: response.body.m1}
  m2:
    type: http
    inputs: {address: %s, body: '{{ .request }}'}
    output: {path: response.body.m2}
%s
`, timeout, m1, m2, extra)
}

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

// What the fan-out benchmarks send, and the answers of m1 and of
// fanout2Route over their two fake models.
const (
	fanout2Request = `{"user":{"id":"u-1"},"features":[0.1,0.2,0.3]}`
	m1Answer       = `{"score":0.91,"model":"m1"}`
	fanout2Answer  = `{"m1":{"score":0.91,"model":"m1"},"m2":{"score":0.13,"model":"m2"}}`
)

// fanout2Routes starts the two fake models of the fan-out benchmarks and
// writes a routes folder holding fanout2Route over them (1s, extra
// added); it returns the folder and the first model.
func fanout2Routes(b *testing.B, extra string) (string, *upstreamtest.Server) {
	m1 := upstreamtest.Start(b, upstreamtest.JSON(m1Answer))
	m2 := upstreamtest.Start(b, upstreamtest.JSON(`{"score":0.13,"model":"m2"}`))
	return writeRoutes(b, map[string]string{"r.yaml": fanout2Route("1s", m1.URL("/predict"), m2.URL("/predict"), extra)}), m1
}

// serveInMemory serves the routes in dir, with the options opts set, on
// an in-memory listener until b ends, and returns a client of it.
func serveInMemory(b *testing.B, dir string, opts ...func(*Options)) *fasthttp.HostClient {
	o := Options{RoutesDir: dir, Env: tasks.NewEnv(nil), Logger: discardLogger()}
	for _, f := range opts {
		f(&o)
	}
	g := New(o)
	if errs := g.Load(); len(errs) > 0 {
		b.Fatal(errs)
	}
	ln := fasthttputil.NewInmemoryListener()
	go g.Serve(ln)
	b.Cleanup(func() { g.server.Shutdown() })
	return &fasthttp.HostClient{Addr: "gateway", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 1024}
}

// postEach posts body to uri with c while next() is true; an error or an
// answer other than 200 with a body of want bytes fails b and ends it.
func postEach(b *testing.B, c *fasthttp.HostClient, uri string, body []byte, want int, next func() bool) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for next() {
		req.SetRequestURI(uri)
		req.Header.SetMethod("POST")
		req.Header.SetContentType("application/json")
		req.SetBody(body)
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			b.Error(err)
			return
		}
		if resp.StatusCode() != 200 || len(resp.Body()) != want {
			b.Errorf("answer %d %s", resp.StatusCode(), resp.Body())
			return
		}
	}
}
