package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
)

// compiled is a route compiled task by task, outside the router.
type compiled struct {
	route *config.Route
	scope *testScope
	tasks map[string]Task
	index map[string]int
}

// compileRoute parses a route and compiles every task with env (a fresh
// one when nil). It fails the test on any error.
func compileRoute(tb testing.TB, y string, env *Env) *compiled {
	tb.Helper()
	c, err := tryCompileRoute(y, env)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func tryCompileRoute(y string, env *Env) (*compiled, error) {
	r, err := config.Parse("route.yaml", []byte(y))
	if err != nil {
		return nil, err
	}
	if env == nil {
		env = NewEnv(nil)
	}
	c := &compiled{route: r, scope: &testScope{}, tasks: map[string]Task{}, index: map[string]int{}}
	for i, t := range r.Tasks {
		c.scope.tasks = append(c.scope.tasks, t.Name)
		c.index[t.Name] = i
	}
	for i, t := range r.Tasks {
		k, ok := Lookup(t.Type.Value)
		if !ok {
			return nil, fmt.Errorf("unknown kind %q", t.Type.Value)
		}
		task, err := k.Compile(&Spec{Route: r, Task: t, Env: env, Scope: c.scope, Index: i,
			Labels: fmt.Sprintf("route=%q,task=%q", r.Name.Value, t.Name)})
		if err != nil {
			return nil, err
		}
		c.tasks[t.Name] = task
	}
	return c, nil
}

// exchange returns an Exchange for body with the route's deadline;
// results gives task bodies by name, headers request headers.
func (c *compiled) exchange(body string, results map[string]string, headers map[string]string) *Exchange {
	x := &Exchange{}
	x.Reset(len(c.scope.tasks), len(c.scope.headers))
	x.Body = append(x.Body, body...)
	for i, h := range c.scope.headers {
		if v, ok := headers[h]; ok {
			x.SetHeader(i, []byte(v))
		}
	}
	for name, b := range results {
		x.Results[c.index[name]].Body = []byte(b)
		x.Results[c.index[name]].Status = 200
	}
	x.Deadline = time.Now().Add(c.route.Timeout.D)
	return x
}

// run runs task name on a fresh exchange.
func (c *compiled) run(name, body string, results map[string]string) (*Result, error) {
	x := c.exchange(body, results, nil)
	r := &x.Results[c.index[name]]
	err := c.tasks[name].Run(x, r)
	return r, err
}

// v2Tensor is a V2 tensor as a strict server reads it.
type v2Tensor struct {
	Name       *string          `json:"name"`
	Shape      *[]int64         `json:"shape"`
	Datatype   *string          `json:"datatype"`
	Data       *json.RawMessage `json:"data"`
	Parameters map[string]any   `json:"parameters"`
}

type v2Request struct {
	ID         string         `json:"id"`
	Parameters map[string]any `json:"parameters"`
	Inputs     *[]v2Tensor    `json:"inputs"`
	Outputs    []struct {
		Name       *string        `json:"name"`
		Parameters map[string]any `json:"parameters"`
	} `json:"outputs"`
}

// tensor is a validated input tensor.
type tensor struct {
	name, datatype string
	shape          []int64
	data           []any // flat, row-major: json.Number, bool or string
}

var intRanges = map[string][2]float64{
	"INT8": {math.MinInt8, math.MaxInt8}, "INT16": {math.MinInt16, math.MaxInt16},
	"INT32": {math.MinInt32, math.MaxInt32}, "INT64": {math.MinInt64, math.MaxInt64},
	"UINT8": {0, math.MaxUint8}, "UINT16": {0, math.MaxUint16}, "UINT32": {0, math.MaxUint32}, "UINT64": {0, math.MaxUint64},
}

// parseV2Request validates an inference request the way Triton, MLServer
// and KServe do (required fields, datatype names, shape × data length,
// element types) and returns its tensors.
func parseV2Request(body []byte) (*v2Request, []tensor, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var req v2Request
	if err := dec.Decode(&req); err != nil {
		return nil, nil, fmt.Errorf("invalid request: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("trailing data after the request")
	}
	if req.Inputs == nil || len(*req.Inputs) == 0 {
		return nil, nil, errors.New("inputs is required")
	}
	var out []tensor
	for i, in := range *req.Inputs {
		switch {
		case in.Name == nil || *in.Name == "":
			return nil, nil, fmt.Errorf("inputs[%d].name is required", i)
		case in.Datatype == nil:
			return nil, nil, fmt.Errorf("input %s: datatype is required", *in.Name)
		case in.Shape == nil:
			return nil, nil, fmt.Errorf("input %s: shape is required", *in.Name)
		case in.Data == nil:
			return nil, nil, fmt.Errorf("input %s: data is required", *in.Name)
		}
		if _, ok := datatypes[*in.Datatype]; !ok {
			return nil, nil, fmt.Errorf("input %s: invalid datatype %q", *in.Name, *in.Datatype)
		}
		want := int64(1)
		for _, d := range *in.Shape {
			if d < 0 {
				return nil, nil, fmt.Errorf("input %s: negative dimension in shape %v", *in.Name, *in.Shape)
			}
			want *= d
		}
		var raw any
		d := json.NewDecoder(bytes.NewReader(*in.Data))
		d.UseNumber()
		if err := d.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("input %s: data: %w", *in.Name, err)
		}
		list, ok := raw.([]any)
		if !ok {
			return nil, nil, fmt.Errorf("input %s: data must be a list", *in.Name)
		}
		flat, err := flattenData(list, *in.Shape, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("input %s: %w", *in.Name, err)
		}
		if int64(len(flat)) != want {
			return nil, nil, fmt.Errorf("input %s: unexpected shape: %d elements for shape %v", *in.Name, len(flat), *in.Shape)
		}
		for k, e := range flat {
			if err := checkElem(*in.Datatype, e); err != nil {
				return nil, nil, fmt.Errorf("input %s: element %d: %w", *in.Name, k, err)
			}
		}
		out = append(out, tensor{name: *in.Name, datatype: *in.Datatype, shape: *in.Shape, data: flat})
	}
	for i, o := range req.Outputs {
		if o.Name == nil || *o.Name == "" {
			return nil, nil, fmt.Errorf("outputs[%d].name is required", i)
		}
	}
	return &req, out, nil
}

// flattenData flattens data; nested lists must follow the shape.
func flattenData(list []any, shape []int64, depth int) ([]any, error) {
	var out []any
	for _, e := range list {
		if sub, ok := e.([]any); ok {
			if depth+1 >= len(shape) || int64(len(sub)) != shape[depth+1] {
				return nil, fmt.Errorf("nested data does not follow shape %v", shape)
			}
			f, err := flattenData(sub, shape, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, f...)
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

func checkElem(dt string, e any) error {
	switch dt {
	case "BOOL":
		if _, ok := e.(bool); !ok {
			return fmt.Errorf("%v is not a BOOL", e)
		}
	case "BYTES":
		if _, ok := e.(string); !ok {
			return fmt.Errorf("%v is not a BYTES string", e)
		}
	case "FP16", "FP32", "FP64":
		if _, ok := e.(json.Number); !ok {
			return fmt.Errorf("%v is not a number", e)
		}
	default:
		n, ok := e.(json.Number)
		if !ok {
			return fmt.Errorf("%v is not an integer", e)
		}
		i, err := strconv.ParseFloat(string(n), 64)
		if err != nil || strings.ContainsAny(string(n), ".eE") || i < intRanges[dt][0] || i > intRanges[dt][1] {
			return fmt.Errorf("%v is not a %s", e, dt)
		}
	}
	return nil
}

func num(e any) float64 {
	switch v := e.(type) {
	case json.Number:
		f, _ := v.Float64()
		return f
	case bool:
		if v {
			return 1
		}
	}
	return 0
}

// fakeModel is a strict V2 (or V1) model server on loopback. Its model
// answers "scores" (FP32 [N,1], the sum of each row of the first input),
// "label" (BYTES [N]) and "echo" (the first input as received).
type fakeModel struct {
	*upstreamtest.Server
	name, version string
	// Calls counts inference calls that passed validation; Rows counts
	// their batch rows; MaxRows is the largest batch.
	Calls, Rows, MaxRows, Rejected atomic.Int64

	mu       sync.Mutex
	lastErr  string
	lastPath string
	// answer, when set, replaces the model's answer.
	answer func(req *v2Request, in []tensor) (int, string)
}

var v2PathRe = regexp.MustCompile(`^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$`)

func startV2(tb testing.TB, name, version string) *fakeModel {
	tb.Helper()
	m := &fakeModel{name: name, version: version}
	m.Server = upstreamtest.Start(tb, m.handle)
	return m
}

func (m *fakeModel) reject(rc *fasthttp.RequestCtx, status int, msg string) {
	m.Rejected.Add(1)
	m.mu.Lock()
	m.lastErr = msg
	m.mu.Unlock()
	rc.SetStatusCode(status)
	rc.SetContentType("application/json")
	b, _ := json.Marshal(map[string]string{"error": msg})
	rc.SetBody(b)
}

// LastError returns the last validation error sent.
func (m *fakeModel) LastError() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastErr
}

func (m *fakeModel) LastPath() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastPath
}

func (m *fakeModel) handle(_ int64, rc *fasthttp.RequestCtx) {
	path := string(rc.Path())
	m.mu.Lock()
	m.lastPath = path
	m.mu.Unlock()
	if string(rc.Method()) != "POST" {
		m.reject(rc, 405, "method not allowed")
		return
	}
	if !bytes.HasPrefix(rc.Request.Header.ContentType(), []byte("application/json")) {
		m.reject(rc, 400, "content type must be application/json")
		return
	}
	sm := v2PathRe.FindStringSubmatch(path)
	if sm == nil || sm[1] != m.name || sm[2] != m.version {
		m.reject(rc, 404, "model "+path+" not found")
		return
	}
	req, in, err := parseV2Request(rc.PostBody())
	if err != nil {
		m.reject(rc, 400, err.Error())
		return
	}
	rows := int64(1)
	if len(in[0].shape) > 0 {
		rows = in[0].shape[0]
	}
	m.Calls.Add(1)
	m.Rows.Add(rows)
	for {
		cur := m.MaxRows.Load()
		if rows <= cur || m.MaxRows.CompareAndSwap(cur, rows) {
			break
		}
	}
	rc.SetContentType("application/json")
	if m.answer != nil {
		st, body := m.answer(req, in)
		rc.SetStatusCode(st)
		rc.SetBodyString(body)
		return
	}
	first := in[0]
	per := int64(len(first.data))
	if rows > 0 {
		per = int64(len(first.data)) / rows
	}
	scores := make([]float64, rows)
	labels := make([]string, rows)
	for r := int64(0); r < rows; r++ {
		for k := int64(0); k < per; k++ {
			scores[r] += num(first.data[r*per+k])
		}
		labels[r] = fmt.Sprintf("r%g", scores[r])
	}
	outs := map[string]any{
		"scores": map[string]any{"name": "scores", "datatype": "FP32", "shape": []int64{rows, 1}, "data": scores},
		"label":  map[string]any{"name": "label", "datatype": "BYTES", "shape": []int64{rows}, "data": labels},
		"echo":   map[string]any{"name": "echo", "datatype": first.datatype, "shape": first.shape, "data": first.data},
	}
	var list []any
	if len(req.Outputs) == 0 {
		list = []any{outs["scores"], outs["label"], outs["echo"]}
	}
	for _, o := range req.Outputs {
		t, ok := outs[*o.Name]
		if !ok {
			m.reject(rc, 400, "unknown output "+*o.Name)
			return
		}
		list = append(list, t)
	}
	resp := map[string]any{"model_name": m.name, "outputs": list}
	if req.ID != "" {
		resp["id"] = req.ID
	}
	if m.version != "" {
		resp["model_version"] = m.version
	}
	b, _ := json.Marshal(resp)
	rc.SetBody(b)
}

// startV1 serves a strict V1 predict endpoint: instances (row) or inputs
// (columnar), never both; each prediction is the sum of its instance.
func startV1(tb testing.TB, name string) *fakeModel {
	tb.Helper()
	m := &fakeModel{name: name}
	m.Server = upstreamtest.Start(tb, func(_ int64, rc *fasthttp.RequestCtx) {
		m.mu.Lock()
		m.lastPath = string(rc.Path())
		m.mu.Unlock()
		if string(rc.Path()) != "/v1/models/"+name+":predict" {
			m.reject(rc, 404, "model not found")
			return
		}
		var req map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(rc.PostBody()))
		dec.UseNumber()
		if err := dec.Decode(&req); err != nil {
			m.reject(rc, 400, err.Error())
			return
		}
		inst, hasInst := req["instances"]
		cols, hasCols := req["inputs"]
		if hasInst == hasCols || len(req) != 1 {
			m.reject(rc, 400, "give exactly one of instances and inputs")
			return
		}
		sum := func(v any) float64 {
			var s float64
			var walk func(any)
			walk = func(v any) {
				switch v := v.(type) {
				case []any:
					for _, e := range v {
						walk(e)
					}
				case map[string]any:
					for _, e := range v {
						walk(e)
					}
				default:
					s += num(v)
				}
			}
			walk(v)
			return s
		}
		m.Calls.Add(1)
		rc.SetContentType("application/json")
		if hasInst {
			var list []any
			d := json.NewDecoder(bytes.NewReader(inst))
			d.UseNumber()
			if err := d.Decode(&list); err != nil {
				m.reject(rc, 400, "instances must be a list")
				return
			}
			preds := make([]float64, len(list))
			for i, e := range list {
				preds[i] = sum(e)
			}
			b, _ := json.Marshal(map[string]any{"predictions": preds})
			rc.SetBody(b)
			return
		}
		var named map[string][]any
		d := json.NewDecoder(bytes.NewReader(cols))
		d.UseNumber()
		if err := d.Decode(&named); err != nil {
			m.reject(rc, 400, "inputs must map names to lists")
			return
		}
		out := map[string][]float64{}
		for k, list := range named {
			for _, e := range list {
				out["sum_"+k] = append(out["sum_"+k], sum(e))
			}
		}
		b, _ := json.Marshal(map[string]any{"outputs": out})
		rc.SetBody(b)
	})
	return m
}

const featureRows = `[{"driver_id":1001,"conv_rate":0.5,"acc_rate":0.25},{"driver_id":1002,"conv_rate":1.5,"acc_rate":1}]`

func inferRoute(addr string, extra string) string {
	return fmt.Sprintf(`
name: infer-test
endpoint: /infer
timeout: 2s
tasks:
  features:
    type: http
    inputs: {address: http://unused.local/}
  rank:
    type: infer
    inputs:
      address: %s
      model_name: ranker
%s
`, addr, extra)
}

func TestInferV2Columns(t *testing.T) {
	m := startV2(t, "ranker", "")
	c := compileRoute(t, inferRoute(m.URL(""), `
      inputs:
        - name: features
          datatype: FP32
          shape: [-1, 2]
          from: '{{ .tasks.features.body }}'
          columns: [conv_rate, acc_rate]
      outputs: [scores, label]`), nil)
	r, err := c.run("rank", `{}`, map[string]string{"features": featureRows})
	if err != nil {
		t.Fatalf("run: %v (fake: %s)", err, m.LastError())
	}
	if got, want := string(r.Body), `{"scores":[0.75,2.5],"label":["r0.75","r2.5"]}`; got != want {
		t.Fatalf("result %s, want %s", got, want)
	}
	if got, want := m.LastBody(), `{"inputs":[{"name":"features","datatype":"FP32","data":[0.5,0.25,1.5,1],"shape":[2,2]}],"outputs":[{"name":"scores"},{"name":"label"}]}`; got != want {
		t.Fatalf("request\n%s\nwant\n%s", got, want)
	}
	if r.Model != "ranker" || r.Status != 200 || m.LastPath() != "/v2/models/ranker/infer" {
		t.Fatalf("model %q status %d path %s", r.Model, r.Status, m.LastPath())
	}
}

func TestInferV2RowsAndVersion(t *testing.T) {
	m := startV2(t, "ranker", "3")
	c := compileRoute(t, inferRoute(m.URL("/"), `
      model_version: "3"
      rows: true
      inputs:
        - name: x
          datatype: INT64
          from: '{{ .request.ids }}'`), nil)
	r, err := c.run("rank", `{"ids":[[1,2,3],[4,5,6]]}`, nil)
	if err != nil {
		t.Fatalf("run: %v (fake: %s)", err, m.LastError())
	}
	if got, want := string(r.Body), `[{"scores":6,"label":"r6","echo":[1,2,3]},{"scores":15,"label":"r15","echo":[4,5,6]}]`; got != want {
		t.Fatalf("result %s, want %s", got, want)
	}
	if r.Model != "ranker/3" || m.LastPath() != "/v2/models/ranker/versions/3/infer" {
		t.Fatalf("model %q path %s", r.Model, m.LastPath())
	}
}

// TestInferTensors checks how values become tensors: the request body
// sent for each input, or the error.
func TestInferTensors(t *testing.T) {
	m := startV2(t, "ranker", "")
	f := func(input, body, wantData, wantErr string) {
		t.Helper()
		c := compileRoute(t, inferRoute(m.URL(""), "      outputs: [scores]\n      inputs:\n"+input), nil)
		r, err := c.run("rank", body, nil)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s with %s: error %v, want %q", input, body, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Errorf("%s with %s: %v (fake: %s)", input, body, err, m.LastError())
			return
		}
		sent := m.LastBody()
		if !strings.Contains(sent, wantData) {
			t.Errorf("%s with %s: sent %s, want it to hold %s", input, body, sent, wantData)
		}
		if !strings.HasPrefix(string(r.Body), `{"scores":`) {
			t.Errorf("result %s", r.Body)
		}
	}
	in := func(dt, from, more string) string {
		return fmt.Sprintf("        - {name: x, datatype: %s, from: '%s'%s}\n", dt, from, more)
	}
	// Inferred shapes.
	f(in("FP32", "{{ .request.v }}", ""), `{"v":[1,2.5,3]}`, `"data":[1,2.5,3],"shape":[3]`, "")
	f(in("FP32", "{{ .request.v }}", ""), `{"v":[[1,2],[3,4],[5,6]]}`, `"data":[1,2,3,4,5,6],"shape":[3,2]`, "")
	f(in("FP64", "{{ .request.v }}", ""), `{"v":7}`, `"data":[7],"shape":[1]`, "")
	f(in("FP32", "{{ .request.v }}", ""), `{"v":[]}`, `"data":[],"shape":[0]`, "")
	// Declared shapes.
	f(in("FP32", "{{ .request.v }}", ", shape: [-1, 2, 2]"), `{"v":[[[1,2],[3,4]],[[5,6],[7,8]]]}`, `"data":[1,2,3,4,5,6,7,8],"shape":[2,2,2]`, "")
	f(in("FP32", "{{ .request.v }}", ", shape: [1, 4]"), `{"v":[1,2,3,4]}`, `"shape":[1,4]`, "")
	f(in("FP32", "{{ .request.v }}", ", shape: [-1, 3]"), `{"v":[[1,2],[3,4]]}`, "", "rows have 2 elements, shape [-1 3] wants 3")
	f(in("FP32", "{{ .request.v }}", ", shape: [2, 3]"), `{"v":[1,2,3]}`, "", "3 elements do not fill shape [2 3]")
	// Datatypes.
	f(in("INT32", "{{ .request.v }}", ""), `{"v":[1,-2]}`, `"datatype":"INT32","data":[1,-2]`, "")
	f(in("INT32", "{{ .request.v }}", ""), `{"v":[1,2.5]}`, "", "2.5 is not a INT32 value")
	f(in("UINT8", "{{ .request.v }}", ""), `{"v":[-1]}`, "", "-1 is not a UINT8 value")
	f(in("UINT8", "{{ .request.v }}", ""), `{"v":[255,256]}`, "", "256 is not a UINT8 value")
	f(in("INT8", "{{ .request.v }}", ""), `{"v":[-128,127]}`, `"data":[-128,127]`, "")
	f(in("INT8", "{{ .request.v }}", ""), `{"v":[-129]}`, "", "-129 is not a INT8 value")
	f(in("INT64", "{{ .request.v }}", ""), `{"v":[9223372036854775807]}`, `"data":[9223372036854775807]`, "")
	f(in("UINT64", "{{ .request.v }}", ""), `{"v":[18446744073709551615]}`, `"data":[18446744073709551615]`, "")
	f(in("BOOL", "{{ .request.v }}", ""), `{"v":[true,false]}`, `"data":[true,false]`, "")
	f(in("BOOL", "{{ .request.v }}", ""), `{"v":[1]}`, "", "1 is not a BOOL value")
	f(in("BYTES", "{{ .request.v }}", ""), `{"v":["a\"b",12]}`, `"data":["a\"b","12"]`, "")
	f(in("FP32", "{{ .request.v }}", ""), `{"v":["1"]}`, "", `"1" is not a FP32 value`)
	// Missing values.
	f(in("FP32", "{{ .request.v }}", ""), `{}`, "", "input x: is missing or null")
	f(in("FP32", "{{ .request.v }}", ""), `{"v":[1,null]}`, "", "row 1: is missing or null (set fill")
	f(in("FP32", "{{ .request.v }}", ", fill: 0"), `{"v":[1,null]}`, `"data":[1,0]`, "")
	// Columns.
	f(in("FP32", "{{ .request.rows }}", ", columns: [b, a]"), `{"rows":[{"a":1,"b":2},{"b":4,"a":3,"c":9}]}`, `"data":[2,1,4,3],"shape":[2,2]`, "")
	f(in("FP32", "{{ .request.rows }}", ", columns: [a]"), `{"rows":{"a":5}}`, `"data":[5],"shape":[1,1]`, "")
	f(in("FP32", "{{ .request.rows }}", ", columns: [a, b]"), `{"rows":[{"a":1}]}`, "", "row 0 column b is missing or null")
	f(in("FP32", "{{ .request.rows }}", ", columns: [a, b], fill: -1"), `{"rows":[{"a":1}]}`, `"data":[1,-1]`, "")
	f(in("FP32", "{{ .request.rows }}", ", columns: [a]"), `{"rows":[1,2]}`, "", "row 0 is 1, want an object")
	f(in("FP32", "{{ .request.rows }}", ""), `{"rows":[{"a":1}]}`, "", "give columns to read rows of objects")
	// Ragged rows.
	f(in("FP32", "{{ .request.v }}", ""), `{"v":[[1,2],[3]]}`, "", "row 1 has 1 elements, row 0 has 2")
	f(in("FP32", "{{ .request.v }}", ""), `{"v":[[1,2],3]}`, "", "rows mix lists and single values")
}

func TestInferV1(t *testing.T) {
	m := startV1(t, "eta")
	f := func(extra, body, wantSent, wantResult string) {
		t.Helper()
		c := compileRoute(t, strings.Replace(inferRoute(m.URL(""), extra), "model_name: ranker", "model_name: eta\n      protocol: v1", 1), nil)
		r, err := c.run("rank", body, nil)
		if err != nil {
			t.Fatalf("%s: %v (fake: %s)", extra, err, m.LastError())
		}
		if got := m.LastBody(); got != wantSent {
			t.Errorf("sent %s, want %s", got, wantSent)
		}
		if string(r.Body) != wantResult {
			t.Errorf("result %s, want %s", r.Body, wantResult)
		}
	}
	rows := `{"rows":[{"dist_km":3.2,"hour":8},{"dist_km":9,"hour":18}]}`
	f(`
      inputs: [{name: x, from: '{{ .request.rows }}', columns: [dist_km, hour]}]`,
		rows, `{"instances":[[3.2,8],[9,18]]}`, `{"predictions":[11.2,27]}`)
	f(`
      outputs: [eta_s]
      rows: true
      inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}'}]`,
		`{"v":[[1,2],[3,4]]}`, `{"instances":[[1,2],[3,4]]}`, `[{"eta_s":3},{"eta_s":7}]`)
	f(`
      rows: true
      inputs:
        - {name: a, from: '{{ .request.a }}'}
        - {name: b, from: '{{ .request.b }}'}`,
		`{"a":[1,2],"b":[[1,1],[2,2]]}`, `{"inputs":{"a":[1,2],"b":[[1,1],[2,2]]}}`, `[{"sum_a":1,"sum_b":2},{"sum_a":2,"sum_b":4}]`)
	if m.LastPath() != "/v1/models/eta:predict" {
		t.Fatalf("path %s", m.LastPath())
	}
}

// TestInferBadAnswers checks that answers breaking the protocol fail the
// task with a clear error instead of producing a wrong result.
func TestInferBadAnswers(t *testing.T) {
	m := startV2(t, "ranker", "")
	c := compileRoute(t, inferRoute(m.URL(""), `
      outputs: [scores]
      inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}'}]`), nil)
	f := func(status int, answer, wantErr string) {
		t.Helper()
		m.answer = func(*v2Request, []tensor) (int, string) { return status, answer }
		_, err := c.run("rank", `{"v":[1,2]}`, nil)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("answer %d %s: error %v, want %q", status, answer, err, wantErr)
		}
	}
	f(200, `{"model_name":"ranker"}`, "invalid inference answer: no outputs list")
	f(200, `{"outputs":[{"name":"scores","shape":[2,1],"datatype":"FP32","data":[1]}]}`, "output scores has 1 elements for shape [2 1]")
	f(200, `{"outputs":[{"name":"other","shape":[1],"datatype":"FP32","data":[1]}]}`, "no output scores")
	f(200, `{"outputs":[{"name":"scores","shape":"2","datatype":"FP32","data":[1,2]}]}`, "output scores has no shape")
	f(200, `{"outputs":[{"name":"scores","shape":[2,-1],"datatype":"FP32","data":[1,2]}]}`, "invalid shape [2,-1]")
	f(200, `{"outputs":[{"shape":[1],"data":[1]}]}`, "an output has no name")
	f(200, `not json`, "invalid JSON")
	f(400, `{"error":"bad input"}`, "upstream answered 400")
	f(500, `{"error":"boom"}`, "upstream answered 500")
	m.answer = nil
	// The fake itself rejects what a strict server rejects.
	bad := []string{
		`{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1]}]}`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"fp32","data":[1]}]}`,
		`{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}`,
		`{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]}`,
		`{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2,3],[4]]}]}`,
		`{"inputs":[],"extra":1}`,
	}
	for _, b := range bad {
		if _, _, err := parseV2Request([]byte(b)); err == nil {
			t.Errorf("the strict fake accepts %s", b)
		}
	}
}

// TestInferLoadErrors checks the messages of routes that must not load.
func TestInferLoadErrors(t *testing.T) {
	f := func(extra, want string) {
		t.Helper()
		_, err := tryCompileRoute(inferRoute("http://m.local:8000", extra), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s\nerror %v, want %q", extra, err, want)
		}
	}
	x := "\n      inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}'}]"
	f("", "declare at least one input tensor")
	f("\n      inputs: [{name: x, datatype: fp32, from: '{{ .request.v }}'}]", `unknown datatype "fp32"`)
	f("\n      inputs: [{name: x, from: '{{ .request.v }}'}]", "datatype is required with protocol v2")
	f("\n      inputs: [{name: x, datatype: FP32}]", "from is required")
	f("\n      inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}', shape: [2, -1]}]", "only the first (batch) dimension may be -1")
	f("\n      inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}', columns: [a, b], shape: [-1, 3]}]", "does not fit 2 columns")
	f("\n      inputs: [{name: x, datatype: INT32, from: '{{ .request.v }}', fill: 0.5}]", "fill: 0.5 is not a INT32 value")
	f("\n      inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}'}, {name: x, datatype: FP32, from: '{{ .request.v }}'}]", `duplicate input name "x"`)
	f("\n      inputs: [{name: x, datatype: FP32, from: '{{ .tasks.nope.body }}'}]", `unknown task "nope"`)
	f("\n      protocol: v3"+x, "protocol must be v2 or v1")
	f("\n      outputs: [a, a]"+x, `duplicate output name "a"`)
	f("\n      protocol: v1\n      batch: {max_size: 4}"+x, "batch needs protocol v2")
	f("\n      batch: {max_size: 4}\n      inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}'}]", "input x needs a fixed row shape")
	f("\n      batch: {}\n      hedge_after: 5ms"+x, "cannot be combined with hedge_after")
	f("\n      batch: {}\n      headers: {X-User: '{{ .request.u }}'}\n      inputs: [{name: x, datatype: FP32, shape: [-1], from: '{{ .request.v }}'}]", "header values cannot hold templates")
	f("\n      hedge_after: 3s"+x, "hedge_after 3s must be shorter than the try timeout 2s")
	f("\n      primary_within: 5ms"+x, "primary_within needs a fallback")
	f("\n      fallback: {model_name: other}"+x, "inputs.fallback.address (or inputs.fallback.model) is required")
	f("\n      shadow: {address: http://s.local, sample: 0}"+x, "shadow.sample must be above 0")
	f("\n      shadow: {address: 'http://s.local/{{ .request.v }}', sample: 1}"+x, "templates are not supported")
	f("\n      model: ranker@prod"+x, "give either address or model")
	_, err := tryCompileRoute(strings.Replace(inferRoute("http://m.local:8000", x), "model_name: ranker", "", 1), nil)
	if err == nil || !strings.Contains(err.Error(), "needs model_name") {
		t.Errorf("no model_name: %v", err)
	}
	_, err = tryCompileRoute(inferRoute("http://m.local:8000/?a=1", x), nil)
	if err == nil || !strings.Contains(err.Error(), "without a query") {
		t.Errorf("query: %v", err)
	}
}

// fakeResolver resolves registry references from a fixed table.
type fakeResolver map[string]ResolvedModel

func (f fakeResolver) Register(_ context.Context, ref string) (ResolvedModel, error) {
	m, ok := f[ref]
	if !ok {
		return m, errors.New("unknown model")
	}
	return m, nil
}

func (f fakeResolver) Lookup(ref string) (ResolvedModel, bool) {
	m, ok := f[ref]
	return m, ok
}

func TestInferRegistryModel(t *testing.T) {
	m := startV2(t, "eta", "")
	full := startV2(t, "eta", "7")
	env := NewEnv(nil)
	ModelRegistry.Provide(env, fakeResolver{
		"eta@prod": {Name: "eta", Version: "7", Endpoint: m.URL("")},
		"eta/7":    {Name: "eta", Version: "7", Endpoint: full.URL("/v2/models/eta/versions/7/infer")},
	})
	route := `
name: reg
endpoint: /reg
tasks:
  a:
    type: infer
    inputs: {model: eta@prod, inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}'}], outputs: [scores]}
  b:
    type: infer
    inputs: {model: eta/7, inputs: [{name: x, datatype: FP32, from: '{{ .request.v }}'}], outputs: [scores]}
`
	c := compileRoute(t, route, env)
	for _, name := range []string{"a", "b"} {
		r, err := c.run(name, `{"v":[1,2]}`, nil)
		if err != nil || string(r.Body) != `{"scores":[1,2]}` || r.Model != "eta/7" {
			t.Fatalf("%s: %v %s model %q (fakes: %s / %s)", name, err, r.Body, r.Model, m.LastError(), full.LastError())
		}
	}
	if m.LastPath() != "/v2/models/eta/infer" || full.LastPath() != "/v2/models/eta/versions/7/infer" {
		t.Fatalf("paths %s %s", m.LastPath(), full.LastPath())
	}
}

// FuzzInferTensors renders the tensors of arbitrary request data, for
// both protocols and with and without columns: no panic, and a V2 body
// that renders is valid JSON. Precondition: the body is valid JSON, as the
// gateway answers 400 to any other body before a task runs.
func FuzzInferTensors(f *testing.F) {
	f.Add(`{"v":[[1,2],[3,4]],"rows":[{"a":1,"b":2}]}`)
	f.Add(`{"v":[1,null,"x",true],"rows":{"a":[1]}}`)
	f.Add(`{"v":[[[1]],[2]],"rows":[1,{"b":null}]}`)
	route := inferRoute("http://m.local:8000", `
      inputs:
        - {name: v, datatype: FP32, from: '{{ .request.v }}'}
        - {name: s, datatype: FP32, shape: [-1, 2], from: '{{ .request.v }}', fill: 0}
        - {name: r, datatype: INT64, from: '{{ .request.rows }}', columns: [a, b]}
        - {name: b, datatype: BYTES, from: '{{ .request.v }}'}`)
	c := compileRoute(f, route, nil)
	v1 := compileRoute(f, strings.Replace(route, "model_name: ranker", "model_name: ranker\n      protocol: v1", 1), nil)
	f.Fuzz(func(t *testing.T, body string) {
		if !json.Valid([]byte(body)) {
			t.Skip("not JSON: the gateway rejects it with 400 before any task runs")
		}
		x := c.exchange(body, nil, nil)
		out, err := c.tasks["rank"].(*inferTask).appendV2Body(nil, x)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid V2 body %s", out)
		}
		x = v1.exchange(body, nil, nil)
		out, err = v1.tasks["rank"].(*inferTask).appendV1Body(nil, x)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid V1 body %s", out)
		}
	})
}
