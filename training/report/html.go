package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/lariat-gw/lariat/internal/htmlreport"
)

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("cannot write json report: %w", err)
	}
	return nil
}

// WriteHTML writes the report as one self-contained HTML page in the look
// of the benchmark report: per route a table comparing the variants, the
// distribution of the output as an inline SVG chart, and the tests of the
// differences. The report's JSON is embedded in a
// <script type="application/json" id="lariat-report-data"> element.
func (rep *Report) WriteHTML(w io.Writer) error {
	data, err := json.Marshal(rep) // escapes <, > and & for the script element
	if err != nil {
		return fmt.Errorf("cannot encode report data: %w", err)
	}
	bw := bufio.NewWriter(w)
	printf := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	esc := htmlreport.Esc
	const title = "Prediction log report"
	htmlreport.WriteHead(bw, title)
	printf("<h1>%s</h1>\n", title)
	printf("<p class=\"meta\">Generated %s from <code>%s</code>", esc(rep.Generated.Format("2006-01-02 15:04:05 MST")), esc(rep.Predictions))
	if rep.Labels != "" {
		printf(" with labels <code>%s</code>", esc(rep.Labels))
	}
	printf(". Intervals are 95%%; differences are tested against each route's largest variant at α = %s.</p>\n", fmtF(rep.Alpha, 2))
	if len(rep.Routes) == 0 {
		printf("<p class=\"warn\">The log holds no records.</p>\n")
	}
	for _, rt := range rep.Routes {
		printf("<h2>Route %s</h2>\n<p class=\"meta\">route versions %s", esc(rt.Route), esc(strings.Join(rt.Versions, ", ")))
		if rt.Output != "" {
			printf(" · output <code>%s</code>", esc(rt.Output))
		}
		if rep.Labels != "" && rt.Score != "" {
			printf(" · score <code>%s</code>", esc(rt.Score))
		}
		printf("</p>\n<p>")
		for i, v := range rt.Variants {
			printf("<span class=\"swatch\" style=\"background:%s\"></span>%s &#160; ", htmlreport.Color(i), esc(v.Name))
		}
		printf("</p>\n")
		writeSummary(bw, rt)
		if rt.Output != "" {
			writeDistribution(bw, rt)
		}
		if len(rt.Comparisons) > 0 {
			printf("<h3>Differences from %s</h3>\n<table>\n<thead><tr><th>metric</th><th>variant</th><th>difference</th><th>test</th><th>p-value</th><th>significant</th></tr></thead>\n<tbody>\n", esc(rt.Variants[0].Name))
			for _, c := range rt.Comparisons {
				sig := "no"
				if c.Significant {
					sig = "<span class=\"warn\">yes</span>"
				}
				printf("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
					esc(c.Metric), esc(c.Variant), signed(c.Delta), esc(c.Test), esc(fmtP(c.PValue)), sig)
			}
			printf("</tbody>\n</table>\n")
		}
	}
	printf("<script type=\"application/json\" id=\"lariat-report-data\">%s</script>\n", data)
	printf("</body>\n</html>\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write html report: %w", err)
	}
	return nil
}

func writeSummary(w io.Writer, rt *Route) {
	printf := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	esc := htmlreport.Esc
	printf("<table>\n<thead><tr><th></th>")
	for _, v := range rt.Variants {
		printf("<th>%s</th>", esc(v.Name))
	}
	printf("</tr></thead>\n<tbody>\n")
	row := func(label string, cell func(v *Variant) string) {
		printf("<tr><td>%s</td>", esc(label))
		for _, v := range rt.Variants {
			printf("<td>%s</td>", esc(cell(v)))
		}
		printf("</tr>\n")
	}
	row("requests", func(v *Variant) string { return strconv.Itoa(v.Requests) })
	row("error rate (5xx)", func(v *Variant) string { return pct(v.ErrorRate) })
	row("default rate", func(v *Variant) string { return pct(v.DefaultRate) })
	row("latency p50", func(v *Variant) string { return htmlreport.FormatMs(v.LatencyP50Ms) })
	row("latency p99", func(v *Variant) string { return htmlreport.FormatMs(v.LatencyP99Ms) })
	if rt.Output != "" {
		row("output mean", func(v *Variant) string {
			if v.Output == nil {
				return "–"
			}
			return fmtF(v.Output.Mean, 4)
		})
		row("output p50", func(v *Variant) string {
			if v.Output == nil {
				return "–"
			}
			return fmtF(v.Output.P50, 4)
		})
	}
	labelled := false
	for _, v := range rt.Variants {
		labelled = labelled || v.Labelled > 0
	}
	if labelled {
		row("labelled", func(v *Variant) string { return strconv.Itoa(v.Labelled) })
		est := func(get func(v *Variant) *Estimate) func(v *Variant) string {
			return func(v *Variant) string {
				e := get(v)
				if e == nil {
					return "–"
				}
				return fmtF(e.Value, 4) + " [" + fmtF(e.Low, 4) + ", " + fmtF(e.High, 4) + "]"
			}
		}
		row("accuracy", est(func(v *Variant) *Estimate { return v.Accuracy }))
		row("AUC", est(func(v *Variant) *Estimate { return v.AUC }))
		row("log-loss", est(func(v *Variant) *Estimate { return v.LogLoss }))
	}
	printf("</tbody>\n</table>\n")
}

// writeDistribution draws the share of each variant's requests per bin of
// the output.
func writeDistribution(w io.Writer, rt *Route) {
	fmt.Fprintf(w, "<h3>Distribution of %s</h3>\n<p class=\"meta\">Share of each variant's answers per bin.</p>\n", htmlreport.Esc(rt.Output))
	c := &htmlreport.Chart{XLabel: rt.Output, YLabel: "share of answers"}
	maxY := 0.0
	var lo, hi float64
	first := true
	for i, v := range rt.Variants {
		if v.Output == nil {
			continue
		}
		seg := make([]htmlreport.Point, 0, len(v.Output.Bins))
		for _, b := range v.Output.Bins {
			y := float64(b.Count) / float64(v.Output.Count)
			seg = append(seg, htmlreport.Point{X: (b.Low + b.High) / 2, Y: y})
			maxY = max(maxY, y)
		}
		if first {
			lo, hi, first = v.Output.Bins[0].Low, v.Output.Bins[len(v.Output.Bins)-1].High, false
		}
		c.Series = append(c.Series, htmlreport.Series{Name: v.Name, Color: htmlreport.Color(i), Segments: [][]htmlreport.Point{seg}})
	}
	if first {
		return
	}
	c.XMin, c.XMax = lo, hi
	for k := 0; k <= 5; k++ {
		x := lo + float64(k)*(hi-lo)/5
		c.XTicks = append(c.XTicks, htmlreport.Tick{At: x, Label: fmtF(x, 3)})
	}
	c.YTicks, c.YMax = htmlreport.NiceTicks(maxY, 5, func(v float64) string { return fmtF(100*v, 0) + "%" })
	c.WriteSVG(w)
}

func fmtF(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }

func pct(e Estimate) string {
	return fmtF(100*e.Value, 2) + "% [" + fmtF(100*e.Low, 2) + ", " + fmtF(100*e.High, 2) + "]"
}

func signed(v float64) string {
	s := strconv.FormatFloat(v, 'f', 4, 64)
	if v >= 0 {
		s = "+" + s
	}
	return s
}

func fmtP(p float64) string {
	if p < 0.0001 {
		return "< 0.0001"
	}
	return fmtF(p, 4)
}
