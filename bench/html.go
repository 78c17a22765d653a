package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/lariat-gw/lariat/internal/htmlreport"
)

// WriteHTML writes the report as one self-contained HTML page: a summary
// table with ratios to the baseline, the latency percentile curve (log scale
// on the percentile axis), latency, throughput and errors over time, and each
// run's details. Charts are inline SVG; the page loads nothing from outside
// and works offline. The report's JSON is embedded in a
// <script type="application/json" id="lariat-bench-data"> element. The page
// is well-formed XML as well as HTML.
func (rep *Report) WriteHTML(w io.Writer) error {
	data, err := json.Marshal(rep) // escapes <, > and & for the script element
	if err != nil {
		return fmt.Errorf("cannot encode report data: %w", err)
	}
	bw := bufio.NewWriter(w)
	p := &page{w: bw, rep: rep}
	p.write(string(data))
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write html report: %w", err)
	}
	return nil
}

func color(i int) string { return htmlreport.Color(i) }

func esc(s string) string { return htmlreport.Esc(s) }

type page struct {
	w   *bufio.Writer
	rep *Report
}

func (p *page) printf(format string, args ...any) { fmt.Fprintf(p.w, format, args...) }

func (p *page) write(data string) {
	rep := p.rep
	title := rep.Title
	if title == "" {
		title = "Load test report"
	}
	htmlreport.WriteHead(p.w, title)
	p.printf("<h1>%s</h1>\n", esc(title))
	p.printf("<p class=\"meta\">Generated %s", esc(rep.Generated.Format("2006-01-02 15:04:05 MST")))
	if rep.Baseline != "" {
		p.printf(" · ratios are relative to <b>%s</b> (above 1 means slower latency or higher throughput)", esc(rep.Baseline))
	}
	p.printf("</p>\n")
	if len(rep.Notes) > 0 {
		p.printf("<ul class=\"meta\">\n")
		for _, n := range rep.Notes {
			p.printf("<li>%s</li>\n", esc(n))
		}
		p.printf("</ul>\n")
	}

	p.printf("<p>")
	for i, r := range rep.Runs {
		p.printf("<span class=\"swatch\" style=\"background:%s\"></span>%s &#160; ", color(i), esc(r.Name))
	}
	p.printf("</p>\n")

	p.summary()

	p.printf("<h2>Latency by percentile</h2>\n")
	p.printf("<p class=\"meta\">HDR percentile distribution; the percentile axis is logarithmic in 1/(1-p) so the tail gets room.</p>\n")
	p.percentileChart()

	p.printf("<h2>Latency over time</h2>\n<p class=\"meta\">p99 solid, p50 dashed, per second of completion.</p>\n")
	p.timeChart(func(s Second) (float64, float64, bool) {
		return s.P99Ms, s.P50Ms, s.P99Ms > 0
	}, true, true)

	p.printf("<h2>Throughput over time</h2>\n<p class=\"meta\">Completed requests per second.</p>\n")
	p.timeChart(func(s Second) (float64, float64, bool) {
		return float64(s.Requests), 0, true
	}, false, false)

	var anyErr bool
	for _, r := range rep.Runs {
		anyErr = anyErr || r.Errors.Total > 0
	}
	if anyErr {
		p.printf("<h2>Errors over time</h2>\n<p class=\"meta\">Failed requests per second.</p>\n")
		p.timeChart(func(s Second) (float64, float64, bool) {
			return float64(s.Errors), 0, true
		}, false, false)
	}

	p.details()

	p.printf("<script type=\"application/json\" id=\"lariat-bench-data\">%s</script>\n", data)
	p.printf("</body>\n</html>\n")
}

// summary writes the comparison table.
func (p *page) summary() {
	rep := p.rep
	p.printf("<h2>Summary</h2>\n<table>\n<thead><tr><th></th>")
	for _, r := range rep.Runs {
		p.printf("<th>%s</th>", esc(r.Name))
	}
	for _, ra := range rep.Ratios {
		p.printf("<th>%s / %s</th>", esc(ra.Run), esc(ra.Baseline))
	}
	p.printf("</tr></thead>\n<tbody>\n")

	row := func(label string, cell func(r *Result) string, ratio func(ra *Ratio) float64) {
		p.printf("<tr><td>%s</td>", esc(label))
		for _, r := range rep.Runs {
			p.printf("<td>%s</td>", esc(cell(r)))
		}
		for i := range rep.Ratios {
			s := ""
			if ratio != nil {
				if v := ratio(&rep.Ratios[i]); v > 0 {
					s = strconv.FormatFloat(v, 'f', 2, 64) + "×"
				} else {
					s = "–"
				}
			}
			p.printf("<td class=\"ratio\">%s</td>", s)
		}
		p.printf("</tr>\n")
	}
	row("mode", func(r *Result) string {
		if r.Mode == ModeOpen {
			return "open, " + fmtNum(r.Rate) + " rps"
		}
		return string(r.Mode)
	}, nil)
	row("connections", func(r *Result) string { return strconv.Itoa(r.Connections) }, nil)
	row("requests", func(r *Result) string { return strconv.FormatInt(r.Requests, 10) }, nil)
	row("ok", func(r *Result) string { return strconv.FormatInt(r.OK, 10) }, nil)
	row("elapsed", func(r *Result) string { return strconv.FormatFloat(r.ElapsedS, 'f', 2, 64) + "s" }, nil)
	row("throughput (rps)", func(r *Result) string { return fmtNum(r.ThroughputRPS) },
		func(ra *Ratio) float64 { return ra.Throughput })
	lat := func(label string, get func(l *Latency) float64, ratio func(ra *Ratio) float64) {
		row(label, func(r *Result) string {
			if r.Latency.Count == 0 {
				return "–"
			}
			return fmtMs(get(&r.Latency))
		}, ratio)
	}
	lat("latency mean", func(l *Latency) float64 { return l.MeanMs }, func(ra *Ratio) float64 { return ra.Mean })
	lat("latency p50", func(l *Latency) float64 { return l.P50Ms }, func(ra *Ratio) float64 { return ra.P50 })
	lat("latency p90", func(l *Latency) float64 { return l.P90Ms }, func(ra *Ratio) float64 { return ra.P90 })
	lat("latency p99", func(l *Latency) float64 { return l.P99Ms }, func(ra *Ratio) float64 { return ra.P99 })
	lat("latency p99.9", func(l *Latency) float64 { return l.P999Ms }, func(ra *Ratio) float64 { return ra.P999 })
	lat("latency max", func(l *Latency) float64 { return l.MaxMs }, func(ra *Ratio) float64 { return ra.Max })
	count := func(label string, get func(r *Result) int64) {
		row(label, func(r *Result) string { return strconv.FormatInt(get(r), 10) }, nil)
	}
	count("errors", func(r *Result) int64 { return r.Errors.Total })
	count("errors: status ≥ 400", func(r *Result) int64 { return r.Errors.Status })
	count("errors: timeout", func(r *Result) int64 { return r.Errors.Timeout })
	count("errors: connection", func(r *Result) int64 { return r.Errors.Connection })
	count("errors: other", func(r *Result) int64 { return r.Errors.Other })
	var open, deadline bool
	for _, r := range rep.Runs {
		open = open || r.Generator != nil
		deadline = deadline || r.Deadline != nil
	}
	if deadline {
		dl := func(label string, get func(d *DeadlineCount) string) {
			row(label, func(r *Result) string {
				if r.Deadline == nil {
					return "–"
				}
				return get(r.Deadline)
			}, nil)
		}
		dl("deadline", func(d *DeadlineCount) string { return fmtMs(d.LimitMs) })
		dl("answered within deadline", func(d *DeadlineCount) string {
			return strconv.FormatInt(d.Met, 10) + " (" + strconv.FormatFloat(100*d.Fraction(), 'f', 2, 64) + "%)"
		})
		dl("within deadline, status < 400", func(d *DeadlineCount) string { return strconv.FormatInt(d.MetOK, 10) })
	}
	if open {
		gen := func(label string, get func(g *Generator) string) {
			row(label, func(r *Result) string {
				if r.Generator == nil {
					return "–"
				}
				return get(r.Generator)
			}, nil)
		}
		gen("sent late (> 1ms)", func(g *Generator) string { return strconv.FormatInt(g.Late, 10) })
		gen("send lag p99", func(g *Generator) string { return fmtMs(g.LagP99Ms) })
		gen("unsent", func(g *Generator) string { return strconv.FormatInt(g.Unsent, 10) })
	}
	p.printf("</tbody>\n</table>\n")
}

// details writes each run's configuration, status codes and warnings.
func (p *page) details() {
	p.printf("<h2>Runs</h2>\n")
	for i, r := range p.rep.Runs {
		p.printf("<h3><span class=\"swatch\" style=\"background:%s\"></span>%s</h3>\n<dl>\n", color(i), esc(r.Name))
		dd := func(k, v string) { p.printf("<dt>%s</dt><dd>%s</dd>\n", esc(k), v) }
		dd("target", "<code>"+esc(r.Method+" "+r.URL)+"</code>")
		dd("started", esc(r.Started.Format("2006-01-02 15:04:05 MST")))
		var bounds []string
		if r.DurationS > 0 {
			bounds = append(bounds, strconv.FormatFloat(r.DurationS, 'f', -1, 64)+"s")
		}
		if r.RequestsLimit > 0 {
			bounds = append(bounds, strconv.FormatInt(r.RequestsLimit, 10)+" requests")
		}
		dd("bounds", esc(strings.Join(bounds, ", ")+", timeout "+fmtMs(r.TimeoutMs)))
		if r.ServiceTime != nil {
			s := r.ServiceTime
			dd("service time", esc(fmt.Sprintf("p50 %s, p99 %s, max %s (from the actual send time)",
				fmtMs(s.P50Ms), fmtMs(s.P99Ms), fmtMs(s.MaxMs))))
		}
		var codes []string
		for c, n := range r.StatusCodes {
			codes = append(codes, c+": "+strconv.FormatInt(n, 10))
		}
		if len(codes) > 0 {
			slices.Sort(codes)
			dd("status codes", esc(strings.Join(codes, ", ")))
		}
		for _, s := range r.Errors.Samples {
			dd("error", "<code>"+esc(s)+"</code>")
		}
		for _, ws := range r.Warnings() {
			dd("warning", "<span class=\"warn\">"+esc(ws)+"</span>")
		}
		p.printf("</dl>\n")
	}
}

// percentileX maps a percentile to the log axis: log10(1/(1-p)).
func percentileX(pct float64, capX float64) float64 {
	if pct >= 100 {
		return capX
	}
	return min(math.Log10(100/(100-pct)), capX)
}

func (p *page) percentileChart() {
	c := &htmlreport.Chart{XLabel: "percentile", YLabel: "latency"}
	decades := 2.0
	maxY := 0.0
	for _, r := range p.rep.Runs {
		if r.Latency.Count > 0 {
			decades = max(decades, math.Ceil(math.Log10(float64(r.Latency.Count))))
		}
	}
	decades = min(decades, 7)
	for i, r := range p.rep.Runs {
		if len(r.Curve) == 0 {
			continue
		}
		capX := min(math.Log10(float64(max(r.Latency.Count, 1))), decades)
		seg := make([]htmlreport.Point, 0, len(r.Curve))
		for _, pt := range r.Curve {
			seg = append(seg, htmlreport.Point{X: percentileX(pt.Percentile, capX), Y: pt.LatencyMs})
			maxY = max(maxY, pt.LatencyMs)
		}
		c.Series = append(c.Series, htmlreport.Series{Name: r.Name, Color: color(i), Segments: [][]htmlreport.Point{seg}})
	}
	c.XMin, c.XMax = 0, decades
	for d := 0.0; d <= decades; d++ {
		label := "0%"
		if d > 0 {
			label = strconv.FormatFloat(100-100/math.Pow(10, d), 'f', -1, 64) + "%"
		}
		c.XTicks = append(c.XTicks, htmlreport.Tick{At: d, Label: label})
	}
	c.YTicks, c.YMax = htmlreport.NiceTicks(maxY, 5, fmtMs)
	c.WriteSVG(p.w)
}

// timeChart draws one value per second per run; with second, a dashed
// second value. ok reports whether the second has data.
func (p *page) timeChart(get func(s Second) (v, second float64, ok bool), withSecond, latency bool) {
	c := &htmlreport.Chart{XLabel: "seconds", YLabel: "requests per second"}
	label := fmtNum
	if latency {
		c.YLabel = "latency"
		label = fmtMs
	}
	maxX, maxY := 1.0, 0.0
	for i, r := range p.rep.Runs {
		var main, sec [][]htmlreport.Point
		var cur, curSec []htmlreport.Point
		for _, s := range r.Timeline {
			v, v2, ok := get(s)
			if !ok {
				if len(cur) > 0 {
					main, sec = append(main, cur), append(sec, curSec)
					cur, curSec = nil, nil
				}
				continue
			}
			x := float64(s.T) + 0.5
			cur = append(cur, htmlreport.Point{X: x, Y: v})
			curSec = append(curSec, htmlreport.Point{X: x, Y: v2})
			maxY = max(maxY, v, v2)
			maxX = max(maxX, float64(s.T+1))
		}
		if len(cur) > 0 {
			main, sec = append(main, cur), append(sec, curSec)
		}
		name := r.Name
		if withSecond {
			name += " p99"
		}
		c.Series = append(c.Series, htmlreport.Series{Name: name, Color: color(i), Segments: main})
		if withSecond {
			c.Series = append(c.Series, htmlreport.Series{Name: r.Name + " p50", Color: color(i), Dash: true, Segments: sec})
		}
	}
	c.XTicks, c.XMax = htmlreport.NiceTicks(maxX, 10, func(v float64) string { return fmtNum(v) + "s" })
	c.YTicks, c.YMax = htmlreport.NiceTicks(maxY, 5, label)
	if !latency {
		// Counts: avoid fractional tick labels on small scales.
		for i := range c.YTicks {
			c.YTicks[i].Label = strconv.FormatFloat(c.YTicks[i].At, 'f', -1, 64)
		}
	}
	c.WriteSVG(p.w)
}
