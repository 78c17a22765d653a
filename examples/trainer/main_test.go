package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/examples/exampledata"
	"github.com/lariat-gw/lariat/examples/logreg"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/redistest"
)

func TestTrainer(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	viewsFile := filepath.Join(dir, "featureviews.yaml")
	if err := os.WriteFile(viewsFile, featurefetch.DemoViewsYAML(), 0o644); err != nil {
		t.Fatal(err)
	}
	views, err := featurefetch.LoadViews(viewsFile)
	if err != nil {
		t.Fatal(err)
	}
	store, err := featurefetch.NewRedisStore(featurefetch.RedisOptions{Addrs: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	drivers := exampledata.Drivers(300, 1)
	now := time.Now()
	// The last 10 drivers have no features in the store.
	for _, d := range drivers[:290] {
		row := d.Row(now)
		key, fields, err := views.EncodeRow("", &row)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.HSet(context.Background(), key, fields...); err != nil {
			t.Fatal(err)
		}
	}
	labels := filepath.Join(dir, "labels.csv")
	if err := os.WriteFile(labels, exampledata.LabelsCSV(drivers), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	env := map[string]string{
		"LARIAT_LABELS": labels, "LARIAT_VIEWS_FILE": viewsFile, "LARIAT_ONLINE_STORE": "redis://" + srv.Addr(),
		"LARIAT_FEATURE_VIEWS": "driver_stats", "LARIAT_ARTIFACT_DIR": out, "LARIAT_JOB_ID": "job-1",
		"LARIAT_HP_LR": "0.5", "LARIAT_HP_EPOCHS": "200", "LARIAT_JOB_NAME": "driver-rank",
	}
	var logs bytes.Buffer
	if err := run([]string{"--batch", "64"}, func(k string) string { return env[k] }, &logs); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "read 5 features of 300 entities (50 values missing)") {
		t.Fatalf("log:\n%s", logs.String())
	}
	a, err := logreg.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"conv_rate", "acc_rate", "avg_daily_trips", "rating", "is_active"}
	if strings.Join(a.Features, ",") != strings.Join(want, ",") || a.Entity != "driver_id" || a.JobID != "job-1" ||
		a.Name != "driver-rank" || a.Hyperparameters["lr"] != "0.5" {
		t.Fatalf("artifact: %+v", a)
	}
	if a.Weights[0] <= 0 || a.Weights[3] <= 0 {
		t.Fatalf("weights %v do not follow the data", a.Weights)
	}
	data, err := os.ReadFile(filepath.Join(out, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]float64
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m["auc"] < 0.8 || m["accuracy"] < 0.7 || m["logloss"] <= 0 || m["test_rows"] != 75 || m["train_rows"] != 225 {
		t.Fatalf("metrics: %v", m)
	}
}

func TestTrainerErrors(t *testing.T) {
	dir := t.TempDir()
	viewsFile := filepath.Join(dir, "featureviews.yaml")
	if err := os.WriteFile(viewsFile, featurefetch.DemoViewsYAML(), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f := func(wantErr string, args ...string) {
		t.Helper()
		err := run(args, func(string) string { return "" }, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("%q: error %v, want %q", args, err, wantErr)
		}
	}
	base := []string{"--views", viewsFile, "--redis", "127.0.0.1:1", "--artifact-dir", dir}
	f("required", "--labels", "x.csv")
	f("-artifact-dir is required", "--dataset", "x.parquet")
	f("cannot read dataset", "--dataset", filepath.Join(dir, "missing.parquet"), "--artifact-dir", dir)
	f("-feature-views or -features", append(base, "--labels", "x.csv")...)
	f("not numeric", append(base, "--labels", "x.csv", "--features", "driver_stats:vehicle_type")...)
	f("unknown feature view", append(base, "--labels", "x.csv", "--feature-views", "nope")...)
	f(`want columns "driver_id" and "label"`, append(base, "--labels", write("a.csv", "id,y\n1,0\n"), "--feature-views", "driver_stats")...)
	f("label \"2\" is not 0 or 1", append(base, "--labels", write("b.csv", "driver_id,label\n1,2\n"), "--feature-views", "driver_stats")...)
}
