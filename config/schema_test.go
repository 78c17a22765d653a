package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/schemagen"
	"github.com/lariat-gw/lariat/internal/yamlstrict"
	"github.com/lariat-gw/lariat/router"
	"github.com/lariat-gw/lariat/tasks"
)

// TestSchemaIsGenerated regenerates the schema from the Go types of route
// files and of the registered kinds' inputs, and fails when the committed
// config/route.schema.json differs from it.
func TestSchemaIsGenerated(t *testing.T) {
	want, err := schemagen.Generate()
	if err != nil {
		t.Fatal(err)
	}
	got := config.Schema()
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gl), len(wl)) {
		g, w := "", ""
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("config/route.schema.json is stale: run `go generate ./config`\nline %d is\n%s\nwant\n%s", i+1, g, w)
		}
	}
}

func schemaDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(config.Schema(), &doc); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	return doc
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(config.Schema()))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(config.SchemaID, doc); err != nil {
		t.Fatalf("cannot add schema: %v", err)
	}
	sch, err := c.Compile(config.SchemaID)
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	return sch
}

// validateFile checks the route file at path against the schema, after
// turning its YAML into JSON the way the loader reads it (anchors and
// merge keys expanded). ok is false when the file is not a YAML mapping
// with a tasks or endpoint key, i.e. not a route file.
func validateFile(t *testing.T, sch *jsonschema.Schema, path string) (ok bool, err error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) != 1 {
		return false, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return false, nil
	}
	isRoute := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i].Value; k == "tasks" || k == "endpoint" {
			isRoute = true
		}
	}
	if !isRoute {
		return false, nil
	}
	js, err := config.NodeToJSON(path, root)
	if err != nil {
		t.Fatalf("%s: cannot convert to JSON: %v", path, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return true, sch.Validate(inst)
}

// loadEnv can compile every kind, feature tasks included.
func loadEnv(t *testing.T) *tasks.Env {
	t.Helper()
	views, store, err := featurefetch.NewDemoStore()
	if err != nil {
		t.Fatal(err)
	}
	env := tasks.NewEnv(nil)
	tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store})
	return env
}

func loadErr(env *tasks.Env, path string) error {
	if _, errs := router.LoadFiles([]string{path}, env); len(errs) > 0 {
		return errs
	}
	return nil
}

func TestSchemaCompiles(t *testing.T) {
	compileSchema(t)
	doc := schemaDoc(t)
	if doc["$id"] != config.SchemaID {
		t.Fatalf("$id %v, want %s", doc["$id"], config.SchemaID)
	}
	if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Fatalf("$schema %v, want draft 2020-12", doc["$schema"])
	}
	b := config.Schema()
	b[0] = 'x'
	if config.Schema()[0] != '{' {
		t.Fatal("Schema returned shared memory")
	}
}

// TestSchemaMatchesGoTypes walks the structs the loader decodes route
// files into and checks that the schema has exactly their keys, with
// matching JSON types, descriptions, and additionalProperties false where
// the loader is strict.
func TestSchemaMatchesGoTypes(t *testing.T) {
	doc := schemaDoc(t)
	w := &walker{t: t, doc: doc}
	w.object("route", doc, reflect.TypeFor[config.Route]())
	taskDef := w.def("task")
	w.object("task", taskDef, reflect.TypeFor[config.Task]())

	// tasks: a mapping of task name to task.
	tasksProp := w.prop(doc, "tasks")
	if ap, _ := tasksProp["additionalProperties"].(map[string]any); ap["$ref"] != "#/$defs/task" {
		t.Errorf("route.tasks: additionalProperties must be {$ref: #/$defs/task}, got %v", tasksProp["additionalProperties"])
	}

	// Every registered kind has an inputs definition and an if/then branch.
	names := tasks.KindNames()
	if len(names) < 5 {
		t.Fatalf("registered task kinds %v: the built-in kinds are missing", names)
	}
	var enum []string
	for _, v := range w.prop(taskDef, "type")["enum"].([]any) {
		enum = append(enum, v.(string))
	}
	sort.Strings(enum)
	if !slices.Equal(enum, names) {
		t.Errorf("task.type enum %v, want %v", enum, names)
	}
	branches := map[string]string{}
	for _, b := range taskDef["allOf"].([]any) {
		bm := b.(map[string]any)
		kind := dig(bm, "if", "properties", "type", "const")
		ref := dig(bm, "then", "properties", "inputs", "$ref")
		req, _ := dig(bm, "then", "required").([]any)
		if !slices.Contains(req, any("inputs")) {
			t.Errorf("task kind %v: then must require inputs", kind)
		}
		if k, ok := kind.(string); ok {
			branches[k], _ = ref.(string)
		}
	}
	for _, name := range names {
		k, _ := tasks.Lookup(name)
		def, ok := strings.CutPrefix(branches[name], "#/$defs/")
		if !ok {
			t.Errorf("task kind %q: no inputs $ref", name)
			continue
		}
		w.object(def, w.def(def), k.Inputs)
	}
}

// TestSchemaDescriptions checks that every property the schema declares,
// at any depth, has a description for editors to show.
func TestSchemaDescriptions(t *testing.T) {
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				for name, p := range props {
					pm, _ := p.(map[string]any)
					if d, _ := pm["description"].(string); d == "" && !isBranchProperty(path) {
						t.Errorf("%s.properties.%s has no description", path, name)
					}
				}
			}
			for k, c := range v {
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range v {
				walk(path+"["+strconv.Itoa(i)+"]", c)
			}
		}
	}
	walk("#", schemaDoc(t))
}

// isBranchProperty reports whether path is inside an if/then of a kind
// branch, whose properties only select or reference others.
func isBranchProperty(path string) bool {
	return strings.Contains(path, ".if") || strings.Contains(path, ".then")
}

// TestSchemaAcceptsRouteFiles validates every route file of the repository
// (in testdata and routes folders, such as demo/routes) against the schema: a file the loader
// accepts must pass the schema. Files the schema rejects must be rejected
// by the loader too.
func TestSchemaAcceptsRouteFiles(t *testing.T) {
	sch := compileSchema(t)
	env := loadEnv(t)
	var good, rejected int
	demoRoutes := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != ".." && (strings.HasPrefix(name, ".") || name == "vendor" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		ext := filepath.Ext(path)
		slash := filepath.ToSlash(path)
		if ext != ".yaml" && ext != ".yml" || !(strings.Contains(slash, "/testdata/") || strings.Contains(slash, "/routes/")) {
			return nil
		}
		isRoute, schemaErr := validateFile(t, sch, path)
		if !isRoute {
			return nil
		}
		lerr := loadErr(env, path)
		switch {
		case lerr == nil && schemaErr != nil:
			t.Errorf("%s loads, but the schema rejects it:\n%v", path, schemaErr)
		case lerr == nil:
			good++
			if strings.Contains(slash, "/demo/routes/") {
				demoRoutes++
			}
		case schemaErr != nil:
			rejected++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if good < 5 || demoRoutes == 0 {
		t.Fatalf("found %d good route files (%d under demo/routes); the walk is broken", good, demoRoutes)
	}
	t.Logf("%d route files pass loader and schema; %d fail both", good, rejected)
}

// TestSchemaRejectsBadFiles checks that every file under
// testdata/schema/bad fails both the loader and the schema, and that the
// schema names the problem.
func TestSchemaRejectsBadFiles(t *testing.T) {
	sch := compileSchema(t)
	env := loadEnv(t)
	f := func(name, want string) {
		t.Helper()
		path := filepath.Join("testdata/schema/bad", name)
		if err := loadErr(env, path); err == nil {
			t.Errorf("%s: the loader accepts it", path)
		}
		isRoute, err := validateFile(t, sch, path)
		if !isRoute {
			t.Fatalf("%s is not a route file", path)
		}
		if err == nil {
			t.Errorf("%s: the schema accepts it", path)
			return
		}
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("%s: %T is not a validation error: %v", path, err, err)
		}
		if msg := err.Error(); !strings.Contains(msg, want) {
			t.Errorf("%s: schema error does not mention %q:\n%s", path, want, msg)
		}
	}
	seen := map[string]bool{}
	check := func(name, want string) {
		t.Helper()
		seen[name] = true
		f(name, want)
	}
	check("unknown-top-key.yaml", "'timeuot'")
	check("unknown-task-key.yaml", "'outputs'")
	check("unknown-http-input.yaml", "'adress'")
	check("unknown-feature-input.yaml", "'entity'")
	check("unknown-output-key.yaml", "'mode'")
	check("unknown-breaker-key.yaml", "'failure'")
	check("wrong-type-retries.yaml", "/tasks/m/inputs/retries")
	check("wrong-type-methods.yaml", "/methods")
	check("wrong-type-disabled.yaml", "/tasks/m/inputs/breaker/disabled")
	check("wrong-type-tasks.yaml", "/tasks")
	check("wrong-type-features.yaml", "/tasks/f/inputs/features")
	check("wrong-type-headers.yaml", "/tasks/m/inputs/headers")
	check("bad-timeout.yaml", "/timeout")
	check("zero-timeout.yaml", "/timeout")
	check("bad-on-error.yaml", "/tasks/m/on_error")
	check("bad-write-mode.yaml", "/tasks/m/output/write")
	check("bad-output-path.yaml", "/tasks/m/output/path")
	check("bad-method.yaml", "/methods/0")
	check("bad-endpoint.yaml", "/endpoint")
	check("reserved-endpoint.yaml", "/endpoint")
	check("bad-task-name.yaml", "rank-drivers")
	check("bad-address.yaml", "/tasks/m/inputs/address")
	check("bad-retries.yaml", "/tasks/m/inputs/retries")
	check("bad-retry-on.yaml", "/tasks/m/inputs/retry_on/0")
	check("bad-shape.yaml", "/tasks/f/inputs/shape")
	check("bad-apiversion.yaml", "/apiVersion")
	check("unknown-kind.yaml", "/tasks/m/type")
	check("missing-type.yaml", "'type'")
	check("missing-address.yaml", "'address'")
	check("missing-features.yaml", "'features'")
	check("missing-name.yaml", "'name'")
	check("no-tasks.yaml", "/tasks")
	check("address-and-model.yaml", "oneOf")
	check("bad-model.yaml", "/tasks/m/inputs/model")
	check("bad-datatype.yaml", "/tasks/m/inputs/inputs/0/datatype")
	check("infer-missing-model-name.yaml", "'model_name'")
	check("unknown-tensor-key.yaml", "'column'")
	check("bad-protocol.yaml", "/tasks/m/inputs/protocol")
	check("bad-sample.yaml", "/tasks/m/inputs/shadow/sample")
	check("zero-hedge.yaml", "/tasks/m/inputs/hedge_after")
	check("switch-missing-when.yaml", "'when'")
	check("split-one-arm.yaml", "/tasks/s/inputs/arms")
	check("negative-weight.yaml", "/tasks/s/inputs/arms/0/weight")
	check("bad-log-sample.yaml", "/log/sample")
	check("bad-log-output.yaml", "/log/outputs/0")
	check("unknown-log-key.yaml", "'sampel'")

	entries, err := os.ReadDir("testdata/schema/bad")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("testdata/schema/bad/%s has no expectation in this test", e.Name())
		}
	}
}

// walker compares Go structs with schema objects.
type walker struct {
	t   *testing.T
	doc map[string]any
}

func (w *walker) def(name string) map[string]any {
	d, ok := dig(w.doc, "$defs", name).(map[string]any)
	if !ok {
		w.t.Fatalf("schema has no $defs.%s", name)
	}
	return d
}

// resolve follows a $ref to a definition of this document.
func (w *walker) resolve(s map[string]any) map[string]any {
	for i := 0; i < 8; i++ {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		if !ok {
			w.t.Fatalf("unsupported $ref %q", ref)
		}
		s = w.def(name)
	}
	return s
}

func (w *walker) prop(s map[string]any, name string) map[string]any {
	p, _ := dig(s, "properties", name).(map[string]any)
	return p
}

var (
	stringType    = reflect.TypeFor[config.String]()
	durationType  = reflect.TypeFor[config.Duration]()
	writeModeType = reflect.TypeFor[config.WriteMode]()
	onErrorType   = reflect.TypeFor[config.OnError]()
	nodeType      = reflect.TypeFor[yaml.Node]()
	rawType       = reflect.TypeFor[json.RawMessage]()
)

// object checks that schema object s (named where) has exactly the yaml
// keys of struct type typ.
func (w *walker) object(where string, s map[string]any, typ reflect.Type) {
	t := w.t
	s = w.resolve(s)
	if s["additionalProperties"] != false {
		t.Errorf("%s: additionalProperties must be false: the loader rejects unknown keys", where)
	}
	if s["type"] != "object" {
		t.Errorf("%s: type %v, want object", where, s["type"])
	}
	props, _ := s["properties"].(map[string]any)
	keys := map[string]reflect.StructField{}
	for _, k := range yamlstrict.Keys(typ) {
		name, f := k.Name, k.Field
		keys[name] = f
		p, ok := props[name].(map[string]any)
		if !ok {
			t.Errorf("%s: the loader accepts key %q (%s.%s) but the schema does not declare it", where, name, typ.Name(), f.Name)
			continue
		}
		if d, _ := p["description"].(string); d == "" {
			t.Errorf("%s.%s: no description", where, name)
		}
		w.value(where+"."+name, p, f.Type)
	}
	for name := range props {
		if _, ok := keys[name]; !ok {
			t.Errorf("%s: the schema declares key %q but %s has no field with yaml:%q", where, name, typ, name)
		}
	}
}

// value checks that schema s admits the JSON types that Go type typ
// decodes from.
func (w *walker) value(where string, s map[string]any, typ reflect.Type) {
	t := w.t
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	types := w.types(s)
	want := func(names ...string) {
		t.Helper()
		for _, n := range names {
			if !types[n] {
				t.Errorf("%s: schema types %v do not include %s, which %s decodes from", where, keysOf(types), n, typ)
			}
		}
	}
	switch typ {
	case nodeType, rawType, onErrorType:
		// Kept raw, decoded by a kind, or checked by the file tests.
		return
	case stringType:
		want("string")
		return
	case durationType:
		want("number", "string")
		return
	case writeModeType:
		want("string")
		return
	}
	switch typ.Kind() {
	case reflect.String:
		want("string")
	case reflect.Bool:
		want("boolean")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want("integer")
	case reflect.Float32, reflect.Float64:
		want("number")
	case reflect.Slice:
		want("array")
		if items, ok := w.resolve(s)["items"].(map[string]any); ok {
			w.value(where+"[]", items, typ.Elem())
		} else {
			t.Errorf("%s: array without items", where)
		}
	case reflect.Map:
		want("object")
		r := w.resolve(s)
		if r["additionalProperties"] == false {
			t.Errorf("%s: a map accepts any key; additionalProperties must not be false", where)
		}
		if ap, ok := r["additionalProperties"].(map[string]any); ok {
			w.value(where+"{}", ap, typ.Elem())
		} else if typ.Elem() != rawType {
			t.Errorf("%s: map values need an additionalProperties schema", where)
		}
	case reflect.Struct:
		w.object(where, s, typ)
	default:
		t.Errorf("%s: unexpected Go type %s", where, typ)
	}
}

// types collects the JSON types schema s admits, through $ref, anyOf,
// oneOf, enum and const.
func (w *walker) types(s map[string]any) map[string]bool {
	out := map[string]bool{}
	var add func(s map[string]any, depth int)
	add = func(s map[string]any, depth int) {
		if depth > 8 {
			return
		}
		s = w.resolve(s)
		switch ty := s["type"].(type) {
		case string:
			out[ty] = true
		case []any:
			for _, v := range ty {
				out[v.(string)] = true
			}
		}
		vals, _ := s["enum"].([]any)
		if c, ok := s["const"]; ok {
			vals = append(vals, c)
		}
		for _, v := range vals {
			switch v.(type) {
			case string:
				out["string"] = true
			case float64:
				out["number"] = true
			case bool:
				out["boolean"] = true
			}
		}
		for _, k := range []string{"anyOf", "oneOf"} {
			list, _ := s[k].([]any)
			for _, b := range list {
				if bm, ok := b.(map[string]any); ok {
					add(bm, depth+1)
				}
			}
		}
	}
	add(s, 0)
	return out
}

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}
