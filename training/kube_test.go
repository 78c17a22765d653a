package training

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"
)

// specJob returns the job of testdata/job.yaml with a fixed id, prepared by b.
func specJob(t *testing.T, b Backend, edit func(*JobSpec)) Job {
	t.Helper()
	data, err := os.ReadFile("testdata/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ParseJobSpec("job.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(spec)
	}
	j := Job{ID: "driver-rank-0a1b2c", Backend: b.Name(), Spec: *spec}
	if err := b.Prepare(&j, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestGoldenManifests(t *testing.T) {
	kb := NewKubernetes(KubernetesOptions{Client: clientsetAPI{fake.NewClientset()}})
	j := specJob(t, kb, nil)
	y, err := yaml.Marshal(kb.Manifest(&j))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "golden/job.yaml", y)

	kf := NewKubeflow(KubeflowOptions{Dynamic: newDynamic(), Client: clientsetAPI{fake.NewClientset()}})
	for _, tc := range []struct {
		file string
		edit func(*JobSpec)
	}{
		{"golden/pytorchjob.yaml", nil},
		{"golden/tfjob.yaml", func(s *JobSpec) {
			s.Kubeflow = KubeflowSpec{Kind: KindTFJob, Workers: 2, PS: 1, CleanPodPolicy: "All"}
			s.Kubernetes.BackoffLimit = nil
			s.Timeout = Duration{}
		}},
		{"golden/pytorchjob-single.yaml", func(s *JobSpec) {
			s.Kubeflow = KubeflowSpec{}
			s.Kubernetes = KubernetesSpec{}
			s.Register = nil
			s.Resources = Resources{}
			s.Outputs = Outputs{}
		}},
	} {
		j := specJob(t, kf, tc.edit)
		obj, err := kf.Manifest(&j)
		if err != nil {
			t.Fatal(err)
		}
		checkKubeflowWebhookRules(t, obj)
		y, err := yaml.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, tc.file, y)
	}
}

// checkKubeflowWebhookRules applies the training operator's validation webhook
// rules: allowed replica types, one Master (PyTorch) or at most one Chief (TF),
// and a container with the framework's name and an image in every replica.
func checkKubeflowWebhookRules(t *testing.T, obj *unstructured.Unstructured) {
	t.Helper()
	field, container, allowed := "pytorchReplicaSpecs", "pytorch", map[string]bool{"Master": true, "Worker": true}
	if obj.GetKind() == KindTFJob {
		field, container = "tfReplicaSpecs", "tensorflow"
		allowed = map[string]bool{"PS": true, "Worker": true, "Chief": true, "Master": true, "Evaluator": true}
	}
	specs, ok, err := unstructured.NestedMap(obj.Object, "spec", field)
	if !ok || err != nil || len(specs) == 0 {
		t.Fatalf("%s: no spec.%s: %v", obj.GetKind(), field, err)
	}
	for typ, raw := range specs {
		if !allowed[typ] {
			t.Errorf("%s: replica type %q is not allowed", obj.GetKind(), typ)
		}
		rs := raw.(map[string]any)
		if n, _, _ := unstructured.NestedInt64(rs, "replicas"); (typ == "Master" || typ == "Chief") && n != 1 {
			t.Errorf("%s: %s.replicas = %d, want 1", obj.GetKind(), typ, n)
		}
		cs, _, _ := unstructured.NestedSlice(rs, "template", "spec", "containers")
		found := false
		for _, c := range cs {
			cm := c.(map[string]any)
			if cm["name"] == container && cm["image"] != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: replica %s has no container named %q with an image", obj.GetKind(), typ, container)
		}
	}
}

func TestJobObservation(t *testing.T) {
	now := metav1.Now()
	f := func(st batchv1.JobStatus, want observation) {
		t.Helper()
		got := jobObservation(&st)
		got.outcome.Time, want.outcome.Time = time.Time{}, time.Time{}
		if got.running != want.running || got.finished != want.finished || got.reason != want.reason ||
			got.outcome.Succeeded != want.outcome.Succeeded || got.outcome.Reason != want.outcome.Reason || got.outcome.Message != want.outcome.Message {
			t.Fatalf("jobObservation(%+v) = %+v, want %+v", st, got, want)
		}
	}
	f(batchv1.JobStatus{}, observation{reason: "Created"})
	f(batchv1.JobStatus{Active: 1, StartTime: &now}, observation{running: true, reason: "JobRunning"})
	f(batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobSuspended, Status: corev1.ConditionTrue}}},
		observation{reason: "Suspended"})
	f(batchv1.JobStatus{Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue},
	}}, observation{finished: true, outcome: Outcome{Succeeded: true, Reason: ReasonCompleted}})
	// FailureTarget alone is not the end: the Job controller is still terminating pods.
	f(batchv1.JobStatus{Active: 1, Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue}}},
		observation{running: true, reason: "JobRunning"})
	f(batchv1.JobStatus{Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue},
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"},
	}}, observation{finished: true, outcome: Outcome{Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}})
	f(batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionFalse}}},
		observation{reason: "Created"})
}

func TestKubeflowObservation(t *testing.T) {
	c := func(typ, status, reason string) kfCondition {
		return kfCondition{Type: typ, Status: status, Reason: reason}
	}
	f := func(conds []kfCondition, want observation) {
		t.Helper()
		got := kubeflowObservation(&kfStatus{Conditions: conds})
		got.outcome.Time = time.Time{}
		if got.running != want.running || got.finished != want.finished || got.reason != want.reason ||
			got.outcome.Succeeded != want.outcome.Succeeded || got.outcome.Reason != want.outcome.Reason {
			t.Fatalf("kubeflowObservation(%+v) = %+v, want %+v", conds, got, want)
		}
	}
	f(nil, observation{reason: "Pending"})
	f([]kfCondition{c("Created", "True", "PyTorchJobCreated")}, observation{reason: "PyTorchJobCreated"})
	f([]kfCondition{c("Created", "True", "PyTorchJobCreated"), c("Running", "True", "PyTorchJobRunning")},
		observation{running: true, reason: "PyTorchJobRunning"})
	f([]kfCondition{c("Created", "True", ""), c("Running", "False", ""), c("Restarting", "True", "PyTorchJobRestarting")},
		observation{running: true, reason: "PyTorchJobRestarting"})
	f([]kfCondition{c("Created", "True", ""), c("Suspended", "True", "PyTorchJobSuspended")},
		observation{reason: "PyTorchJobSuspended"})
	f([]kfCondition{c("Created", "True", ""), c("Running", "False", ""), c("Succeeded", "True", "PyTorchJobSucceeded")},
		observation{finished: true, outcome: Outcome{Succeeded: true, Reason: ReasonCompleted}})
	f([]kfCondition{c("Created", "True", ""), c("Running", "False", ""), c("Failed", "True", "TFJobFailed")},
		observation{finished: true, outcome: Outcome{Reason: "TFJobFailed"}})
	// Failed wins over a Succeeded condition, as the operator treats Failed as final.
	f([]kfCondition{c("Succeeded", "True", ""), c("Failed", "True", "PyTorchJobFailed")},
		observation{finished: true, outcome: Outcome{Reason: "PyTorchJobFailed"}})
}

// kubeJobSpec is a job for the Kubernetes backends.
func kubeJobSpec(name string) JobSpec {
	return JobSpec{Name: name, Image: "registry.local/train:1", Args: []string{"--epochs=3"}}
}

// metricsPod returns a finished pod of job id whose container wrote metrics.
func metricsPod(id, ns, container, replicaType, metrics string) *corev1.Pod {
	l := map[string]string{LabelJobID: id}
	if replicaType != "" {
		l[LabelReplicaType] = replicaType
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: id + "-" + nonEmpty(replicaType, "pod") + "-0", Namespace: ns, Labels: l},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name:  container,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Message: metrics}},
		}}},
	}
}

func TestKubernetesBackend(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	cs.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "log" {
			return true, &runtime.Unknown{Raw: []byte("epoch 1 loss 0.4\n")}, nil
		}
		return false, nil, nil
	})
	kb := NewKubernetes(KubernetesOptions{Client: clientsetAPI{cs}, Namespace: "ml", PollInterval: 5 * time.Millisecond})
	m := newManager(t, t.TempDir(), kb, nil)
	jobs := cs.BatchV1().Jobs("ml")

	getJob := func(id string) *batchv1.Job {
		t.Helper()
		var obj *batchv1.Job
		waitFor(t, "Job "+id, func() bool {
			var err error
			obj, err = jobs.Get(ctx, id, metav1.GetOptions{})
			return err == nil
		})
		return obj
	}
	setStatus := func(obj *batchv1.Job, st batchv1.JobStatus) {
		t.Helper()
		obj = obj.DeepCopy()
		obj.Status = st
		if _, err := jobs.UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Success: created → running → complete, metrics from the termination message.
	j, err := m.Submit(kubeJobSpec("ok"))
	if err != nil {
		t.Fatal(err)
	}
	obj := getJob(j.ID)
	if obj.Spec.Template.Spec.Containers[0].TerminationMessagePath != DefaultMetricsPath || obj.Labels[LabelJobID] != j.ID {
		t.Fatalf("created Job: %+v", obj)
	}
	waitFor(t, "Created from the cluster", func() bool {
		j, _ := m.Job(j.ID)
		return j.Handle.Name == j.ID && condition(t, j, ConditionCreated).Reason == "Created"
	})
	now := metav1.Now()
	setStatus(obj, batchv1.JobStatus{Active: 1, StartTime: &now})
	waitFor(t, "Running", func() bool { j, _ := m.Job(j.ID); return j.Status.Phase == PhaseRunning })
	if _, err := cs.CoreV1().Pods("ml").Create(ctx, metricsPod(j.ID, "ml", "train", "", `{"auc": 0.88}`), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := m.Logs(ctx, j.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := io.ReadAll(rc)
	rc.Close()
	if string(logs) != "epoch 1 loss 0.4\n" {
		t.Fatalf("logs: %q", logs)
	}
	setStatus(obj, batchv1.JobStatus{StartTime: &now, Succeeded: 1, Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now}}})
	j = waitJob(t, m, j.ID)
	if j.Status.Phase != PhaseSucceeded || j.Status.Metrics["auc"] != 0.88 {
		t.Fatalf("finished job: %+v", j.Status)
	}

	// Failure: the Job's reason and message are kept.
	j, err = m.Submit(kubeJobSpec("fails"))
	if err != nil {
		t.Fatal(err)
	}
	obj = getJob(j.ID)
	setStatus(obj, batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
		Reason: "DeadlineExceeded", Message: "Job was active longer than specified deadline"}}})
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != "DeadlineExceeded" || c.Message != "Job was active longer than specified deadline" {
		t.Fatalf("failed job: %+v", c)
	}

	// Cancel deletes the Job.
	j, err = m.Submit(kubeJobSpec("cancelled"))
	if err != nil {
		t.Fatal(err)
	}
	getJob(j.ID)
	waitFor(t, "the handle", func() bool { j, _ := m.Job(j.ID); return j.Handle.Name != "" })
	if _, err := m.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != ReasonCancelled {
		t.Fatalf("cancelled job: %+v", c)
	}
	if _, err := jobs.Get(ctx, j.ID, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the cancelled Job still exists: %v", err)
	}

	// A Job deleted behind our back is lost.
	j, err = m.Submit(kubeJobSpec("deleted"))
	if err != nil {
		t.Fatal(err)
	}
	getJob(j.ID)
	if err := jobs.Delete(ctx, j.ID, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != ReasonLost || !strings.Contains(c.Message, "was deleted") {
		t.Fatalf("deleted job: %+v", c)
	}

	// The API server refusing the Job fails the submission.
	cs.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "x", nil)
	})
	j, err = m.Submit(kubeJobSpec("forbidden"))
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != ReasonSubmitFailed || !strings.Contains(c.Message, "forbidden") {
		t.Fatalf("refused job: %+v", c)
	}

	// Specs the backend cannot run are rejected.
	if _, err := m.Submit(JobSpec{Name: "noimage", Command: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "image") {
		t.Fatalf("no image: %v", err)
	}
}

func TestKubernetesResume(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	dir := t.TempDir()
	kb := NewKubernetes(KubernetesOptions{Client: clientsetAPI{cs}, PollInterval: 5 * time.Millisecond})
	m1, err := NewManager(Options{StateDir: dir, Backend: kb, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	j, err := m1.Submit(kubeJobSpec("resumed"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the handle", func() bool { j, _ := m1.Job(j.ID); return j.Handle.Name != "" })
	m1.Close()

	// The Job finishes while the sidecar is down; the next one picks it up.
	obj, err := cs.BatchV1().Jobs("default").Get(ctx, j.ID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	obj.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	if _, err := cs.BatchV1().Jobs("default").UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	m2 := newManager(t, dir, kb, nil)
	if j := waitJob(t, m2, j.ID); j.Status.Phase != PhaseSucceeded {
		t.Fatalf("resumed job: %+v", j.Status)
	}
	if n := len(cs.Actions()); n == 0 {
		t.Fatal("no API calls")
	}
	creates := 0
	for _, a := range cs.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "jobs" {
			creates++
		}
	}
	if creates != 1 {
		t.Fatalf("%d Job creations, want 1", creates)
	}
}

func newDynamic() *dfake.FakeDynamicClient {
	return dfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		PyTorchJobResource: "PyTorchJobList",
		TFJobResource:      "TFJobList",
	})
}

func TestKubeflowBackend(t *testing.T) {
	ctx := context.Background()
	dyn := newDynamic()
	cs := fake.NewClientset()
	kf := NewKubeflow(KubeflowOptions{Dynamic: dyn, Client: clientsetAPI{cs}, Namespace: "ml", PollInterval: 5 * time.Millisecond})
	m := newManager(t, t.TempDir(), kf, nil)

	for _, kind := range []string{KindPyTorchJob, KindTFJob} {
		gvr, _, container, leader := kubeflowLayout(kind)
		res := dyn.Resource(gvr).Namespace("ml")
		spec := kubeJobSpec("kf-" + strings.ToLower(kind))
		spec.Kubeflow = KubeflowSpec{Kind: kind, Workers: 1}
		j, err := m.Submit(spec)
		if err != nil {
			t.Fatal(err)
		}
		var obj *unstructured.Unstructured
		waitFor(t, kind+" "+j.ID, func() bool {
			obj, err = res.Get(ctx, j.ID, metav1.GetOptions{})
			return err == nil
		})
		checkKubeflowWebhookRules(t, obj)
		setConds := func(conds ...map[string]any) {
			t.Helper()
			cur, err := res.Get(ctx, j.ID, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			list := make([]any, len(conds))
			for i, c := range conds {
				list[i] = c
			}
			if err := unstructured.SetNestedSlice(cur.Object, list, "status", "conditions"); err != nil {
				t.Fatal(err)
			}
			if _, err := res.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cond := func(typ, status string) map[string]any {
			return map[string]any{"type": typ, "status": status, "reason": kind + typ, "message": kind + " is " + typ}
		}
		setConds(cond("Created", "True"))
		waitFor(t, kind+" Created", func() bool {
			j, _ := m.Job(j.ID)
			return condition(t, j, ConditionCreated).Reason == kind+"Created"
		})
		setConds(cond("Created", "True"), cond("Running", "True"))
		waitFor(t, kind+" Running", func() bool {
			j, _ := m.Job(j.ID)
			c, _ := j.Status.Condition(ConditionRunning)
			return j.Status.Phase == PhaseRunning && c.Reason == kind+"Running"
		})
		// A worker pod's message is not the metrics; the leader's is.
		if _, err := cs.CoreV1().Pods("ml").Create(ctx, metricsPod(j.ID, "ml", container, "worker", `{"auc": 0.1}`), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Pods("ml").Create(ctx, metricsPod(j.ID, "ml", container, strings.ToLower(leader), `{"auc": 0.93}`), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		setConds(cond("Created", "True"), cond("Running", "False"), cond("Succeeded", "True"))
		j = waitJob(t, m, j.ID)
		if j.Status.Phase != PhaseSucceeded || j.Status.Metrics["auc"] != 0.93 {
			t.Fatalf("%s: %+v", kind, j.Status)
		}
		rc, err := m.Logs(ctx, j.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		logs, _ := io.ReadAll(rc)
		rc.Close()
		if string(logs) != "fake logs" {
			t.Fatalf("%s logs: %q", kind, logs)
		}
	}

	// Failure keeps the operator's reason; cancel deletes the object.
	spec := kubeJobSpec("kf-fail")
	j, err := m.Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	res := dyn.Resource(PyTorchJobResource).Namespace("ml")
	waitFor(t, "the PyTorchJob", func() bool { _, err := res.Get(ctx, j.ID, metav1.GetOptions{}); return err == nil })
	cur, _ := res.Get(ctx, j.ID, metav1.GetOptions{})
	_ = unstructured.SetNestedSlice(cur.Object, []any{map[string]any{"type": "Failed", "status": "True",
		"reason": "PyTorchJobFailed", "message": "PyTorchJob kf-fail is failed because 1 Master replica(s) failed."}}, "status", "conditions")
	if _, err := res.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != "PyTorchJobFailed" || !strings.Contains(c.Message, "Master replica(s) failed") {
		t.Fatalf("failed job: %+v", c)
	}

	j, err = m.Submit(kubeJobSpec("kf-cancel"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the handle", func() bool { j, _ := m.Job(j.ID); return j.Handle.Name != "" })
	if _, err := m.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID)
	if c := condition(t, j, ConditionFailed); c.Reason != ReasonCancelled {
		t.Fatalf("cancelled job: %+v", c)
	}
	if _, err := res.Get(ctx, j.ID, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the cancelled PyTorchJob still exists: %v", err)
	}
}
