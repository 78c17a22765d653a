package training

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// clientsetAPI is KubeAPI over a clientset, so that the backends' tests can
// drive them with client-go's fake clientset.
type clientsetAPI struct {
	cs kubernetes.Interface
}

func (c clientsetAPI) CreateJob(ctx context.Context, job *batchv1.Job) error {
	_, err := c.cs.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{})
	return err
}

func (c clientsetAPI) GetJob(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	return c.cs.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (c clientsetAPI) DeleteJob(ctx context.Context, namespace, name string) error {
	bg := metav1.DeletePropagationBackground
	return c.cs.BatchV1().Jobs(namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
}

func (c clientsetAPI) ListPods(ctx context.Context, namespace, selector string) ([]corev1.Pod, error) {
	list, err := c.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func (c clientsetAPI) PodLogs(ctx context.Context, namespace, pod, container string, follow bool) (io.ReadCloser, error) {
	return c.cs.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: follow}).Stream(ctx)
}

// TestKubeAPIOverHTTP drives NewKubeAPI's client against an API server on
// 127.0.0.1 that checks each call's method, path, query and body.
func TestKubeAPIOverHTTP(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		notFound := func(kind, name string) {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,`+
				`"message":"%s %q not found","details":{"name":%q,"kind":%q}}`, kind, name, name, kind)
		}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/apis/batch/v1/namespaces/ml/jobs":
			var job batchv1.Job
			if err := json.Unmarshal(body, &job); err != nil || job.Kind != "Job" || job.APIVersion != "batch/v1" {
				http.Error(w, fmt.Sprintf("bad Job %s: %v", body, err), http.StatusBadRequest)
				return
			}
			if job.Name == "taken" {
				w.WriteHeader(http.StatusConflict)
				_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"AlreadyExists","code":409,"message":"jobs \"taken\" already exists"}`))
				return
			}
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write(body)
		case r.Method == http.MethodGet && r.URL.Path == "/apis/batch/v1/namespaces/ml/jobs/j1":
			_, _ = w.Write([]byte(`{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j1","namespace":"ml","labels":{"lariat.dev/job-id":"j1"}},` +
				`"status":{"active":1}}`))
		case r.Method == http.MethodDelete && r.URL.Path == "/apis/batch/v1/namespaces/ml/jobs/j1":
			var opts metav1.DeleteOptions
			if err := json.Unmarshal(body, &opts); err != nil || opts.PropagationPolicy == nil || *opts.PropagationPolicy != metav1.DeletePropagationBackground {
				http.Error(w, fmt.Sprintf("bad DeleteOptions %s: %v", body, err), http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Success"}`))
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/ml/pods":
			if sel := r.URL.Query().Get("labelSelector"); sel != "lariat.dev/job-id=j1" {
				http.Error(w, "selector "+sel, http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(`{"apiVersion":"v1","kind":"PodList","items":[{"metadata":{"name":"j1-abc"},` +
				`"status":{"containerStatuses":[{"name":"train","state":{"terminated":{"exitCode":0,"message":"{\"auc\":1}"}}}]}}]}`))
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/ml/pods/j1-abc/log":
			if q := r.URL.Query(); q.Get("container") != "train" || q.Get("follow") != "true" {
				http.Error(w, "query "+r.URL.RawQuery, http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("epoch 1\nepoch 2\n"))
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/apis/batch/v1/namespaces/ml/jobs/"):
			notFound("jobs", strings.TrimPrefix(r.URL.Path, "/apis/batch/v1/namespaces/ml/jobs/"))
		default:
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		}
	}))
	defer srv.Close()
	api, err := NewKubeAPI(&rest.Config{Host: srv.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	job := &batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"}, ObjectMeta: metav1.ObjectMeta{Name: "j1", Namespace: "ml"}}
	if err := api.CreateJob(ctx, job); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	taken := job.DeepCopy()
	taken.Name = "taken"
	if err := api.CreateJob(ctx, taken); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("CreateJob of a taken name = %v, want AlreadyExists", err)
	}
	got, err := api.GetJob(ctx, "ml", "j1")
	if err != nil || got.Name != "j1" || got.Labels[LabelJobID] != "j1" || got.Status.Active != 1 {
		t.Fatalf("GetJob = %+v, %v", got, err)
	}
	if _, err := api.GetJob(ctx, "ml", "gone"); !apierrors.IsNotFound(err) {
		t.Fatalf("GetJob of a missing Job = %v, want NotFound", err)
	}
	if err := api.DeleteJob(ctx, "ml", "j1"); err != nil {
		t.Fatalf("DeleteJob: %v", err)
	}
	pods, err := api.ListPods(ctx, "ml", "lariat.dev/job-id=j1")
	if err != nil || len(pods) != 1 || pods[0].Name != "j1-abc" ||
		pods[0].Status.ContainerStatuses[0].State.Terminated.Message != `{"auc":1}` {
		t.Fatalf("ListPods = %+v, %v", pods, err)
	}
	rc, err := api.PodLogs(ctx, "ml", "j1-abc", "train", true)
	if err != nil {
		t.Fatalf("PodLogs: %v", err)
	}
	logs, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(logs) != "epoch 1\nepoch 2\n" {
		t.Fatalf("logs %q, %v", logs, err)
	}
	var status *apierrors.StatusError
	if _, err := api.ListPods(ctx, "other", ""); !errors.As(err, &status) {
		t.Fatalf("ListPods in an unknown namespace = %v, want a StatusError", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 8 {
		t.Fatalf("calls: %q", calls)
	}
}
