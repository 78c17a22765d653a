package training

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Kubeflow training-operator resources (kubeflow.org/v1).
var (
	PyTorchJobResource = schema.GroupVersionResource{Group: "kubeflow.org", Version: "v1", Resource: "pytorchjobs"}
	TFJobResource      = schema.GroupVersionResource{Group: "kubeflow.org", Version: "v1", Resource: "tfjobs"}
)

// KubeflowOptions configure the kubeflow backend.
type KubeflowOptions struct {
	// Dynamic creates and reads PyTorchJob and TFJob objects. Required.
	Dynamic dynamic.Interface
	// Client reads pods (logs, termination messages). Required.
	Client KubeAPI
	// Namespace is where jobs go unless their spec names one. Default "default".
	Namespace string
	// PollInterval is how often a job's status is read. Default 10s.
	PollInterval time.Duration
	// Logf logs transient API errors. Default: discard.
	Logf func(format string, args ...any)
	// Submit bounds the retries of a submission the API server refused.
	Submit SubmitRetry
}

// Kubeflow runs each job as a Kubeflow PyTorchJob (one Master, optional Workers;
// containers named "pytorch") or TFJob (one Chief, optional Workers and PS;
// containers named "tensorflow"), the shapes the training operator's webhooks
// accept. It follows the job by polling its conditions: Created is queued,
// Running and Restarting are running, Succeeded or Failed (status True) end it.
// The metrics are the termination message of the Master (or Chief) container.
type Kubeflow struct {
	opts KubeflowOptions
}

var _ Backend = (*Kubeflow)(nil)

// NewKubeflow returns a kubeflow backend.
func NewKubeflow(opts KubeflowOptions) *Kubeflow {
	ko := KubernetesOptions{Namespace: opts.Namespace, PollInterval: opts.PollInterval, Logf: opts.Logf, Submit: opts.Submit}
	ko.setDefaults()
	opts.Namespace, opts.PollInterval, opts.Logf, opts.Submit = ko.Namespace, ko.PollInterval, ko.Logf, ko.Submit
	return &Kubeflow{opts: opts}
}

// Name implements Backend.
func (k *Kubeflow) Name() string { return "kubeflow" }

// Prepare implements Backend.
func (k *Kubeflow) Prepare(j *Job, _ string) error {
	if err := prepareKube(j); err != nil {
		return err
	}
	j.Handle.APIVersion, j.Handle.Kind = "kubeflow.org/v1", kubeflowKind(&j.Spec)
	j.Handle.Namespace = namespaceOf(j, k.opts.Namespace)
	return nil
}

func kubeflowKind(s *JobSpec) string {
	if s.Kubeflow.Kind == "" {
		return KindPyTorchJob
	}
	return s.Kubeflow.Kind
}

// kubeflowLayout returns, for a kind, its resource, replica-specs field, container
// name and leader replica type.
func kubeflowLayout(kind string) (gvr schema.GroupVersionResource, specsField, container, leader string) {
	if kind == KindTFJob {
		return TFJobResource, "tfReplicaSpecs", "tensorflow", "Chief"
	}
	return PyTorchJobResource, "pytorchReplicaSpecs", "pytorch", "Master"
}

// kfReplicaSpec is the training operator's ReplicaSpec.
type kfReplicaSpec struct {
	Replicas      *int32                 `json:"replicas,omitempty"`
	RestartPolicy string                 `json:"restartPolicy,omitempty"`
	Template      corev1.PodTemplateSpec `json:"template"`
}

// kfRunPolicy is the training operator's RunPolicy.
type kfRunPolicy struct {
	CleanPodPolicy          string `json:"cleanPodPolicy,omitempty"`
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
	ActiveDeadlineSeconds   *int64 `json:"activeDeadlineSeconds,omitempty"`
	BackoffLimit            *int32 `json:"backoffLimit,omitempty"`
}

type kfSpec struct {
	RunPolicy           kfRunPolicy               `json:"runPolicy"`
	PyTorchReplicaSpecs map[string]*kfReplicaSpec `json:"pytorchReplicaSpecs,omitempty"`
	TFReplicaSpecs      map[string]*kfReplicaSpec `json:"tfReplicaSpecs,omitempty"`
}

type kfJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              kfSpec `json:"spec"`
}

// kfCondition and kfStatus are the training operator's JobCondition and JobStatus.
type kfCondition struct {
	Type               string      `json:"type"`
	Status             string      `json:"status"`
	Reason             string      `json:"reason,omitempty"`
	Message            string      `json:"message,omitempty"`
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
}

type kfStatus struct {
	Conditions     []kfCondition `json:"conditions,omitempty"`
	StartTime      *metav1.Time  `json:"startTime,omitempty"`
	CompletionTime *metav1.Time  `json:"completionTime,omitempty"`
}

// Manifest returns the PyTorchJob or TFJob that runs j.
func (k *Kubeflow) Manifest(j *Job) (*unstructured.Unstructured, error) {
	s := &j.Spec
	kind := kubeflowKind(s)
	_, _, container, leader := kubeflowLayout(kind)
	backoff := int32(0)
	if s.Kubernetes.BackoffLimit != nil {
		backoff = *s.Kubernetes.BackoffLimit
	}
	ttl := int32(defaultTTLAfterFinished)
	if s.Kubernetes.TTLSecondsAfterFinished != nil {
		ttl = *s.Kubernetes.TTLSecondsAfterFinished
	}
	restart := corev1.RestartPolicyNever
	if backoff > 0 {
		restart = corev1.RestartPolicyOnFailure
	}
	replica := func(typ string, n int32) *kfReplicaSpec {
		return &kfReplicaSpec{
			Replicas:      int32Ptr(n),
			RestartPolicy: string(restart),
			Template:      podTemplate(j, container, "", map[string]string{LabelReplicaType: strings.ToLower(typ)}),
		}
	}
	specs := map[string]*kfReplicaSpec{leader: replica(leader, 1)}
	if s.Kubeflow.Workers > 0 {
		specs["Worker"] = replica("Worker", s.Kubeflow.Workers)
	}
	if s.Kubeflow.PS > 0 {
		specs["PS"] = replica("PS", s.Kubeflow.PS)
	}
	obj := kfJob{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubeflow.org/v1", Kind: kind},
		ObjectMeta: metav1.ObjectMeta{
			Name:        j.ID,
			Namespace:   namespaceOf(j, k.opts.Namespace),
			Labels:      objectLabels(j),
			Annotations: s.Kubernetes.Annotations,
		},
		Spec: kfSpec{RunPolicy: kfRunPolicy{
			CleanPodPolicy:          nonEmpty(s.Kubeflow.CleanPodPolicy, "None"),
			TTLSecondsAfterFinished: int32Ptr(ttl),
			ActiveDeadlineSeconds:   deadlineSeconds(s),
			BackoffLimit:            int32Ptr(backoff),
		}},
	}
	if kind == KindTFJob {
		obj.Spec.TFReplicaSpecs = specs
	} else {
		obj.Spec.PyTorchReplicaSpecs = specs
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&obj)
	if err != nil {
		return nil, fmt.Errorf("cannot build %s: %w", kind, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// kubeflowObservation maps a training-operator job status: a Failed or Succeeded
// condition with status True ends the job (Failed wins); otherwise the last true
// condition says whether it runs (Running, Restarting) or waits (Created,
// Suspended, none).
func kubeflowObservation(st *kfStatus) observation {
	for _, c := range st.Conditions {
		if c.Type == "Failed" && c.Status == "True" {
			return observation{finished: true, outcome: Outcome{Reason: nonEmpty(c.Reason, ReasonError), Message: c.Message,
				Time: c.LastTransitionTime.Time}}
		}
	}
	for _, c := range st.Conditions {
		if c.Type == "Succeeded" && c.Status == "True" {
			return observation{finished: true, outcome: Outcome{Succeeded: true, Reason: ReasonCompleted, Message: c.Message,
				Time: c.LastTransitionTime.Time}}
		}
	}
	for i := len(st.Conditions) - 1; i >= 0; i-- {
		c := st.Conditions[i]
		if c.Status != "True" {
			continue
		}
		switch c.Type {
		case "Running", "Restarting":
			return observation{running: true, reason: c.Reason, message: c.Message}
		case "Created", "Suspended":
			return observation{reason: c.Reason, message: c.Message}
		}
	}
	return observation{reason: "Pending", message: "waiting for the training operator"}
}

// statusOf decodes the status of a training-operator job.
func statusOf(u *unstructured.Unstructured) (kfStatus, error) {
	var st kfStatus
	raw, ok := u.Object["status"].(map[string]any)
	if !ok {
		return st, nil
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st); err != nil {
		return st, fmt.Errorf("cannot decode the status of %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return st, nil
}

// Run implements Backend.
func (k *Kubeflow) Run(ctx context.Context, j Job, report func(Update)) (Outcome, error) {
	kind := kubeflowKind(&j.Spec)
	gvr, _, container, leader := kubeflowLayout(kind)
	res := k.opts.Dynamic.Resource(gvr).Namespace(j.Handle.Namespace)
	what := kind + " " + j.Handle.Namespace + "/" + j.ID
	if j.Handle.Name == "" {
		obj, err := k.Manifest(&j)
		if err == nil {
			err = submitWithRetry(ctx, k.opts.Submit, k.opts.Logf, what, func(ctx context.Context) error {
				_, err := res.Create(ctx, obj, metav1.CreateOptions{})
				return err
			})
		}
		if apierrors.IsAlreadyExists(err) {
			var cur *unstructured.Unstructured
			if cur, err = res.Get(ctx, j.ID, metav1.GetOptions{}); err == nil && cur.GetLabels()[LabelJobID] != j.ID {
				err = fmt.Errorf("a %s exists and is not this job's", what)
			}
		}
		if err != nil {
			if ctx.Err() != nil && !isCancelled(ctx) {
				return Outcome{}, ctx.Err()
			}
			return Outcome{Reason: ReasonSubmitFailed, Message: err.Error()}, nil
		}
		h := j.Handle
		h.Name = j.ID
		j.Handle = h
		report(Update{Kind: UpdateSubmitted, Handle: &h, Reason: "Created", Message: what + " created", Time: time.Now()})
	}
	out, err := pollUntilDone(ctx, k.opts.PollInterval, k.opts.Logf, report,
		func(ctx context.Context) (observation, error) {
			cur, err := res.Get(ctx, j.Handle.Name, metav1.GetOptions{})
			if err != nil {
				return observation{}, err
			}
			st, err := statusOf(cur)
			if err != nil {
				return observation{}, err
			}
			return kubeflowObservation(&st), nil
		},
		func(ctx context.Context) error {
			bg := metav1.DeletePropagationBackground
			return res.Delete(ctx, j.Handle.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
		}, what)
	if err != nil || !out.Succeeded {
		return out, err
	}
	out.Metrics = terminationMessage(ctx, k.opts.Client, j.Handle.Namespace, j.ID, container, strings.ToLower(leader))
	return out, nil
}

// Logs implements Backend: the logs of the Master (or Chief) pod.
func (k *Kubeflow) Logs(ctx context.Context, j Job, follow bool, done <-chan struct{}) (io.ReadCloser, error) {
	_, _, container, leader := kubeflowLayout(kubeflowKind(&j.Spec))
	return podLogs(ctx, k.opts.Client, j.Handle.Namespace, j.ID, container, strings.ToLower(leader), follow, done)
}
