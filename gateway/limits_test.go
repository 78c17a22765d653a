package gateway

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

func TestLoadSheddingAtTwiceCapacity(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	up.Set(up.Delay(100*time.Millisecond, upstreamtest.JSON(`{"ok":true}`)))
	route := fmt.Sprintf(`
name: limited
endpoint: /limited
timeout: 2s
limits: {max_concurrency: 4, queue: 0}
tasks:
  m:
    type: http
    inputs: {address: %s}
    output: {path: response.body}
`, up.URL("/"))
	tg := startGateway(t, map[string]string{"l.yaml": route}, nil)
	// Eight concurrent callers, twice the route's capacity, three rounds.
	var ok, shed, other atomic.Int64
	var maxShedLatency atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3; i++ {
				start := time.Now()
				a := tg.post(t, "/limited", `{}`)
				switch {
				case a.status == 200:
					ok.Add(1)
				case a.status == 503 && a.header.Get("Retry-After") == "1" && strings.Contains(a.body, "at capacity"):
					shed.Add(1)
					if d := int64(time.Since(start)); d > maxShedLatency.Load() {
						maxShedLatency.Store(d)
					}
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("admitted %d, shed %d, slowest shed answer %s, upstream peak in flight %d", ok.Load(), shed.Load(), time.Duration(maxShedLatency.Load()), up.MaxInFlight.Load())
	if other.Load() != 0 || ok.Load() == 0 || shed.Load() == 0 {
		t.Fatalf("admitted %d, shed %d, other %d", ok.Load(), shed.Load(), other.Load())
	}
	if up.MaxInFlight.Load() > 4 {
		t.Fatalf("upstream saw %d requests at once; the route allows 4", up.MaxInFlight.Load())
	}
}

func TestQueueAdmitsWithinTimeout(t *testing.T) {
	up := upstreamtest.Start(t, nil)
	up.Set(up.Delay(30*time.Millisecond, upstreamtest.JSON(`{}`)))
	route := fmt.Sprintf("name: q\nendpoint: /q\ntimeout: 2s\nlimits: {max_concurrency: 1, queue: 8, queue_timeout: 1s}\ntasks:\n  m: {type: http, inputs: {address: %s}}\n", up.URL("/"))
	tg := startGateway(t, map[string]string{"q.yaml": route}, nil)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a := tg.post(t, "/q", `{}`); a.status != 200 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 || up.MaxInFlight.Load() != 1 {
		t.Fatalf("failed %d, upstream peak %d", failed.Load(), up.MaxInFlight.Load())
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestRouteAuth(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{"ok":true}`))
	t.Setenv("TEST_JWT_SECRET", "hmac-secret-for-tests")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemFile := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	route := func(name, auth string) string {
		return fmt.Sprintf("name: %s\nendpoint: /%s\nauth: %s\ntasks:\n  m: {type: http, inputs: {address: %s}, output: {path: response.body}}\n", name, name, auth, up.URL("/"))
	}
	tg := startGateway(t, map[string]string{
		"k.yaml":  route("keyed", fmt.Sprintf("{api_keys: ['sha256:%s']}", sha256Hex("key-123"))),
		"h.yaml":  route("hs", "{jwt: {hs256_secret_env: TEST_JWT_SECRET, audience: lariat, issuer: tests}}"),
		"rs.yaml": route("rs", fmt.Sprintf("{jwt: {rs256_public_key_file: %s}}", pemFile)),
	}, nil)
	if _, errs := tg.g.RoutesInfo(); len(errs) != 0 {
		t.Fatal(errs)
	}
	hs := func(claims jwt.MapClaims) string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("hmac-secret-for-tests"))
		return "Bearer " + s
	}
	rs := func(claims jwt.MapClaims) string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
		return "Bearer " + s
	}
	exp := time.Now().Add(time.Hour).Unix()
	f := func(path string, status int, msg string, hdr ...string) {
		t.Helper()
		a := tg.post(t, path, `{}`, hdr...)
		if a.status != status || !strings.Contains(a.body, msg) {
			t.Fatalf("%s %v: %d %s, want %d %q", path, hdr, a.status, a.body, status, msg)
		}
	}
	f("/keyed", 401, "missing credentials")
	f("/keyed", 401, "invalid credentials", "X-API-Key", "wrong")
	f("/keyed", 200, "ok", "X-API-Key", "key-123")
	f("/keyed", 200, "ok", "Authorization", "Bearer key-123")
	f("/hs", 200, "ok", "Authorization", hs(jwt.MapClaims{"exp": exp, "aud": "lariat", "iss": "tests"}))
	f("/hs", 401, "token is expired", "Authorization", hs(jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix(), "aud": "lariat", "iss": "tests"}))
	f("/hs", 401, "exp claim is required", "Authorization", hs(jwt.MapClaims{"aud": "lariat", "iss": "tests"}))
	f("/hs", 401, "token has invalid audience", "Authorization", hs(jwt.MapClaims{"exp": exp, "aud": "other", "iss": "tests"}))
	f("/hs", 401, "signing method RS256 is invalid", "Authorization", rs(jwt.MapClaims{"exp": exp, "aud": "lariat", "iss": "tests"}))
	f("/rs", 200, "ok", "Authorization", rs(jwt.MapClaims{"exp": exp}))
	f("/rs", 401, "invalid token", "Authorization", hs(jwt.MapClaims{"exp": exp}))
	if a := tg.post(t, "/keyed", `{}`); a.header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
}

func TestHeaderPropagationByAllowlist(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.JSON(`{}`))
	route := fmt.Sprintf("name: p\nendpoint: /p\npropagate_headers: [X-Request-Id]\ntasks:\n  m: {type: http, inputs: {address: %s}}\n", up.URL("/"))
	tg := startGateway(t, map[string]string{"p.yaml": route}, nil)
	if a := tg.post(t, "/p", `{}`, "X-Request-Id", "req-7", "X-Secret", "do-not-forward", "Cookie", "c=1"); a.status != 200 {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if got := up.LastHeader("X-Request-Id"); got != "req-7" {
		t.Fatalf("X-Request-Id upstream = %q", got)
	}
	if up.LastHeader("X-Secret") != "" || up.LastHeader("Cookie") != "" {
		t.Fatal("a header off the allowlist reached the upstream")
	}
}

// rawRequest sends bytes on a fresh connection and returns the answer's
// status line and body.
func rawRequest(t *testing.T, tg *testGateway, raw string) (string, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(tg.url, "http://"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	status, _ := r.ReadString('\n')
	var body strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil || line == "\r\n" {
			break
		}
	}
	buf := make([]byte, 4096)
	n, _ := r.Read(buf)
	body.Write(buf[:n])
	return strings.TrimSpace(status), body.String()
}

func TestMalformedRequests(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Echo())
	route := fmt.Sprintf(`
name: m
endpoint: /m
tasks:
  m:
    type: http
    inputs:
      address: %s
      headers: {X-User: '{{ .request.user }}'}
      body: '{{ .request }}'
    output: {path: response.body}
`, up.URL("/"))
	tg := startGateway(t, map[string]string{"m.yaml": route}, nil, func(o *Options) { o.MaxJSONDepth = 16; o.MaxHeaderSize = 4096 })
	f := func(name string, status int, msg string, body string, hdr ...string) {
		t.Helper()
		a := tg.post(t, "/m", body, hdr...)
		if a.status != status || !strings.Contains(a.body, msg) || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %d %s, want %d %q", name, a.status, a.body, status, msg)
		}
	}
	f("not JSON", 400, "not valid JSON", `user=bob`)
	f("wrong content type", 415, `content type \"text/plain\" is not JSON; send the header Content-Type: application/json"`, `{"user":"bob"}`, "Content-Type", "text/plain")
	f("curl -d", 415, `content type \"application/x-www-form-urlencoded\" is not JSON; send the header Content-Type: application/json (curl -d sends application/x-www-form-urlencoded: add -H 'Content-Type: application/json', or use curl --json)"`,
		`{"user":"bob"}`, "Content-Type", "application/x-www-form-urlencoded")
	f("deep nesting", 400, "nests deeper than 16 levels", strings.Repeat("[", 40)+strings.Repeat("]", 40))
	f("invalid UTF-8", 400, "not valid JSON", "{\"user\":\"\xc3\x28\"}")
	f("header injection through a template", 400, "control character", `{"user":"bob\r\nX-Evil: 1"}`)
	if up.LastHeader("X-Evil") != "" {
		t.Fatal("an injected header reached the upstream")
	}
	f("vendor JSON type", 200, `"user":"bob"`, `{"user":"bob"}`, "Content-Type", "application/vnd.api+json; charset=utf-8")
	// A huge header block and a broken request line, straight on the wire.
	status, body := rawRequest(t, tg, "POST /m HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 8000)+"\r\nContent-Length: 2\r\n\r\n{}")
	if !strings.Contains(status, "431") || !strings.Contains(body, "headers are larger than 4096 bytes") {
		t.Fatalf("huge headers: %s %s", status, body)
	}
	status, body = rawRequest(t, tg, "POST /m HTTP/1.1\r\nHost: x\r\nBad Header Line\r\nContent-Length: 2\r\n\r\n{}")
	if !strings.HasPrefix(status, "HTTP/1.1 4") || !strings.Contains(body, `"error"`) {
		t.Fatalf("broken header: %s %s", status, body)
	}
	// The gateway keeps serving.
	f("after all that", 200, `"user":"ok"`, `{"user":"ok"}`)
}
