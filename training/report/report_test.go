package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/predlog"
	"github.com/lariat-gw/lariat/predlog/sink"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestStatistics(t *testing.T) {
	if e := wilson(5, 10); !near(e.Value, 0.5, 1e-12) || !near(e.Low, 0.2366, 1e-4) || !near(e.High, 0.7634, 1e-4) {
		t.Errorf("wilson(5, 10) = %+v", e)
	}
	if e := wilson(0, 0); e != (Estimate{}) {
		t.Errorf("wilson(0, 0) = %+v", e)
	}
	s := []scored{{0.1, 0}, {0.4, 0}, {0.35, 1}, {0.8, 1}}
	if a := aucOf(s); a != 0.75 {
		t.Errorf("auc = %v, want 0.75", a)
	}
	if a := aucOf([]scored{{0.5, 0}, {0.5, 1}}); a != 0.5 {
		t.Errorf("auc of a tie = %v, want 0.5", a)
	}
	if a := aucOf([]scored{{0.5, 1}}); !math.IsNaN(a) {
		t.Errorf("auc of one class = %v, want NaN", a)
	}
	// Hanley-McNeil with A = 0.75 and two of each class.
	if se := aucSE(0.75, s); !near(se, 0.27630, 1e-4) {
		t.Errorf("auc standard error = %v, want 0.2763", se)
	}
	if d, z := twoProportions(30, 100, 20, 100); !near(d, 0.1, 1e-12) || !near(z, 1.6330, 1e-4) {
		t.Errorf("two proportions: %v %v", d, z)
	}
	// Log-loss of p=0.8 for y=1 and p=0.2 for y=0 is -ln 0.8 each.
	if m, v := lossMoments([]scored{{0.8, 1}, {0.2, 0}}); !near(m, -math.Log(0.8), 1e-12) || v != 0 {
		t.Errorf("log-loss %v variance %v", m, v)
	}
	if c := correct(s); c != 3 {
		t.Errorf("correct = %d, want 3", c)
	}
	if q := quantile([]float64{1, 2, 3, 4}, 0.5); q != 2 {
		t.Errorf("p50 = %v", q)
	}
}

// writeExperiment logs n requests of a split route: control answered by
// rank/1 with an informative score, canary by rank/2 with a random one and
// one 502 in ten. It returns the labels CSV.
func writeExperiment(t *testing.T, dir string, n int) string {
	t.Helper()
	l, err := sink.OpenLog("file://"+dir, predlog.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var labels strings.Builder
	labels.WriteString("request_id,label\n")
	for i := 0; i < n; i++ {
		y := float64(rng.IntN(2))
		arm, v, status := "control", "1", int32(200)
		score := min(max(0.25+0.5*y+0.2*rng.NormFloat64(), 0.01), 0.99)
		if i%2 == 1 {
			arm, v, score = "canary", "2", rng.Float64()
			if i%20 == 1 {
				status = 502
			}
		}
		r := l.Acquire()
		*r = predlog.Record{RequestID: fmt.Sprintf("r%d", i), Time: time.Now(), Route: "rank", RouteVersion: "abc", Status: status,
			LatencyMs: float64(1 + i%100),
			Arms:      []predlog.Arm{{Gate: "experiment", Arm: arm}},
			Tasks:     []predlog.Task{{Name: "m", Kind: "http", Model: "rank", Version: v, Status: predlog.TaskOK, Code: 200}},
			Outputs:   []predlog.Output{{Path: "response.body.score", Value: predlog.JSON(fmt.Sprint(score))}},
		}
		if status == 502 {
			r.Tasks[0].Status, r.Tasks[0].Code, r.Outputs = predlog.TaskError, 502, nil
		}
		l.Submit(r)
		fmt.Fprintf(&labels, "r%d,%v\n", i, y)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "labels.csv")
	if err := os.WriteFile(p, []byte(labels.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	labels := writeExperiment(t, filepath.Join(dir, "log"), 4000)
	rep, err := Build(Options{Predictions: filepath.Join(dir, "log"), Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Routes) != 1 {
		t.Fatalf("%d routes", len(rep.Routes))
	}
	rt := rep.Routes[0]
	if rt.Route != "rank" || rt.Output != "response.body.score" || len(rt.Variants) != 2 {
		t.Fatalf("route %+v", rt)
	}
	ctrl, cand := rt.Variants[0], rt.Variants[1]
	if ctrl.Name != "experiment=control m=rank/1" || cand.Name != "experiment=canary m=rank/2" {
		t.Fatalf("variants %q, %q", ctrl.Name, cand.Name)
	}
	// Control's latencies are the odd numbers 1..99 ms.
	if ctrl.Requests != 2000 || ctrl.Errors != 0 || ctrl.LatencyP50Ms != 49 || ctrl.LatencyP99Ms != 99 {
		t.Fatalf("control: %d requests, %d errors, p50 %v p99 %v", ctrl.Requests, ctrl.Errors, ctrl.LatencyP50Ms, ctrl.LatencyP99Ms)
	}
	if cand.Requests != 2000 || cand.Errors != 200 || !near(cand.ErrorRate.Value, 0.1, 1e-12) || cand.Labelled != 1800 {
		t.Fatalf("canary: %d requests, %d errors (%+v), %d labelled", cand.Requests, cand.Errors, cand.ErrorRate, cand.Labelled)
	}
	if ctrl.AUC == nil || ctrl.AUC.Value < 0.85 || ctrl.AUC.Low > ctrl.AUC.Value || ctrl.AUC.High < ctrl.AUC.Value {
		t.Fatalf("control AUC %+v", ctrl.AUC)
	}
	if ctrl.Labelled != 2000 || ctrl.Output.Count != 2000 || len(ctrl.Output.Bins) != 20 {
		t.Fatalf("control labelled %d, output %d values in %d bins", ctrl.Labelled, ctrl.Output.Count, len(ctrl.Output.Bins))
	}
	byMetric := map[string]*Comparison{}
	for _, c := range rt.Comparisons {
		byMetric[c.Metric] = c
	}
	if c := byMetric["auc"]; c == nil || !c.Significant || c.Delta > -0.3 {
		t.Fatalf("auc comparison %+v", c)
	}
	if c := byMetric["log_loss"]; c == nil || !c.Significant || c.Delta <= 0 {
		t.Fatalf("log-loss comparison %+v", c)
	}
	if c := byMetric["error_rate"]; c == nil || !c.Significant || !near(c.Delta, 0.1, 1e-12) {
		t.Fatalf("error-rate comparison %+v", c)
	}

	var js, page bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Routes[0].Variants) != len(rt.Variants) {
		t.Fatalf("json: %v", err)
	}
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	doc := page.String()
	svgs, data := parseHTML(t, doc)
	if svgs != 1 || data != strings.TrimSpace(mustJSON(t, rep)) {
		t.Fatalf("html: %d svg, embedded data matches: %v", svgs, data == mustJSON(t, rep))
	}
	for _, want := range []string{"Route rank", "experiment=control m=rank/1", "Hanley-McNeil z", "log-loss", "<polyline", "share of answers"} {
		if !strings.Contains(doc, want) {
			t.Errorf("html lacks %q", want)
		}
	}
	if strings.Contains(doc, "http://") || strings.Contains(doc, "https://") || strings.Contains(doc, "src=") {
		t.Error("html loads or links something")
	}
}

// TestReportWithoutLabels: no accuracy without labels; a bad label column
// is named.
func TestReportWithoutLabels(t *testing.T) {
	dir := t.TempDir()
	writeExperiment(t, dir, 200)
	rep, err := Build(Options{Predictions: dir, Output: "response.body.score", Bins: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Routes[0].Variants {
		if v.Accuracy != nil || v.Labelled != 0 || len(v.Output.Bins) != 5 {
			t.Fatalf("variant %s without labels: %d labelled, %d bins", v.Name, v.Labelled, len(v.Output.Bins))
		}
	}
	for _, c := range rep.Routes[0].Comparisons {
		if c.Metric != "error_rate" {
			t.Fatalf("comparison without labels: %+v", c)
		}
	}
	if _, err := Build(Options{Predictions: dir, Labels: filepath.Join(dir, "labels.csv"), Label: "y"}); err == nil || !strings.Contains(err.Error(), `want columns "request_id" and "y"`) {
		t.Fatalf("bad label column: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseHTML checks that doc is well-formed and returns its number of svg
// elements and the embedded report data.
func parseHTML(t *testing.T, doc string) (svgs int, data string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	inData := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("html is not well-formed: %s", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "svg" {
				svgs++
			}
			if el.Name.Local == "script" && slices.Contains(el.Attr, xml.Attr{Name: xml.Name{Local: "id"}, Value: "lariat-report-data"}) {
				inData = true
			}
		case xml.CharData:
			if inData {
				data += string(el)
			}
		case xml.EndElement:
			inData = false
		}
	}
	return svgs, data
}
