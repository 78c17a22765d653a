package promexpo

import (
	"bytes"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

func TestCheck(t *testing.T) {
	f := func(text, wantErr string) {
		t.Helper()
		err := Check(text)
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("Check(%q) = %v, want nil", text, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("Check(%q) = %v, want an error with %q", text, err, wantErr)
		}
	}
	f("", "")
	f("# HELP a_total Requests.\n# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{x=\"2\"} 2\n", "")
	f("# HELP h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", "")
	f("# HELP s\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n", "")
	f("a_total 1\n", "line 1: sample a_total has no # HELP and # TYPE lines")
	f("# TYPE a_total counter\na_total 1\n", "line 1: # TYPE a_total does not follow its # HELP line")
	f("# HELP a_total\n# TYPE a_total counter\na_total 1\nb 2\n", "line 4: sample b has no")
	f("# HELP a\n# TYPE a gauge\na 1\n# HELP b\n# TYPE b gauge\nb 1\na 2\n", "line 7: sample a is apart")
	f("# HELP a\n# TYPE a gauge\na 1\n# HELP a\n# TYPE a gauge\na 2\n", "line 4: family a is described twice")
	f("# HELP a\n# TYPE a gauge\na_bucket 1\n", "line 3: sample a_bucket does not fit family a of type gauge")
	f("# HELP v\n# TYPE v untyped\nv_bucket{vmrange=\"1...2\"} 1\n", "line 3: v_bucket has vmrange buckets")
	f("# HELP v\n# TYPE v histogram\nv_bucket{vmrange=\"1.000e+00...1.136e+00\"} 1\n", "line 3: v_bucket has vmrange buckets")
	f("# HELP v\n# TYPE v histogram\nv_bucket 1\n", "line 3: histogram bucket v_bucket has no le label")
}

func TestWritePrometheus(t *testing.T) {
	s := metrics.NewSet()
	s.NewCounter(`promexpo_test_total{x="1"}`).Inc()
	s.NewPrometheusHistogram(`promexpo_test_seconds`).Update(0.2)
	metrics.RegisterSet(s)
	defer metrics.UnregisterSet(s, true)
	var b bytes.Buffer
	WritePrometheus(&b)
	text := b.String()
	if err := Check(text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# HELP promexpo_test_total\n# TYPE promexpo_test_total counter\npromexpo_test_total{x=\"1\"} 1\n",
		"# TYPE promexpo_test_seconds histogram\npromexpo_test_seconds_bucket{le=\"0.005\"} 0\n",
		"# TYPE go_goroutines gauge\n",
		"# TYPE process_cpu_seconds_total counter\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// TestFamiliesMergedAcrossSets: a family whose series live in several sets
// (one per route) is described once, its samples together.
func TestFamiliesMergedAcrossSets(t *testing.T) {
	a, b := metrics.NewSet(), metrics.NewSet()
	a.GetOrCreateCounter(`lariat_merge_test_total{route="a"}`).Inc()
	b.GetOrCreateCounter(`lariat_merge_test_total{route="b"}`).Add(2)
	a.GetOrCreatePrometheusHistogram(`lariat_merge_test_seconds{route="a"}`).Update(0.1)
	b.GetOrCreatePrometheusHistogram(`lariat_merge_test_seconds{route="b"}`).Update(0.2)
	metrics.RegisterSet(a)
	metrics.RegisterSet(b)
	defer metrics.UnregisterSet(a, true)
	defer metrics.UnregisterSet(b, true)
	var out bytes.Buffer
	WritePrometheus(&out)
	text := out.String()
	if err := Check(text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`lariat_merge_test_total{route="a"} 1`, `lariat_merge_test_total{route="b"} 2`, `lariat_merge_test_seconds_count{route="b"} 1`} {
		if !strings.Contains(text, want) {
			t.Fatalf("missing %s", want)
		}
	}
	if n := strings.Count(text, "# TYPE lariat_merge_test_total "); n != 1 {
		t.Fatalf("family described %d times", n)
	}
}
