package gateway

import (
	"strings"
	"testing"
)

// TestPprofEndpoints: the admin listener serves the runtime's profiles at
// net/http/pprof's paths, and says what is wrong with a bad request.
func TestPprofEndpoints(t *testing.T) {
	tg := startGateway(t, nil, nil)
	if a := tg.adminGet(t, "/debug/pprof/"); a.status != 200 || !strings.Contains(a.body, "goroutine (") || !strings.Contains(a.body, "heap (") {
		t.Fatalf("index: %d %s", a.status, a.body)
	}
	if a := tg.adminGet(t, "/debug/pprof/goroutine?debug=1"); a.status != 200 || !strings.Contains(a.body, "goroutine profile: total") {
		t.Fatalf("goroutine text: %d %.200s", a.status, a.body)
	}
	// Binary profiles are gzipped protobuf, as go tool pprof reads them.
	for _, path := range []string{"/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		a := tg.adminGet(t, path)
		if a.status != 200 || len(a.body) < 2 || a.body[0] != 0x1f || a.body[1] != 0x8b {
			t.Fatalf("%s: %d, %d bytes", path, a.status, len(a.body))
		}
	}
	if a := tg.adminGet(t, "/debug/pprof/nosuch"); a.status != 404 || !strings.Contains(a.body, `unknown profile \"nosuch\"`) {
		t.Fatalf("unknown profile: %d %s", a.status, a.body)
	}
	if a := tg.adminGet(t, "/debug/pprof/profile?seconds=x"); a.status != 400 || !strings.Contains(a.body, "seconds must be") {
		t.Fatalf("bad seconds: %d %s", a.status, a.body)
	}
}
