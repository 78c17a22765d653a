package training

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLocalJobSucceeds(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, newLocal(2), nil)
	spec := shellJob("ok", `echo "training with lr=$1 job=$LARIAT_JOB_ID"; echo "to stderr" >&2; `+
		`printf '{"accuracy": 0.75, "logloss": 0.5, "note": "ignored"}' > "$LARIAT_METRICS_FILE"; `+
		`echo weights > "$LARIAT_ARTIFACT_DIR/model.json"`)
	spec.Command = append(spec.Command, "sh", "$(LARIAT_HP_LR)")
	spec.Hyperparameters = map[string]Hyperparameter{"lr": "0.25"}
	j, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(j.ID, "ok-") || j.Status.Phase != PhasePending || condition(t, j, ConditionCreated).Status != ConditionTrue {
		t.Fatalf("submitted job: %+v", j)
	}
	j = waitJob(t, m, j.ID)
	if j.Status.Phase != PhaseSucceeded || *j.Status.ExitCode != 0 || j.Status.Metrics["accuracy"] != 0.75 ||
		len(j.Status.Metrics) != 2 || j.Status.StartTime == nil || j.Status.CompletionTime == nil {
		t.Fatalf("finished job: %+v", j.Status)
	}
	if c := condition(t, j, ConditionRunning); c.Status != ConditionFalse || c.Reason != ReasonFinished {
		t.Fatalf("Running condition after the end: %+v", c)
	}
	if c := condition(t, j, ConditionSucceeded); c.Status != ConditionTrue || c.Reason != ReasonCompleted {
		t.Fatalf("Succeeded condition: %+v", c)
	}
	wantDir := filepath.Join(dir, "artifacts", j.ID)
	if j.Outputs.ArtifactDir != wantDir || j.Outputs.ArtifactURI != "file://"+wantDir {
		t.Fatalf("outputs: %+v", j.Outputs)
	}
	if _, err := os.Stat(filepath.Join(wantDir, "model.json")); err != nil {
		t.Fatal(err)
	}
	rc, err := m.Logs(context.Background(), j.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := io.ReadAll(rc)
	rc.Close()
	if string(logs) != "training with lr=0.25 job="+j.ID+"\nto stderr\n" {
		t.Fatalf("logs: %q", logs)
	}

	// The record on disk is the job.
	data, err := os.ReadFile(filepath.Join(dir, "jobs", j.ID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec Job
	if err := json.Unmarshal(data, &rec); err != nil || rec.Status.Phase != PhaseSucceeded || rec.Spec.Timeout.Duration != time.Minute {
		t.Fatalf("record: %+v, %v", rec, err)
	}
}

func TestLocalJobFails(t *testing.T) {
	m := newManager(t, t.TempDir(), newLocal(2), nil)
	f := func(script, wantReason, wantMsg string) {
		t.Helper()
		j, err := m.Submit(shellJob("fail", script))
		if err != nil {
			t.Fatal(err)
		}
		j = waitJob(t, m, j.ID)
		c := condition(t, j, ConditionFailed)
		if j.Status.Phase != PhaseFailed || c.Status != ConditionTrue || c.Reason != wantReason || !strings.Contains(c.Message, wantMsg) {
			t.Fatalf("%q: status %+v", script, j.Status)
		}
	}
	f(`echo "loading"; echo "bad label file: line 3" >&2; exit 3`, ReasonError, "exit code 3; last output: bad label file: line 3")
	f(`no-such-trainer`, ReasonError, "command not found (exit code 127)")
	f(`echo '{"auc": ' > "$LARIAT_METRICS_FILE"`, ReasonMetricsInvalid, "metrics must be a JSON object of numbers")

	spec := shellJob("workdir", "true")
	spec.WorkDir = filepath.Join(t.TempDir(), "missing")
	j, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != ReasonSubmitFailed {
		t.Fatalf("missing workdir: %+v", c)
	}

	// Specs the local backend cannot run are rejected at submission.
	if _, err := m.Submit(JobSpec{Name: "image-only", Image: "trainer:1"}); err == nil || !strings.Contains(err.Error(), "command") {
		t.Fatalf("image-only spec: %v", err)
	}
	if _, err := m.Submit(JobSpec{Name: "reg", Command: []string{"true"}, Register: &Register{Model: "m"}}); err == nil ||
		!strings.Contains(err.Error(), "no model registry") {
		t.Fatalf("register without registry: %v", err)
	}
}

// processGone reports whether no process of the group pgid is left.
func processGone(pgid int) bool {
	return syscall.Kill(-pgid, 0) == syscall.ESRCH
}

func TestLocalCancel(t *testing.T) {
	m := newManager(t, t.TempDir(), newLocal(2), nil)
	marker := filepath.Join(t.TempDir(), "started")
	// A grandchild in the group, and a trainer that cleans up on SIGTERM.
	j, err := m.Submit(shellJob("cancel", `sleep 60 & trap 'echo "got TERM"; exit 143' TERM; touch `+marker+`; wait`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to start", func() bool { _, err := os.Stat(marker); return err == nil })
	j, err = m.Cancel(j.ID)
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != ReasonCancelled {
		t.Fatalf("cancelled job: %+v", j.Status)
	}
	waitFor(t, "the process group to be gone", func() bool { return processGone(j.Handle.PID) })
	rc, err := m.Logs(context.Background(), j.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(logs), "got TERM") {
		t.Fatalf("the trainer did not see SIGTERM: %q", logs)
	}
	if _, err := m.Cancel(j.ID); err == nil || !strings.Contains(err.Error(), "already finished") {
		t.Fatalf("second cancel: %v", err)
	}
	if _, err := m.Cancel("nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("unknown job: %v", err)
	}
}

func TestLocalCancelIgnoringTERM(t *testing.T) {
	b := NewLocal(LocalOptions{Grace: 100 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	m := newManager(t, t.TempDir(), b, nil)
	marker := filepath.Join(t.TempDir(), "started")
	j, err := m.Submit(shellJob("stubborn", `trap '' TERM; touch `+marker+`; while true; do sleep 0.05; done`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to start", func() bool { _, err := os.Stat(marker); return err == nil })
	if _, err := m.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != ReasonCancelled {
		t.Fatalf("cancelled job: %+v", j.Status)
	}
	waitFor(t, "SIGKILL to end the group", func() bool { return processGone(j.Handle.PID) })
}

func TestLocalTimeLimit(t *testing.T) {
	b := NewLocal(LocalOptions{Grace: 100 * time.Millisecond})
	m := newManager(t, t.TempDir(), b, nil)
	spec := shellJob("slow", "sleep 30")
	spec.Timeout = Duration{200 * time.Millisecond}
	j, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != ReasonDeadlineExceeded || !strings.Contains(c.Message, "200ms") {
		t.Fatalf("timed-out job: %+v", c)
	}
	waitFor(t, "the process group to be gone", func() bool { return processGone(j.Handle.PID) })
}

func TestLocalConcurrencyLimit(t *testing.T) {
	m := newManager(t, t.TempDir(), newLocal(1), nil)
	gate := filepath.Join(t.TempDir(), "gate")
	spec := shellJob("gated", gateScript+"echo done")
	spec.Env = map[string]string{"GATE": gate}
	first, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first job to run", func() bool { j, _ := m.Job(first.ID); return j.Status.Phase == PhaseRunning })
	second, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second job to queue", func() bool {
		j, _ := m.Job(second.ID)
		c, _ := j.Status.Condition(ConditionCreated)
		return c.Reason == ReasonQueued
	})
	third, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the third job to queue", func() bool {
		j, _ := m.Job(third.ID)
		c, _ := j.Status.Condition(ConditionCreated)
		return c.Reason == ReasonQueued
	})
	if j, _ := m.Job(second.ID); j.Status.Phase != PhasePending {
		t.Fatalf("second job runs beyond the limit: %+v", j.Status)
	}
	// A queued job can be cancelled; it never starts.
	if _, err := m.Cancel(third.ID); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, m, third.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != ReasonCancelled || j.Status.StartTime != nil {
		t.Fatalf("cancelled queued job: %+v", j.Status)
	}
	touch(t, gate)
	for _, id := range []string{first.ID, second.ID} {
		if j := waitJob(t, m, id); j.Status.Phase != PhaseSucceeded {
			t.Fatalf("job %s: %+v", id, j.Status)
		}
	}
	if got := m.Jobs(JobFilter{Phase: PhaseSucceeded}); len(got) != 2 || got[0].ID != first.ID {
		t.Fatalf("succeeded jobs: %d", len(got))
	}
}

func TestLocalLogsFollow(t *testing.T) {
	m := newManager(t, t.TempDir(), newLocal(1), nil)
	gate := filepath.Join(t.TempDir(), "gate")
	spec := shellJob("follow", `echo first; `+gateScript+`echo second`)
	spec.Env = map[string]string{"GATE": gate}
	j, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := m.Logs(ctx, j.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(rc, buf, len("first\n"))
	if err != nil || string(buf[:n]) != "first\n" {
		t.Fatalf("first read: %q, %v", buf[:n], err)
	}
	touch(t, gate)
	rest, err := io.ReadAll(rc)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest: %q, %v", rest, err)
	}
}

func TestLocalReattach(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(t.TempDir(), "gate")
	spec := shellJob("survivor", gateScript+`printf '{"auc": 0.9}' > "$LARIAT_METRICS_FILE"`)
	spec.Env = map[string]string{"GATE": gate}

	m1, err := NewManager(Options{StateDir: dir, Backend: newLocal(1), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	j, err := m1.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to run", func() bool { j, _ := m1.Job(j.ID); return j.Status.Phase == PhaseRunning })
	m1.Close() // the sidecar stops; the job does not
	j, _ = m1.Job(j.ID)
	if !processRuns(j.Handle.PID, j.Handle.StartTicks) {
		t.Fatal("closing the manager stopped the job")
	}

	m2 := newManager(t, dir, newLocal(1), nil)
	waitFor(t, "the re-attachment", func() bool {
		j, _ := m2.Job(j.ID)
		c, _ := j.Status.Condition(ConditionRunning)
		return c.Reason == ReasonReattached
	})
	touch(t, gate)
	j = waitJob(t, m2, j.ID)
	if j.Status.Phase != PhaseSucceeded || j.Status.Metrics["auc"] != 0.9 || *j.Status.ExitCode != 0 {
		t.Fatalf("re-attached job: %+v", j.Status)
	}
}

// writeRunningRecord writes the record of a job that a previous sidecar left
// running with the given process.
func writeRunningRecord(t *testing.T, dir, id string, pid int, ticks uint64, exitCode string) {
	t.Helper()
	st, err := openStateStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	j := Job{ID: id, Backend: "local", CreatedAt: time.Now(), Spec: shellJob("old", "true")}
	if err := NewLocal(LocalOptions{}).Prepare(&j, st.dir); err != nil {
		t.Fatal(err)
	}
	j.Handle.PID, j.Handle.StartTicks = pid, ticks
	now := time.Now()
	j.Status.setCondition(ConditionCreated, ConditionTrue, ReasonSubmitted, "", now)
	j.Status.setCondition(ConditionRunning, ConditionTrue, ReasonStarted, "", now)
	j.Status.StartTime = &now
	if exitCode != "" {
		if err := os.WriteFile(j.Handle.ExitFile, []byte(exitCode+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.save("jobs", id, &j); err != nil {
		t.Fatal(err)
	}
}

func TestLocalLostAfterRestart(t *testing.T) {
	dir := t.TempDir()
	_, myTicks, err := procInfo(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A live pid with another start time is not the job's process.
	writeRunningRecord(t, dir, "reused-pid", os.Getpid(), myTicks+1, "")
	// A pid that no longer exists, with no exit status.
	writeRunningRecord(t, dir, "gone", 1<<22+1, 1, "")
	// A process that ended while the sidecar was away and left its exit code.
	writeRunningRecord(t, dir, "ended-ok", 1<<22+1, 1, "0")
	writeRunningRecord(t, dir, "ended-bad", 1<<22+1, 1, "2")
	// A record that does not decode is skipped, not fatal.
	if err := os.WriteFile(filepath.Join(dir, "jobs", "broken.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}

	m := newManager(t, dir, newLocal(1), nil)
	f := func(id string, wantPhase Phase, wantReason string) {
		t.Helper()
		j := waitJob(t, m, id)
		c := condition(t, j, ConditionType(wantPhase))
		if j.Status.Phase != wantPhase || c.Reason != wantReason {
			t.Fatalf("%s: %+v", id, j.Status)
		}
	}
	f("reused-pid", PhaseFailed, ReasonLost)
	f("gone", PhaseFailed, ReasonLost)
	f("ended-ok", PhaseSucceeded, ReasonCompleted)
	f("ended-bad", PhaseFailed, ReasonError)
	if got := len(m.Jobs(JobFilter{})); got != 4 {
		t.Fatalf("%d jobs loaded", got)
	}
}

func TestLocalResumeQueued(t *testing.T) {
	dir := t.TempDir()
	st, err := openStateStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A job recorded but never started (the sidecar stopped while it was queued).
	j := Job{ID: "queued-1", Backend: "local", CreatedAt: time.Now(), Spec: shellJob("queued", "echo ran")}
	if err := NewLocal(LocalOptions{}).Prepare(&j, st.dir); err != nil {
		t.Fatal(err)
	}
	j.Status.setCondition(ConditionCreated, ConditionTrue, ReasonQueued, "", time.Now())
	if err := st.save("jobs", j.ID, &j); err != nil {
		t.Fatal(err)
	}
	// And one whose cancellation was requested before the sidecar stopped.
	j.ID, j.CancelRequested = "queued-2", true
	if err := st.save("jobs", j.ID, &j); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, dir, newLocal(1), nil)
	if j := waitJob(t, m, "queued-1"); j.Status.Phase != PhaseSucceeded {
		t.Fatalf("resumed job: %+v", j.Status)
	}
	if j := waitJob(t, m, "queued-2"); condition(t, j, ConditionFailed).Reason != ReasonCancelled || j.CancelRequested {
		t.Fatalf("cancelled job: %+v", j)
	}
}

func TestSlots(t *testing.T) {
	s := newSlots(1)
	if !s.tryAcquire() || s.tryAcquire() {
		t.Fatal("limit of one not kept")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.acquire(ctx); err == nil {
		t.Fatal("acquire with a done context succeeded")
	}
	got := make(chan int, 2)
	for i := 1; i <= 2; i++ {
		go func() {
			if err := s.acquire(context.Background()); err == nil {
				got <- i
			}
		}()
		waitFor(t, "waiter "+strconv.Itoa(i)+" to queue", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.queue) == i })
	}
	s.release()
	if first := <-got; first != 1 {
		t.Fatalf("waiter %d served first", first)
	}
	s.force()
	if s.running() != 2 {
		t.Fatalf("running = %d", s.running())
	}
	s.release() // over the limit: no hand-over
	s.release() // hands the slot to waiter 2
	if second := <-got; second != 2 {
		t.Fatalf("waiter %d served", second)
	}
	s.release()
	if s.running() != 0 {
		t.Fatalf("running = %d after all releases", s.running())
	}
}
