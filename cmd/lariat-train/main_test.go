package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/training"
)

// startServe runs "lariat-train serve" in-process on 127.0.0.1 and returns its URL.
func startServe(t *testing.T, stateDir string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- serve(ctx, []string{"--listen", "127.0.0.1:0", "--state-dir", stateDir, "--grace", "1s"}, &logs,
			func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		return "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("serve failed: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	return ""
}

// cli runs the command in-process and returns exit code, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientVerbs(t *testing.T) {
	state := t.TempDir()
	url := startServe(t, state)
	dir := t.TempDir()
	ok := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(append(args, "--server", url)...)
		if code != 0 {
			t.Fatalf("%q exited %d: %s", args, code, errOut)
		}
		return out
	}
	fails := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, _, errOut := runCLI(append(args, "--server", url)...)
		if code != wantCode || !strings.Contains(errOut, wantErr) {
			t.Fatalf("%q = exit %d, stderr %q; want exit %d mentioning %q", args, code, errOut, wantCode, wantErr)
		}
	}

	job := writeFile(t, dir, "job.yaml", `name: hello
command: [/bin/sh, -c, 'echo "lr is $LARIAT_HP_LR"; printf "{\"auc\": 0.7}" > "$LARIAT_METRICS_FILE"']
hyperparameters: {lr: 0.3}
`)
	out := ok("submit", job, "--follow")
	if !strings.Contains(out, "lr is 0.3\n") || !strings.Contains(out, "Succeeded") || !strings.Contains(out, "auc=0.7") {
		t.Fatalf("submit --follow printed:\n%s", out)
	}
	var j training.Job
	if err := json.Unmarshal([]byte(ok("submit", job, "-o", "json")), &j); err != nil || !strings.HasPrefix(j.ID, "hello-") {
		t.Fatalf("submit -o json: %+v, %v", j, err)
	}
	out = ok("status", j.ID, "--timeout", "5s")
	if !strings.Contains(out, "ID:") || !strings.Contains(out, j.ID) || !strings.Contains(out, "Conditions:") {
		t.Fatalf("status printed:\n%s", out)
	}
	if out = ok("logs", "-f", j.ID); out != "lr is 0.3\n" {
		t.Fatalf("logs printed %q", out)
	}
	out = ok("list")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("list printed:\n%s", out)
	}

	failing := writeFile(t, dir, "fail.yaml", "name: boom\ncommand: [/bin/sh, -c, 'exit 5']\n")
	fails(3, "failed", "submit", failing, "--wait")

	slow := writeFile(t, dir, "slow.yaml", "name: slow\ncommand: [sleep, '60']\n")
	if err := json.Unmarshal([]byte(ok("submit", slow, "-o", "json")), &j); err != nil {
		t.Fatal(err)
	}
	out = ok("cancel", j.ID, "--wait")
	if !strings.Contains(out, "Cancelled") {
		t.Fatalf("cancel --wait printed:\n%s", out)
	}
	fails(1, "already finished", "cancel", j.ID)
	fails(1, "not found", "status", "nope")

	study := writeFile(t, dir, "study.yaml", `name: search
job:
  command: [/bin/sh, -c, 'printf "{\"loss\": %s}" "$LARIAT_HP_X" > "$LARIAT_METRICS_FILE"']
search: grid
space: {x: {type: choice, values: ["3", "1", "2"]}}
objective: {metric: loss, goal: minimize}
`)
	out = ok("study", "submit", study, "--wait")
	if !strings.Contains(out, "Best:") || !strings.Contains(out, "trial 2, loss=1") || !strings.Contains(out, "MaxTrials") {
		t.Fatalf("study submit --wait printed:\n%s", out)
	}
	if out = ok("study", "list"); !strings.Contains(out, "#2 loss=1") {
		t.Fatalf("study list printed:\n%s", out)
	}
	var jobs []training.Job
	if err := json.Unmarshal([]byte(ok("list", "--phase", "Succeeded", "-o", "json")), &jobs); err != nil || len(jobs) != 5 {
		t.Fatalf("list --phase: %d, %v", len(jobs), err)
	}

	// Local validation reports positions before anything is sent.
	bad := writeFile(t, dir, "bad.yaml", "name: x\ncommand: [true]\nepochs: 3\n")
	fails(1, `bad.yaml:3:1: unknown key "epochs"`, "submit", bad)
	fails(2, "takes 1 argument", "status")
	fails(2, "unknown command", "study", "frobnicate")
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "name: a\nimage: x:1\n")
	bad := writeFile(t, dir, "bad.yaml", "name: A\n")
	code, out, errOut := runCLI("validate", good, bad)
	if code != 1 || !strings.Contains(out, "good.yaml: ok") || !strings.Contains(errOut, `bad.yaml: name: "A" must be`) ||
		!strings.Contains(errOut, "1 of 2 file(s) invalid") {
		t.Fatalf("validate: %d\n%s\n%s", code, out, errOut)
	}
	study := writeFile(t, dir, "study.yaml", "name: s\njob: {image: x:1}\nspace: {a: {type: choice, values: [1]}}\nobjective: {metric: m, goal: maximize}\n")
	if code, _, errOut := runCLI("validate", "--study", study); code != 0 {
		t.Fatalf("validate --study: %d %s", code, errOut)
	}
}

func TestServeRestartKeepsJobs(t *testing.T) {
	state := t.TempDir()
	dir := t.TempDir()
	job := writeFile(t, dir, "job.yaml", "name: kept\ncommand: [/bin/sh, -c, 'echo kept']\n")
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, []string{"--listen", "127.0.0.1:0", "--state-dir", state}, io.Discard, func(a string) { addr <- a })
	}()
	url := "http://" + <-addr
	if code, _, errOut := runCLI("submit", job, "--wait", "--server", url); code != 0 {
		t.Fatalf("submit: %s", errOut)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	url = startServe(t, state)
	code, out, errOut := runCLI("list", "--server", url)
	if code != 0 || !strings.Contains(out, "kept-") || !strings.Contains(out, "Succeeded") {
		t.Fatalf("list after restart: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI("serve", "--backend", "mesos", "--state-dir", t.TempDir()); code != 2 || !strings.Contains(errOut, "-backend must be") {
		t.Fatalf("bad backend: %d %s", code, errOut)
	}
}
