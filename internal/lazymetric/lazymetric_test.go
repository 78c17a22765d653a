package lazymetric

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func exposed(set *metrics.Set) string {
	var b bytes.Buffer
	set.WritePrometheus(&b)
	return b.String()
}

// TestCreatedOnFirstUse: nothing is exposed until the first update, and
// updates go to one series.
func TestCreatedOnFirstUse(t *testing.T) {
	set := metrics.NewSet()
	c := NewCounter(set, `x_total{a="b"}`)
	h := NewHistogram(set, `x_seconds{a="b"}`, nil)
	var off *Histogram
	if out := exposed(set); out != "" || c.Get() != 0 {
		t.Fatalf("before use: %q, count %d", out, c.Get())
	}
	c.Inc()
	c.Add(2)
	h.UpdateDuration(time.Now())
	off.Update(1) // switched off: nothing
	out := exposed(set)
	if !strings.Contains(out, `x_total{a="b"} 3`) || !strings.Contains(out, `x_seconds_count{a="b"} 1`) || c.Get() != 3 {
		t.Fatalf("after use:\n%s", out)
	}
}

func TestNoAllocsOnceCreated(t *testing.T) {
	set := metrics.NewSet()
	c := NewCounter(set, `y_total`)
	h := NewHistogram(set, `y_seconds`, []float64{0.1, 1})
	c.Inc()
	h.Update(0.5)
	if n := testing.AllocsPerRun(100, func() { c.Inc(); h.Update(0.5) }); n != 0 {
		t.Fatalf("%.0f allocs per update", n)
	}
}
