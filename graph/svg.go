package graph

import (
	"fmt"
	"html"
	"strings"
)

// SVGStatsSample is the longest text of each live-figure line ("lat" then
// "cnt") a task box of the SVG picture has room for.
var SVGStatsSample = [2]string{"p50 999.99 ms · p99 9999.99 ms", "9999999 calls · 999999 failed"}

// Sizes of the SVG picture, in pixels.
const (
	svgFont      = 11 // text size of the box lines but the title
	svgTitleFont = 13 // bold
	svgLabelFont = 10 // edge labels
	svgLine      = 15 // line height
	svgPad       = 10 // inside a box
	svgMinBoxW   = 100
	svgMaxBoxW   = 300 // longer lines wrap
	svgMinGap    = 56
	svgGapY      = 22
	svgMargin    = 12
)

// svgText is one line of text in a box.
type svgText struct {
	text  string
	class string // "title", "kind", "model", "out", "note", "lat", "cnt"
}

// svgBox is a box of the picture: the request, the response or a task.
type svgBox struct {
	lines []svgText
	task  string // task name, "" for the request and response
	fill  string
	dash  bool
	x, y  int
	w, h  int
}

func (g *taskGraph) svg(resolve func(ref string) (version string, ok bool)) string {
	// Columns: the request, then tasks by dependency depth, then the
	// response.
	level := map[string]int{}
	byName := map[string]*graphNode{}
	for i := range g.nodes {
		byName[g.nodes[i].name] = &g.nodes[i]
	}
	var depth func(n *graphNode, seen map[string]bool) int
	depth = func(n *graphNode, seen map[string]bool) int {
		if l, ok := level[n.name]; ok {
			return l
		}
		if seen[n.name] {
			return 0
		}
		seen[n.name] = true
		l := 0
		for _, a := range n.after {
			if d, ok := byName[a]; ok {
				l = max(l, depth(d, seen)+1)
			}
		}
		level[n.name] = l
		return l
	}
	taskCols := 0
	for i := range g.nodes {
		taskCols = max(taskCols, depth(&g.nodes[i], map[string]bool{})+1)
	}
	cols := make([][]*svgBox, taskCols+2)
	request := &svgBox{fill: "#eef", lines: []svgText{{"request", "title"}}}
	request.lines = append(request.lines, wrapLines(g.source, "kind")...)
	response := &svgBox{fill: "#efe", lines: []svgText{{"response", "title"}}}
	cols[0] = []*svgBox{request}
	cols[taskCols+1] = []*svgBox{response}
	boxes := map[string]*svgBox{}
	col := map[*svgBox]int{request: 0, response: taskCols + 1}
	for i := range g.nodes {
		n := &g.nodes[i]
		b := &svgBox{task: n.name, fill: "#fff", dash: n.fallback, lines: wrapLines(n.name, "title")}
		kind := n.kind
		if n.detail != "" {
			kind += " · " + n.detail
		}
		b.lines = append(b.lines, wrapLines(kind, "kind")...)
		if n.model != "" && resolve != nil {
			now := "not resolved yet"
			if v, ok := resolve(n.model); ok {
				now = "resolves to version " + v
			}
			b.lines = append(b.lines, wrapLines(now, "model")...)
		}
		if n.output != "" {
			b.lines = append(b.lines, wrapLines("→ "+n.output, "out")...)
		}
		if n.fallback {
			b.lines = append(b.lines, svgText{"on error: default", "note"})
		}
		b.lines = append(b.lines, svgText{"–", "lat"}, svgText{"", "cnt"})
		c := level[n.name] + 1
		cols[c] = append(cols[c], b)
		boxes[n.name] = b
		col[b] = c
	}

	// Box sizes, then column widths and the gaps between columns: a gap
	// holds the branch labels of the edges entering its right column.
	colW := make([]int, len(cols))
	for c, bs := range cols {
		for _, b := range bs {
			b.w = svgMinBoxW
			for _, l := range b.lines {
				b.w = max(b.w, svgPad*2+ceil(svgTextWidth(l)))
			}
			if b.task != "" {
				for _, s := range SVGStatsSample {
					b.w = max(b.w, svgPad*2+ceil(textWidth(s, svgFont, false)))
				}
			}
			b.h = svgPad*2 + len(b.lines)*svgLine - 4
			colW[c] = max(colW[c], b.w)
		}
	}
	armLabel := make([]int, len(cols)) // widest branch label entering column c
	for i := range g.nodes {
		n := &g.nodes[i]
		c := col[boxes[n.name]]
		if n.branch != "" {
			armLabel[c] = max(armLabel[c], ceil(textWidth(n.branch, svgLabelFont, false)))
		}
	}
	colX := make([]int, len(cols))
	x := svgMargin
	for c := range cols {
		colX[c] = x
		x += colW[c]
		if c+1 < len(cols) {
			x += max(svgMinGap, armLabel[c+1]+36)
		}
	}
	width := x + svgMargin
	height := 0
	for _, bs := range cols {
		h := 0
		for _, b := range bs {
			h += b.h
		}
		height = max(height, h+(len(bs)-1)*svgGapY)
	}
	height += svgMargin * 2
	for c, bs := range cols {
		total := -svgGapY
		for _, b := range bs {
			total += b.h + svgGapY
		}
		y := (height - total) / 2
		for _, b := range bs {
			b.x, b.y = colX[c], y
			y += b.h + svgGapY
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="%d">`, width, height, width, height, svgFont)
	sb.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#555"/></marker></defs>`)
	var labels strings.Builder // drawn over every edge
	edge := func(from, to *svgBox, armLabel string, dashed bool) {
		x1, y1 := from.x+from.w, from.y+from.h/2
		x2, y2 := to.x, to.y+to.h/2
		dash := ""
		if dashed {
			dash = ` stroke-dasharray="5 4"`
		}
		bend := max(svgMinGap/2, (x2-x1)/3)
		fmt.Fprintf(&sb, `<path d="M%d,%d C%d,%d %d,%d %d,%d" fill="none" stroke="#555"%s marker-end="url(#arrow)"/>`, x1, y1, x1+bend, y1, x2-bend, y2, x2, y2, dash)
		if armLabel != "" {
			svgLabel(&labels, x2-12, y2-4, armLabel, "end")
		}
	}
	for i := range g.nodes {
		n := &g.nodes[i]
		b := boxes[n.name]
		if len(n.after) == 0 {
			edge(request, b, "", false)
		}
		for _, a := range n.after {
			if from, ok := boxes[a]; ok {
				arm := ""
				if a == n.gate {
					arm = n.branch
				}
				edge(from, b, arm, false)
			}
		}
		if n.output != "" {
			edge(b, response, "", n.fallback)
		}
	}
	for _, bs := range cols {
		for _, b := range bs {
			b.draw(&sb)
		}
	}
	sb.WriteString(labels.String())
	sb.WriteString(`</svg>`)
	return sb.String()
}

// draw writes the box and its lines.
func (b *svgBox) draw(sb *strings.Builder) {
	dash := ""
	if b.dash {
		dash = ` stroke-dasharray="5 4"`
	}
	fmt.Fprintf(sb, `<g><rect x="%d" y="%d" width="%d" height="%d" rx="8" fill="%s" stroke="#333"%s/>`, b.x, b.y, b.w, b.h, b.fill, dash)
	for i, l := range b.lines {
		x, y := b.x+svgPad, b.y+svgPad+i*svgLine+11
		switch l.class {
		case "title":
			fmt.Fprintf(sb, `<text x="%d" y="%d" font-size="%d" font-weight="bold">%s</text>`, x, y, svgTitleFont, html.EscapeString(l.text))
		case "lat", "cnt":
			fmt.Fprintf(sb, `<text x="%d" y="%d" fill="#06c" class="%s" data-task="%s">%s</text>`, x, y, l.class, html.EscapeString(b.task), html.EscapeString(l.text))
		case "model", "out":
			fmt.Fprintf(sb, `<text x="%d" y="%d" fill="#063" class="%s">%s</text>`, x, y, l.class, html.EscapeString(l.text))
		case "note":
			fmt.Fprintf(sb, `<text x="%d" y="%d" fill="#a50" font-style="italic">%s</text>`, x, y, html.EscapeString(l.text))
		default:
			fmt.Fprintf(sb, `<text x="%d" y="%d" fill="#444">%s</text>`, x, y, html.EscapeString(l.text))
		}
	}
	sb.WriteString(`</g>`)
}

// svgLabel writes an edge label on the picture's background at x (its start
// or end, per anchor) and baseline y.
func svgLabel(sb *strings.Builder, x, y int, text, anchor string) {
	w := ceil(textWidth(text, svgLabelFont, false))
	rx := x - 2
	if anchor == "end" {
		rx = x - w - 2
	}
	fmt.Fprintf(sb, `<g class="label"><rect x="%d" y="%d" width="%d" height="%d" fill="#fafafa" opacity="0.9"/><text x="%d" y="%d" font-size="%d" fill="#333" text-anchor="%s">%s</text></g>`,
		rx, y-svgLabelFont, w+4, svgLabelFont+4, x, y, svgLabelFont, anchor, html.EscapeString(text))
}

// wrapLines splits s into lines of class class that fit svgMaxBoxW, at
// spaces and after / . , : @ - _ when it can, else anywhere; nothing is
// dropped.
func wrapLines(s, class string) []svgText {
	size, bold := float64(svgFont), false
	if class == "title" {
		size, bold = svgTitleFont, true
	}
	limit := float64(svgMaxBoxW - 2*svgPad)
	var out []svgText
	for s != "" {
		if textWidth(s, size, bold) <= limit {
			out = append(out, svgText{s, class})
			break
		}
		// The longest prefix that fits, preferably ending at a break.
		fit, brk := 0, 0
		for i, r := range s {
			if textWidth(s[:i+len(string(r))], size, bold) > limit {
				break
			}
			fit = i + len(string(r))
			if strings.ContainsRune(" /.,:@-_·", r) {
				brk = fit
			}
		}
		if brk > 0 {
			fit = brk
		}
		if fit == 0 { // a single rune wider than the box
			fit = len(string([]rune(s)[0]))
		}
		out = append(out, svgText{strings.TrimRight(s[:fit], " "), class})
		s = strings.TrimLeft(s[fit:], " ")
	}
	return out
}

func svgTextWidth(l svgText) float64 {
	if l.class == "title" {
		return textWidth(l.text, svgTitleFont, true)
	}
	return textWidth(l.text, svgFont, false)
}

func ceil(f float64) int {
	i := int(f)
	if float64(i) < f {
		i++
	}
	return i
}

// textWidth estimates the width in pixels of s in a sans-serif font of size
// px, on the wide side: advance widths of DejaVu Sans (the widest common
// sans-serif, and the default of many Linux systems), bold 12% wider.
func textWidth(s string, px float64, bold bool) float64 {
	w := 0.0
	for _, r := range s {
		w += runeWidth(r)
	}
	if bold {
		w *= 1.12
	}
	return w * px
}

// runeWidth is the advance width of r in em.
func runeWidth(r rune) float64 {
	switch {
	case r >= 'a' && r <= 'z':
		return lowerWidths[r-'a']
	case r >= 'A' && r <= 'Z':
		return upperWidths[r-'A']
	case r >= '0' && r <= '9':
		return 0.64
	}
	switch r {
	case ' ', '.', ',', '·', ':', ';', '|', '\'', '!':
		return 0.34
	case '-', '(', ')', '[', ']', '/', '\\':
		return 0.40
	case '_', '"', '*', '–', '?':
		return 0.52
	case '{', '}', '$':
		return 0.64
	case '=', '+', '<', '>', '~', '#', '→':
		return 0.84
	case '&', '%':
		return 0.95
	case '@', '—':
		return 1.0
	}
	if r >= 0x2E80 { // CJK and other wide scripts
		return 1.0
	}
	return 0.70
}

var lowerWidths = [26]float64{
	0.62, 0.64, 0.56, 0.64, 0.62, 0.36, 0.64, 0.64, 0.28, 0.28, 0.58, 0.28, 0.98,
	0.64, 0.62, 0.64, 0.64, 0.42, 0.53, 0.40, 0.64, 0.60, 0.82, 0.60, 0.60, 0.53,
}

var upperWidths = [26]float64{
	0.69, 0.69, 0.70, 0.77, 0.64, 0.58, 0.78, 0.76, 0.30, 0.30, 0.66, 0.56, 0.87,
	0.75, 0.79, 0.61, 0.79, 0.70, 0.64, 0.62, 0.74, 0.69, 0.99, 0.69, 0.62, 0.69,
}
