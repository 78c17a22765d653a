package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/examples/logreg"
)

// testArtifact scores sigmoid(2*conv_rate + rating - 4) on raw values.
func testArtifact() *logreg.Artifact {
	a := &logreg.Artifact{
		Format: logreg.Format, Name: "driver-rank", Entity: "driver_id",
		Features:    []string{"conv_rate", "rating"},
		FeatureRefs: []string{"driver_stats:conv_rate", "driver_stats:rating"},
		Mean:        []float64{0, 0}, Std: []float64{1, 1}, Weights: []float64{2, 1}, Bias: -4,
	}
	if err := a.Validate(); err != nil {
		panic(err)
	}
	return a
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

type answer struct {
	status int
	body   string
	header http.Header
}

func call(t *testing.T, h http.Handler, method, path, body string) answer {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{rec.Code, rec.Body.String(), rec.Header()}
}

func TestPredict(t *testing.T) {
	s := newServer(testArtifact(), "", "7")
	a := call(t, s, "POST", "/predict", `{"instances":[{"conv_rate":1,"rating":3},{"conv_rate":0.5,"rating":4.5,"vehicle_type":"bike"},{"rating":null}]}`)
	if a.status != 200 || a.header.Get("X-Model-Version") != "7" || a.header.Get("X-Model-Name") != "driver-rank" {
		t.Fatalf("predict: %+v", a)
	}
	var out struct {
		Predictions  []float64 `json:"predictions"`
		ModelName    string    `json:"model_name"`
		ModelVersion string    `json:"model_version"`
	}
	if err := json.Unmarshal([]byte(a.body), &out); err != nil {
		t.Fatalf("%v: %s", err, a.body)
	}
	want := []float64{sigmoid(1), sigmoid(1.5), sigmoid(-4)}
	for i, p := range out.Predictions {
		if math.Abs(p-want[i]) > 1e-7 {
			t.Fatalf("predictions %v, want %v", out.Predictions, want)
		}
	}
	if len(out.Predictions) != 3 || out.ModelName != "driver-rank" || out.ModelVersion != "7" {
		t.Fatalf("answer: %s", a.body)
	}

	a = call(t, s, "POST", "/predict", `{"drivers":[{"driver_id":1001,"conv_rate":0.1,"rating":3.5},{"driver_id":1002,"driver_stats__conv_rate":0.9,"rating":4.8},{"driver_id":"x","conv_rate":0.5,"rating":4}]}`)
	if a.status != 200 {
		t.Fatalf("ranking: %+v", a)
	}
	var rk struct {
		Ranking []struct {
			DriverID json.RawMessage `json:"driver_id"`
			Score    float64         `json:"score"`
		} `json:"ranking"`
		ModelVersion string `json:"model_version"`
	}
	if err := json.Unmarshal([]byte(a.body), &rk); err != nil {
		t.Fatal(err)
	}
	if len(rk.Ranking) != 3 || string(rk.Ranking[0].DriverID) != "1002" || string(rk.Ranking[1].DriverID) != `"x"` ||
		string(rk.Ranking[2].DriverID) != "1001" || rk.ModelVersion != "7" || math.Abs(rk.Ranking[0].Score-sigmoid(2.6)) > 1e-7 {
		t.Fatalf("ranking: %s", a.body)
	}

	a = call(t, s, "POST", "/v1/models/driver-rank:predict", `{"instances":[{"conv_rate":1,"rating":3}]}`)
	if a.status != 200 || !strings.Contains(a.body, `"predictions":[0.7310585`) {
		t.Fatalf("v1 predict: %+v", a)
	}

	f := func(path, body string, status int, wantErr string) {
		t.Helper()
		a := call(t, s, "POST", path, body)
		if a.status != status || !strings.Contains(a.body, wantErr) {
			t.Fatalf("%s %s: %d %s, want %d %q", path, body, a.status, a.body, status, wantErr)
		}
	}
	f("/predict", `{`, 400, "not valid JSON")
	f("/predict", `{"rows":[]}`, 400, `want {\"instances\": [...]} or {\"drivers\": [...]}`)
	f("/predict", `{"instances":[{"conv_rate":"high"}]}`, 400, `instance 0: feature \"conv_rate\" is \"high\", want a number`)
	f("/predict", `{"instances":[1]}`, 400, "instance 0 is not an object")
	f("/predict", `{"drivers":[{"conv_rate":1}]}`, 400, `driver 0 has no \"driver_id\"`)
	f("/v1/models/other:predict", `{"instances":[]}`, 404, `model \"other\" not found`)
}

func TestInferV2(t *testing.T) {
	s := newServer(testArtifact(), "", "7")
	f := func(body string, status int, want string) {
		t.Helper()
		a := call(t, s, "POST", "/v2/models/driver-rank/infer", body)
		if a.status != status || !strings.Contains(a.body, want) {
			t.Fatalf("infer %s: %d %s, want %d %q", body, a.status, a.body, status, want)
		}
	}
	p1, p2 := "0.73105858", "0.81757448"
	// One [n, k] tensor, flat or nested.
	f(`{"id":"r1","inputs":[{"name":"features","shape":[2,2],"datatype":"FP32","data":[1,3,0.5,4.5]}]}`, 200,
		`{"model_name":"driver-rank","model_version":"7","id":"r1","outputs":[{"name":"probability","datatype":"FP64","shape":[2,1],"data":[`+p1+`,`+p2)
	f(`{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP64","data":[[1,3],[0.5,4.5]]}]}`, 200, `"data":[`+p1+`,`+p2)
	f(`{"inputs":[{"name":"x","shape":[2],"datatype":"FP64","data":[1,3]}]}`, 200, `"shape":[1,1],"data":[`+p1+`]`)
	// One tensor per feature.
	f(`{"inputs":[{"name":"rating","shape":[2,1],"datatype":"FP64","data":[3,4.5]},{"name":"conv_rate","shape":[2],"datatype":"FP32","data":[1,0.5]}]}`, 200, `"data":[`+p1+`,`+p2)
	// Errors.
	f(`{"inputs":[]}`, 400, "inputs: a list of tensors is required")
	f(`{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`, 400, "has shape [1 3], want [n, 2]")
	f(`{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}`, 400, "has 3 values, its shape says 4")
	f(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"BYTES","data":["a","b"]}]}`, 400, `datatype \"BYTES\" is not numeric`)
	f(`{"inputs":[{"name":"rating","shape":[1],"datatype":"FP32","data":[1]},{"name":"speed","shape":[1],"datatype":"FP32","data":[1]}]}`, 400, `tensor \"speed\" is not a feature`)
	f(`{"inputs":[{"name":"rating","shape":[2],"datatype":"FP32","data":[1,2]},{"name":"conv_rate","shape":[1],"datatype":"FP32","data":[1]}]}`, 400, "has 1 rows, others 2")
	f(`{"inputs":[{"name":"x","shape":[],"datatype":"FP32","data":[1]}]}`, 400, "needs a shape")
	f(`{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}`, 400, "is not a list of sizes")

	if a := call(t, s, "POST", "/v2/models/other/infer", `{}`); a.status != 404 {
		t.Fatalf("unknown model: %+v", a)
	}
	if a := call(t, s, "POST", "/v2/models/driver-rank/versions/6/infer", `{}`); a.status != 404 || !strings.Contains(a.body, `no version \"6\"`) {
		t.Fatalf("unknown version: %+v", a)
	}
	a := call(t, s, "POST", "/v2/models/driver-rank/versions/7/infer", `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,3]}]}`)
	if a.status != 200 {
		t.Fatalf("versioned infer: %+v", a)
	}
}

func TestMetadata(t *testing.T) {
	s := newServer(testArtifact(), "ranker", "7")
	a := call(t, s, "GET", "/v2/models/ranker", "")
	var md struct {
		Name     string   `json:"name"`
		Versions []string `json:"versions"`
		Inputs   []struct {
			Name  string `json:"name"`
			Shape []int  `json:"shape"`
		} `json:"inputs"`
		Outputs []struct {
			Name string `json:"name"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(a.body), &md); err != nil || a.status != 200 {
		t.Fatalf("metadata: %d %s %v", a.status, a.body, err)
	}
	if md.Name != "ranker" || md.Versions[0] != "7" || len(md.Inputs) != 3 || md.Inputs[0].Shape[1] != 2 || md.Outputs[0].Name != "probability" {
		t.Fatalf("metadata: %s", a.body)
	}
	for path, want := range map[string]string{
		"/v2/models/ranker/ready":            `{"name":"ranker","ready":true}`,
		"/v2/models/ranker/versions/7/ready": `{"name":"ranker","ready":true}`,
		"/v2/health/live":                    `{"live":true}`,
		"/v2/health/ready":                   `{"ready":true}`,
	} {
		if a := call(t, s, "GET", path, ""); a.status != 200 || a.body != want {
			t.Fatalf("%s: %+v", path, a)
		}
	}
	if a := call(t, s, "GET", "/v2/models/driver-rank", ""); a.status != 404 {
		t.Fatalf("other name: %+v", a)
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	if err := testArtifact().Save(dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--artifact", dir, "--listen", "127.0.0.1:0", "--version", "3"}, pw)
		pw.Close()
	}()
	buf := make([]byte, 256)
	n, err := pr.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	line := string(buf[:n])
	addr := line[strings.LastIndex(line, " ")+1 : len(line)-1]
	if !strings.HasPrefix(line, "serving model driver-rank version 3 (2 features) on 127.0.0.1:") {
		t.Fatalf("banner %q", line)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Post("http://"+addr+"/predict", "application/json", bytes.NewReader([]byte(`{"instances":[{"conv_rate":1,"rating":3}]}`)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Model-Version") != "3" || !strings.Contains(string(body), `"model_version":"3"`) {
		t.Fatalf("predict: %d %s", resp.StatusCode, body)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"--artifact", filepath.Join(dir, "missing")}, io.Discard); err == nil {
		t.Fatal("started without an artifact")
	}
}
