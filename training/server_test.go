package training

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/promexpo"
)

func startServer(t *testing.T, m *Manager) *Client {
	t.Helper()
	srv := httptest.NewServer(NewServer(m, ServerOptions{Logf: t.Logf, MaxBodySize: 4 << 10}))
	t.Cleanup(srv.Close)
	return NewClient(srv.URL, nil)
}

func TestServerJobs(t *testing.T) {
	m := newManager(t, t.TempDir(), newLocal(2), nil)
	c := startServer(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	apiStatus := func(err error) int {
		var ae *APIError
		if errors.As(err, &ae) {
			return ae.Status
		}
		return 0
	}

	j, err := c.SubmitJob(ctx, []byte(`
name: api
command: [/bin/sh, -c, 'echo "hello $LARIAT_HP_WHO"; printf "{\"auc\": 0.5}" > "$LARIAT_METRICS_FILE"']
hyperparameters: {who: world}
`))
	if err != nil {
		t.Fatal(err)
	}
	j, err = c.WaitJob(ctx, j.ID, 20*time.Millisecond)
	if err != nil || j.Status.Phase != PhaseSucceeded || j.Status.Metrics["auc"] != 0.5 {
		t.Fatalf("job: %+v, %v", j.Status, err)
	}
	rc, err := c.Logs(ctx, j.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := io.ReadAll(rc)
	rc.Close()
	if string(logs) != "hello world\n" {
		t.Fatalf("logs: %q", logs)
	}
	jobs, err := c.Jobs(ctx, JobFilter{Phase: PhaseSucceeded})
	if err != nil || len(jobs) != 1 || jobs[0].ID != j.ID {
		t.Fatalf("list: %v, %v", jobs, err)
	}
	if jobs, err := c.Jobs(ctx, JobFilter{Study: "none"}); err != nil || len(jobs) != 0 {
		t.Fatalf("filtered list: %v, %v", jobs, err)
	}

	// Errors.
	_, err = c.SubmitJob(ctx, []byte("name: bad\ncommand: [x]\nretries: 3\n"))
	if apiStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), `request:3:1: unknown key "retries"`) {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = c.SubmitJob(ctx, []byte(`{"name": "img", "image": "trainer:1"}`))
	if apiStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "the local backend runs a command") {
		t.Fatalf("backend check: %v", err)
	}
	_, err = c.SubmitJob(ctx, []byte("name: big\ncommand: [x]\nargs: ["+strings.Repeat(`"aaaaaaaa",`, 1000)+"]\n"))
	if apiStatus(err) != http.StatusRequestEntityTooLarge {
		t.Fatalf("large spec: %v", err)
	}
	if _, err := c.Job(ctx, "missing"); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("missing job: %v", err)
	}
	if _, err := c.Logs(ctx, "missing", false); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("missing logs: %v", err)
	}
	if _, err := c.CancelJob(ctx, j.ID); apiStatus(err) != http.StatusConflict {
		t.Fatalf("cancel finished: %v", err)
	}

	// Cancel a running job.
	gate := filepath.Join(t.TempDir(), "never")
	j, err = c.SubmitJob(ctx, []byte("name: long\ncommand: [/bin/sh, -c, '"+gateScript+"']\nenv: {GATE: "+gate+"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to run", func() bool { j, _ := c.Job(ctx, j.ID); return j.Status.Phase == PhaseRunning })
	if j, err = c.CancelJob(ctx, j.ID); err != nil || !j.CancelRequested {
		t.Fatalf("cancel: %+v, %v", j, err)
	}
	j, err = c.WaitJob(ctx, j.ID, 20*time.Millisecond)
	if err != nil || condition(t, j, ConditionFailed).Reason != ReasonCancelled {
		t.Fatalf("cancelled: %+v, %v", j.Status, err)
	}

	// Health and metrics.
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "\n# TYPE lariat_train_jobs_submitted_total counter\nlariat_train_jobs_submitted_total ") {
		t.Fatalf("metrics: %.300s", body)
	}
	if err := promexpo.Check(string(body)); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(c.base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
}

func TestServerStudies(t *testing.T) {
	m := newManager(t, t.TempDir(), newLocal(2), nil)
	c := startServer(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := c.SubmitStudy(ctx, []byte(`
name: api-study
job:
  command: [/bin/sh, -c, 'printf "{\"acc\": %s}" "$LARIAT_HP_X" > "$LARIAT_METRICS_FILE"']
search: grid
space: {x: {type: float, min: 0.5, max: 0.9, points: 3}}
parallel: 3
objective: {metric: acc, goal: maximize}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err = c.WaitStudy(ctx, s.ID, 20*time.Millisecond)
	if err != nil || s.Status.Phase != PhaseSucceeded || *s.Status.BestValue != 0.9 || s.Status.Best != 3 {
		t.Fatalf("study: %+v, %v", s.Status, err)
	}
	list, err := c.Studies(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("studies: %v, %v", list, err)
	}
	jobs, err := c.Jobs(ctx, JobFilter{Study: s.ID})
	if err != nil || len(jobs) != 3 {
		t.Fatalf("trial jobs: %d, %v", len(jobs), err)
	}
	if _, err := c.CancelStudy(ctx, s.ID); err == nil {
		t.Fatal("cancelled a finished study")
	}
	if _, err := c.Study(ctx, "missing"); err == nil {
		t.Fatal("found a missing study")
	}
	if _, err := c.SubmitStudy(ctx, []byte("name: s\n")); err == nil || !strings.Contains(err.Error(), "objective.metric: is required") {
		t.Fatalf("bad study: %v", err)
	}
}
