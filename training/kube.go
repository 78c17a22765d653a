package training

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Labels the Kubernetes backends put on their objects and pods.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	LabelJobID       = "lariat.dev/job-id"
	LabelJobName     = "lariat.dev/job-name"
	LabelStudy       = "lariat.dev/study"
	LabelReplicaType = "lariat.dev/replica-type"
	managedByValue   = "lariat-train"
)

// DefaultMetricsPath is the termination message path: the file a container writes
// its metrics to on Kubernetes, read by the kubelet into the pod's status.
const DefaultMetricsPath = "/dev/termination-log"

// defaultTTLAfterFinished keeps finished objects (and their pods' status) a day.
const defaultTTLAfterFinished = 86400

// KubernetesOptions configure the kubernetes backend.
type KubernetesOptions struct {
	// Client calls the Kubernetes API (NewKubeAPI). Required.
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

// SubmitRetry is how a backend retries creating a job's object when the API
// server cannot be reached (connection refused, a dial that failed): up to
// Attempts tries, waiting Backoff, then twice as long each time, at most
// 10s. The job fails (SubmitFailed) only when every try failed.
type SubmitRetry struct {
	// Attempts is the number of tries. Default 5.
	Attempts int
	// Backoff is the first wait. Default 1s.
	Backoff time.Duration
}

func (r *SubmitRetry) setDefaults() {
	if r.Attempts <= 0 {
		r.Attempts = 5
	}
	if r.Backoff <= 0 {
		r.Backoff = time.Second
	}
}

// maxSubmitBackoff caps the wait between submission tries.
const maxSubmitBackoff = 10 * time.Second

// submitWithRetry calls create until it succeeds, fails with an error other
// than an unreachable API server, ctx ends, or r's tries are used.
func submitWithRetry(ctx context.Context, r SubmitRetry, logf func(string, ...any), what string, create func(context.Context) error) error {
	wait := r.Backoff
	for attempt := 1; ; attempt++ {
		err := create(ctx)
		if err == nil || !unreachable(err) || attempt >= r.Attempts {
			if err != nil && unreachable(err) {
				return fmt.Errorf("cannot reach the Kubernetes API after %d tries: %w", attempt, err)
			}
			return err
		}
		logf("training: creating %s failed (try %d of %d, retrying in %s): %v", what, attempt, r.Attempts, wait, err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, maxSubmitBackoff)
	}
}

// unreachable reports errors that mean the request never reached the API
// server, so that sending it again cannot create the object twice.
func unreachable(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// Kubernetes runs each job as a batch/v1 Job with one pod (restartPolicy Never,
// backoffLimit from the spec, default 0) and follows it by polling. The pod's
// container is named "train"; its termination message file is the job's metrics
// file, so the metrics reach the sidecar through the pod status.
type Kubernetes struct {
	opts KubernetesOptions
}

var _ Backend = (*Kubernetes)(nil)

// NewKubernetes returns a kubernetes backend.
func NewKubernetes(opts KubernetesOptions) *Kubernetes {
	opts.setDefaults()
	return &Kubernetes{opts: opts}
}

func (o *KubernetesOptions) setDefaults() {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 10 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	o.Submit.setDefaults()
}

// Name implements Backend.
func (k *Kubernetes) Name() string { return "kubernetes" }

// Prepare implements Backend.
func (k *Kubernetes) Prepare(j *Job, _ string) error {
	if err := prepareKube(j); err != nil {
		return err
	}
	j.Handle.APIVersion, j.Handle.Kind = "batch/v1", "Job"
	j.Handle.Namespace = namespaceOf(j, k.opts.Namespace)
	return nil
}

// prepareKube applies the rules shared by the Kubernetes backends.
func prepareKube(j *Job) error {
	s := &j.Spec
	if s.Image == "" {
		return fmt.Errorf("image: the %s backends run a container image; none given", "Kubernetes")
	}
	out := s.Outputs
	out.ArtifactDir = resolveOutputPath(out.ArtifactDir, j)
	out.ArtifactURI = resolveOutputPath(out.ArtifactURI, j)
	out.MetricsFile = resolveOutputPath(out.MetricsFile, j)
	if out.MetricsFile == "" {
		out.MetricsFile = DefaultMetricsPath
	}
	if !path.IsAbs(out.MetricsFile) {
		return fmt.Errorf("outputs.metrics_file: %q must be an absolute path in the container", out.MetricsFile)
	}
	if s.Register != nil && out.ArtifactURI == "" {
		return fmt.Errorf("outputs.artifact_uri: registering a model trained in a cluster needs the artifact's URI (e.g. s3://models/$(LARIAT_JOB_ID))")
	}
	j.Outputs = out
	return nil
}

func namespaceOf(j *Job, def string) string {
	if j.Spec.Kubernetes.Namespace != "" {
		return j.Spec.Kubernetes.Namespace
	}
	return def
}

// objectLabels returns the labels of a job's objects and pods.
func objectLabels(j *Job) map[string]string {
	l := make(map[string]string, len(j.Spec.Kubernetes.Labels)+4)
	for k, v := range j.Spec.Kubernetes.Labels {
		l[k] = v
	}
	l[LabelManagedBy] = managedByValue
	l[LabelJobID] = j.ID
	l[LabelJobName] = j.Spec.Name
	if j.Study != "" {
		l[LabelStudy] = j.Study
	}
	return l
}

// containerEnv returns the LARIAT_* variables then the spec's, each group by name;
// Kubernetes expands $(NAME) references to earlier variables.
func containerEnv(j *Job) []corev1.EnvVar {
	var env []corev1.EnvVar
	for _, kv := range JobEnv(j) {
		env = append(env, corev1.EnvVar{Name: kv[0], Value: kv[1]})
	}
	for _, k := range sortedKeys(j.Spec.Env) {
		env = append(env, corev1.EnvVar{Name: k, Value: j.Spec.Env[k]})
	}
	return env
}

func containerResources(r *Resources) corev1.ResourceRequirements {
	var rr corev1.ResourceRequirements
	set := func(name corev1.ResourceName, q resource.Quantity, request bool) {
		if rr.Limits == nil {
			rr.Limits = corev1.ResourceList{}
		}
		rr.Limits[name] = q
		if request {
			if rr.Requests == nil {
				rr.Requests = corev1.ResourceList{}
			}
			rr.Requests[name] = q
		}
	}
	if r.CPU != "" {
		set(corev1.ResourceCPU, resource.MustParse(r.CPU), true)
	}
	if r.Memory != "" {
		set(corev1.ResourceMemory, resource.MustParse(r.Memory), true)
	}
	if r.GPU > 0 {
		set("nvidia.com/gpu", *resource.NewQuantity(int64(r.GPU), resource.DecimalSI), false)
	}
	return rr
}

// podTemplate returns the pod template of a job's containers.
func podTemplate(j *Job, container string, restart corev1.RestartPolicy, extraLabels map[string]string) corev1.PodTemplateSpec {
	s := &j.Spec
	l := objectLabels(j)
	for k, v := range extraLabels {
		l[k] = v
	}
	c := corev1.Container{
		Name:                     container,
		Image:                    s.Image,
		Command:                  s.Command,
		Args:                     s.Args,
		WorkingDir:               s.WorkDir,
		Env:                      containerEnv(j),
		Resources:                containerResources(&s.Resources),
		ImagePullPolicy:          corev1.PullPolicy(s.Kubernetes.ImagePullPolicy),
		TerminationMessagePath:   j.Outputs.MetricsFile,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: l, Annotations: s.Kubernetes.Annotations},
		Spec: corev1.PodSpec{
			RestartPolicy:      restart,
			ServiceAccountName: s.Kubernetes.ServiceAccount,
			NodeSelector:       s.Kubernetes.NodeSelector,
			Containers:         []corev1.Container{c},
		},
	}
}

func int32Ptr(v int32) *int32 { return &v }
func int64Ptr(v int64) *int64 { return &v }

// deadlineSeconds returns the job's time limit in whole seconds (at least 1), or nil.
func deadlineSeconds(s *JobSpec) *int64 {
	if s.Timeout.Duration <= 0 {
		return nil
	}
	return int64Ptr(max(int64((s.Timeout.Duration+time.Second-1)/time.Second), 1))
}

// Manifest returns the batch/v1 Job that runs j.
func (k *Kubernetes) Manifest(j *Job) *batchv1.Job {
	s := &j.Spec
	backoff := int32(0)
	if s.Kubernetes.BackoffLimit != nil {
		backoff = *s.Kubernetes.BackoffLimit
	}
	ttl := int32(defaultTTLAfterFinished)
	if s.Kubernetes.TTLSecondsAfterFinished != nil {
		ttl = *s.Kubernetes.TTLSecondsAfterFinished
	}
	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        j.ID,
			Namespace:   namespaceOf(j, k.opts.Namespace),
			Labels:      objectLabels(j),
			Annotations: s.Kubernetes.Annotations,
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            int32Ptr(backoff),
			ActiveDeadlineSeconds:   deadlineSeconds(s),
			TTLSecondsAfterFinished: int32Ptr(ttl),
			Template:                podTemplate(j, "train", corev1.RestartPolicyNever, nil),
		},
	}
}

// observation is a backend's reading of a job's state in the cluster.
type observation struct {
	// running: pods run; otherwise the job waits (suspended, pods pending).
	running  bool
	reason   string
	message  string
	finished bool
	outcome  Outcome
}

// jobObservation maps a batch/v1 Job's status to our terms: Complete (True) is
// success, Failed (True) failure with the Job's reason (BackoffLimitExceeded,
// DeadlineExceeded, ...), active pods or a start time mean running.
func jobObservation(st *batchv1.JobStatus) observation {
	for _, c := range st.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobFailed:
			return observation{finished: true, outcome: Outcome{Reason: nonEmpty(c.Reason, ReasonError), Message: c.Message,
				Time: c.LastTransitionTime.Time}}
		case batchv1.JobComplete:
			return observation{finished: true, outcome: Outcome{Succeeded: true, Reason: ReasonCompleted, Message: c.Message,
				Time: c.LastTransitionTime.Time}}
		}
	}
	for _, c := range st.Conditions {
		if c.Type == batchv1.JobSuspended && c.Status == corev1.ConditionTrue {
			return observation{reason: "Suspended", message: c.Message}
		}
	}
	if st.Active > 0 || st.StartTime != nil {
		return observation{running: true, reason: "JobRunning", message: fmt.Sprintf("%d active pod(s)", st.Active)}
	}
	return observation{reason: "Created", message: "waiting for pods"}
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Run implements Backend.
func (k *Kubernetes) Run(ctx context.Context, j Job, report func(Update)) (Outcome, error) {
	api, ns := k.opts.Client, j.Handle.Namespace
	if j.Handle.Name == "" {
		obj := k.Manifest(&j)
		err := submitWithRetry(ctx, k.opts.Submit, k.opts.Logf, "batch/v1 Job "+obj.Namespace+"/"+obj.Name, func(ctx context.Context) error {
			return api.CreateJob(ctx, obj)
		})
		if apierrors.IsAlreadyExists(err) {
			var cur *batchv1.Job
			if cur, err = api.GetJob(ctx, ns, obj.Name); err == nil && cur.Labels[LabelJobID] != j.ID {
				err = fmt.Errorf("a Job named %s/%s exists and is not this job's", obj.Namespace, obj.Name)
			}
		}
		if err != nil {
			if ctx.Err() != nil && !isCancelled(ctx) {
				return Outcome{}, ctx.Err()
			}
			return Outcome{Reason: ReasonSubmitFailed, Message: err.Error()}, nil
		}
		h := j.Handle
		h.Name = obj.Name
		j.Handle = h
		report(Update{Kind: UpdateSubmitted, Handle: &h, Reason: "Created",
			Message: fmt.Sprintf("batch/v1 Job %s/%s created", obj.Namespace, obj.Name), Time: time.Now()})
	}
	name := j.Handle.Name
	out, err := pollUntilDone(ctx, k.opts.PollInterval, k.opts.Logf, report,
		func(ctx context.Context) (observation, error) {
			cur, err := api.GetJob(ctx, ns, name)
			if err != nil {
				return observation{}, err
			}
			return jobObservation(&cur.Status), nil
		},
		func(ctx context.Context) error { return api.DeleteJob(ctx, ns, name) },
		"batch/v1 Job "+ns+"/"+name)
	if err != nil || !out.Succeeded {
		return out, err
	}
	out.Metrics = terminationMessage(ctx, k.opts.Client, j.Handle.Namespace, j.ID, "train", "")
	return out, nil
}

func isCancelled(ctx context.Context) bool {
	return ctx.Err() != nil && context.Cause(ctx) == ErrCancelled
}

// pollUntilDone reads a job's state every interval until it finishes. A cancelled
// ctx (cause ErrCancelled) deletes the job; another end of ctx returns ctx.Err().
// A job that vanished ends Failed with reason Lost; other API errors are retried.
func pollUntilDone(ctx context.Context, interval time.Duration, logf func(string, ...any), report func(Update),
	observe func(context.Context) (observation, error), remove func(context.Context) error, what string) (Outcome, error) {
	var last observation
	first := true
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if ctx.Err() == nil {
			obs, err := observe(ctx)
			switch {
			case apierrors.IsNotFound(err):
				return Outcome{Reason: ReasonLost, Message: what + " was deleted"}, nil
			case err != nil && ctx.Err() == nil:
				logf("training: cannot read %s (retrying): %v", what, err)
			case err == nil:
				if obs.finished {
					return obs.outcome, nil
				}
				if first || obs.running != last.running || obs.reason != last.reason {
					kind := UpdateSubmitted
					if obs.running {
						kind = UpdateRunning
					}
					report(Update{Kind: kind, Reason: obs.reason, Message: obs.message, Time: time.Now()})
					last, first = obs, false
				}
			}
		}
		select {
		case <-ctx.Done():
			if !isCancelled(ctx) {
				return Outcome{}, ctx.Err()
			}
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := remove(dctx)
			cancel()
			if err != nil && !apierrors.IsNotFound(err) {
				return Outcome{Reason: ReasonCancelled, Message: "cancelled, but deleting " + what + " failed: " + err.Error()}, nil
			}
			return Outcome{Reason: ReasonCancelled, Message: "cancelled; " + what + " deleted"}, nil
		case <-t.C:
		}
	}
}

// jobPods returns the job's pods (of one replica type when given), newest first.
func jobPods(ctx context.Context, c KubeAPI, ns, jobID, replicaType string) ([]corev1.Pod, error) {
	sel := labels.Set{LabelJobID: jobID}
	if replicaType != "" {
		sel[LabelReplicaType] = replicaType
	}
	pods, err := c.ListPods(ctx, ns, sel.String())
	if err != nil {
		return nil, fmt.Errorf("cannot list the pods of job %s: %w", jobID, err)
	}
	sort.SliceStable(pods, func(a, b int) bool {
		ta, tb := pods[a].CreationTimestamp, pods[b].CreationTimestamp
		if !ta.Equal(&tb) {
			return tb.Before(&ta)
		}
		return pods[a].Name < pods[b].Name
	})
	return pods, nil
}

// terminationMessage returns the termination message of the job's container that
// exited 0 (the metrics the container wrote), or nil.
func terminationMessage(ctx context.Context, c KubeAPI, ns, jobID, container, replicaType string) []byte {
	pods, err := jobPods(ctx, c, ns, jobID, replicaType)
	if err != nil {
		return nil
	}
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name != container || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
				continue
			}
			if msg := strings.TrimSpace(cs.State.Terminated.Message); msg != "" {
				return []byte(msg)
			}
		}
	}
	return nil
}

// podLogs streams the logs of the job's newest pod. With follow and no pod yet,
// it waits for one until done or ctx ends.
func podLogs(ctx context.Context, c KubeAPI, ns, jobID, container, replicaType string, follow bool, done <-chan struct{}) (io.ReadCloser, error) {
	for {
		pods, err := jobPods(ctx, c, ns, jobID, replicaType)
		if err != nil {
			return nil, err
		}
		if len(pods) > 0 {
			rc, err := c.PodLogs(ctx, ns, pods[0].Name, container, follow)
			if err != nil {
				return nil, fmt.Errorf("cannot read the logs of pod %s/%s: %w", ns, pods[0].Name, err)
			}
			return rc, nil
		}
		if !follow {
			return io.NopCloser(strings.NewReader("")), nil
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-done:
			t.Stop()
			return io.NopCloser(strings.NewReader("")), nil
		case <-t.C:
		}
	}
}

// Logs implements Backend: the logs of the job's pod.
func (k *Kubernetes) Logs(ctx context.Context, j Job, follow bool, done <-chan struct{}) (io.ReadCloser, error) {
	return podLogs(ctx, k.opts.Client, j.Handle.Namespace, j.ID, "train", "", follow, done)
}
