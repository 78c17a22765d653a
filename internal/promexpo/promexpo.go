// Package promexpo writes the process's metrics (VictoriaMetrics/metrics) in
// the Prometheus text format with a # HELP and # TYPE line for every metric
// family, the way every binary serves GET /metrics, and checks such text.
package promexpo

import (
	"fmt"
	"io"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// ContentType is the media type of the Prometheus text format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// WritePrometheus writes every registered metric and the process and Go
// runtime metrics to w, each family preceded by its # HELP and # TYPE lines.
func WritePrometheus(w io.Writer) {
	metrics.ExposeMetadata(true)
	metrics.WritePrometheus(w, true)
}

// Check reports the first problem of text, a page in the Prometheus text
// format, for tests: a sample whose family has no # HELP and # TYPE line
// before it, a family described twice or whose samples are not together, a
// histogram bucket without an le label (VictoriaMetrics vmrange buckets,
// which histogram_quantile cannot read). It returns nil for an empty page.
func Check(text string) error {
	seen := map[string]bool{}
	var family, typ, help string
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "# HELP "):
			name, _, _ := strings.Cut(line[len("# HELP "):], " ")
			if seen[name] {
				return fmt.Errorf("line %d: family %s is described twice", n, name)
			}
			seen[name] = true
			family, typ, help = "", "", name
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line[len("# TYPE "):])
			if len(f) != 2 {
				return fmt.Errorf("line %d: %q: want # TYPE NAME TYPE", n, line)
			}
			if f[0] != help {
				return fmt.Errorf("line %d: # TYPE %s does not follow its # HELP line", n, f[0])
			}
			family, typ, help = f[0], f[1], ""
		case line[0] == '#':
			continue
		default:
			name := line[:strings.IndexAny(line+" ", "{ ")]
			if strings.Contains(line, `vmrange="`) {
				return fmt.Errorf("line %d: %s has vmrange buckets, which histogram_quantile cannot read; use a metrics.PrometheusHistogram", n, name)
			}
			if family == "" || !inFamily(name, family, typ) {
				switch {
				case family != "" && familyOf(name) == family:
					return fmt.Errorf("line %d: sample %s does not fit family %s of type %s", n, name, family, typ)
				case seen[familyOf(name)]:
					return fmt.Errorf("line %d: sample %s is apart from the other samples of its family", n, name)
				}
				return fmt.Errorf("line %d: sample %s has no # HELP and # TYPE lines before it", n, name)
			}
			if typ == "histogram" && strings.HasSuffix(name, "_bucket") && !strings.Contains(line, `le="`) {
				return fmt.Errorf("line %d: histogram bucket %s has no le label", n, name)
			}
		}
	}
	return nil
}

// inFamily reports whether a sample called name belongs to family of type typ.
func inFamily(name, family, typ string) bool {
	if name == family {
		return true
	}
	suffix, ok := strings.CutPrefix(name, family)
	switch {
	case !ok:
		return false
	case typ == "histogram":
		return suffix == "_bucket" || suffix == "_sum" || suffix == "_count"
	case typ == "summary":
		return suffix == "_sum" || suffix == "_count"
	}
	return false
}

// familyOf returns the family a sample name most likely belongs to.
func familyOf(name string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(name, s); ok {
			return f
		}
	}
	return name
}
