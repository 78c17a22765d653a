// Package promexpo writes the process's metrics (VictoriaMetrics/metrics) in
// the Prometheus text format with a # HELP and # TYPE line for every metric
// family, the way every binary serves GET /metrics, and checks such text.
package promexpo

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// ContentType is the media type of the Prometheus text format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// WritePrometheus writes every registered metric and the process and Go
// runtime metrics to w, each family preceded by its # HELP and # TYPE lines.
//
// Routes keep their series in sets of their own (registered while they
// serve), so one family may be spread over several sets; each set writes
// its own # HELP and # TYPE lines. The families are merged here, so that
// each is described once with all its samples together.
func WritePrometheus(w io.Writer) {
	metrics.ExposeMetadata(true)
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	_, _ = w.Write(mergeFamilies(b.Bytes()))
	metrics.WriteProcessMetrics(w)
}

// mergeFamilies regroups text written by several sets: the blocks of a
// family (a # HELP line, a # TYPE line and samples) are joined under one
// # HELP and # TYPE, families in name order.
func mergeFamilies(text []byte) []byte {
	type family struct {
		meta    []byte // the # HELP and # TYPE lines
		samples []byte
	}
	fams := map[string]*family{}
	var order []string
	var cur *family
	for len(text) > 0 {
		line, rest, _ := bytes.Cut(text, []byte{'\n'})
		text = rest
		if len(line) == 0 {
			continue
		}
		if name, ok := bytes.CutPrefix(line, []byte("# HELP ")); ok {
			name, _, _ = bytes.Cut(name, []byte{' '})
			cur = fams[string(name)]
			if cur == nil {
				cur = &family{}
				fams[string(name)] = cur
				order = append(order, string(name))
				cur.meta = append(append(cur.meta, line...), '\n')
			}
			continue
		}
		if bytes.HasPrefix(line, []byte("# TYPE ")) {
			if cur != nil && bytes.Count(cur.meta, []byte{'\n'}) == 1 {
				cur.meta = append(append(cur.meta, line...), '\n')
			}
			continue
		}
		if cur == nil {
			// A sample without metadata (metadata off): keep it as is.
			cur = &family{}
			fams[""] = cur
			order = append(order, "")
		}
		cur.samples = append(append(cur.samples, line...), '\n')
	}
	sort.Strings(order)
	var out []byte
	for _, name := range order {
		f := fams[name]
		out = append(append(out, f.meta...), f.samples...)
	}
	return out
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
