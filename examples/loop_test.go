package examples

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/examples/exampledata"
	"github.com/lariat-gw/lariat/examples/logreg"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/gateway"
	"github.com/lariat-gw/lariat/ingest"
	"github.com/lariat-gw/lariat/internal/predlogtest"
	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/internal/registrytest"
	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/tasks"
	"github.com/lariat-gw/lariat/training"
	"github.com/lariat-gw/lariat/training/dataset"
)

// buildBinary builds the example command in dir ("./trainer") into out.
func buildBinary(t *testing.T, pkg, out string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the examples: %v", err)
	}
	bin := filepath.Join(out, filepath.Base(pkg))
	cmd := exec.Command(goBin, "build", "-o", bin, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serveHTTP serves h on 127.0.0.1 until the test ends and returns its URL.
func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// startRegistry serves a registry on 127.0.0.1 and returns its URL.
func startRegistry(t *testing.T) string { return registrytest.Start(t) }

// startModelServer runs the example model server on artifact at addr and waits
// until it listens.
func startModelServer(t *testing.T, bin, artifact, addr, version string) {
	t.Helper()
	cmd := exec.Command(bin, "--artifact", artifact, "--listen", addr, "--version", version)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		if !ok || !strings.Contains(l, "on "+addr) {
			t.Fatalf("model server did not start: %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("model server did not start in time")
	}
}

// ingestDrivers loads the drivers' driver_stats rows into Redis with the
// ingestion package, as lariat-ingest does with a batch file.
func ingestDrivers(t *testing.T, addr string, views *featurefetch.Views, drivers []exampledata.Driver, dir string) {
	t.Helper()
	ctx := context.Background()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := ingest.NewWriter(ctx, c, ingest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	schema, err := ingest.NewSchema(views, "driver_stats", ingest.SchemaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "driver_stats.csv")
	if err := os.WriteFile(file, exampledata.StatsCSV(drivers, time.Now().Add(-time.Minute)), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := ingest.Load(ctx, w, schema, file, ingest.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Written != int64(len(drivers)) || st.Rejected != 0 {
		t.Fatalf("ingested %d of %d rows, %d rejected: %v", st.Written, len(drivers), st.Rejected, st.Errors)
	}
}

const routeYAML = `apiVersion: v1
name: allocate
endpoint: /v1/allocate
timeout: 3s
tasks:
  features:
    type: feature
    inputs:
      entities: {driver_id: '{{ .request.drivers }}'}
      features: [driver_stats:conv_rate, driver_stats:acc_rate, driver_stats:avg_daily_trips,
                 driver_stats:rating, driver_stats:is_active]
  rank:
    type: http
    inputs:
      model: driver-rank@production
      timeout: 2s
      body: '{"drivers": {{ .tasks.features.body }}}'
    output: {path: response.body.ranking, from: ranking}
`

// allocation is the gateway's answer.
type allocation struct {
	Ranking []struct {
		DriverID int64   `json:"driver_id"`
		Score    float64 `json:"score"`
	} `json:"ranking"`
}

// TestTrainRegisterServe walks the loop: ingest features → train (local backend,
// the example trainer) → registered version with lineage → alias production →
// model server on the artifact → a gateway route naming driver-rank@production
// answers with that version in X-Lariat-Models. Then a retrained version takes
// over when the alias moves.
func TestTrainRegisterServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bins := t.TempDir()
	trainer := buildBinary(t, "./trainer", bins)
	modelServer := buildBinary(t, "./modelserver", bins)

	// Features in Redis, in Feast's layout, through the ingestion package.
	redis := redistest.Start(t)
	viewsFile := filepath.Join(dir, "featureviews.yaml")
	if err := os.WriteFile(viewsFile, featurefetch.DemoViewsYAML(), 0o644); err != nil {
		t.Fatal(err)
	}
	views, err := featurefetch.LoadViews(viewsFile)
	if err != nil {
		t.Fatal(err)
	}
	drivers := exampledata.Drivers(400, 11)
	ingestDrivers(t, redis.Addr(), views, drivers, dir)
	labels := filepath.Join(dir, "labels.csv")
	if err := os.WriteFile(labels, exampledata.LabelsCSV(drivers), 0o644); err != nil {
		t.Fatal(err)
	}

	// The registry and the training sidecar (local backend), over their REST APIs.
	regURL := startRegistry(t)
	reg := registry.NewClient(regURL, nil)
	m, err := training.NewManager(training.Options{StateDir: filepath.Join(dir, "train"), Backend: training.NewLocal(training.LocalOptions{}),
		Registry: reg, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	train := training.NewClient(serveHTTP(t, training.NewServer(m, training.ServerOptions{Logf: t.Logf})), nil)

	// A job reads labels and the online store, or (trainSet) the features
	// as the gateway served them.
	jobSpec := func(lr, epochs string, port int, trainSet string) []byte {
		inputs := fmt.Sprintf("  labels: %q\n  views_file: %q\n  online_store: %q\n", labels, viewsFile, redis.Addr())
		if trainSet != "" {
			inputs = fmt.Sprintf("  dataset: %q\n", trainSet)
		}
		return fmt.Appendf(nil, `name: driver-rank
command: [%q]
args: ["--lr=$(LARIAT_HP_LR)", "--epochs=$(LARIAT_HP_EPOCHS)"]
hyperparameters: {lr: %s, epochs: %s}
inputs:
  feature_views: [driver_stats]
%sregister:
  model: driver-rank
  serving_endpoint: http://127.0.0.1:%d/predict
  description: example logistic regression
timeout: 2m
`, trainer, lr, epochs, inputs, port)
	}
	runJob := func(lr, epochs string, port int, trainSet string) training.Job {
		t.Helper()
		j, err := train.SubmitJob(ctx, jobSpec(lr, epochs, port, trainSet))
		if err != nil {
			t.Fatal(err)
		}
		j, err = train.WaitJob(ctx, j.ID, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status.Phase != training.PhaseSucceeded {
			rc, _ := train.Logs(ctx, j.ID, false)
			logs, _ := io.ReadAll(rc)
			t.Fatalf("training job %s: %+v\n%s", j.ID, j.Status.Conditions, logs)
		}
		return j
	}

	port1 := freePort(t)
	j1 := runJob("0.5", "300", port1, "")
	if j1.Status.Model == nil || j1.Status.Model.Version != "1" || j1.Status.Metrics["auc"] < 0.8 {
		t.Fatalf("first job: %+v", j1.Status)
	}
	v1, err := reg.GetVersion(ctx, "driver-rank", "1")
	if err != nil {
		t.Fatal(err)
	}
	if v1.TrainingJob != j1.ID || v1.Source != "file://"+j1.Outputs.ArtifactDir || v1.Params["lr"] != "0.5" ||
		v1.Params["epochs"] != "300" || v1.Metrics["auc"] != j1.Status.Metrics["auc"] ||
		!slices.Equal(v1.FeatureViews, []string{"driver_stats"}) || v1.ServingEndpoint != fmt.Sprintf("http://127.0.0.1:%d/predict", port1) {
		t.Fatalf("registered version: %+v", v1)
	}
	if err := reg.SetAlias(ctx, "driver-rank", "production", "1"); err != nil {
		t.Fatal(err)
	}
	startModelServer(t, modelServer, strings.TrimPrefix(v1.Source, "file://"), fmt.Sprintf("127.0.0.1:%d", port1), v1.Version)

	// The run is readable by MLflow's client: mlflow.register_model("runs:/<id>",
	// "driver-rank-mlflow") sends these requests.
	mlflowRegister(t, regURL, j1, "driver-rank-mlflow")

	// The gateway: feature task, then the model named by the registry alias.
	store, err := featurefetch.NewRedisStore(featurefetch.RedisOptions{Addrs: []string{redis.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	resolver := registry.NewResolver(reg, registry.ResolverOptions{Interval: 50 * time.Millisecond})
	t.Cleanup(resolver.Stop)
	env := tasks.NewEnv(nil)
	tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store})
	tasks.ModelRegistry.Provide(env, gateway.RegistryModels{R: resolver})
	routes := t.TempDir()
	if err := os.WriteFile(filepath.Join(routes, "allocate.yaml"), []byte(routeYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	// Every answer is recorded with the feature values served.
	logDir := filepath.Join(dir, "predictions")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	plog, err := predlog.Open("file://"+logDir, predlog.Options{FlushInterval: 50 * time.Millisecond, Logger: quiet, SinkCommand: predlogtest.Command()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plog.Close() })
	g := gateway.New(gateway.Options{RoutesDir: routes, Env: env, Logger: quiet, PredictionLog: plog})
	g.Load()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = g.Shutdown(sctx)
	})
	gwURL := "http://" + ln.Addr().String() + "/v1/allocate"

	ask := func(ids []int64) (allocation, string, string) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"drivers": ids})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, gwURL, strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("gateway answered %d: %s", resp.StatusCode, data)
		}
		var a allocation
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatalf("%v: %s", err, data)
		}
		return a, resp.Header.Get("X-Lariat-Models"), resp.Header.Get("X-Request-Id")
	}

	ids := []int64{drivers[0].ID, drivers[1].ID, drivers[2].ID, drivers[3].ID, drivers[4].ID}
	a, models, _ := ask(ids)
	if models != "rank=driver-rank/1" {
		t.Fatalf("X-Lariat-Models = %q, want rank=driver-rank/1", models)
	}
	checkRanking(t, a, ids, drivers, strings.TrimPrefix(v1.Source, "file://"))

	// Outcomes come back for the answers served: the labels, keyed by the
	// request id each answer carried and the driver.
	var labelRows strings.Builder
	labelRows.WriteString("request_id,driver_id,label\n")
	for k := 0; k < len(drivers); k += 5 {
		batch := make([]int64, 0, 5)
		for _, d := range drivers[k:min(k+5, len(drivers))] {
			batch = append(batch, d.ID)
		}
		_, _, reqID := ask(batch)
		for _, d := range drivers[k:min(k+5, len(drivers))] {
			fmt.Fprintf(&labelRows, "%s,%d,%d\n", reqID, d.ID, d.Label)
		}
	}
	outcomes := filepath.Join(dir, "outcomes.csv")
	if err := os.WriteFile(outcomes, []byte(labelRows.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// The training set: the labels joined to the features as served.
	trainSet := filepath.Join(dir, "train.parquet")
	// The log completes its files every 50ms.
	var st *dataset.Stats
	var buildErr error
	if !testwait.Within(testwait.Timeout, func() bool {
		st, buildErr = dataset.Build(dataset.Options{Predictions: logDir, Labels: outcomes, On: "request_id", Out: trainSet})
		return buildErr == nil && st.Matched == len(drivers) && st.Rows == len(drivers)
	}) {
		t.Fatalf("dataset: %+v %v", st, buildErr)
	}

	// Retrain on what was served, serve the new version, move the alias:
	// the route follows.
	port2 := freePort(t)
	j2 := runJob("0.2", "150", port2, trainSet)
	if j2.Status.Model == nil || j2.Status.Model.Version != "2" || j2.Status.Metrics["auc"] < 0.8 {
		t.Fatalf("second job: %+v", j2.Status)
	}
	if rc, err := train.Logs(ctx, j2.ID, false); err != nil {
		t.Fatal(err)
	} else if out, _ := io.ReadAll(rc); !strings.Contains(string(out), fmt.Sprintf("read %d rows of 5 features (as served)", len(drivers))) {
		t.Fatalf("the second job did not train on the served features:\n%s", out)
	}
	v2, err := reg.GetVersion(ctx, "driver-rank", "2")
	if err != nil {
		t.Fatal(err)
	}
	startModelServer(t, modelServer, strings.TrimPrefix(v2.Source, "file://"), fmt.Sprintf("127.0.0.1:%d", port2), v2.Version)
	if err := reg.SetAlias(ctx, "driver-rank", "production", "2"); err != nil {
		t.Fatal(err)
	}
	testwait.Within(testwait.Timeout, func() bool {
		a, models, _ = ask(ids)
		if models != "rank=driver-rank/1" && models != "rank=driver-rank/2" {
			t.Fatalf("after the alias moved, X-Lariat-Models = %q", models)
		}
		return models == "rank=driver-rank/2"
	})
	if models != "rank=driver-rank/2" {
		t.Fatalf("after the alias moved, X-Lariat-Models = %q", models)
	}
	checkRanking(t, a, ids, drivers, strings.TrimPrefix(v2.Source, "file://"))
}

// checkRanking checks that the ranking holds the requested drivers, best first,
// with the scores the artifact gives their features.
func checkRanking(t *testing.T, a allocation, ids []int64, drivers []exampledata.Driver, artifactDir string) {
	t.Helper()
	art, err := logreg.Load(artifactDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Ranking) != len(ids) {
		t.Fatalf("ranking has %d drivers, want %d: %+v", len(a.Ranking), len(ids), a)
	}
	byID := map[int64]exampledata.Driver{}
	for _, d := range drivers {
		byID[d.ID] = d
	}
	for i, r := range a.Ranking {
		d, ok := byID[r.DriverID]
		if !ok || !slices.Contains(ids, r.DriverID) {
			t.Fatalf("ranking names driver %d, not asked for", r.DriverID)
		}
		active := 0.0
		if d.Active {
			active = 1
		}
		want := art.Score([]float64{d.ConvRate, d.AccRate, float64(d.AvgDailyTrips), d.Rating, active})
		if diff := r.Score - want; diff > 1e-6 || diff < -1e-6 {
			t.Fatalf("driver %d scored %v, the artifact says %v", d.ID, r.Score, want)
		}
		if i > 0 && r.Score > a.Ranking[i-1].Score {
			t.Fatalf("ranking not sorted: %+v", a.Ranking)
		}
	}
}

// mlflowRegister sends the requests of MLflow's Python client registering the
// model of run j ("runs:/<id>"): create the model, read the run for its
// artifact location, create the version from it with the run id, poll it.
func mlflowRegister(t *testing.T, regURL string, j training.Job, model string) {
	t.Helper()
	call := func(method, path, body string) map[string]any {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, regURL+"/api/2.0/mlflow/"+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %v %v", method, path, resp.StatusCode, out, err)
		}
		return out
	}
	call("POST", "registered-models/create", `{"name": "`+model+`"}`)
	run := call("GET", "runs/get?run_uuid="+j.ID+"&run_id="+j.ID, "")["run"].(map[string]any)
	info := run["info"].(map[string]any)
	if info["status"] != "FINISHED" || info["experiment_id"] != registry.ExperimentID("driver-rank") {
		t.Fatalf("run info %v", info)
	}
	source := info["artifact_uri"].(string)
	if source != "file://"+j.Outputs.ArtifactDir {
		t.Fatalf("run artifact_uri %q, want file://%s", source, j.Outputs.ArtifactDir)
	}
	if _, err := os.Stat(filepath.Join(strings.TrimPrefix(source, "file://"), "model.json")); err != nil {
		t.Fatalf("the run's artifact location holds no model: %v", err)
	}
	params := map[string]string{}
	for _, p := range run["data"].(map[string]any)["params"].([]any) {
		kv := p.(map[string]any)
		params[kv["key"].(string)] = kv["value"].(string)
	}
	if params["lr"] != "0.5" || params["epochs"] != "300" {
		t.Fatalf("run params %v", params)
	}
	exp := call("GET", "experiments/get-by-name?experiment_name=driver-rank", "")["experiment"].(map[string]any)
	if exp["experiment_id"] != info["experiment_id"] {
		t.Fatalf("experiment %v", exp)
	}
	body, _ := json.Marshal(map[string]any{"name": model, "source": source, "run_id": j.ID, "tags": []any{}, "run_link": "", "description": ""})
	mv := call("POST", "model-versions/create", string(body))["model_version"].(map[string]any)
	mv = call("GET", "model-versions/get?name="+model+"&version="+mv["version"].(string), "")["model_version"].(map[string]any)
	if mv["status"] != "READY" || mv["run_id"] != j.ID || mv["source"] != source {
		t.Fatalf("registered version %v", mv)
	}
}
