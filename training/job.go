package training

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"time"
)

// Job is a submitted training job as the sidecar records it.
type Job struct {
	// ID is the job's name plus a random suffix; it names the backend's object too.
	ID string `json:"id"`
	// Backend is the name of the backend running the job.
	Backend string `json:"backend"`
	// Study and Trial are set on the trials of a study.
	Study string `json:"study,omitempty"`
	Trial int    `json:"trial,omitempty"`
	// CreatedAt is the submission time.
	CreatedAt time.Time `json:"created_at"`
	// Spec is the job as submitted.
	Spec JobSpec `json:"spec"`
	// Outputs are Spec.Outputs with the backend's defaults and variables resolved.
	Outputs Outputs `json:"outputs"`
	// Handle is how the backend finds the job again after a restart.
	Handle Handle `json:"handle"`
	// CancelRequested records a cancellation not yet carried out.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// Status is the job's state.
	Status JobStatus `json:"status"`
}

// Handle is what a backend records to find its job again.
type Handle struct {
	// PID is the local process (the process group leader).
	PID int `json:"pid,omitempty"`
	// StartTicks is the process's start time in clock ticks after boot, as in
	// /proc/<pid>/stat; it tells a re-used pid from the job's process.
	StartTicks uint64 `json:"start_ticks,omitempty"`
	// LogFile holds the local process's output.
	LogFile string `json:"log_file,omitempty"`
	// ExitFile receives the local process's exit code when it ends.
	ExitFile string `json:"exit_file,omitempty"`

	// APIVersion, Kind, Namespace and Name identify a Kubernetes object.
	APIVersion string `json:"api_version,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name,omitempty"`
}

// started reports whether the backend has started the job (a process or an
// object in the cluster exists).
func (h *Handle) started() bool {
	return h.PID != 0 || h.Name != ""
}

// clone returns a deep enough copy of j for readers outside the manager's lock.
func (j *Job) clone() Job {
	c := *j
	c.Status.Conditions = append([]Condition(nil), j.Status.Conditions...)
	if j.Status.Metrics != nil {
		c.Status.Metrics = make(map[string]float64, len(j.Status.Metrics))
		for k, v := range j.Status.Metrics {
			c.Status.Metrics[k] = v
		}
	}
	if j.Status.Model != nil {
		m := *j.Status.Model
		c.Status.Model = &m
	}
	return c
}

// ErrCancelled is the cause of a job context cancelled by a user.
var ErrCancelled = errors.New("job cancelled")

// Backend runs jobs somewhere: a local process, a Kubernetes Job, a Kubeflow job.
type Backend interface {
	// Name is the backend's name: "local", "kubernetes" or "kubeflow".
	Name() string
	// Prepare checks j's spec against the backend's rules and fills in j.Outputs
	// and the parts of j.Handle known before the job starts.
	Prepare(j *Job, stateDir string) error
	// Run starts j, or re-attaches to it when j.Handle shows it was started before,
	// reports its progress through report and returns its outcome when it ends.
	// When ctx is cancelled with cause ErrCancelled, Run stops the job and returns
	// a Cancelled outcome; when ctx ends otherwise (the sidecar stops), Run returns
	// ctx.Err() and leaves the job running. Other errors are failures of the job.
	Run(ctx context.Context, j Job, report func(Update)) (Outcome, error)
	// Logs returns the job's output. With follow, the stream goes on until the job
	// ends; done is closed when the sidecar has seen it end.
	Logs(ctx context.Context, j Job, follow bool, done <-chan struct{}) (io.ReadCloser, error)
}

// UpdateKind says what an Update reports.
type UpdateKind uint8

// Update kinds.
const (
	// UpdateQueued: the job waits for resources (Created, reason Queued).
	UpdateQueued UpdateKind = iota
	// UpdateSubmitted: the backend accepted the job (Created, reason Submitted).
	UpdateSubmitted
	// UpdateRunning: the job runs (Running True).
	UpdateRunning
	// UpdateHandle: only the handle changed.
	UpdateHandle
)

// Update is progress reported by a backend while a job runs.
type Update struct {
	Kind UpdateKind
	// Handle, when set, replaces the job's handle; it is persisted at once.
	Handle  *Handle
	Reason  string
	Message string
	Time    time.Time
}

// Outcome is how a job ended.
type Outcome struct {
	Succeeded bool
	Reason    string
	Message   string
	// ExitCode is the local process's exit code, when known.
	ExitCode *int
	// Time is when the job ended; zero means now.
	Time time.Time
	// Metrics is the metrics JSON when the backend fetched it (from a pod's
	// termination message). When nil the manager reads Outputs.MetricsFile.
	Metrics []byte
}

// newJobID returns name plus '-' and 6 random hex digits.
func newJobID(name string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return name + "-" + hex.EncodeToString(b[:])
}
