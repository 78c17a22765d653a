package training

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/registrytest"
	"github.com/lariat-gw/lariat/internal/testwait"
	"github.com/lariat-gw/lariat/registry"
)

// startRegistry serves a registry (bolt store) on 127.0.0.1 and returns a client.
func startRegistry(t *testing.T) *registry.Client {
	return registry.NewClient(registrytest.Start(t), nil)
}

// newManager returns a Manager on dir, closed when the test ends.
func newManager(t *testing.T, dir string, b Backend, reg *registry.Client) *Manager {
	t.Helper()
	m, err := NewManager(Options{StateDir: dir, Backend: b, Registry: reg, Logf: t.Logf,
		RegisterAttempts: 2, RegisterBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// newLocal returns a local backend with a short grace period.
func newLocal(maxConcurrent int) *Local {
	return NewLocal(LocalOptions{MaxConcurrent: maxConcurrent, Grace: 2 * time.Second, PollInterval: 20 * time.Millisecond})
}

// shellJob returns a spec running script with /bin/sh. A 60s time limit keeps a
// broken test from hanging.
func shellJob(name, script string) JobSpec {
	return JobSpec{Name: name, Command: []string{"/bin/sh", "-c", script}, Timeout: Duration{time.Minute}}
}

// waitFor polls cond until it holds, failing the test after testwait's
// bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, what, cond)
}

// waitJob waits for a job to finish, failing the test after 30s.
func waitJob(t *testing.T, m *Manager, id string) Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := m.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !j.Status.Finished() {
		t.Fatalf("job %s did not finish: %+v", id, j.Status)
	}
	return j
}

// condition returns a job's condition of type ct, failing when missing.
func condition(t *testing.T, j Job, ct ConditionType) Condition {
	t.Helper()
	c, ok := j.Status.Condition(ct)
	if !ok {
		t.Fatalf("job %s has no %s condition: %+v", j.ID, ct, j.Status.Conditions)
	}
	return c
}

// touch creates a file.
func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// gateScript waits until the file $GATE exists.
const gateScript = `while [ ! -e "$GATE" ]; do sleep 0.02; done; `
