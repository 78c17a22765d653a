package gateway

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// recorder is a fake upstream that keeps the URI and chosen headers of
// the last request it got.
type recorder struct {
	*upstreamtest.Server
	mu      sync.Mutex
	uri     string
	headers map[string]*string
}

func startRecorder(t *testing.T, body string, headers ...string) *recorder {
	r := &recorder{Server: upstreamtest.Start(t, nil)}
	r.Set(func(n int64, rc *fasthttp.RequestCtx) {
		r.mu.Lock()
		r.uri = string(rc.RequestURI())
		r.headers = map[string]*string{}
		for _, h := range headers {
			if v := rc.Request.Header.Peek(h); v != nil {
				s := string(v)
				r.headers[h] = &s
			}
		}
		r.mu.Unlock()
		upstreamtest.JSON(body)(n, rc)
	})
	return r
}

func (r *recorder) last() (string, map[string]*string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uri, r.headers
}

// A template value in an address path stays one segment: values that would
// add segments, a query or a fragment, or form "." or "..", are refused
// with 400 (502 when they come from another task's answer); the query
// takes any value, percent-encoded.
func TestAddressPathValueStaysOneSegment(t *testing.T) {
	up := startRecorder(t, `{}`)
	dots := startRecorder(t, `{}`)
	route := fmt.Sprintf(`
name: path
endpoint: /path
timeout: 2s
tasks:
  m:
    type: http
    inputs: {address: '%s/models/{{ .request.model }}/predict?q={{ .request.q }}'}
    output: {path: response.body}
  dotted:
    type: http
    inputs: {address: '%s/d/.{{ .request.dot }}'}
`, up.URL(""), dots.URL(""))
	tg := startGateway(t, map[string]string{"p.yaml": route}, nil)
	f := func(model, dot string, status int, wantURI, wantErr string) {
		t.Helper()
		body := fmt.Sprintf(`{"model":%q,"q":"../x?y#z","dot":%q}`, model, dot)
		a := tg.post(t, "/path", body)
		if a.status != status || !strings.Contains(a.body, wantErr) {
			t.Fatalf("model %q dot %q: answer %d %s, want %d with %q", model, dot, a.status, a.body, status, wantErr)
		}
		if status != 200 {
			return
		}
		if uri, _ := up.last(); uri != wantURI {
			t.Fatalf("model %q: upstream URI %q, want %q", model, uri, wantURI)
		}
		if uri, _ := dots.last(); uri != "/d/."+dot {
			t.Fatalf("dot %q: upstream URI %q", dot, uri)
		}
	}
	f("fraud", "x", 200, "/models/fraud/predict?q=..%2Fx%3Fy%23z", "")
	f("a b", "x", 200, "/models/a%20b/predict?q=..%2Fx%3Fy%23z", "")
	f("v1.2", "x", 200, "/models/v1.2/predict?q=..%2Fx%3Fy%23z", "")
	f("...", "x", 200, "/models/.../predict?q=..%2Fx%3Fy%23z", "")
	for _, bad := range []string{"..", ".", "a/b", "../admin", "a?b", "a#b", "%2e%2e", "%2E", "a%2Fb", "a%3fb", "a%23b"} {
		f(bad, "x", 400, "", `{{ .request.model }}`)
	}
	// A value and the literal around it form "..".
	f("fraud", ".", 400, "", `makes the path segment \"..\"`)
	f("fraud", "..", 200, "/models/fraud/predict?q=..%2Fx%3Fy%23z", "")
}

func TestAddressPathValueFromTask(t *testing.T) {
	up := startRecorder(t, `{"seg":".."}`)
	route := fmt.Sprintf(`
name: path
endpoint: /path
timeout: 2s
tasks:
  first:
    type: http
    inputs: {address: '%s/first'}
  second:
    type: http
    inputs: {address: '%s/x/{{ .tasks.first.body.seg }}/y'}
`, up.URL(""), up.URL(""))
	tg := startGateway(t, map[string]string{"p.yaml": route}, nil)
	if a := tg.post(t, "/path", `{}`); a.status != 502 || !strings.Contains(a.body, `makes the path segment`) {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if uri, _ := up.last(); uri != "/first" {
		t.Fatalf("upstream URI %q", uri)
	}
}

// Header values from request data may hold no control byte but tab; a
// header whose value is missing (or null) is left out.
func TestHeaderTemplateValues(t *testing.T) {
	up := startRecorder(t, `{}`, "X-Val", "X-Opt", "X-Hdr", "X-Fixed")
	route := fmt.Sprintf(`
name: hdr
endpoint: /hdr
timeout: 2s
tasks:
  m:
    type: http
    inputs:
      address: %s
      headers:
        X-Val: 'v={{ .request.v }}'
        X-Opt: '{{ .request.opt }}'
        X-Hdr: '{{ .headers.X-In }}'
        X-Fixed: fixed
    output: {path: response.body}
`, up.URL("/"))
	tg := startGateway(t, map[string]string{"h.yaml": route}, nil)
	for _, c := range []string{`\u000b`, `\u001b[31m`, `\u007f`, `\r`, `\n`, `\u0000`, `\u0001`} {
		if a := tg.post(t, "/hdr", `{"v":"a`+c+`b"}`); a.status != 400 || !strings.Contains(a.body, "X-Val") || !strings.Contains(a.body, "control character") {
			t.Fatalf("value %q: answer %d %s", c, a.status, a.body)
		}
	}
	check := func(body string, hdr []string, want map[string]string) {
		t.Helper()
		if a := tg.post(t, "/hdr", body, hdr...); a.status != 200 {
			t.Fatalf("%s: answer %d %s", body, a.status, a.body)
		}
		_, got := up.last()
		for _, h := range []string{"X-Val", "X-Opt", "X-Hdr", "X-Fixed"} {
			w, ok := want[h]
			switch {
			case !ok && got[h] != nil:
				t.Fatalf("%s %q: header %s sent as %q, want it left out", body, hdr, h, *got[h])
			case ok && (got[h] == nil || *got[h] != w):
				t.Fatalf("%s %q: header %s = %v, want %q", body, hdr, h, got[h], w)
			}
		}
	}
	check(`{"v":"a\tb","opt":"o"}`, []string{"X-In", "in"}, map[string]string{"X-Val": "v=a\tb", "X-Opt": "o", "X-Hdr": "in", "X-Fixed": "fixed"})
	check(`{}`, nil, map[string]string{"X-Fixed": "fixed"})
	check(`{"v":null,"opt":""}`, []string{"X-In", ""}, map[string]string{"X-Opt": "", "X-Hdr": "", "X-Fixed": "fixed"})
	check(`{"v":1.5,"opt":{"a":1}}`, nil, map[string]string{"X-Val": "v=1.5", "X-Opt": `{"a":1}`, "X-Fixed": "fixed"})
}
