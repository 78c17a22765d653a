package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/jsonutil"
	"github.com/lariat-gw/lariat/internal/lazymetric"
	"github.com/lariat-gw/lariat/upstream"
)

func init() {
	Register(Kind{Name: "infer", Inputs: reflect.TypeFor[InferInputs](), New: newInferTask})
}

// InferInputs are the settings of an infer task: one call to a model
// server over the Open Inference Protocol (KServe V2 REST POST
// /v2/models/<name>[/versions/<v>]/infer, or V1 :predict), with input
// tensors built from the request and other tasks' results, and output
// tensors mapped back to JSON: {"<output>": [...]} per output, or one
// object per batch row with rows: true.
type InferInputs struct {
	// Address is the model server's base URL, e.g. http://triton:8000 (no
	// templates, query or fragment). Needs model_name. Give either address
	// or model.
	Address config.String `yaml:"address" jsonschema:"oneOf=target,needs=model_name,pattern=^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@{}\\s]+(/[^?#]*)?$"`
	// Model is a registry model instead of an address; its serving
	// endpoint is the server's base URL (or the full infer/predict URL).
	// Needs a registry.
	Model config.String `yaml:"model" jsonschema:"oneOf=target,pattern=^(models:/)?[^@/]+(@[^@/]+|/[^@/]+)$"`
	// ModelName is the served model's name, in the URL path; required
	// with address, the registry name by default with model.
	ModelName config.String `yaml:"model_name" jsonschema:"minLength=1"`
	// ModelVersion is the served model's version, when the server
	// versions models: /versions/<v> in the URL path.
	ModelVersion config.String `yaml:"model_version"`
	// Protocol is v2 (the default), the Open Inference Protocol V2 REST,
	// or v1, TF Serving style :predict with instances (one input) or
	// columnar inputs (several).
	Protocol config.String `yaml:"protocol" jsonschema:"enum=v2,enum=v1,default=v2"`
	// Inputs are the input tensors, at least one.
	Inputs []TensorInput `yaml:"inputs" jsonschema:"required,minItems=1"`
	// Outputs names the output tensors requested and mapped, in order;
	// all the model returns when left out. With v1 the first names the
	// predictions ("predictions" by default).
	Outputs []config.String `yaml:"outputs" jsonschema:"uniqueItems,items.minLength=1"`
	// Rows maps the outputs to one object per batch row,
	// [{"scores": 0.9}, ...], instead of one list per output,
	// {"scores": [0.9, ...]}.
	Rows bool `yaml:"rows"`
	// Headers are request headers, name to value; values may hold
	// templates (inserted as plain text). A header whose template refers
	// to a missing or null value is left out.
	Headers map[string]config.String `yaml:"headers" jsonschema:"keys.pattern=^[-!#$%&'*+.^_\x60|~0-9A-Za-z]+$"`
	// CallInputs are the timeout, retry, breaker, hedging, fallback and
	// shadow settings, as for http tasks.
	CallInputs `yaml:",inline"`
	// Batch turns on micro-batching: concurrent calls to the same model
	// with the same input signature are coalesced into one V2 call
	// (tensors concatenated along the batch dimension, outputs split
	// back). Needs protocol v2, a fixed row shape for every input
	// (columns, or a shape starting with -1) and static headers; not with
	// hedge_after or fallback.
	Batch *BatchInputs `yaml:"batch"`
}

// TensorInput declares one input tensor.
type TensorInput struct {
	// Name is the tensor's name.
	Name config.String `yaml:"name" jsonschema:"required,minLength=1"`
	// Datatype is the V2 datatype (case-sensitive); required with protocol
	// v2. Elements are checked against it.
	Datatype config.String `yaml:"datatype" jsonschema:"enum=BOOL,enum=UINT8,enum=UINT16,enum=UINT32,enum=UINT64,enum=INT8,enum=INT16,enum=INT32,enum=INT64,enum=FP16,enum=FP32,enum=FP64,enum=BYTES"`
	// Shape is the tensor's shape; -1 as the first dimension is the batch
	// size (the number of rows). Inferred from the data when left out:
	// [rows] for a list of values, [rows, n] for a list of lists or with
	// columns.
	Shape []int `yaml:"shape" jsonschema:"maxItems=8,items.minimum=-1"`
	// From is a template giving the tensor's data: a value, a list (one
	// element or list per batch row), or with columns a list of row
	// objects, e.g. '{{ .tasks.features.body }}'.
	From config.String `yaml:"from" jsonschema:"required,minLength=1"`
	// Columns reads rows of objects into a 2-D tensor [rows, columns], one
	// column per key, in this order (e.g. feature rows).
	Columns []config.String `yaml:"columns" jsonschema:"uniqueItems,items.minLength=1"`
	// Fill is the value used for a missing or null element; without it
	// such an element fails the task.
	Fill json.RawMessage `yaml:"fill" jsonschema:"type=number|string|boolean"`
}

type protocol uint8

const (
	protoV2 protocol = iota
	protoV1
)

type dtKind uint8

const (
	dtAny dtKind = iota
	dtFloat
	dtInt
	dtUint
	dtBool
	dtBytes
)

var datatypes = map[string]dtKind{
	"BOOL": dtBool, "BYTES": dtBytes,
	"UINT8": dtUint, "UINT16": dtUint, "UINT32": dtUint, "UINT64": dtUint,
	"INT8": dtInt, "INT16": dtInt, "INT32": dtInt, "INT64": dtInt,
	"FP16": dtFloat, "FP32": dtFloat, "FP64": dtFloat,
}

// maxRank bounds tensor ranks.
const maxRank = 8

type tensorIn struct {
	name     string
	datatype string
	dt       dtKind
	bits     int // of integer datatypes
	// prefix opens the tensor in a V2 request, up to the data elements.
	prefix []byte
	// key is the tensor's name as a JSON string and a colon (V1).
	key    []byte
	shape  []int // declared; nil when inferred
	inner  []int // dimensions after the batch one, when fixed
	perRow int   // elements per batch row when fixed, else -1
	from   *Template
	// fromRequest is set when from reads only the request, so bad data
	// is the request's fault (400).
	fromRequest bool
	columns     []string
	fill        []byte
}

type inferTask struct {
	detail    Detail
	proto     protocol
	ep        *endpoint
	call      *caller
	headers   headerSet
	propagate []propagated
	inputs    []*tensorIn
	// outputsJSON is `,"outputs":[{"name":...},...]` or empty.
	outputsJSON []byte
	codec       *v2Codec
	v1          *v1Codec
	batch       *batchSpec
	env         *Env
	// held are the batchers the task acquired, by key (see batcherFor).
	heldMu   sync.Mutex
	held     map[string]*batcher
	overflow *lazymetric.Counter
	// refusedBatch counts the requests sent alone after the batch that
	// carried them was refused for its content.
	refusedBatch *lazymetric.Counter
}

var _ Describer = (*inferTask)(nil)

// Describe implements Describer: the model server's host and the model's
// name, or the registry model.
func (t *inferTask) Describe() Detail { return t.detail }

func newInferTask(s *Spec) (Task, error) {
	var in InferInputs
	if err := s.Decode(&in); err != nil {
		return nil, err
	}
	t := &inferTask{env: s.Env}
	switch in.Protocol.Value {
	case "", "v2":
	case "v1":
		t.proto = protoV1
	default:
		return nil, s.Errorf(in.Protocol.Pos, "inputs.protocol must be v2 or v1, got %q", in.Protocol.Value)
	}
	defName := in.ModelName.Value
	ef := func(s *Spec, field string, address, model, modelName, modelVersion config.String, bs upstream.BreakerSettings) (*endpoint, error) {
		name := modelName.Value
		if name == "" {
			name = defName
		}
		return t.endpoint(s, field, address, model, name, modelVersion, bs)
	}
	var err error
	if t.call, err = compileCall(s, &in.CallInputs, ef); err != nil {
		return nil, err
	}
	if t.ep, err = t.endpoint(s, "", in.Address, in.Model, in.ModelName.Value, in.ModelVersion, t.call.breakerSet); err != nil {
		return nil, err
	}
	if in.Model.Value != "" {
		t.detail = Detail{Target: "model " + in.Model.Value, Model: in.Model.Value}
	} else {
		t.detail.Target = strings.TrimSpace(t.ep.fixed.HostHdr + " " + in.ModelName.Value)
	}
	if len(in.Inputs) == 0 {
		return nil, s.Errorf(s.Task.NamePos, "inputs.inputs: declare at least one input tensor")
	}
	seen := map[string]bool{}
	for i := range in.Inputs {
		ti, err := t.compileInput(s, i, &in.Inputs[i])
		if err != nil {
			return nil, err
		}
		if seen[ti.name] {
			return nil, s.Errorf(in.Inputs[i].Name.Pos, "inputs.inputs[%d]: duplicate input name %q", i, ti.name)
		}
		seen[ti.name] = true
		t.inputs = append(t.inputs, ti)
	}
	var outs []string
	for i, o := range in.Outputs {
		if o.Value == "" {
			return nil, s.Errorf(o.Pos, "inputs.outputs[%d]: empty output name", i)
		}
		if contains(outs, o.Value) {
			return nil, s.Errorf(o.Pos, "inputs.outputs[%d]: duplicate output name %q", i, o.Value)
		}
		outs = append(outs, o.Value)
	}
	if len(outs) > 0 && t.proto == protoV2 {
		b := []byte(`,"outputs":[`)
		for i, o := range outs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = jsonutil.AppendString(b, o)
			b = append(b, '}')
		}
		t.outputsJSON = append(b, ']')
	}
	t.codec = &v2Codec{outputs: outs, rows: in.Rows}
	t.call.setDecode(t.codec.decode)
	if t.proto == protoV1 {
		name := "predictions"
		if len(outs) > 0 {
			name = outs[0]
		}
		t.v1 = &v1Codec{name: jsonutil.AppendString(nil, name), rows: in.Rows}
		t.call.setDecode(t.v1.decode)
	}
	if t.headers, err = compileHeaders(s, in.Headers); err != nil {
		return nil, err
	}
	t.propagate = compilePropagate(s)
	if in.Batch != nil {
		if t.batch, err = t.compileBatch(s, in.Batch); err != nil {
			return nil, err
		}
		t.overflow = lazymetric.NewCounter(s.Metrics, `lariat_batch_overflow_total{`+s.Labels+`}`)
		t.refusedBatch = lazymetric.NewCounter(s.Metrics, `lariat_batch_refused_total{`+s.Labels+`}`)
	}
	return t, nil
}

// endpoint compiles the primary (field "") or the fallback or shadow
// model of the task.
func (t *inferTask) endpoint(s *Spec, field string, address, model config.String, name string, version config.String, bs upstream.BreakerSettings) (*endpoint, error) {
	where := "inputs"
	if field != "" {
		where += "." + field
	}
	switch {
	case address.Value != "" && model.Value != "":
		return nil, s.Errorf(model.Pos, "%s: give either address or model, not both", where)
	case model.Value != "":
		e, err := registryEndpoint(s, strings.TrimPrefix(where+".model", "inputs."), model, bs)
		if err != nil {
			return nil, err
		}
		e.modelPath = func(rest string, m ResolvedModel) string {
			p, q, _ := strings.Cut(rest, "?")
			if strings.HasSuffix(p, "/infer") || strings.HasSuffix(p, ":predict") {
				return rest
			}
			n := name
			if n == "" {
				n = m.Name
			}
			p = t.modelPath(p, n, version.Value)
			if q != "" {
				p += "?" + q
			}
			return p
		}
		return e, nil
	case address.Value == "":
		return nil, s.Errorf(s.Task.NamePos, "%s.address (or %s.model) is required", where, where)
	}
	if strings.Contains(address.Value, "{{") {
		return nil, s.Errorf(address.Pos, "%s.address: templates are not supported in a model server's address", where)
	}
	scheme, host, hostPort, rest, err := parseUpstream(address.Value)
	if err != nil {
		return nil, s.Errorf(address.Pos, "%s.address: %v", where, err)
	}
	if strings.Contains(rest, "?") {
		return nil, s.Errorf(address.Pos, "%s.address: give the model server's base URL, without a query", where)
	}
	if name == "" {
		return nil, s.Errorf(address.Pos, "%s: a model server address needs model_name", where)
	}
	e, err := fixedEndpoint(s, address.Pos, where+".address", bs, scheme, host, hostPort, t.modelPath(rest, name, version.Value))
	if err != nil {
		return nil, err
	}
	e.fixed.model = name
	if version.Value != "" {
		e.fixed.model += "/" + version.Value
	}
	return e, nil
}

// modelPath is the path of a model's infer (V2) or predict (V1) endpoint
// on a server whose base path is base.
func (t *inferTask) modelPath(base, name, version string) string {
	base = strings.TrimSuffix(base, "/")
	var b strings.Builder
	b.WriteString(base)
	if t.proto == protoV1 {
		b.WriteString("/v1/models/")
	} else {
		b.WriteString("/v2/models/")
	}
	b.WriteString(url.PathEscape(name))
	if version != "" {
		b.WriteString("/versions/")
		b.WriteString(url.PathEscape(version))
	}
	if t.proto == protoV1 {
		b.WriteString(":predict")
	} else {
		b.WriteString("/infer")
	}
	return b.String()
}

func (t *inferTask) compileInput(s *Spec, i int, in *TensorInput) (*tensorIn, error) {
	where := fmt.Sprintf("inputs.inputs[%d]", i)
	pos := in.Name.Pos
	if in.Name.Value == "" {
		return nil, s.Errorf(pos, "%s.name is required", where)
	}
	ti := &tensorIn{name: in.Name.Value, perRow: -1}
	switch dt := in.Datatype.Value; {
	case dt == "" && t.proto == protoV2:
		return nil, s.Errorf(pos, "%s.datatype is required with protocol v2", where)
	case dt != "":
		k, ok := datatypes[dt]
		if !ok {
			names := sortedKeys(datatypes)
			return nil, s.Errorf(in.Datatype.Pos, "%s.datatype: unknown datatype %q%s (datatypes are case-sensitive)", where, dt, config.Suggest(dt, names))
		}
		ti.dt, ti.datatype = k, dt
		if k == dtInt || k == dtUint {
			ti.bits, _ = strconv.Atoi(strings.TrimLeft(dt, "UINT"))
		}
	}
	if in.From.Value == "" {
		return nil, s.Errorf(pos, "%s.from is required: a template giving the tensor's data, e.g. '{{ .request.features }}'", where)
	}
	var err error
	if ti.from, err = s.Template(strings.TrimPrefix(where, "inputs.")+".from", in.From, ModeJSON); err != nil {
		return nil, err
	}
	ti.fromRequest = !ti.from.ReadsTasks()
	for j, c := range in.Columns {
		if c.Value == "" {
			return nil, s.Errorf(c.Pos, "%s.columns[%d]: empty column name", where, j)
		}
		if contains(ti.columns, c.Value) {
			return nil, s.Errorf(c.Pos, "%s.columns[%d]: duplicate column %q", where, j, c.Value)
		}
		ti.columns = append(ti.columns, c.Value)
	}
	if n := len(in.Shape); n > 0 {
		if n > maxRank {
			return nil, s.Errorf(pos, "%s.shape: at most %d dimensions", where, maxRank)
		}
		for j, d := range in.Shape {
			if d == -1 && j == 0 {
				continue
			}
			if d < 0 {
				return nil, s.Errorf(pos, "%s.shape: dimension %d is %d; only the first (batch) dimension may be -1", where, j, d)
			}
		}
		ti.shape = append([]int(nil), in.Shape...)
		if ti.columns != nil && (n != 2 || in.Shape[1] != len(ti.columns)) {
			return nil, s.Errorf(pos, "%s.shape %v does not fit %d columns: want [-1, %d]", where, in.Shape, len(ti.columns), len(ti.columns))
		}
		if in.Shape[0] == -1 {
			ti.inner = ti.shape[1:]
		}
	} else if ti.columns != nil {
		ti.inner = []int{len(ti.columns)}
	}
	if ti.inner != nil {
		ti.perRow = 1
		for _, d := range ti.inner {
			ti.perRow *= d
		}
	}
	if len(in.Fill) > 0 && string(in.Fill) != "null" {
		v := gjson.ParseBytes(in.Fill)
		if v.IsArray() || v.IsObject() {
			return nil, s.Errorf(pos, "%s.fill must be a single value", where)
		}
		fill, err := ti.appendElem(nil, v)
		if err != nil {
			return nil, s.Errorf(pos, "%s.fill: %v", where, err)
		}
		ti.fill = fill
	}
	ti.prefix = append(ti.prefix, `{"name":`...)
	ti.prefix = jsonutil.AppendString(ti.prefix, ti.name)
	ti.prefix = append(ti.prefix, `,"datatype":`...)
	ti.prefix = jsonutil.AppendString(ti.prefix, ti.datatype)
	ti.prefix = append(ti.prefix, `,"data":[`...)
	ti.key = append(jsonutil.AppendString(nil, ti.name), ':')
	return ti, nil
}

// elemCount describes the data of one input tensor as rendered.
type elemCount struct {
	rows, per int
	// nested is set when rows are lists; scalar when the value was a
	// single element rather than a list.
	nested, scalar bool
}

// errNullElem is reported for a null or missing element without fill.
var errNullElem = errors.New("is missing or null (set fill to use a value instead)")

// appendElem checks v against the tensor's datatype and appends it.
func (ti *tensorIn) appendElem(dst []byte, v gjson.Result) ([]byte, error) {
	if !v.Exists() || v.Type == gjson.Null {
		if ti.fill != nil {
			return append(dst, ti.fill...), nil
		}
		return dst, errNullElem
	}
	switch ti.dt {
	case dtAny:
		return append(dst, v.Raw...), nil
	case dtFloat:
		if v.Type == gjson.Number {
			return append(dst, v.Raw...), nil
		}
	case dtInt:
		if v.Type == gjson.Number && isInteger(v.Raw, false) {
			if _, err := strconv.ParseInt(v.Raw, 10, ti.bits); err == nil {
				return append(dst, v.Raw...), nil
			}
		}
	case dtUint:
		if v.Type == gjson.Number && isInteger(v.Raw, true) {
			if _, err := strconv.ParseUint(v.Raw, 10, ti.bits); err == nil {
				return append(dst, v.Raw...), nil
			}
		}
	case dtBool:
		switch v.Type {
		case gjson.True:
			return append(dst, "true"...), nil
		case gjson.False:
			return append(dst, "false"...), nil
		}
	case dtBytes:
		switch v.Type {
		case gjson.String:
			return append(dst, v.Raw...), nil
		case gjson.Number:
			return jsonutil.AppendString(dst, v.Raw), nil
		}
	}
	return dst, fmt.Errorf("%s is not a %s value", truncate(v.Raw), ti.datatype)
}

func isInteger(raw string, unsigned bool) bool {
	if raw == "" {
		return false
	}
	i := 0
	if raw[0] == '-' {
		if unsigned {
			return false
		}
		i = 1
	}
	if i == len(raw) {
		return false
	}
	for ; i < len(raw); i++ {
		if raw[i] < '0' || raw[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// maxStackColumns is how many columns a row is read into without
// allocating.
const maxStackColumns = 32

// dataError returns err, as a *RequestError when the tensor's data comes
// from the request alone.
func (ti *tensorIn) dataError(err error) error {
	if err == nil || !ti.fromRequest {
		return err
	}
	return &RequestError{Msg: err.Error()}
}

// appendElems appends the tensor's elements read from v, comma-separated.
// With rowLists (V1 rows), each row with more than one element is
// written as a list. Errors in the data are reported as dataError does.
func (ti *tensorIn) appendElems(dst []byte, v gjson.Result, rowLists bool) ([]byte, elemCount, error) {
	dst, ec, err := ti.appendData(dst, v, rowLists)
	return dst, ec, ti.dataError(err)
}

func (ti *tensorIn) appendData(dst []byte, v gjson.Result, rowLists bool) ([]byte, elemCount, error) {
	var ec elemCount
	var err error
	if ti.columns != nil {
		ec.per, ec.nested = len(ti.columns), true
		switch {
		case v.IsArray():
			v.ForEach(func(_, row gjson.Result) bool {
				dst, err = ti.appendRow(dst, row, ec.rows, rowLists)
				ec.rows++
				return err == nil
			})
		case v.IsObject():
			dst, err = ti.appendRow(dst, v, 0, rowLists)
			ec.rows = 1
		default:
			err = fmt.Errorf("input %s: want a list of row objects with columns %v, got %s", ti.name, ti.columns, describeJSON(v))
		}
		return dst, ec, err
	}
	switch {
	case v.IsArray():
		ec.per = -1
		// written counts the elements written, for commas between
		// elements of a flat (V2) list.
		written := 0
		v.ForEach(func(_, item gjson.Result) bool {
			if rowLists && ec.rows > 0 {
				dst = append(dst, ',')
			}
			n := 1
			switch {
			case item.IsObject():
				err = fmt.Errorf("input %s: row %d is an object: give columns to read rows of objects", ti.name, ec.rows)
			case item.IsArray():
				if ec.rows > 0 && !ec.nested {
					err = fmt.Errorf("input %s: rows mix lists and single values", ti.name)
					return false
				}
				ec.nested = true
				n = 0
				if rowLists {
					dst = append(dst, '[')
					sep := 0
					dst, err = ti.flatten(dst, item, &n, &sep, 0)
					dst = append(dst, ']')
				} else {
					dst, err = ti.flatten(dst, item, &n, &written, 0)
				}
			default:
				if ec.nested {
					err = fmt.Errorf("input %s: rows mix lists and single values", ti.name)
					return false
				}
				if !rowLists && written > 0 {
					dst = append(dst, ',')
				}
				dst, err = ti.appendElem(dst, item)
				if err != nil {
					err = fmt.Errorf("input %s: row %d: %w", ti.name, ec.rows, err)
				}
				written++
			}
			if err != nil {
				return false
			}
			if ec.per >= 0 && n != ec.per {
				err = fmt.Errorf("input %s: row %d has %d elements, row 0 has %d", ti.name, ec.rows, n, ec.per)
				return false
			}
			ec.per = n
			ec.rows++
			return true
		})
		if ec.per < 0 {
			ec.per = 1
			if ti.inner != nil {
				ec.per = ti.perRow
			}
		}
	case v.IsObject():
		err = fmt.Errorf("input %s: got an object: give columns to read row objects", ti.name)
	default:
		dst, err = ti.appendElem(dst, v)
		if err != nil {
			err = fmt.Errorf("input %s: %w", ti.name, err)
		}
		ec.rows, ec.per, ec.scalar = 1, 1, true
	}
	return dst, ec, err
}

// appendRow appends the columns of one row object.
func (ti *tensorIn) appendRow(dst []byte, row gjson.Result, n int, rowLists bool) ([]byte, error) {
	if !row.IsObject() {
		return dst, fmt.Errorf("input %s: row %d is %s, want an object with columns %v", ti.name, n, describeJSON(row), ti.columns)
	}
	var stack [maxStackColumns]gjson.Result
	vals := stack[:0]
	if len(ti.columns) > maxStackColumns {
		vals = make([]gjson.Result, len(ti.columns))
	} else {
		vals = stack[:len(ti.columns)]
	}
	row.ForEach(func(k, v gjson.Result) bool {
		for i, c := range ti.columns {
			if k.Str == c {
				vals[i] = v
				break
			}
		}
		return true
	})
	if n > 0 {
		dst = append(dst, ',')
	}
	if rowLists {
		dst = append(dst, '[')
	}
	for i := range vals {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = ti.appendElem(dst, vals[i]); err != nil {
			return dst, fmt.Errorf("input %s: row %d column %s %w", ti.name, n, ti.columns[i], err)
		}
	}
	if rowLists {
		dst = append(dst, ']')
	}
	return dst, nil
}

// flatten appends the elements of the nested list v in row-major order,
// counting them in *n; a comma goes before an element when *sep > 0, and
// *sep counts the elements written.
func (ti *tensorIn) flatten(dst []byte, v gjson.Result, n, sep *int, depth int) ([]byte, error) {
	if depth > maxRank {
		return dst, fmt.Errorf("input %s: lists nested more than %d deep", ti.name, maxRank)
	}
	var err error
	v.ForEach(func(_, e gjson.Result) bool {
		if e.IsArray() {
			dst, err = ti.flatten(dst, e, n, sep, depth+1)
			return err == nil
		}
		if *sep > 0 {
			dst = append(dst, ',')
		}
		if dst, err = ti.appendElem(dst, e); err != nil {
			err = fmt.Errorf("input %s: element %d: %w", ti.name, *n, err)
			return false
		}
		*n++
		*sep++
		return true
	})
	return dst, err
}

// appendShape appends the JSON shape of data described by ec. Data that
// does not fit is reported as dataError does.
func (ti *tensorIn) appendShape(dst []byte, ec elemCount) ([]byte, error) {
	dst, err := ti.appendShapeOf(dst, ec)
	return dst, ti.dataError(err)
}

func (ti *tensorIn) appendShapeOf(dst []byte, ec elemCount) ([]byte, error) {
	dst = append(dst, '[')
	switch {
	case ti.shape != nil:
		total, inner := 1, 1
		for j, d := range ti.shape {
			if j == 0 && d == -1 {
				d = ec.rows
			} else if j > 0 {
				inner *= d
			}
			total *= d
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, int64(d), 10)
		}
		if ti.shape[0] == -1 && inner != ec.per && ec.rows > 0 {
			return dst, fmt.Errorf("input %s: rows have %d elements, shape %v wants %d", ti.name, ec.per, ti.shape, inner)
		}
		if total != ec.rows*ec.per {
			return dst, fmt.Errorf("input %s: %d elements do not fill shape %v", ti.name, ec.rows*ec.per, ti.shape)
		}
	case ec.nested:
		dst = strconv.AppendInt(dst, int64(ec.rows), 10)
		dst = append(dst, ',')
		dst = strconv.AppendInt(dst, int64(ec.per), 10)
	default:
		dst = strconv.AppendInt(dst, int64(ec.rows), 10)
	}
	return append(dst, ']'), nil
}

func describeJSON(v gjson.Result) string {
	switch {
	case !v.Exists():
		return "nothing"
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "a list"
	}
	return truncate(v.Raw)
}

// bufPool holds buffers templates render into before their values are
// read.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Run builds the input tensors and calls the model, alone or in a batch.
func (t *inferTask) Run(x *Exchange, r *Result) error {
	tg, err := t.ep.target()
	if err != nil {
		return err
	}
	r.Model = tg.model
	r.Upstream = tg.HostHdr
	if tg.calls != nil {
		tg.calls.Inc()
	}
	first := 0
	if t.batch != nil {
		var done bool
		if first, done, err = t.runBatched(x, r, tg); done {
			return err
		}
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	if err := t.buildRequest(req, x, r, tg); err != nil {
		return err
	}
	if err := t.call.call(x, r, req, tg, first); err != nil {
		return err
	}
	if sh := t.call.shadow; sh != nil && sh.sampled() {
		sh.send(req, r.Body)
	}
	return nil
}

// buildRequest writes the call of tg with the tensors of x into req; the
// body stays in r.scratch.
func (t *inferTask) buildRequest(req *fasthttp.Request, x *Exchange, r *Result, tg *target) error {
	req.Header.SetMethod(fasthttp.MethodPost)
	tg.Retarget(req)
	setPropagated(req, x, t.propagate)
	if err := t.headers.apply(req, x, &r.scratch); err != nil {
		return err
	}
	setTrace(req, x, r)
	req.Header.SetContentType("application/json")
	var err error
	if t.proto == protoV1 {
		r.scratch, err = t.appendV1Body(r.scratch[:0], x)
	} else {
		r.scratch, err = t.appendV2Body(r.scratch[:0], x)
	}
	if err != nil {
		return err
	}
	req.SetBodyRaw(r.scratch)
	return nil
}

// render renders the data template of input ti for x into *buf and
// parses it.
func render(ti *tensorIn, x *Exchange, buf *[]byte) gjson.Result {
	*buf = ti.from.Append((*buf)[:0], x)
	return gjson.Parse(jsonutil.B2S(*buf))
}

// appendV2Body appends a V2 inference request.
func (t *inferTask) appendV2Body(dst []byte, x *Exchange) ([]byte, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	dst = append(dst, `{"inputs":[`...)
	for i, ti := range t.inputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		v := render(ti, x, bp)
		dst = append(dst, ti.prefix...)
		var ec elemCount
		var err error
		if dst, ec, err = ti.appendElems(dst, v, false); err != nil {
			return dst, err
		}
		dst = append(dst, `],"shape":`...)
		if dst, err = ti.appendShape(dst, ec); err != nil {
			return dst, err
		}
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	dst = append(dst, t.outputsJSON...)
	return append(dst, '}'), nil
}

// appendV1Body appends a V1 predict request: row format ("instances")
// for one input, columnar ("inputs") for several.
func (t *inferTask) appendV1Body(dst []byte, x *Exchange) ([]byte, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if len(t.inputs) == 1 {
		dst = append(dst, `{"instances":[`...)
	} else {
		dst = append(dst, `{"inputs":{`...)
	}
	for i, ti := range t.inputs {
		if len(t.inputs) > 1 {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, ti.key...)
			dst = append(dst, '[')
		}
		v := render(ti, x, bp)
		var ec elemCount
		var err error
		if dst, ec, err = ti.appendElems(dst, v, true); err != nil {
			return dst, err
		}
		if ti.shape != nil {
			var sb [64]byte
			if _, err := ti.appendShape(sb[:0], ec); err != nil {
				return dst, err
			}
		}
		if len(t.inputs) > 1 {
			dst = append(dst, ']')
		}
	}
	if len(t.inputs) == 1 {
		return append(dst, "]}"...), nil
	}
	return append(dst, "}}"...), nil
}

// v2Codec maps the output tensors of a V2 answer to the task's result.
type v2Codec struct {
	outputs []string
	rows    bool
}

// outTensor is one output tensor of an answer; its elements are
// decodeScratch.elems[start:end].
type outTensor struct {
	name       string
	shape      [maxRank]int
	rank       int
	start, end int
}

func (o *outTensor) perRow() int {
	n := 1
	for _, d := range o.shape[1:o.rank] {
		n *= d
	}
	return n
}

type decodeScratch struct {
	elems []string
	outs  []outTensor
}

var decodePool = sync.Pool{New: func() any { return new(decodeScratch) }}

func releaseDecode(ds *decodeScratch) {
	clear(ds.elems)
	ds.elems, ds.outs = ds.elems[:0], ds.outs[:0]
	decodePool.Put(ds)
}

// errAnswer is wrapped by every malformed-answer error.
var errAnswer = errors.New("invalid inference answer")

// gather reads the output tensors of a V2 answer into ds, in the order
// the task maps them; element strings point into body.
func (c *v2Codec) gather(ds *decodeScratch, body []byte) error {
	res := gjson.Parse(jsonutil.B2S(body))
	outs := res.Get("outputs")
	if !outs.IsArray() {
		return fmt.Errorf("%w: no outputs list", errAnswer)
	}
	var err error
	outs.ForEach(func(_, o gjson.Result) bool {
		var name, shape, data gjson.Result
		o.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "name":
				name = v
			case "shape":
				shape = v
			case "data":
				data = v
			}
			return true
		})
		if name.Type != gjson.String {
			err = fmt.Errorf("%w: an output has no name", errAnswer)
			return false
		}
		if len(c.outputs) > 0 && !contains(c.outputs, name.Str) {
			return true
		}
		ds.outs = append(ds.outs, outTensor{name: name.Str, start: len(ds.elems)})
		ot := &ds.outs[len(ds.outs)-1]
		var want int
		if want, err = ot.parseShape(shape); err != nil {
			return false
		}
		if !data.IsArray() {
			err = fmt.Errorf("%w: output %s has no data list", errAnswer, name.Str)
			return false
		}
		ds.elems = flattenRaw(ds.elems, data, 0)
		ot.end = len(ds.elems)
		if got := ot.end - ot.start; got != want {
			err = fmt.Errorf("%w: output %s has %d elements for shape %v", errAnswer, name.Str, got, ot.shape[:ot.rank])
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	// Order the outputs as declared.
	for i, name := range c.outputs {
		j := i
		for j < len(ds.outs) && ds.outs[j].name != name {
			j++
		}
		if j == len(ds.outs) {
			return fmt.Errorf("%w: no output %s", errAnswer, name)
		}
		ds.outs[i], ds.outs[j] = ds.outs[j], ds.outs[i]
	}
	return nil
}

// parseShape reads the shape of o and returns its element count.
func (o *outTensor) parseShape(shape gjson.Result) (int, error) {
	if !shape.IsArray() {
		return 0, fmt.Errorf("%w: output %s has no shape", errAnswer, o.name)
	}
	want, ok := 1, true
	shape.ForEach(func(_, d gjson.Result) bool {
		if o.rank == maxRank || d.Type != gjson.Number || !isInteger(d.Raw, true) {
			ok = false
			return false
		}
		o.shape[o.rank] = int(d.Int())
		want *= o.shape[o.rank]
		o.rank++
		return true
	})
	if !ok {
		return 0, fmt.Errorf("%w: output %s: invalid shape %s", errAnswer, o.name, truncate(shape.Raw))
	}
	return want, nil
}

func flattenRaw(dst []string, v gjson.Result, depth int) []string {
	v.ForEach(func(_, e gjson.Result) bool {
		if e.IsArray() && depth < maxRank {
			dst = flattenRaw(dst, e, depth+1)
		} else {
			dst = append(dst, e.Raw)
		}
		return true
	})
	return dst
}

// decode maps a V2 answer to the task's result.
func (c *v2Codec) decode(dst, body []byte) ([]byte, error) {
	ds := decodePool.Get().(*decodeScratch)
	defer releaseDecode(ds)
	if err := c.gather(ds, body); err != nil {
		return dst, err
	}
	return c.appendMapped(dst, ds, 0, -1)
}

// appendMapped appends the result for batch rows [lo, lo+n) of the
// gathered outputs (n < 0: the whole tensors).
func (c *v2Codec) appendMapped(dst []byte, ds *decodeScratch, lo, n int) ([]byte, error) {
	if c.rows {
		rows := n
		for i := range ds.outs {
			o := &ds.outs[i]
			if o.rank == 0 {
				return dst, fmt.Errorf("%w: output %s is a scalar; rows needs a batch dimension", errAnswer, o.name)
			}
			if n < 0 {
				if i > 0 && o.shape[0] != rows {
					return dst, fmt.Errorf("%w: outputs have different batch sizes (%d and %d)", errAnswer, rows, o.shape[0])
				}
				rows = o.shape[0]
			}
		}
		dst = append(dst, '[')
		for r := 0; r < rows; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '{')
			for i := range ds.outs {
				o := &ds.outs[i]
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = jsonutil.AppendString(dst, o.name)
				dst = append(dst, ':')
				per := o.perRow()
				at := o.start + (lo+r)*per
				dst = appendList(dst, ds.elems[at:at+per], per == 1)
			}
			dst = append(dst, '}')
		}
		return append(dst, ']'), nil
	}
	dst = append(dst, '{')
	for i := range ds.outs {
		o := &ds.outs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonutil.AppendString(dst, o.name)
		dst = append(dst, ':')
		elems := ds.elems[o.start:o.end]
		rows := o.shape[0]
		if n >= 0 {
			per := o.perRow()
			elems = elems[lo*per : (lo+n)*per]
			rows = n
		}
		switch {
		case o.rank == 0:
			dst = appendList(dst, elems, true)
		case o.rank == 1 || o.rank == 2 && o.shape[1] == 1:
			dst = appendList(dst, elems, false)
		default:
			per := o.perRow()
			dst = append(dst, '[')
			for r := 0; r < rows; r++ {
				if r > 0 {
					dst = append(dst, ',')
				}
				dst = appendList(dst, elems[r*per:(r+1)*per], false)
			}
			dst = append(dst, ']')
		}
	}
	return append(dst, '}'), nil
}

// appendList appends elems as a JSON list, or the single element alone.
func appendList(dst []byte, elems []string, single bool) []byte {
	if single && len(elems) == 1 {
		return append(dst, elems[0]...)
	}
	dst = append(dst, '[')
	for i, e := range elems {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e...)
	}
	return append(dst, ']')
}

// v1Codec maps a V1 answer ("predictions", or columnar "outputs").
type v1Codec struct {
	name []byte // the result key, a JSON string
	rows bool
}

func (c *v1Codec) decode(dst, body []byte) ([]byte, error) {
	res := gjson.Parse(jsonutil.B2S(body))
	p := res.Get("predictions")
	if !p.Exists() {
		p = res.Get("outputs")
		if !p.Exists() {
			return dst, fmt.Errorf("%w: no predictions", errAnswer)
		}
		if p.IsObject() && !c.rows {
			return append(dst, p.Raw...), nil
		}
		if p.IsObject() {
			return appendTransposed(dst, p)
		}
	}
	if !c.rows {
		dst = append(dst, '{')
		dst = append(dst, c.name...)
		dst = append(dst, ':')
		dst = append(dst, p.Raw...)
		return append(dst, '}'), nil
	}
	if !p.IsArray() {
		return dst, fmt.Errorf("%w: predictions are not a list", errAnswer)
	}
	dst = append(dst, '[')
	n := 0
	p.ForEach(func(_, e gjson.Result) bool {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		if e.IsObject() {
			dst = append(dst, e.Raw...)
			return true
		}
		dst = append(dst, '{')
		dst = append(dst, c.name...)
		dst = append(dst, ':')
		dst = append(dst, e.Raw...)
		dst = append(dst, '}')
		return true
	})
	return append(dst, ']'), nil
}

// appendTransposed turns columnar outputs {"a":[1,2],"b":[3,4]} into rows
// [{"a":1,"b":3},{"a":2,"b":4}].
func appendTransposed(dst []byte, p gjson.Result) ([]byte, error) {
	ds := decodePool.Get().(*decodeScratch)
	defer releaseDecode(ds)
	var err error
	rows := -1
	p.ForEach(func(k, v gjson.Result) bool {
		if !v.IsArray() {
			err = fmt.Errorf("%w: output %s is not a list", errAnswer, k.Str)
			return false
		}
		ot := outTensor{name: k.Str, start: len(ds.elems)}
		v.ForEach(func(_, e gjson.Result) bool {
			ds.elems = append(ds.elems, e.Raw)
			return true
		})
		ot.end = len(ds.elems)
		if rows >= 0 && ot.end-ot.start != rows {
			err = fmt.Errorf("%w: outputs have different lengths", errAnswer)
			return false
		}
		rows = ot.end - ot.start
		ds.outs = append(ds.outs, ot)
		return true
	})
	if err != nil {
		return dst, err
	}
	dst = append(dst, '[')
	for r := 0; r < rows; r++ {
		if r > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		for i := range ds.outs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonutil.AppendString(dst, ds.outs[i].name)
			dst = append(dst, ':')
			dst = append(dst, ds.elems[ds.outs[i].start+r]...)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']'), nil
}
