package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/predlog/sink"
	"github.com/lariat-gw/lariat/training/dataset"
	"github.com/lariat-gw/lariat/training/report"
)

// writePredictions writes n records (request ids r0..r<n-1>) of a split
// route into a file:// prediction log: even requests answered by rank
// version 1 in arm control with score 0.2, odd ones by version 2 in arm
// canary with score 0.8; one entity each with a conv_rate feature.
func writePredictions(t *testing.T, dir string, n int) {
	t.Helper()
	l, err := sink.OpenLog("file://"+dir, predlog.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		arm, v, score := "control", "1", "0.2"
		if i%2 == 1 {
			arm, v, score = "canary", "2", "0.8"
		}
		r := l.Acquire()
		*r = predlog.Record{RequestID: fmt.Sprintf("r%d", i), Time: time.Now(), Route: "rank", RouteVersion: "abc", Status: 200, LatencyMs: float64(1 + i%5),
			Arms:     []predlog.Arm{{Gate: "experiment", Arm: arm}},
			Tasks:    []predlog.Task{{Name: "m", Kind: "http", Model: "rank", Version: v, Status: "ok", Code: 200}},
			Features: []predlog.Feature{{Task: "f", Entity: predlog.JSON(fmt.Sprintf(`{"driver_id":%d}`, i)), View: "driver_stats", Name: "conv_rate", Value: predlog.JSON(fmt.Sprintf("0.%d", i%10)), Status: "PRESENT"}},
			Outputs:  []predlog.Output{{Path: "response.body.score", Value: predlog.JSON(score)}},
		}
		l.Submit(r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDatasetCommand(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	writePredictions(t, logDir, 10)
	var labels strings.Builder
	labels.WriteString("request_id,label\n")
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&labels, "r%d,%d\n", i, i%2)
	}
	lf := writeFile(t, dir, "labels.csv", labels.String())
	out := filepath.Join(dir, "train.parquet")
	code, stdout, stderr := runCLI("dataset", "--predictions", logDir, "--labels", lf, "--on", "request_id", "--out", out)
	if code != 0 || !strings.Contains(stdout, "wrote 10 rows to "+out+": 10 of 12 labels matched") ||
		!strings.Contains(stdout, "features: conv_rate") || !strings.Contains(stdout, "no record for request_id: r10, r11") {
		t.Fatalf("dataset: %d\n%s\n%s", code, stdout, stderr)
	}
	d, err := dataset.Read(out, "label", nil)
	if err != nil || len(d.X) != 10 || len(d.Y) != 10 || d.Features[0] != "conv_rate" || d.X[3][0] != 0.3 || d.Y[3] != 1 {
		t.Fatalf("dataset read back: %+v %v", d, err)
	}
	code, stdout, stderr = runCLI("dataset", "--predictions", logDir, "--labels", lf, "--out", out, "-o", "json")
	var st dataset.Stats
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil || st.Rows != 10 || st.Labels != 12 {
		t.Fatalf("dataset -o json: %d %s %s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI("dataset", "--labels", lf); code != 2 || !strings.Contains(stderr, "dataset needs --predictions DIR") {
		t.Fatalf("missing flags: %d %s", code, stderr)
	}
	if code, _, stderr := runCLI("dataset", "--predictions", logDir, "--labels", lf, "--on", "id", "--out", out); code != 1 || !strings.Contains(stderr, `no "id" column`) {
		t.Fatalf("bad join column: %d %s", code, stderr)
	}
}

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	writePredictions(t, logDir, 200)
	var labels strings.Builder
	labels.WriteString("request_id,label\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&labels, "r%d,%d\n", i, (i/2)%2)
	}
	lf := writeFile(t, dir, "labels.csv", labels.String())
	page, js := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.json")
	code, _, stderr := runCLI("report", "--predictions", logDir, "--labels", lf, "--html", page, "--json", js)
	if code != 0 || !strings.Contains(stderr, "wrote "+page) || !strings.Contains(stderr, "wrote "+js) {
		t.Fatalf("report: %d %s", code, stderr)
	}
	html, err := os.ReadFile(page)
	if err != nil || !strings.Contains(string(html), "experiment=canary m=rank/2") || !strings.Contains(string(html), "<svg") {
		t.Fatalf("html report: %v\n%s", err, html)
	}
	code, stdout, stderr := runCLI("report", "--predictions", logDir, "--distribution", "response.body.score")
	var rep report.Report
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || len(rep.Routes) != 1 || len(rep.Routes[0].Variants) != 2 || rep.Routes[0].Output != "response.body.score" {
		t.Fatalf("report to stdout: %d %s %s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI("report"); code != 2 || !strings.Contains(stderr, "report needs --predictions DIR") {
		t.Fatalf("report without a log: %d %s", code, stderr)
	}
}
