// Package graph draws a route's task graph for people, from its compiled
// plan: Mermaid flowcharts and Graphviz digraphs (lariat graph) and
// self-contained SVG pictures (the gateway's admin page). What a task box
// says of the task comes from the task itself (tasks.Describer), so a new
// kind shows in the graph without changes here.
package graph

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/router"
	"github.com/lariat-gw/lariat/tasks"
)

// Formats accepted by Render.
const (
	// Mermaid is a Mermaid flowchart (flowchart LR), which Markdown viewers
	// such as GitHub's render in place.
	Mermaid = "mermaid"
	// DOT is a Graphviz digraph, for `dot -Tsvg`.
	DOT = "dot"
	// SVG is a standalone SVG picture (no scripts, no external
	// resources). Each task box has two elements with data-task set to the
	// task name, of class "lat" and "cnt", which a page may fill with live
	// figures (SVGStatsSample shows the longest text they have room for).
	// A task box also says where its output goes; the edges from a switch
	// or split are labelled with their branch. Nothing is cut: long names,
	// hosts, model references and output paths widen their box or wrap,
	// and a model reference shows the version it resolves to now (through
	// the plan's tasks.ModelRegistry).
	SVG = "svg"
)

// Render draws the route's task graph in format Mermaid (the default when
// format is empty), DOT or SVG. There is one node per task, labelled with
// its name and kind and what the task describes of itself (the upstream
// host, registry model or feature views it reads), an edge from each
// dependency to the tasks that wait for it, a request node feeding the
// tasks that start at once, and a response node that every task with an
// output feeds, the edge labelled with the output path. The edges from a
// switch or split to the tasks of its branches are labelled with the
// branch (case or arm). Tasks that fall back to a default value on error
// are drawn dashed.
func Render(p *router.Plan, format string) (string, error) {
	switch format {
	case "", Mermaid:
		return build(p).mermaid(), nil
	case DOT:
		return build(p).dot(), nil
	case SVG:
		var resolve func(string) (string, bool)
		if models, ok := tasks.ModelRegistry.Lookup(p.Env()); ok {
			resolve = func(ref string) (string, bool) {
				m, ok := models.Lookup(ref)
				return m.Version, ok
			}
		}
		return build(p).svg(resolve), nil
	}
	return "", fmt.Errorf("unknown graph format %q: use %s, %s or %s", format, Mermaid, DOT, SVG)
}

// taskGraph is what a rendering shows, independent of the format.
type taskGraph struct {
	name   string
	source string // label of the request node
	nodes  []graphNode
}

type graphNode struct {
	name     string
	kind     string
	detail   string   // upstream host, model or feature views
	after    []string // names of the tasks it waits for
	output   string   // label of the edge to the response, "" for none
	fallback bool     // on_error gives a default value
	gate     string   // the switch or split whose branch runs the task, "" for none
	branch   string   // the name of that branch (case or arm)
	model    string   // the registry model reference the task calls, "" for none
}

func build(p *router.Plan) *taskGraph {
	g := &taskGraph{name: p.Name(), source: strings.Join(p.Methods(), ", ") + " " + p.Endpoint()}
	for _, tn := range p.Nodes() {
		n := graphNode{name: tn.Name, kind: tn.Type, after: tn.After, gate: tn.Gate, branch: tn.Branch,
			detail: tn.Detail.Target, model: tn.Detail.Model}
		if t := tn.Config; t != nil {
			n.fallback = t.OnError.HasDefault
			if o := t.Output; o != nil {
				n.output = o.Path.Value
				if o.Write != config.WriteOverwrite {
					n.output += " (" + o.Write.String() + ")"
				}
			}
		}
		g.nodes = append(g.nodes, n)
	}
	return g
}

// nodeIDs returns one id per node: "t_" and the task name with every
// character other than ASCII letters, digits and '_' replaced by '_', made
// unique with a numeric suffix. Such ids are valid in Mermaid and DOT
// without quoting and never clash with keywords or with the request and
// response nodes. byName maps a task name to its node's id.
func (g *taskGraph) nodeIDs() (ids []string, byName map[string]string) {
	ids = make([]string, len(g.nodes))
	byName = make(map[string]string, len(g.nodes))
	used := make(map[string]bool, len(g.nodes))
	for i, n := range g.nodes {
		var b strings.Builder
		b.WriteString("t_")
		for _, r := range n.name {
			if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
		base := b.String()
		id := base
		for k := 2; used[id]; k++ {
			id = base + "_" + strconv.Itoa(k)
		}
		used[id] = true
		ids[i] = id
		if _, ok := byName[n.name]; !ok {
			byName[n.name] = id
		}
	}
	return ids, byName
}

// labelLines are the lines of node n's label.
func (n *graphNode) labelLines() []string {
	kind := n.kind
	if n.detail != "" {
		kind += " · " + n.detail
	}
	lines := []string{n.name, kind}
	if n.fallback {
		lines = append(lines, "on error: default")
	}
	return lines
}

func (g *taskGraph) mermaid() string {
	ids, byName := g.nodeIDs()
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	b.WriteString("    request([\"" + mermaidText(g.source) + "\"])\n")
	for i := range g.nodes {
		n := &g.nodes[i]
		lines := n.labelLines()
		for k := range lines {
			lines[k] = mermaidText(lines[k])
		}
		b.WriteString("    " + ids[i] + "[\"" + strings.Join(lines, "<br/>") + "\"]\n")
	}
	b.WriteString("    response([\"response\"])\n")
	for i := range g.nodes {
		n := &g.nodes[i]
		if len(n.after) == 0 {
			b.WriteString("    request --> " + ids[i] + "\n")
		}
		for _, a := range n.after {
			if from, ok := byName[a]; ok {
				if a == n.gate {
					b.WriteString("    " + from + " -->|\"" + mermaidText(n.branch) + "\"| " + ids[i] + "\n")
					continue
				}
				b.WriteString("    " + from + " --> " + ids[i] + "\n")
			}
		}
	}
	for i := range g.nodes {
		if out := g.nodes[i].output; out != "" {
			b.WriteString("    " + ids[i] + " -->|\"" + mermaidText(out) + "\"| response\n")
		}
	}
	var dashed []string
	for i := range g.nodes {
		if g.nodes[i].fallback {
			dashed = append(dashed, ids[i])
		}
	}
	if len(dashed) > 0 {
		b.WriteString("    classDef fallback stroke-dasharray: 5 5\n")
		b.WriteString("    class " + strings.Join(dashed, ",") + " fallback\n")
	}
	return b.String()
}

// mermaidText escapes s for a quoted Mermaid label: quotes and the
// characters Mermaid or its HTML labels would interpret become entity codes.
func mermaidText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString("#quot;")
		case '#':
			b.WriteString("#35;")
		case '<':
			b.WriteString("#lt;")
		case '>':
			b.WriteString("#gt;")
		case '&':
			b.WriteString("#amp;")
		case '`':
			b.WriteString("#96;")
		case '\n', '\r':
			b.WriteString(" ")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (g *taskGraph) dot() string {
	ids, byName := g.nodeIDs()
	var b strings.Builder
	b.WriteString("digraph " + dotString(g.name) + " {\n")
	b.WriteString("    rankdir=LR;\n")
	b.WriteString("    node [shape=box, style=rounded];\n")
	b.WriteString("    request [label=" + dotString(g.source) + ", shape=oval];\n")
	for i := range g.nodes {
		n := &g.nodes[i]
		b.WriteString("    " + ids[i] + " [label=" + dotString(strings.Join(n.labelLines(), "\n")))
		if n.fallback {
			b.WriteString(", style=\"rounded,dashed\"")
		}
		b.WriteString("];\n")
	}
	b.WriteString("    response [label=\"response\", shape=oval];\n")
	for i := range g.nodes {
		n := &g.nodes[i]
		if len(n.after) == 0 {
			b.WriteString("    request -> " + ids[i] + ";\n")
		}
		for _, a := range n.after {
			if from, ok := byName[a]; ok {
				if a == n.gate {
					b.WriteString("    " + from + " -> " + ids[i] + " [label=" + dotString(n.branch) + "];\n")
					continue
				}
				b.WriteString("    " + from + " -> " + ids[i] + ";\n")
			}
		}
	}
	for i := range g.nodes {
		if out := g.nodes[i].output; out != "" {
			b.WriteString("    " + ids[i] + " -> response [label=" + dotString(out) + "];\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// dotString quotes s as a DOT string; newlines become \n line breaks.
func dotString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
