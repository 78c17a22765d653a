package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"

	"github.com/lariat-gw/lariat/examples/logreg"
	"github.com/lariat-gw/lariat/internal/jsonutil"
)

// server serves one logistic-regression artifact.
type server struct {
	a       *logreg.Artifact
	name    string
	version string
	mux     *http.ServeMux
}

// maxBody bounds request bodies, and maxValues the values of one tensor (a JSON
// number takes at least two bytes with its comma).
const (
	maxBody   = 4 << 20
	maxValues = maxBody / 2
)

func newServer(a *logreg.Artifact, name, version string) *server {
	if name == "" {
		name = a.Name
	}
	s := &server{a: a, name: name, version: version, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, _ *http.Request) { s.writeJSON(w, 200, []byte(`{"live":true}`)) })
	s.mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, _ *http.Request) { s.writeJSON(w, 200, []byte(`{"ready":true}`)) })
	s.mux.HandleFunc("GET /v2", s.serverMetadata)
	s.mux.HandleFunc("GET /v2/models/{name}", s.modelMetadata)
	s.mux.HandleFunc("GET /v2/models/{name}/versions/{version}", s.modelMetadata)
	s.mux.HandleFunc("GET /v2/models/{name}/ready", s.modelReady)
	s.mux.HandleFunc("GET /v2/models/{name}/versions/{version}/ready", s.modelReady)
	s.mux.HandleFunc("POST /v2/models/{name}/infer", s.infer)
	s.mux.HandleFunc("POST /v2/models/{name}/versions/{version}/infer", s.infer)
	s.mux.HandleFunc("POST /predict", s.predict)
	s.mux.HandleFunc("POST /v1/models/{spec}", s.predictV1)
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Model-Name", s.name)
	w.Header().Set("X-Model-Version", s.version)
	s.mux.ServeHTTP(w, r)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (s *server) writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *server) writeError(w http.ResponseWriter, status int, msg string) {
	s.writeJSON(w, status, append(jsonutil.AppendString([]byte(`{"error":`), msg), '}'))
}

// model checks the {name} and {version} of a path.
func (s *server) model(w http.ResponseWriter, r *http.Request) bool {
	if n := r.PathValue("name"); n != s.name {
		s.writeError(w, http.StatusNotFound, fmt.Sprintf("model %q not found", n))
		return false
	}
	if v := r.PathValue("version"); v != "" && v != s.version {
		s.writeError(w, http.StatusNotFound, fmt.Sprintf("model %q has no version %q", s.name, v))
		return false
	}
	return true
}

func (s *server) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, 200, []byte(`{"name":"lariat-example-modelserver","version":"1","extensions":[]}`))
}

func (s *server) modelMetadata(w http.ResponseWriter, r *http.Request) {
	if !s.model(w, r) {
		return
	}
	b := []byte(`{"name":`)
	b = jsonutil.AppendString(b, s.name)
	b = append(b, `,"versions":[`...)
	b = jsonutil.AppendString(b, s.version)
	b = append(b, `],"platform":"lariat-logreg","inputs":[{"name":"features","datatype":"FP64","shape":[-1,`...)
	b = strconv.AppendInt(b, int64(len(s.a.Features)), 10)
	b = append(b, `]}`...)
	for _, f := range s.a.Features {
		b = append(b, `,{"name":`...)
		b = jsonutil.AppendString(b, f)
		b = append(b, `,"datatype":"FP64","shape":[-1]}`...)
	}
	b = append(b, `],"outputs":[{"name":"probability","datatype":"FP64","shape":[-1,1]}],"parameters":{"entity":`...)
	b = jsonutil.AppendString(b, s.a.Entity)
	b = append(b, `,"features":[`...)
	for i, f := range s.a.Features {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonutil.AppendString(b, f)
	}
	b = append(b, "]}}"...)
	s.writeJSON(w, 200, b)
}

func (s *server) modelReady(w http.ResponseWriter, r *http.Request) {
	if !s.model(w, r) {
		return
	}
	b := jsonutil.AppendString([]byte(`{"name":`), s.name)
	s.writeJSON(w, 200, append(b, `,"ready":true}`...))
}

// readBody reads the request body; on failure it answers and returns false.
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.writeError(w, http.StatusRequestEntityTooLarge, "body too large or unreadable: "+err.Error())
		return nil, false
	}
	if !gjson.ValidBytes(body) {
		s.writeError(w, http.StatusBadRequest, "the body is not valid JSON")
		return nil, false
	}
	return body, true
}

// number converts a JSON feature value: numbers, booleans (0/1) and null (missing).
func number(v gjson.Result) (float64, bool) {
	switch v.Type {
	case gjson.Number:
		return v.Num, true
	case gjson.True:
		return 1, true
	case gjson.False:
		return 0, true
	case gjson.Null:
		return math.NaN(), true
	}
	return 0, false
}

// rowOf fills x from an object of named features and returns the raw JSON of
// the entity key, if present. Unknown keys (strings, other ids) are ignored;
// missing features stay NaN.
func (s *server) rowOf(obj gjson.Result, x []float64) (string, error) {
	for i := range x {
		x[i] = math.NaN()
	}
	var err error
	var id string
	obj.ForEach(func(k, v gjson.Result) bool {
		i, ok := s.a.Index(k.Str)
		if !ok {
			if k.Str == s.a.Entity {
				id = v.Raw
			}
			return true
		}
		f, ok := number(v)
		if !ok {
			err = fmt.Errorf("feature %q is %s, want a number", k.Str, v.Raw)
			return false
		}
		x[i] = f
		return true
	})
	return id, err
}

// predictScores scores an array of feature objects, appending to dst.
func (s *server) predictScores(arr gjson.Result, dst []float64) ([]float64, error) {
	x := make([]float64, len(s.a.Features))
	var err error
	n := 0
	arr.ForEach(func(_, inst gjson.Result) bool {
		if !inst.IsObject() {
			err = fmt.Errorf("instance %d is not an object of features", n)
			return false
		}
		if _, err = s.rowOf(inst, x); err != nil {
			err = fmt.Errorf("instance %d: %w", n, err)
			return false
		}
		dst = append(dst, s.a.Score(x))
		n++
		return true
	})
	return dst, err
}

func (s *server) appendModel(b []byte) []byte {
	b = append(b, `"model_name":`...)
	b = jsonutil.AppendString(b, s.name)
	b = append(b, `,"model_version":`...)
	return jsonutil.AppendString(b, s.version)
}

func appendScore(b []byte, p float64) []byte {
	return strconv.AppendFloat(b, p, 'g', 8, 64)
}

// predict serves {"instances":[{feature: value}]} → {"predictions":[p]} and
// {"drivers":[{driver_id, features...}]} → {"ranking":[{driver_id, score}]},
// best first.
func (s *server) predict(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	doc := gjson.ParseBytes(body)
	if inst := doc.Get("instances"); inst.IsArray() {
		s.answerInstances(w, inst)
		return
	}
	drivers := doc.Get("drivers")
	if !drivers.IsArray() {
		s.writeError(w, http.StatusBadRequest, `want {"instances": [...]} or {"drivers": [...]}`)
		return
	}
	s.answerRanking(w, drivers)
}

// predictV1 serves KServe V1 POST /v1/models/{name}:predict.
func (s *server) predictV1(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("spec"), ":predict")
	if !ok || name != s.name {
		s.writeError(w, http.StatusNotFound, fmt.Sprintf("model %q not found", strings.TrimSuffix(r.PathValue("spec"), ":predict")))
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	inst := gjson.GetBytes(body, "instances")
	if !inst.IsArray() {
		s.writeError(w, http.StatusBadRequest, `want {"instances": [...]}`)
		return
	}
	s.answerInstances(w, inst)
}

func (s *server) answerInstances(w http.ResponseWriter, inst gjson.Result) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	scores, err := s.predictScores(inst, make([]float64, 0, 16))
	if err != nil {
		s.writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	b := append((*bp)[:0], `{"predictions":[`...)
	for i, p := range scores {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendScore(b, p)
	}
	b = append(b, "],"...)
	b = append(s.appendModel(b), '}')
	*bp = b
	s.writeJSON(w, 200, b)
}

type ranked struct {
	id    string // raw JSON
	score float64
}

func (s *server) answerRanking(w http.ResponseWriter, drivers gjson.Result) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	x := make([]float64, len(s.a.Features))
	var rank []ranked
	var err error
	n := 0
	drivers.ForEach(func(_, d gjson.Result) bool {
		if !d.IsObject() {
			err = fmt.Errorf("driver %d is not an object", n)
			return false
		}
		var id string
		if id, err = s.rowOf(d, x); err != nil {
			err = fmt.Errorf("driver %d: %w", n, err)
			return false
		}
		if id == "" {
			err = fmt.Errorf("driver %d has no %q", n, s.a.Entity)
			return false
		}
		rank = append(rank, ranked{id: id, score: s.a.Score(x)})
		n++
		return true
	})
	if err != nil {
		s.writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	slices.SortStableFunc(rank, func(a, b ranked) int { return cmp.Compare(b.score, a.score) })
	b := append((*bp)[:0], `{"ranking":[`...)
	for i, r := range rank {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = jsonutil.AppendString(b, s.a.Entity)
		b = append(b, ':')
		b = append(b, r.id...)
		b = append(b, `,"score":`...)
		b = appendScore(b, r.score)
		b = append(b, '}')
	}
	b = append(b, "],"...)
	b = append(s.appendModel(b), '}')
	*bp = b
	s.writeJSON(w, 200, b)
}

// infer serves Open Inference Protocol V2: either one tensor of shape [n, k]
// (features in the model's order) or one tensor per feature name of shape [n] or
// [n, 1]. The output "probability" has shape [n, 1].
func (s *server) infer(w http.ResponseWriter, r *http.Request) {
	if !s.model(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	doc := gjson.ParseBytes(body)
	inputs := doc.Get("inputs")
	if !inputs.IsArray() || len(inputs.Array()) == 0 {
		s.writeError(w, http.StatusBadRequest, "inputs: a list of tensors is required")
		return
	}
	rows, err := s.inferRows(inputs.Array())
	if err != nil {
		s.writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b := append((*bp)[:0], '{')
	b = s.appendModel(b)
	if id := doc.Get("id"); id.Exists() {
		b = append(b, `,"id":`...)
		b = append(b, id.Raw...)
	}
	b = append(b, `,"outputs":[{"name":"probability","datatype":"FP64","shape":[`...)
	b = strconv.AppendInt(b, int64(len(rows)), 10)
	b = append(b, `,1],"data":[`...)
	for i, x := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendScore(b, s.a.Score(x))
	}
	b = append(b, "]}]}"...)
	*bp = b
	s.writeJSON(w, 200, b)
}

var numericTypes = map[string]bool{"BOOL": true, "UINT8": true, "UINT16": true, "UINT32": true, "UINT64": true,
	"INT8": true, "INT16": true, "INT32": true, "INT64": true, "FP16": true, "FP32": true, "FP64": true}

// flatten appends the numbers of a (possibly nested) data array.
func flatten(v gjson.Result, dst []float64) ([]float64, error) {
	var err error
	v.ForEach(func(_, e gjson.Result) bool {
		if e.IsArray() {
			dst, err = flatten(e, dst)
			return err == nil
		}
		f, ok := number(e)
		if !ok {
			err = fmt.Errorf("element %s is not a number", e.Raw)
			return false
		}
		dst = append(dst, f)
		return true
	})
	return dst, err
}

func shapeOf(t gjson.Result) ([]int, error) {
	var shape []int
	var err error
	t.Get("shape").ForEach(func(_, d gjson.Result) bool {
		if d.Type != gjson.Number || d.Num < 0 || d.Num > maxValues || d.Num != math.Trunc(d.Num) {
			err = fmt.Errorf("shape %s is not a list of sizes", t.Get("shape").Raw)
			return false
		}
		shape = append(shape, int(d.Num))
		return true
	})
	if err == nil && len(shape) == 0 {
		err = fmt.Errorf("tensor %q needs a shape", t.Get("name").Str)
	}
	return shape, err
}

func (s *server) inferRows(inputs []gjson.Result) ([][]float64, error) {
	k := len(s.a.Features)
	for _, t := range inputs {
		if dt := t.Get("datatype").Str; !numericTypes[dt] {
			return nil, fmt.Errorf("tensor %q: datatype %q is not numeric", t.Get("name").Str, dt)
		}
	}
	first := inputs[0]
	if _, named := s.a.Index(first.Get("name").Str); !named {
		// One [n, k] tensor.
		if len(inputs) != 1 {
			return nil, fmt.Errorf("send one tensor of shape [n, %d] or one tensor per feature", k)
		}
		shape, err := shapeOf(first)
		if err != nil {
			return nil, err
		}
		n := shape[0]
		if len(shape) == 1 && shape[0] == k {
			n = 1
		} else if len(shape) != 2 || shape[1] != k {
			return nil, fmt.Errorf("tensor %q has shape %v, want [n, %d]", first.Get("name").Str, shape, k)
		}
		if n*k > maxValues {
			return nil, fmt.Errorf("tensor %q has more than %d values", first.Get("name").Str, maxValues)
		}
		data, err := flatten(first.Get("data"), make([]float64, 0, min(n*k, 1024)))
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", first.Get("name").Str, err)
		}
		if len(data) != n*k {
			return nil, fmt.Errorf("tensor %q has %d values, its shape says %d", first.Get("name").Str, len(data), n*k)
		}
		rows := make([][]float64, n)
		for i := range rows {
			rows[i] = data[i*k : (i+1)*k]
		}
		return rows, nil
	}
	// One tensor per feature.
	var rows [][]float64
	for _, t := range inputs {
		name := t.Get("name").Str
		j, ok := s.a.Index(name)
		if !ok {
			return nil, fmt.Errorf("tensor %q is not a feature of the model (%s)", name, strings.Join(s.a.Features, ", "))
		}
		shape, err := shapeOf(t)
		if err != nil {
			return nil, err
		}
		if len(shape) > 2 || (len(shape) == 2 && shape[1] != 1) {
			return nil, fmt.Errorf("tensor %q has shape %v, want [n] or [n, 1]", name, shape)
		}
		data, err := flatten(t.Get("data"), nil)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if len(data) != shape[0] {
			return nil, fmt.Errorf("tensor %q has %d values, its shape says %d", name, len(data), shape[0])
		}
		if rows == nil {
			rows = make([][]float64, shape[0])
			for i := range rows {
				rows[i] = make([]float64, k)
				for c := range rows[i] {
					rows[i][c] = math.NaN()
				}
			}
		} else if len(rows) != shape[0] {
			return nil, fmt.Errorf("tensor %q has %d rows, others %d", name, shape[0], len(rows))
		}
		for i, v := range data {
			rows[i][j] = v
		}
	}
	return rows, nil
}
