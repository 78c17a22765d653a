package router

import (
	"fmt"
	"html"
	"strings"
)

// GraphSVG renders a route's task graph as a standalone SVG picture (no
// scripts, no external resources). Each task box has an element with
// class "lat" and data-task set to the task name, which a page may fill
// with live figures.
const GraphSVG = "svg"

const (
	svgBoxW   = 190
	svgBoxH   = 58
	svgGapX   = 90
	svgGapY   = 22
	svgMargin = 12
)

func (g *taskGraph) svg() string {
	// Columns: the request, then tasks by dependency depth, then the
	// response.
	level := map[string]int{}
	var depth func(n *graphNode, seen map[string]bool) int
	byName := map[string]*graphNode{}
	for i := range g.nodes {
		byName[g.nodes[i].name] = &g.nodes[i]
	}
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
	cols := 0
	for i := range g.nodes {
		cols = max(cols, depth(&g.nodes[i], map[string]bool{})+1)
	}
	columns := make([][]*graphNode, cols)
	for i := range g.nodes {
		n := &g.nodes[i]
		columns[level[n.name]] = append(columns[level[n.name]], n)
	}
	rows := 1
	for _, c := range columns {
		rows = max(rows, len(c))
	}
	height := svgMargin*2 + rows*svgBoxH + (rows-1)*svgGapY
	width := svgMargin*2 + (cols+2)*svgBoxW + (cols+1)*svgGapX
	type pos struct{ x, y int }
	at := map[string]pos{}
	colX := func(c int) int { return svgMargin + c*(svgBoxW+svgGapX) }
	colY := func(n, i int) int {
		total := n*svgBoxH + (n-1)*svgGapY
		return (height-total)/2 + i*(svgBoxH+svgGapY)
	}
	at["\x00request"] = pos{colX(0), colY(1, 0)}
	at["\x00response"] = pos{colX(cols + 1), colY(1, 0)}
	for c, col := range columns {
		for i, n := range col {
			at[n.name] = pos{colX(c + 1), colY(len(col), i)}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`, width, height, width, height)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#555"/></marker></defs>`)
	edge := func(from, to pos, label string, dashed bool) {
		x1, y1 := from.x+svgBoxW, from.y+svgBoxH/2
		x2, y2 := to.x, to.y+svgBoxH/2
		dash := ""
		if dashed {
			dash = ` stroke-dasharray="5 4"`
		}
		fmt.Fprintf(&b, `<path d="M%d,%d C%d,%d %d,%d %d,%d" fill="none" stroke="#555"%s marker-end="url(#arrow)"/>`, x1, y1, x1+svgGapX/2, y1, x2-svgGapX/2, y2, x2, y2, dash)
		if label != "" {
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="9" fill="#333">%s</text>`, x1+4, y1-5, html.EscapeString(shorten(label, 14)))
		}
	}
	for i := range g.nodes {
		n := &g.nodes[i]
		if len(n.after) == 0 {
			edge(at["\x00request"], at[n.name], "", false)
		}
		for _, a := range n.after {
			if p, ok := at[a]; ok {
				edge(p, at[n.name], "", false)
			}
		}
		if n.output != "" {
			edge(at[n.name], at["\x00response"], n.output, n.fallback)
		}
	}
	box := func(p pos, fill, title, sub, task string, dashed bool) {
		dash := ""
		if dashed {
			dash = ` stroke-dasharray="5 4"`
		}
		fmt.Fprintf(&b, `<g><rect x="%d" y="%d" width="%d" height="%d" rx="8" fill="%s" stroke="#333"%s/>`, p.x, p.y, svgBoxW, svgBoxH, fill, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`, p.x+10, p.y+17, html.EscapeString(shorten(title, 26)))
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" fill="#444">%s</text>`, p.x+10, p.y+32, html.EscapeString(shorten(sub, 32)))
		if task != "" {
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" fill="#06c" class="lat" data-task="%s">–</text>`, p.x+10, p.y+47, html.EscapeString(task))
		}
		b.WriteString(`</g>`)
	}
	box(at["\x00request"], "#eef", "request", g.source, "", false)
	box(at["\x00response"], "#efe", "response", "", "", false)
	for i := range g.nodes {
		n := &g.nodes[i]
		sub := n.kind
		if n.detail != "" {
			sub += " · " + n.detail
		}
		box(at[n.name], "#fff", n.name, sub, n.name, n.fallback)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
