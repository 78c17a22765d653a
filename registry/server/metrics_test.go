package server_test

import (
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/internal/promexpo"
)

func TestServerMetricsPage(t *testing.T) {
	ts := startServer(t, boltFactory(t)())
	ts.call(t, "GET", "registered-models/get?name=nope", "")
	r := ts.call(t, "GET", "/metrics", "")
	page := string(r.Body)
	if r.Status != 200 || !strings.Contains(page, "\n# TYPE lariat_registry_http_request_errors_total counter\nlariat_registry_http_request_errors_total{reason=\"client\"} ") {
		t.Fatalf("GET /metrics: %d %.500s", r.Status, page)
	}
	if err := promexpo.Check(page); err != nil {
		t.Fatal(err)
	}
}
