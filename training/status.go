package training

import (
	"time"
)

// Phase summarizes a job's conditions.
type Phase string

// Phases of a job or study.
const (
	PhasePending   Phase = "Pending"
	PhaseRunning   Phase = "Running"
	PhaseSucceeded Phase = "Succeeded"
	PhaseFailed    Phase = "Failed"
)

// ConditionType names a condition, as Kubeflow's training operator does.
type ConditionType string

// Condition types. Created is set on submission; Running while the job runs (it turns
// False when the job ends); Succeeded or Failed, once True, are final.
const (
	ConditionCreated   ConditionType = "Created"
	ConditionRunning   ConditionType = "Running"
	ConditionSucceeded ConditionType = "Succeeded"
	ConditionFailed    ConditionType = "Failed"
)

// ConditionStatus is "True", "False" or "Unknown".
type ConditionStatus string

// Condition statuses.
const (
	ConditionTrue    ConditionStatus = "True"
	ConditionFalse   ConditionStatus = "False"
	ConditionUnknown ConditionStatus = "Unknown"
)

// Reasons set by the sidecar. Kubernetes backends pass the reasons of the cluster
// through (BackoffLimitExceeded, DeadlineExceeded, PyTorchJobFailed, ...).
const (
	ReasonSubmitted          = "Submitted"
	ReasonQueued             = "Queued"
	ReasonStarted            = "Started"
	ReasonReattached         = "Reattached"
	ReasonRegistering        = "Registering"
	ReasonCompleted          = "Completed"
	ReasonFinished           = "Finished"
	ReasonError              = "Error"
	ReasonCancelled          = "Cancelled"
	ReasonDeadlineExceeded   = "DeadlineExceeded"
	ReasonLost               = "Lost"
	ReasonSubmitFailed       = "SubmitFailed"
	ReasonMetricsInvalid     = "MetricsInvalid"
	ReasonRegistrationFailed = "RegistrationFailed"
)

// Condition is one observed state of a job, with the time its status last changed.
type Condition struct {
	Type               ConditionType   `json:"type"`
	Status             ConditionStatus `json:"status"`
	Reason             string          `json:"reason,omitempty"`
	Message            string          `json:"message,omitempty"`
	LastTransitionTime time.Time       `json:"last_transition_time"`
	LastUpdateTime     time.Time       `json:"last_update_time"`
}

// JobStatus is what is known of a job.
type JobStatus struct {
	// Phase summarizes Conditions.
	Phase      Phase       `json:"phase"`
	Conditions []Condition `json:"conditions"`
	// StartTime is when the job started running.
	StartTime *time.Time `json:"start_time,omitempty"`
	// CompletionTime is when the job finished.
	CompletionTime *time.Time `json:"completion_time,omitempty"`
	// ExitCode is the process's exit code (local backend).
	ExitCode *int `json:"exit_code,omitempty"`
	// Metrics are read from the job's metrics file.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Model is the registered model version.
	Model *ModelVersionRef `json:"model,omitempty"`
}

// ModelVersionRef names a registered model version.
type ModelVersionRef struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	Source          string `json:"source,omitempty"`
	ServingEndpoint string `json:"serving_endpoint,omitempty"`
}

// Condition returns the condition of type t.
func (s *JobStatus) Condition(t ConditionType) (Condition, bool) {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return Condition{}, false
}

// Finished reports whether Succeeded or Failed is True.
func (s *JobStatus) Finished() bool {
	return s.isTrue(ConditionSucceeded) || s.isTrue(ConditionFailed)
}

func (s *JobStatus) isTrue(t ConditionType) bool {
	c, ok := s.Condition(t)
	return ok && c.Status == ConditionTrue
}

// setCondition sets a condition; its transition time changes only with its status.
// A finished status is never changed.
func (s *JobStatus) setCondition(t ConditionType, st ConditionStatus, reason, msg string, now time.Time) {
	if s.Finished() {
		return
	}
	for i := range s.Conditions {
		c := &s.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != st {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message, c.LastUpdateTime = st, reason, msg, now
		s.Phase = s.phase()
		return
	}
	s.Conditions = append(s.Conditions, Condition{Type: t, Status: st, Reason: reason, Message: msg,
		LastTransitionTime: now, LastUpdateTime: now})
	s.Phase = s.phase()
}

// finish sets the final condition, turns Running False and records the time.
func (s *JobStatus) finish(succeeded bool, reason, msg string, now time.Time) {
	if s.Finished() {
		return
	}
	if c, ok := s.Condition(ConditionRunning); ok && c.Status == ConditionTrue {
		s.setCondition(ConditionRunning, ConditionFalse, ReasonFinished, "", now)
	}
	t := ConditionFailed
	if succeeded {
		t = ConditionSucceeded
	}
	s.setCondition(t, ConditionTrue, reason, msg, now)
	s.CompletionTime = &now
}

func (s *JobStatus) phase() Phase {
	switch {
	case s.isTrue(ConditionFailed):
		return PhaseFailed
	case s.isTrue(ConditionSucceeded):
		return PhaseSucceeded
	case s.isTrue(ConditionRunning):
		return PhaseRunning
	}
	return PhasePending
}
