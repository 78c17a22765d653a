package graph

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/schemagen"
	"github.com/lariat-gw/lariat/router"
	"github.com/lariat-gw/lariat/tasks"
)

// A kind defined in this file only: registering it is all it takes for
// routes to use it, for the generated schema to describe it and for the
// graph to show it.

func init() {
	tasks.Register(tasks.Kind{Name: "echo", Inputs: reflect.TypeFor[echoInputs](), New: newEchoTask})
}

// echoInputs are the settings of an echo task: it answers with its text.
type echoInputs struct {
	// Text is what the task answers: lower-case letters.
	Text config.String `yaml:"text" jsonschema:"required,pattern=^[a-z]+$"`
	// Times is how often the text repeats.
	Times int `yaml:"times" jsonschema:"minimum=1,maximum=3,default=1"`
}

// echoLog is the echo kind's service: it counts the echo tasks compiled.
type echoLog struct{ compiled int }

var echoService = tasks.Service[*echoLog]{Name: "an echo log", Provider: "provide one with echoService.Provide"}

type echoTask struct {
	body   []byte
	detail tasks.Detail
}

func newEchoTask(s *tasks.Spec) (tasks.Task, error) {
	var in echoInputs
	if err := s.Decode(&in); err != nil {
		return nil, err
	}
	log, err := echoService.Need(s, s.Task.Type.Pos, "echo tasks need")
	if err != nil {
		return nil, err
	}
	log.compiled++
	times := max(in.Times, 1)
	body, _ := json.Marshal(strings.Repeat(in.Text.Value, times))
	return &echoTask{body: body, detail: tasks.Detail{Target: in.Text.Value + " ×" + strconv.Itoa(times)}}, nil
}

func (t *echoTask) Run(_ *tasks.Exchange, r *tasks.Result) error {
	r.Body = append(r.Body[:0], t.body...)
	r.Status = 200
	return nil
}

func (t *echoTask) Describe() tasks.Detail { return t.detail }

const echoRoute = `name: echo
endpoint: /echo
tasks:
  first:
    type: echo
    inputs: {text: hello, times: 2}
    output: {path: response.body.first}
  second:
    type: echo
    inputs: {text: bye}
    after: [first]
    output: {path: response.body.second}
`

func TestNewKindInTestFile(t *testing.T) {
	if !slices.Contains(tasks.KindNames(), "echo") {
		t.Fatalf("kinds %v lack echo", tasks.KindNames())
	}

	// The schema describes the kind, from its Go type and doc comments.
	b, err := schemagen.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	defs := doc["$defs"].(map[string]any)
	def, _ := defs["echoInputs"].(map[string]any)
	if def == nil {
		t.Fatalf("the schema has no echoInputs definition:\n%s", b)
	}
	if def["description"] != "echoInputs are the settings of an echo task: it answers with its text." ||
		!slices.Equal(def["required"].([]any), []any{"text"}) || def["additionalProperties"] != false {
		t.Errorf("echoInputs: %v", def)
	}
	props := def["properties"].(map[string]any)
	text, times := props["text"].(map[string]any), props["times"].(map[string]any)
	if text["description"] != "What the task answers: lower-case letters." || text["pattern"] != "^[a-z]+$" {
		t.Errorf("text: %v", text)
	}
	if times["description"] != "How often the text repeats." || times["minimum"] != 1.0 || times["maximum"] != 3.0 || times["default"] != 1.0 {
		t.Errorf("times: %v", times)
	}
	task := defs["task"].(map[string]any)
	if enum := task["properties"].(map[string]any)["type"].(map[string]any)["enum"].([]any); !slices.Contains(enum, any("echo")) {
		t.Errorf("task.type enum %v lacks echo", enum)
	}
	if !bytes.Contains(b, []byte(`"const": "echo"`)) {
		t.Error("the schema has no if/then branch for echo")
	}

	// Route files with the kind pass or fail the generated schema.
	sch := compileGenerated(t, b)
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("echo.yaml", echoRoute)
	if err := validateYAML(t, sch, good); err != nil {
		t.Errorf("the schema rejects the echo route: %v", err)
	}
	for _, bad := range []string{
		strings.Replace(echoRoute, "times: 2", "times: 4", 1),
		strings.Replace(echoRoute, "{text: bye}", "{txt: bye}", 1),
		strings.Replace(echoRoute, "text: hello", "text: Hello", 1),
	} {
		if err := validateYAML(t, sch, write("bad.yaml", bad)); err == nil {
			t.Errorf("the schema accepts\n%s", bad)
		}
	}

	// The route loads with the kind's service and draws the tasks as they
	// describe themselves.
	env := tasks.NewEnv(nil)
	if _, errs := router.LoadFiles([]string{good}, env); len(errs) != 2 ||
		!strings.Contains(errs[0].Error(), `echo.yaml:5:11: task "first": echo tasks need an echo log: provide one with echoService.Provide`) {
		t.Errorf("without the service: %v", errs)
	}
	log := &echoLog{}
	echoService.Provide(env, log)
	table, errs := router.LoadFiles([]string{good}, env)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if log.compiled != 2 {
		t.Errorf("%d echo tasks compiled, want 2", log.compiled)
	}
	p := table.Plans()[0]
	mm, err := Render(p, Mermaid)
	if err != nil {
		t.Fatal(err)
	}
	checkMermaid(t, mm, []string{"first", "second"})
	for _, want := range []string{`t_first["first<br/>echo · hello ×2"]`, `t_second["second<br/>echo · bye ×1"]`, "t_first --> t_second\n"} {
		if !strings.Contains(mm, want) {
			t.Errorf("the graph lacks %q:\n%s", want, mm)
		}
	}
	svg, err := Render(p, SVG)
	if err != nil {
		t.Fatal(err)
	}
	if _, texts := checkSVGLayout(t, svg); !slices.Contains(texts, "echo · hello ×2") {
		t.Errorf("the picture lacks the echo detail: %q", texts)
	}
}

func compileGenerated(t *testing.T, schema []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(config.SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(config.SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func validateYAML(t *testing.T, sch *jsonschema.Schema, path string) error {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		t.Fatal(err)
	}
	js, err := config.NodeToJSON(path, n.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(inst)
}
