package graph

import (
	"bytes"
	"context"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/router"
	"github.com/lariat-gw/lariat/tasks"
)

var updateGraphs = flag.Bool("update", false, "rewrite the golden files under testdata")

func graphEnv(t *testing.T) *tasks.Env {
	t.Helper()
	views, store, err := featurefetch.NewDemoStore()
	if err != nil {
		t.Fatal(err)
	}
	env := tasks.NewEnv(nil)
	tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store})
	tasks.ModelRegistry.Provide(env, fixedModels{"driver-rank@production": "12"})
	return env
}

// fixedModels resolves model references to versions (ref: version).
type fixedModels map[string]string

func (m fixedModels) Register(_ context.Context, ref string) (tasks.ResolvedModel, error) {
	r, ok := m.Lookup(ref)
	if !ok {
		return r, fmt.Errorf("model %s is not registered", ref)
	}
	return r, nil
}

func (m fixedModels) Lookup(ref string) (tasks.ResolvedModel, bool) {
	v, ok := m[ref]
	name, _, _ := strings.Cut(ref, "@")
	return tasks.ResolvedModel{Name: name, Version: v, Endpoint: "http://" + name + ".models.lariat.local/predict"}, ok
}

func loadGraphPlan(t *testing.T, name string) *router.Plan {
	t.Helper()
	table, errs := router.LoadFiles([]string{filepath.Join("testdata", name+".yaml")}, graphEnv(t))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", name, errs)
	}
	return table.Plans()[0]
}

// TestGraphGolden renders each route under testdata in both formats
// and compares with the golden files; run with -update to rewrite them.
func TestGraphGolden(t *testing.T) {
	f := func(name string) {
		t.Helper()
		p := loadGraphPlan(t, name)
		for _, format := range []string{Mermaid, DOT} {
			got, err := Render(p, format)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ext := ".mmd"
			if format == DOT {
				ext = ".dot"
			}
			golden := filepath.Join("testdata", name+ext)
			if *updateGraphs {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGraphGolden -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the golden file (run with -update after checking):\n%s", golden, got)
			}
			names := taskNames(p)
			switch format {
			case Mermaid:
				checkMermaid(t, got, names)
			case DOT:
				checkDOT(t, got, names)
			}
		}
	}
	f("fanout")
	f("chain")
	f("lasso")
	f("policies")
}

func taskNames(p *router.Plan) []string {
	var out []string
	for _, ti := range p.Tasks() {
		out = append(out, ti.Name)
	}
	return out
}

// TestGraphContent checks what the fan-out route's graph says, beyond the
// golden file: kinds, hosts, views, dependencies, outputs.
func TestGraphContent(t *testing.T) {
	p := loadGraphPlan(t, "fanout")
	got, err := Render(p, "")
	if err != nil {
		t.Fatal(err)
	}
	f := func(want string) {
		t.Helper()
		if !strings.Contains(got, want) {
			t.Errorf("mermaid graph lacks %q:\n%s", want, got)
		}
	}
	f("request([\"POST /v1/dispatch\"])")
	f("t_drivers[\"drivers<br/>feature · driver_stats, driver_trips\"]")
	f("t_eta[\"eta<br/>http · eta.models.lariat.local:8080\"]")
	f("t_fraud[\"fraud<br/>http · fraud-score.models.lariat.local<br/>on error: default\"]")
	f("request --> t_drivers\n")
	f("request --> t_fraud\n")
	f("t_drivers --> t_rank\n")
	f("t_drivers --> t_eta\n")
	f("t_rank --> t_audit\n")
	f("t_eta --> t_audit\n")
	f("t_rank -->|\"response.body.ranking\"| response\n")
	f("class t_fraud fallback\n")
	if strings.Contains(got, "t_audit -->") {
		t.Errorf("audit has no output, yet feeds something:\n%s", got)
	}

	chain := loadGraphPlan(t, "chain")
	dot, err := Render(chain, DOT)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`request [label="POST, PUT /v1/chain", shape=oval];`,
		`t_retrieve -> response [label="response.headers.X-Candidates (ignoreIfExists)"];`,
		`t_rerank [label="rerank\nhttp · reranker.local"];`,
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("dot graph lacks %q:\n%s", want, dot)
		}
	}
}

func TestGraphUnknownFormat(t *testing.T) {
	p := loadGraphPlan(t, "lasso")
	_, err := Render(p, "png")
	if err == nil || err.Error() != `unknown graph format "png": use mermaid, dot or svg` {
		t.Fatalf("got %v", err)
	}
}

func TestGraphSVG(t *testing.T) {
	p := loadGraphPlan(t, "fanout")
	svg, err := Render(p, SVG)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name
	}
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil || doc.XMLName.Local != "svg" {
		t.Fatalf("not an SVG document (%v):\n%s", err, svg)
	}
	for _, task := range p.Tasks() {
		if !strings.Contains(svg, `data-task="`+task.Name+`"`) {
			t.Errorf("svg lacks task %s", task.Name)
		}
	}
	if strings.Contains(svg, "<script") || strings.Contains(svg, "href=\"http") {
		t.Error("svg must be self-contained")
	}
}

// TestGraphIDs renders hand-built graphs whose task names are not valid
// identifiers (route files reject such names, the renderer must not rely
// on it) and checks both formats stay well formed.
func TestGraphIDs(t *testing.T) {
	g := &taskGraph{name: `odd "route"`, source: "POST /odd", nodes: []graphNode{
		{name: "a-b", kind: "http", detail: `h"st\x`},
		{name: "a_b", kind: "http", after: []string{"a-b"}, output: "response.body.x"},
		{name: "end", kind: "http", after: []string{"a_b"}},
		{name: "graph", kind: "http", after: []string{"end"}, output: "response.headers.X-#<&>"},
		{name: "1st", kind: "feature", fallback: true},
		{name: "ünï code", kind: "http", after: []string{"1st", "missing"}},
		{name: "t_a_b", kind: "http"},
		{name: "a-b", kind: "http", detail: "duplicate name"},
	}}
	ids, _ := g.nodeIDs()
	seen := map[string]bool{}
	for i, id := range ids {
		if !identRe.MatchString(id) || seen[id] {
			t.Errorf("node %q: id %q is not a unique identifier", g.nodes[i].name, id)
		}
		seen[id] = true
	}
	want := []string{"t_a_b", "t_a_b_2", "t_end", "t_graph", "t_1st", "t__n__code", "t_t_a_b", "t_a_b_3"}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("ids %v, want %v", ids, want)
	}
	mm := g.mermaid()
	checkMermaid(t, mm, nil)
	if !strings.Contains(mm, `response.headers.X-#35;#lt;#amp;#gt;`) || !strings.Contains(mm, `h#quot;st\x`) {
		t.Errorf("mermaid labels not escaped:\n%s", mm)
	}
	if strings.Contains(mm, "missing") {
		t.Errorf("an edge from an unknown task was drawn:\n%s", mm)
	}
	d := g.dot()
	checkDOT(t, d, nil)
	if !strings.HasPrefix(d, `digraph "odd \"route\"" {`) || !strings.Contains(d, `http · h\"st\\x`) {
		t.Errorf("dot strings not escaped:\n%s", d)
	}
}

var (
	identRe       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	mermaidNodeRe = regexp.MustCompile(`^    ([A-Za-z_][A-Za-z0-9_]*)(\["[^"]*"\]|\(\["[^"]*"\]\))$`)
	mermaidEdgeRe = regexp.MustCompile(`^    ([A-Za-z_][A-Za-z0-9_]*) -->(\|"[^"]*"\|)? ([A-Za-z_][A-Za-z0-9_]*)$`)
	mermaidClass  = regexp.MustCompile(`^    (classDef [a-z]+ .+|class [A-Za-z0-9_,]+ [a-z]+)$`)
)

// checkMermaid checks the shape of a Mermaid flowchart line by line: node
// definitions with quoted labels, edges between defined nodes, and one
// node per task named in tasks (found in the labels).
func checkMermaid(t *testing.T, src string, tasks []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(src, "\n"), "\n")
	if lines[0] != "flowchart LR" {
		t.Fatalf("mermaid: first line %q", lines[0])
	}
	defined := map[string]string{}
	for _, l := range lines[1:] {
		if m := mermaidNodeRe.FindStringSubmatch(l); m != nil {
			if _, dup := defined[m[1]]; dup {
				t.Errorf("mermaid: node %s defined twice", m[1])
			}
			defined[m[1]] = m[2]
			continue
		}
		if m := mermaidEdgeRe.FindStringSubmatch(l); m != nil {
			for _, id := range []string{m[1], m[3]} {
				if _, ok := defined[id]; !ok {
					t.Errorf("mermaid: edge %q uses undefined node %s", l, id)
				}
			}
			continue
		}
		if mermaidClass.MatchString(l) {
			continue
		}
		t.Errorf("mermaid: unexpected line %q", l)
	}
	if _, ok := defined["request"]; !ok {
		t.Error("mermaid: no request node")
	}
	if _, ok := defined["response"]; !ok {
		t.Error("mermaid: no response node")
	}
	for _, name := range tasks {
		label, ok := defined["t_"+name]
		if !ok || !strings.HasPrefix(label, `["`+name+"<br/>") {
			t.Errorf("mermaid: task %s has no node", name)
		}
	}
}

// checkDOT parses DOT output minimally: statements outside quoted strings,
// balanced braces, node statements, and edges between declared nodes.
func checkDOT(t *testing.T, src string, tasks []string) {
	t.Helper()
	// Blank out quoted strings so braces and semicolons inside labels
	// don't count.
	var plain bytes.Buffer
	inStr, esc := false, false
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case esc:
			esc = false
			c = 'x'
		case inStr && c == '\\':
			esc = true
			c = 'x'
		case c == '"':
			inStr = !inStr
		case inStr:
			if c != '\n' {
				c = 'x'
			}
		}
		plain.WriteByte(c)
	}
	if inStr {
		t.Fatalf("dot: unterminated string:\n%s", src)
	}
	body := plain.String()
	if strings.Count(body, "{") != 1 || strings.Count(body, "}") != 1 || strings.Index(body, "{") > strings.LastIndex(body, "}") {
		t.Fatalf("dot: unbalanced braces:\n%s", src)
	}
	if !strings.HasPrefix(body, "digraph \"") {
		t.Fatalf("dot: does not start with digraph:\n%s", src)
	}
	inner := body[strings.Index(body, "{")+1 : strings.LastIndex(body, "}")]
	if strings.TrimSpace(body[strings.LastIndex(body, "}")+1:]) != "" {
		t.Fatalf("dot: text after the closing brace:\n%s", src)
	}
	nodeRe := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*) \[(.*)\]$`)
	edgeRe := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*) -> ([A-Za-z_][A-Za-z0-9_]*)( \[.*\])?$`)
	nodes := map[string]bool{}
	var edges [][2]string
	for _, stmt := range strings.Split(inner, ";") {
		stmt = strings.TrimSpace(stmt)
		switch {
		case stmt == "":
		case strings.HasPrefix(stmt, "rankdir="), strings.HasPrefix(stmt, "node ["):
		case nodeRe.MatchString(stmt):
			id := nodeRe.FindStringSubmatch(stmt)[1]
			if nodes[id] {
				t.Errorf("dot: node %s declared twice", id)
			}
			nodes[id] = true
		case edgeRe.MatchString(stmt):
			m := edgeRe.FindStringSubmatch(stmt)
			edges = append(edges, [2]string{m[1], m[2]})
		default:
			t.Errorf("dot: unexpected statement %q", stmt)
		}
	}
	for _, e := range edges {
		if !nodes[e[0]] || !nodes[e[1]] {
			t.Errorf("dot: edge %s -> %s uses an undeclared node", e[0], e[1])
		}
	}
	for _, name := range append([]string{"request", "response"}, prefixed(tasks)...) {
		if !nodes[name] {
			t.Errorf("dot: no node %s", name)
		}
	}
	// When Graphviz is installed, let it parse the output too.
	if dot, err := osexec.LookPath("dot"); err == nil {
		cmd := osexec.Command(dot, "-Tcanon")
		cmd.Stdin = strings.NewReader(src)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("dot -Tcanon: %v\n%s", err, out)
		}
	}
}

func prefixed(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "t_" + n
	}
	return out
}

// TestTaskDetail checks what each kind says of itself in the graph, from
// the task as compiled: values that come through anchors and merge keys
// count as the loader reads them.
func TestTaskDetail(t *testing.T) {
	f := func(tasksYAML string, want ...string) {
		t.Helper()
		dir := t.TempDir()
		route := "name: d\nendpoint: /d\ntasks:\n" + tasksYAML
		path := filepath.Join(dir, "d.yaml")
		if err := os.WriteFile(path, []byte(route), 0o644); err != nil {
			t.Fatal(err)
		}
		table, errs := router.LoadFiles([]string{path}, graphEnv(t))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", tasksYAML, errs)
		}
		var got []string
		for _, n := range table.Plans()[0].Nodes() {
			got = append(got, n.Detail.Target+"|"+n.Detail.Model)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: details %q, want %q", tasksYAML, got, want)
		}
	}
	f("  m: {type: http, inputs: {address: \"http://m.local:81/p?x={{ .request.x }}\"}}\n", "m.local:81|")
	f("  m: {type: http, inputs: {model: driver-rank@production}}\n", "model driver-rank@production|driver-rank@production")
	f("  a: {type: http, inputs: &base {address: http://base.local/}}\n  b: {type: http, inputs: {<<: *base}}\n", "base.local|", "base.local|")
	f("  m: {type: http, inputs: {<<: [{method: GET}, {address: http://second.local/}]}}\n", "second.local|")
	f("  m: {type: http, inputs: {<<: {address: http://merged.local/}, address: http://own.local/}}\n", "own.local|")
	f("  m: {type: infer, inputs: {address: http://triton:8000, model_name: eta, inputs: [{name: x, datatype: FP32, from: '{{ .request.x }}'}]}}\n", "triton:8000 eta|")
	f("  f: {type: feature, inputs: {entities: {driver_id: '{{ .request.id }}'}, features: [driver_stats:conv_rate, driver_trips:recent_zones, driver_stats:acc_rate]}}\n", "driver_stats, driver_trips|")
	f("  s: {type: switch, inputs: {cases: [{when: .request.a, run: [x]}, {when: .request.b, run: []}]}}\n  x: {type: http, inputs: {address: http://x.local/}}\n", "2 cases + default|", "x.local|")
	f("  s: {type: split, inputs: {arms: [{name: a, weight: 90, run: [x]}, {name: b, weight: 10}]}}\n  x: {type: http, inputs: {address: http://x.local/}}\n", "a 90 / b 10|", "x.local|")
}
