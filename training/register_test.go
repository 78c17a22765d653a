package training

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/registry"
)

func TestRegisterOnSuccess(t *testing.T) {
	reg := startRegistry(t)
	m := newManager(t, t.TempDir(), newLocal(2), reg)
	spec := shellJob("driver-rank", `printf '{"accuracy": 0.8, "auc": 0.91}' > "$LARIAT_METRICS_FILE"`)
	spec.Hyperparameters = map[string]Hyperparameter{"lr": "0.1", "epochs": "20"}
	spec.Inputs = Inputs{FeatureViews: []string{"driver_stats"}, Features: []string{"driver_trips:recent_trip_km"}, Labels: "/tmp/l.csv"}
	spec.Register = &Register{
		Model:           "driver-rank",
		ServingEndpoint: "http://127.0.0.1:9/models/{model}/v{version}/predict",
		Description:     "first",
		Tags:            map[string]string{"team": "dispatch"},
		Aliases:         []string{"staging"},
	}
	j, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if j.Status.Phase != PhaseSucceeded || j.Status.Model == nil || j.Status.Model.Version != "1" {
		t.Fatalf("job: %+v", j.Status)
	}
	if c := condition(t, j, ConditionSucceeded); c.Message != "registered driver-rank version 1" {
		t.Fatalf("succeeded condition: %+v", c)
	}
	ctx := context.Background()
	v, err := reg.VersionByAlias(ctx, "driver-rank", "staging")
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "1" || v.TrainingJob != j.ID || v.RunID != j.ID || v.Source != j.Outputs.ArtifactURI ||
		v.ServingEndpoint != "http://127.0.0.1:9/models/driver-rank/v1/predict" || v.Description != "first" ||
		v.Params["lr"] != "0.1" || v.Params["epochs"] != "20" || v.Metrics["auc"] != 0.91 ||
		!slices.Equal(v.FeatureViews, []string{"driver_stats", "driver_trips"}) || len(v.Tags) != 1 || v.Tags[0].Value != "dispatch" {
		t.Fatalf("registered version: %+v", v)
	}
	if j.Status.Model.ServingEndpoint != v.ServingEndpoint {
		t.Fatalf("job's model: %+v", j.Status.Model)
	}

	// The job is a run too, with its params, metrics, artifact and lineage:
	// what the version's run_id names.
	run, err := reg.GetRun(ctx, v.RunID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(run)
	want := `{"info":{"run_id":"` + j.ID + `","run_uuid":"` + j.ID + `","run_name":"` + j.ID + `","experiment_id":"` + registry.ExperimentID("driver-rank") +
		`","user_id":"","status":"FINISHED","start_time":` + strconv.FormatInt(j.Status.StartTime.UnixMilli(), 10) +
		`,"end_time":` + strconv.FormatInt(run.Info.EndTime, 10) + `,"artifact_uri":"` + j.Outputs.ArtifactURI + `","lifecycle_stage":"active"},` +
		`"data":{"metrics":[{"key":"accuracy","value":0.8,"timestamp":` + strconv.FormatInt(run.Info.EndTime, 10) + `,"step":0},` +
		`{"key":"auc","value":0.91,"timestamp":` + strconv.FormatInt(run.Info.EndTime, 10) + `,"step":0}],` +
		`"params":[{"key":"epochs","value":"20"},{"key":"lr","value":"0.1"}],` +
		`"tags":[{"key":"lariat.backend","value":"local"},{"key":"lariat.feature_views","value":"driver_stats,driver_trips"},` +
		`{"key":"lariat.training_job","value":"` + j.ID + `"},{"key":"mlflow.runName","value":"` + j.ID + `"}]},"inputs":{}}`
	if string(got) != want || run.Info.EndTime < run.Info.StartTime {
		t.Fatalf("run\n got %s\nwant %s", got, want)
	}

	// A failed job is a FAILED run.
	bad, err := m.Submit(shellJob("driver-rank", "exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	bad = waitJob(t, m, bad.ID)
	if run, err := reg.GetRun(ctx, bad.ID); err != nil || run.Info.Status != registry.RunFailed || bad.Status.Phase != PhaseFailed {
		t.Fatalf("failed job's run %+v, %v", run, err)
	}

	// Registering the same job again (a restart mid-registration) reuses the version.
	ref, err := m.register(ctx, &j, spec.Register, j.Status.Metrics, nil)
	if err != nil || ref.Version != "1" {
		t.Fatalf("second registration: %+v, %v", ref, err)
	}
	vs, _, err := reg.SearchVersions(ctx, registry.SearchRequest{Filter: "name = 'driver-rank'"})
	if err != nil || len(vs) != 1 {
		t.Fatalf("versions: %d, %v", len(vs), err)
	}

	// A second job gets version 2 with a fixed endpoint.
	spec.Register.ServingEndpoint = "http://127.0.0.1:9/{job}"
	spec.Register.Aliases = nil
	j2, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	j2 = waitJob(t, m, j2.ID)
	if j2.Status.Model == nil || j2.Status.Model.Version != "2" || j2.Status.Model.ServingEndpoint != "http://127.0.0.1:9/"+j2.ID {
		t.Fatalf("second job: %+v", j2.Status)
	}
}

func TestRegisterFailures(t *testing.T) {
	// A registry that does not answer: registration fails after its attempts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	down := registry.NewClient("http://"+addr, nil)
	m := newManager(t, t.TempDir(), newLocal(2), down)
	spec := shellJob("unregistered", "true")
	spec.Register = &Register{Model: "m"}
	j, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	c := condition(t, j, ConditionFailed)
	if c.Reason != ReasonRegistrationFailed || !strings.Contains(c.Message, "cannot register model m") || j.Status.ExitCode == nil {
		t.Fatalf("job: %+v", j.Status)
	}

	// An API error (an alias the registry refuses) is not retried.
	reg := startRegistry(t)
	m2 := newManager(t, t.TempDir(), newLocal(2), reg)
	if _, err := reg.CreateModel(context.Background(), registry.CreateModelRequest{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	j = Job{ID: "x-1", Spec: shellJob("x", "true"), Outputs: Outputs{ArtifactURI: "file:///tmp/x"}}
	_, err = m2.registerWithRetry(context.Background(), &j, &Register{Model: "m", Aliases: []string{"v1"}}, nil, nil)
	if registry.ErrorCode(err) != registry.CodeInvalidParameterValue {
		t.Fatalf("reserved alias: %v", err)
	}
}
