package training

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// fakeAPIServer answers the calls the kubernetes backend makes for one Job:
// create, then read it back complete, then list its pods (none).
func fakeAPIServer(created chan<- string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/apis/batch/v1/namespaces/ml/jobs":
			body, _ := io.ReadAll(r.Body)
			var obj map[string]any
			if err := json.Unmarshal(body, &obj); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			created <- obj["metadata"].(map[string]any)["name"].(string)
			obj["apiVersion"], obj["kind"] = "batch/v1", "Job"
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(obj)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/apis/batch/v1/namespaces/ml/jobs/"):
			name := strings.TrimPrefix(r.URL.Path, "/apis/batch/v1/namespaces/ml/jobs/")
			fmt.Fprintf(w, `{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":%q,"namespace":"ml"},`+
				`"status":{"succeeded":1,"conditions":[{"type":"Complete","status":"True"}]}}`, name)
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/ml/pods":
			_, _ = w.Write([]byte(`{"apiVersion":"v1","kind":"PodList","items":[]}`))
		default:
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		}
	})
}

// TestKubernetesSubmitRetriesRefusedConnection submits to an API server
// address that refuses connections at first: the backend retries with
// backoff, the server starts listening, and the job is created and runs.
func TestKubernetesSubmitRetriesRefusedConnection(t *testing.T) {
	// A free port, closed again: connecting to it is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	// The fake server speaks JSON, not the default protobuf.
	api, err := NewKubeAPI(&rest.Config{Host: "http://" + addr, Timeout: 10 * time.Second,
		ContentConfig: rest.ContentConfig{ContentType: "application/json", AcceptContentTypes: "application/json"}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logs []string
	retried := make(chan struct{}, 16)
	kb := NewKubernetes(KubernetesOptions{
		Client: api, Namespace: "ml", PollInterval: 10 * time.Millisecond,
		Submit: SubmitRetry{Attempts: 6, Backoff: 200 * time.Millisecond},
		Logf: func(format string, args ...any) {
			mu.Lock()
			logs = append(logs, fmt.Sprintf(format, args...))
			mu.Unlock()
			if strings.HasPrefix(format, "training: creating") {
				retried <- struct{}{}
			}
		},
	})
	j := specJob(t, kb, nil)

	type result struct {
		out Outcome
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		out, err := kb.Run(ctx, j, func(Update) {})
		done <- result{out, err}
	}()

	// The first try was refused; now the server accepts.
	select {
	case <-retried:
	case r := <-done:
		t.Fatalf("the job ended without a retry: %+v", r)
	case <-ctx.Done():
		t.Fatal("no retry after a refused connection")
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen on %s again: %v", addr, err)
	}
	created := make(chan string, 4)
	srv := &http.Server{Handler: fakeAPIServer(created)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	r := <-done
	if r.err != nil || !r.out.Succeeded {
		t.Fatalf("outcome %+v, %v; logs %q", r.out, r.err, logs)
	}
	if name := <-created; name != j.ID {
		t.Fatalf("created %q, want %q", name, j.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs[0], "try 1 of 6") || !strings.Contains(logs[0], "connection refused") {
		t.Fatalf("first log %q", logs[0])
	}
}

// TestKubernetesSubmitGivesUp checks that the retries are bounded: an API
// server that never accepts fails the job with SubmitFailed after the tries.
func TestKubernetesSubmitGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	api, err := NewKubeAPI(&rest.Config{Host: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	tries := 0
	kb := NewKubernetes(KubernetesOptions{Client: api, Namespace: "ml",
		Submit: SubmitRetry{Attempts: 3, Backoff: time.Millisecond},
		Logf:   func(string, ...any) { tries++ }})
	j := specJob(t, kb, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := kb.Run(ctx, j, func(Update) {})
	if err != nil || out.Reason != ReasonSubmitFailed || !strings.Contains(out.Message, "cannot reach the Kubernetes API after 3 tries") ||
		!strings.Contains(out.Message, "connection refused") || tries != 2 {
		t.Fatalf("outcome %+v, %v after %d logged retries", out, err, tries)
	}
}
