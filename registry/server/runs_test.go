package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"testing"

	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/registry/server"
)

// recordTrainingRuns records runs as lariat-train does: one finished run
// with lineage and a metric logged at two steps, one failed run of the same
// experiment, one of another experiment.
func recordTrainingRuns(t *testing.T, ts *testServer) {
	t.Helper()
	ctx := context.Background()
	runs := []registry.RunRecord{
		{
			RunID: "driver-rank-3f9a1c", Experiment: "driver-rank", RunName: "driver-rank-3f9a1c", Status: registry.RunFinished,
			StartTime: 1767225600000, EndTime: 1767225660000, ArtifactURI: "s3://models/driver-rank/driver-rank-3f9a1c",
			Params: map[string]string{"lr": "0.1", "epochs": "200"},
			Metrics: []registry.Metric{
				{Key: "logloss", Value: 0.5, Timestamp: 1767225630000, Step: 0},
				{Key: "logloss", Value: 0.24, Timestamp: 1767225660000, Step: 1},
				{Key: "auc", Value: 0.95, Timestamp: 1767225660000},
			},
			Tags: map[string]string{"lariat.training_job": "driver-rank-3f9a1c", "lariat.feature_views": "driver_stats"},
		},
		{
			RunID: "driver-rank-77aa00", Experiment: "driver-rank", Status: registry.RunFailed, StartTime: 1767229200000,
			EndTime: 1767229260000, Params: map[string]string{"lr": "0.5", "epochs": "200"},
			Metrics: []registry.Metric{{Key: "auc", Value: 0.61, Timestamp: 1767229260000}},
		},
		{RunID: "eta-000001", Experiment: "eta", Status: registry.RunRunning, StartTime: 1767232800000},
	}
	for _, r := range runs {
		if _, err := ts.Client.RecordRun(ctx, r); err != nil {
			t.Fatalf("record run %s: %v", r.RunID, err)
		}
	}
}

// testRuns reads runs through MLflow's tracking endpoints with the requests
// the Python client sends, and registers a model from a run the way
// mlflow.register_model("runs:/<run_id>/model", name) does.
func testRuns(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	recordTrainingRuns(t, ts)

	// runs/get: GET with run_id and run_uuid, as MlflowClient.get_run sends.
	got := expectOK(t, ts.call(t, "GET", "runs/get?run_uuid=driver-rank-3f9a1c&run_id=driver-rank-3f9a1c", ""))
	want := `{"run": {"info": {"run_id": "driver-rank-3f9a1c", "run_uuid": "driver-rank-3f9a1c", "run_name": "driver-rank-3f9a1c",
		"experiment_id": "` + registry.ExperimentID("driver-rank") + `", "user_id": "", "status": "FINISHED",
		"start_time": 1767225600000, "end_time": 1767225660000,
		"artifact_uri": "s3://models/driver-rank/driver-rank-3f9a1c", "lifecycle_stage": "active"},
		"data": {
			"metrics": [{"key": "auc", "value": 0.95, "timestamp": 1767225660000, "step": 0},
				{"key": "logloss", "value": 0.24, "timestamp": 1767225660000, "step": 1}],
			"params": [{"key": "epochs", "value": "200"}, {"key": "lr", "value": "0.1"}],
			"tags": [{"key": "lariat.feature_views", "value": "driver_stats"},
				{"key": "lariat.training_job", "value": "driver-rank-3f9a1c"},
				{"key": "mlflow.runName", "value": "driver-rank-3f9a1c"}]},
		"inputs": {}}}`
	jsonMatches(t, got, want)
	expectError(t, ts.call(t, "GET", "runs/get?run_id=nope", ""), 404, registry.CodeResourceDoesNotExist)
	expectError(t, ts.call(t, "GET", "runs/get", ""), 400, registry.CodeInvalidParameterValue)

	// experiments/get-by-name and experiments/get.
	got = expectOK(t, ts.call(t, "GET", "experiments/get-by-name?experiment_name=driver-rank", ""))
	id := registry.ExperimentID("driver-rank")
	jsonMatches(t, got, `{"experiment": {"experiment_id": "`+id+`", "name": "driver-rank", "artifact_location": "",
		"lifecycle_stage": "active", "creation_time": 1767225600000, "last_update_time": 1767229260000}}`)
	jsonMatches(t, expectOK(t, ts.call(t, "GET", "experiments/get?experiment_id="+id, "")), `{"experiment": {"experiment_id": "`+id+`",
		"name": "driver-rank", "artifact_location": "", "lifecycle_stage": "active", "creation_time": 1767225600000, "last_update_time": 1767229260000}}`)
	jsonMatches(t, expectOK(t, ts.call(t, "GET", "experiments/get-by-name?experiment_name=Default", "")),
		`{"experiment": {"experiment_id": "0", "name": "Default", "artifact_location": "", "lifecycle_stage": "active"}}`)
	expectError(t, ts.call(t, "GET", "experiments/get-by-name?experiment_name=nope", ""), 404, registry.CodeResourceDoesNotExist)

	// metrics/get-history: every value, in logging order.
	jsonMatches(t, expectOK(t, ts.call(t, "GET", "metrics/get-history?run_uuid=driver-rank-3f9a1c&run_id=driver-rank-3f9a1c&metric_key=logloss&max_results=25000", "")),
		`{"metrics": [{"key": "logloss", "value": 0.5, "timestamp": 1767225630000, "step": 0},
			{"key": "logloss", "value": 0.24, "timestamp": 1767225660000, "step": 1}]}`)
	jsonMatches(t, expectOK(t, ts.call(t, "GET", "metrics/get-history?run_id=driver-rank-3f9a1c&metric_key=none", "")), `{"metrics": []}`)
	expectError(t, ts.call(t, "GET", "metrics/get-history?run_id=nope&metric_key=auc", ""), 404, registry.CodeResourceDoesNotExist)

	// runs/search: POST with the body MlflowClient.search_runs sends.
	search := func(body string, want ...string) string {
		t.Helper()
		page := expectOK(t, ts.call(t, "POST", "runs/search", body))
		var ids []string
		runs, _ := page["runs"].([]any)
		for _, r := range runs {
			ids = append(ids, r.(map[string]any)["info"].(map[string]any)["run_id"].(string))
		}
		if !reflect.DeepEqual(ids, want) {
			t.Fatalf("runs/search %s = %v, want %v", body, ids, want)
		}
		next, _ := page["next_page_token"].(string)
		return next
	}
	search(`{"experiment_ids": ["`+id+`"], "filter": "", "run_view_type": "ACTIVE_ONLY", "max_results": 1000, "order_by": []}`,
		"driver-rank-77aa00", "driver-rank-3f9a1c")
	search(`{"experiment_ids": ["`+id+`"], "filter": "metrics.auc > 0.9", "run_view_type": "ACTIVE_ONLY", "max_results": 1000}`,
		"driver-rank-3f9a1c")
	search(`{"experiment_ids": ["`+id+`"], "filter": "params.lr = '0.5' and attributes.status = 'FAILED'", "max_results": 1000}`,
		"driver-rank-77aa00")
	search(`{"experiment_ids": ["`+id+`"], "filter": "tags.lariat.training_job LIKE 'driver-%'"}`, "driver-rank-3f9a1c")
	search(`{"experiment_ids": ["`+id+`"], "filter": "tags.`+"`lariat.training_job`"+` LIKE 'driver-%'"}`, "driver-rank-3f9a1c")
	search(`{"experiment_ids": ["`+id+`"], "filter": "metrics.logloss < 1"}`, "driver-rank-3f9a1c") // missing: false
	search(`{"experiment_ids": ["`+id+`"], "order_by": ["metrics.auc ASC"]}`, "driver-rank-77aa00", "driver-rank-3f9a1c")
	search(`{"experiment_ids": ["`+id+`", "`+registry.ExperimentID("eta")+`"], "order_by": ["start_time ASC"]}`,
		"driver-rank-3f9a1c", "driver-rank-77aa00", "eta-000001")
	search(`{"experiment_ids": ["` + id + `"], "run_view_type": "DELETED_ONLY"}`)
	next := search(`{"experiment_ids": ["`+id+`"], "max_results": 1}`, "driver-rank-77aa00")
	search(`{"experiment_ids": ["`+id+`"], "max_results": 1, "page_token": "`+next+`"}`, "driver-rank-3f9a1c")
	expectError(t, ts.call(t, "POST", "runs/search", `{"filter": "metrics.auc LIKE '9%'"}`), 400, registry.CodeInvalidParameterValue)
	expectError(t, ts.call(t, "POST", "runs/search", `{"filter": "dataset.name = 'x'"}`), 400, registry.CodeInvalidParameterValue)

	// mlflow.register_model("runs:/driver-rank-3f9a1c/model", "driver-rank"):
	// create the model (already existing is fine), read the run for its
	// artifact location, look for logged models, create the version, poll it.
	expectOK(t, ts.call(t, "POST", "registered-models/create", `{"name": "driver-rank"}`))
	expectError(t, ts.call(t, "POST", "registered-models/create", `{"name": "driver-rank"}`), 400, registry.CodeResourceAlreadyExists)
	run := expectOK(t, ts.call(t, "GET", "runs/get?run_uuid=driver-rank-3f9a1c&run_id=driver-rank-3f9a1c", ""))
	source := run["run"].(map[string]any)["info"].(map[string]any)["artifact_uri"].(string) + "/model"
	jsonMatches(t, expectOK(t, ts.call(t, "POST", "logged-models/search", `{"experiment_ids": ["`+id+`"], "max_results": 100}`)), `{"models": []}`)
	body, _ := json.Marshal(map[string]any{"name": "driver-rank", "source": source, "run_id": "driver-rank-3f9a1c",
		"tags": []any{}, "run_link": "", "description": ""})
	mv := expectOK(t, ts.call(t, "POST", "model-versions/create", string(body)))["model_version"].(map[string]any)
	if mv["version"] != "1" || mv["run_id"] != "driver-rank-3f9a1c" || mv["source"] != "s3://models/driver-rank/driver-rank-3f9a1c/model" {
		t.Fatalf("created version %v", mv)
	}
	mv = expectOK(t, ts.call(t, "GET", "model-versions/get?"+url.Values{"name": {"driver-rank"}, "version": {"1"}}.Encode(), ""))["model_version"].(map[string]any)
	if mv["status"] != registry.StatusReady {
		t.Fatalf("version status %v, want READY", mv["status"])
	}

	// A run recorded again (its job ended) replaces the first record.
	if _, err := ts.Client.RecordRun(context.Background(), registry.RunRecord{RunID: "eta-000001", Experiment: "eta", Status: registry.RunFinished,
		StartTime: 1767232800000, EndTime: 1767232900000}); err != nil {
		t.Fatal(err)
	}
	r, err := ts.Client.GetRun(context.Background(), "eta-000001")
	if err != nil || r.Info.Status != registry.RunFinished || r.Info.EndTime != 1767232900000 {
		t.Fatalf("re-recorded run %+v, %v", r, err)
	}
	expectError(t, ts.call(t, "POST", "runs/record", `{"run_id": "a/b"}`), 400, registry.CodeInvalidParameterValue)
	expectError(t, ts.call(t, "POST", "runs/record", `{"run_id": "x", "status": "DONE"}`), 400, registry.CodeInvalidParameterValue)
}

// jsonMatches compares a decoded JSON object with a JSON document.
func jsonMatches(t *testing.T, got map[string]any, want string) {
	t.Helper()
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON: %v", err)
	}
	if !reflect.DeepEqual(got, w) {
		g, _ := json.Marshal(got)
		wb, _ := json.Marshal(w)
		t.Fatalf("got  %s\nwant %s", g, wb)
	}
}
