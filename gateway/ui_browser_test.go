package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/graph"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/tasks"
)

// chromiumEnv, when set to "required", makes the browser tests fail rather
// than skip when no Chromium is installed (scripts/test.sh sets it).
const chromiumEnv = "LARIAT_TEST_CHROMIUM"

// findChromium returns the headless browser to render pages with.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(chromiumEnv) == "required" {
		t.Fatal("no chromium on PATH (apt-get install chromium)")
	}
	t.Skipf("no chromium on PATH; set %s=required to fail instead", chromiumEnv)
	return ""
}

// runChromium runs headless Chromium on url with extra arguments (a
// --dump-dom or --screenshot) and a fresh profile, and returns its
// standard output.
func runChromium(t *testing.T, bin, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(),
		"--window-size=1280,900", "--virtual-time-budget=10000"}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %q: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// measureScript runs in the admin page once its live figures have loaded:
// it measures every text of the graphs as the browser lays it out and
// reports the texts that leave their box (or label background), and the
// graphs wider than the window. It does so with the live figures, then
// with the longest figures the boxes are sized for.
const measureScript = `<script>
function overflows(){
 const out=[];
 for(const t of document.querySelectorAll('svg.graph text')){
  const r=t.parentNode.querySelector('rect');if(!r)continue;
  const w=t.getComputedTextLength(),x=+t.getAttribute('x');
  const end=t.getAttribute('text-anchor')==='end';
  const left=end?x-w:x,right=end?x:x+w,rx=+r.getAttribute('x'),rw=+r.getAttribute('width');
  if(left<rx-0.5||right>rx+rw+0.5)out.push(JSON.stringify(t.textContent)+' spans '+left.toFixed(1)+'..'+right.toFixed(1)+', its box '+rx+'..'+(rx+rw));
 }
 for(const s of document.querySelectorAll('svg.graph')){
  const b=s.getBoundingClientRect();
  if(b.right>document.documentElement.clientWidth)out.push('a graph ends at '+b.right.toFixed(0)+' px, past the window ('+document.documentElement.clientWidth+' px)');
 }
 return out;
}
function report(live){
 const lat=[...document.querySelectorAll('svg.graph .lat')].map(e=>e.textContent);
 const cnt=[...document.querySelectorAll('svg.graph .cnt')].map(e=>e.textContent);
 document.querySelectorAll('svg.graph .lat').forEach(e=>e.textContent=SAMPLE[0]);
 document.querySelectorAll('svg.graph .cnt').forEach(e=>e.textContent=SAMPLE[1]);
 const pre=document.createElement('pre');pre.id='fit';
 pre.textContent=JSON.stringify({lat,cnt,live,longest:overflows()});
 document.body.appendChild(pre);
}
const started=Date.now();
(function wait(){
 const l=document.querySelector('svg.graph .lat');
 if(l&&l.textContent!=='–'||Date.now()-started>5000){report(overflows());return}
 setTimeout(wait,50);
})();
</script>`

// TestAdminPageInBrowser renders the admin page in headless Chromium at
// 1280×900, with a route that has a split, a registry model, long output
// paths and a failing task, and checks every text fits its box and the
// graph fits the window, with live figures and with the longest ones; it
// also takes a screenshot.
func TestAdminPageInBrowser(t *testing.T) {
	if raceEnabled {
		// Seconds of browser for no concurrent code of ours: the run
		// without -race covers it.
		t.Skip("renders a page in a browser: nothing for the race detector")
	}
	chromium := findChromium(t)
	ctx := context.Background()
	good := upstreamtest.Start(t, upstreamtest.JSON(`{"ranking":[3,1,2]}`))
	bad := upstreamtest.Start(t, upstreamtest.Status(http.StatusServiceUnavailable))
	reg := startRegistry(t)
	if _, err := reg.CreateModel(ctx, registry.CreateModelRequest{Name: "driver-rank"}); err != nil {
		t.Fatal(err)
	}
	for range 7 {
		if _, err := reg.CreateVersion(ctx, registry.CreateVersionRequest{Name: "driver-rank", Source: "file:///models/driver-rank", ServingEndpoint: good.URL("/predict")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.SetAlias(ctx, "driver-rank", "production", "7"); err != nil {
		t.Fatal(err)
	}
	res := registry.NewResolver(reg, registry.ResolverOptions{Interval: time.Hour})
	defer res.Stop()
	route := `
name: allocate
endpoint: /v1/allocate
timeout: 2s
tasks:
  experiment:
    type: split
    inputs:
      sticky: '{{ .request.user }}'
      arms:
        - {name: control, weight: 90, run: [rank_control]}
        - {name: canary-driver-rank-v8, weight: 10, run: [rank_canary]}
  rank_control:
    type: http
    inputs: {model: driver-rank@production, body: '{{ .request }}'}
    output: {path: response.body.ranking.control_arm_result}
  rank_canary:
    type: http
    inputs: {address: '` + good.URL("/v1/models/driver-rank-canary/predict") + `', body: '{{ .request }}'}
    output: {path: response.body.ranking.canary_arm_result, write: ignoreIfExists}
  fraud_score_of_the_order:
    type: http
    inputs: {address: '` + bad.URL("/predict") + `', body: '{{ .request }}', retries: 0, breaker: {disabled: true}}
    output: {path: response.body.fraud_score_of_the_order}
    on_error: {default: {score: null}}
`
	models := RegistryModels{R: res}
	tg := startGateway(t, map[string]string{"allocate.yaml": route}, nil, func(o *Options) { tasks.ModelRegistry.Provide(o.Env, models) })
	for i := range 13 {
		if a := tg.post(t, "/v1/allocate", fmt.Sprintf(`{"user":%d}`, i)); a.status != 200 {
			t.Fatalf("request %d: %d %s", i, a.status, a.body)
		}
	}

	// The page as served, with the measuring script added; its live
	// figures come from the gateway's /routes/stats.
	page := tg.adminGet(t, "/")
	for _, want := range []string{"driver-rank@production", "resolves to version 7", "response.body.ranking.control_arm_result",
		"response.body.ranking.canary_arm_result", "(ignoreIfExists)", "canary-driver-rank-v8", ">control<"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the admin page lacks %q", want)
		}
	}
	if strings.Contains(page.body, "…") {
		t.Error("the admin page cuts a text")
	}
	sample, _ := json.Marshal(graph.SVGStatsSample)
	instrumented := strings.Replace(page.body, "</body>", "<script>const SAMPLE="+string(sample)+"</script>"+measureScript+"</body>", 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, instrumented) //nolint:errcheck // the browser reports what it got.
		case "/routes/stats":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, tg.adminGet(t, "/routes/stats").body) //nolint:errcheck
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	dom := runChromium(t, chromium, srv.URL+"/", "--dump-dom")
	m := regexp.MustCompile(`(?s)<pre id="fit">(.*?)</pre>`).FindSubmatch(dom)
	if m == nil {
		t.Fatalf("the page reported nothing:\n%.2000s", dom)
	}
	var fit struct {
		Lat, Cnt, Live, Longest []string
	}
	if err := json.Unmarshal([]byte(htmlUnescape(string(m[1]))), &fit); err != nil {
		t.Fatalf("report %s: %v", m[1], err)
	}
	t.Logf("live figures: %q %q", fit.Lat, fit.Cnt)
	if !strings.Contains(strings.Join(fit.Cnt, "|"), "13 calls · 13 failed") || !strings.Contains(strings.Join(fit.Lat, "|"), "p99") {
		t.Errorf("the live figures did not load: %q %q", fit.Lat, fit.Cnt)
	}
	for _, o := range fit.Live {
		t.Errorf("with live figures: %s", o)
	}
	for _, o := range fit.Longest {
		t.Errorf("with the longest figures: %s", o)
	}

	shot := filepath.Join(t.TempDir(), "admin.png")
	if dir := os.Getenv("LARIAT_TEST_SCREENSHOT_DIR"); dir != "" {
		shot = filepath.Join(dir, "admin.png")
	}
	runChromium(t, chromium, srv.URL+"/", "--screenshot="+shot)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("no screenshot (%d bytes): %v", len(png), err)
	}
}

// htmlUnescape undoes the escaping of --dump-dom in a <pre> text.
func htmlUnescape(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&quot;", `"`, "&#39;", "'", "&amp;", "&").Replace(s)
}
