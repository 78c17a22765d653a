package router

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/config"
)

// Graph formats accepted by Plan.Graph.
const (
	// GraphMermaid is a Mermaid flowchart (flowchart LR), which Markdown
	// viewers such as GitHub's render in place.
	GraphMermaid = "mermaid"
	// GraphDOT is a Graphviz digraph, for `dot -Tsvg`.
	GraphDOT = "dot"
)

// Graph renders the route's task graph for people, in format GraphMermaid
// (the default when format is empty) or GraphDOT. There is one node per
// task, labelled with its name and kind (and the upstream host, registry
// model or feature views it reads), an edge from each dependency to the
// tasks that wait for it, a request node feeding the tasks that start at
// once, and a response node that every task with an output feeds, the
// edge labelled with the output path. The edges from a switch or split to
// the tasks of its branches are labelled with the branch (case or arm).
// Tasks that fall back to a default value on error are drawn dashed.
func (p *Plan) Graph(format string) (string, error) {
	switch format {
	case "", GraphMermaid:
		return p.graph().mermaid(), nil
	case GraphDOT:
		return p.graph().dot(), nil
	case GraphSVG:
		var resolve func(string) (string, bool)
		if p.models != nil {
			resolve = func(ref string) (string, bool) {
				m, ok := p.models.Lookup(ref)
				return m.Version, ok
			}
		}
		return p.graph().svg(resolve), nil
	}
	return "", fmt.Errorf("unknown graph format %q: use %s, %s or %s", format, GraphMermaid, GraphDOT, GraphSVG)
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

func (p *Plan) graph() *taskGraph {
	g := &taskGraph{name: p.Name(), source: strings.Join(p.Methods(), ", ") + " " + p.Endpoint()}
	specs := make(map[string]*config.Task, len(p.Route.Tasks))
	for _, t := range p.Route.Tasks {
		specs[t.Name] = t
	}
	for i, ti := range p.Tasks() {
		n := graphNode{name: ti.Name, kind: ti.Type, after: ti.After}
		if gate := p.nodes[i].gate; gate >= 0 {
			n.gate, n.branch = p.nodes[gate].name, p.branchName(i)
		}
		if t := specs[ti.Name]; t != nil {
			n.detail = taskDetail(t)
			if t.Type.Value == "http" || t.Type.Value == "infer" {
				if v := inputValue(&t.Inputs, "model", 0); v != nil && v.Kind == yaml.ScalarNode {
					n.model = v.Value
				}
			}
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

// taskDetail names what a task reads from, taken from its inputs as
// written: the host of an http address (and the model name of an infer
// task), the registry model, the views of the features read, the cases of
// a switch or the weighted arms of a split.
func taskDetail(t *config.Task) string {
	in := &t.Inputs
	switch t.Type.Value {
	case "http":
		if v := inputValue(in, "address", 0); v != nil && v.Kind == yaml.ScalarNode {
			if u, err := url.Parse(v.Value); err == nil && u.Host != "" {
				return u.Host
			}
		}
		if v := inputValue(in, "model", 0); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
			return "model " + v.Value
		}
	case "infer":
		name := ""
		if v := inputValue(in, "model_name", 0); v != nil && v.Kind == yaml.ScalarNode {
			name = v.Value
		}
		if v := inputValue(in, "address", 0); v != nil && v.Kind == yaml.ScalarNode {
			if u, err := url.Parse(v.Value); err == nil && u.Host != "" {
				return strings.TrimSpace(u.Host + " " + name)
			}
		}
		if v := inputValue(in, "model", 0); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
			return "model " + v.Value
		}
	case "switch":
		if v := inputValue(in, "cases", 0); v != nil && v.Kind == yaml.SequenceNode {
			return strconv.Itoa(len(v.Content)) + " cases + default"
		}
	case "split":
		v := inputValue(in, "arms", 0)
		if v == nil || v.Kind != yaml.SequenceNode {
			return ""
		}
		var arms []string
		for _, a := range v.Content {
			name, weight := inputValue(a, "name", 0), inputValue(a, "weight", 0)
			if name != nil && weight != nil && name.Kind == yaml.ScalarNode && weight.Kind == yaml.ScalarNode {
				arms = append(arms, name.Value+" "+weight.Value)
			}
		}
		return strings.Join(arms, " / ")
	case "feature":
		v := inputValue(in, "features", 0)
		if v == nil || v.Kind != yaml.SequenceNode {
			return ""
		}
		var views []string
		for _, f := range v.Content {
			f = deref(f)
			view, _, ok := strings.Cut(f.Value, ":")
			if f.Kind == yaml.ScalarNode && ok && !slices.Contains(views, view) {
				views = append(views, view)
			}
		}
		return strings.Join(views, ", ")
	}
	return ""
}

// inputValue returns the value of key in mapping n, following aliases and
// merge keys (<<) as the loader does: an explicit key wins over a merged one.
func inputValue(n *yaml.Node, key string, depth int) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode || depth > 8 {
		return nil
	}
	var merged *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			if merged != nil {
				continue
			}
			src := deref(v)
			if src != nil && src.Kind == yaml.SequenceNode {
				for _, s := range src.Content {
					if merged = inputValue(s, key, depth+1); merged != nil {
						break
					}
				}
			} else {
				merged = inputValue(src, key, depth+1)
			}
		case k.Value == key:
			return deref(v)
		}
	}
	return merged
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && i < 16; i++ {
		switch {
		case n.Kind == yaml.AliasNode:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return n
		}
	}
	return n
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
