// Package htmlreport holds what the project's self-contained HTML reports
// share: the page style, the series palette and line charts drawn as
// inline SVG, so every report looks the same and works offline.
package htmlreport

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
)

// Style is the CSS of a report page.
const Style = `
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin-bottom: 4px; }
.meta { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f4f4f4; }
td.ratio { color: #555; background: #fafafa; }
.warn { color: #a94400; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
svg { display: block; margin: 8px 0; }
svg text { font-size: 11px; fill: #444; }
dl { font-size: 13px; display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }
dt { color: #666; }
dd { margin: 0; }
code { word-break: break-all; }
`

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"}

// Color returns the color of series i.
func Color(i int) string { return palette[i%len(palette)] }

// Esc escapes text for HTML.
func Esc(s string) string { return html.EscapeString(s) }

// WriteHead writes the document start up to the opening body, with the
// style and title.
func WriteHead(w io.Writer, title string) {
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n")
	fmt.Fprintf(w, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n")
	fmt.Fprintf(w, "<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n", Esc(title), Style)
}

// Chart geometry, in SVG user units.
const (
	chartW      = 900
	chartH      = 300
	chartLeft   = 70
	chartRight  = 20
	chartTop    = 12
	chartBottom = 40
)

// Point is one data point.
type Point struct{ X, Y float64 }

// Series is one line of a chart.
type Series struct {
	Name  string
	Color string
	Dash  bool
	// Segments are drawn as separate lines (gaps where there is no data);
	// a segment of one point is drawn as a dot.
	Segments [][]Point
}

// Tick is a labelled position on an axis.
type Tick struct {
	At    float64
	Label string
}

// Chart is a line chart with axes from XMin to XMax and 0 to YMax.
type Chart struct {
	XMin, XMax, YMax float64
	XTicks, YTicks   []Tick
	XLabel, YLabel   string
	Series           []Series
}

func (c *Chart) px(x float64) float64 {
	return chartLeft + (x-c.XMin)/(c.XMax-c.XMin)*(chartW-chartLeft-chartRight)
}

func (c *Chart) py(y float64) float64 {
	return chartH - chartBottom - y/c.YMax*(chartH-chartTop-chartBottom)
}

// WriteSVG draws the chart as an inline SVG element.
func (c *Chart) WriteSVG(w io.Writer) {
	printf := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	printf("<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n", chartW, chartH, chartW, chartH)
	x0, x1 := c.px(c.XMin), c.px(c.XMax)
	y0, y1 := c.py(0), c.py(c.YMax)
	for _, t := range c.YTicks {
		y := c.py(t.At)
		printf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", x0, y, x1, y)
		printf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", x0-6, y+4, Esc(t.Label))
	}
	for _, t := range c.XTicks {
		x := c.px(t.At)
		printf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", x, y0, x, y1)
		printf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, y0+16, Esc(t.Label))
	}
	printf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\"/>", x0, y0, x1, y0)
	printf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\"/>\n", x0, y0, x0, y1)
	printf("<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", (x0+x1)/2, chartH-4, Esc(c.XLabel))
	printf("<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\">%s</text>\n",
		(y0+y1)/2, (y0+y1)/2, Esc(c.YLabel))
	for _, s := range c.Series {
		dash := ""
		if s.Dash {
			dash = " stroke-dasharray=\"5 4\""
		}
		printf("<g><title>%s</title>\n", Esc(s.Name))
		for _, seg := range s.Segments {
			if len(seg) == 1 {
				printf("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", c.px(seg[0].X), c.py(seg[0].Y), s.Color)
				continue
			}
			printf("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s points=\"", s.Color, dash)
			for i, pt := range seg {
				if i > 0 {
					printf(" ")
				}
				printf("%.1f,%.1f", c.px(pt.X), c.py(min(pt.Y, c.YMax)))
			}
			printf("\"/>\n")
		}
		printf("</g>\n")
	}
	printf("</svg>\n")
}

// NiceTicks returns about n round ticks from 0 to at least maxV, and the
// top tick.
func NiceTicks(maxV float64, n int, label func(float64) string) ([]Tick, float64) {
	if !(maxV > 0) || math.IsInf(maxV, 0) {
		maxV = 1
	}
	raw := maxV / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	top := math.Ceil(maxV/step) * step
	var ts []Tick
	for v := 0.0; v <= top+step/2; v += step {
		ts = append(ts, Tick{At: v, Label: label(v)})
	}
	return ts, top
}

// FormatMs formats milliseconds with a unit that suits their size.
func FormatMs(ms float64) string {
	switch {
	case ms >= 1000:
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
	case ms >= 100:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	case ms >= 1:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(ms*1000, 'f', 0, 64) + "µs"
}

// FormatNum formats a count or rate: whole above 100, else one decimal.
func FormatNum(f float64) string {
	if f >= 100 || f == math.Trunc(f) {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}
