package registry

import (
	"hash/fnv"
	"strconv"
)

// Run statuses, as MLflow names them.
const (
	RunRunning   = "RUNNING"
	RunScheduled = "SCHEDULED"
	RunFinished  = "FINISHED"
	RunFailed    = "FAILED"
	RunKilled    = "KILLED"
)

// DefaultExperiment is the experiment of runs recorded without one; MLflow
// gives it the id "0".
const DefaultExperiment = "Default"

// RunRecord is a training run as lariat-train records it (POST runs/record)
// and a Store keeps it: what MLflow's tracking read endpoints serve.
type RunRecord struct {
	RunID string `json:"run_id"`
	// Experiment is the experiment's name; its id is derived from it.
	Experiment  string `json:"experiment_name,omitempty"`
	RunName     string `json:"run_name,omitempty"`
	UserID      string `json:"user_id,omitempty"`
	Status      string `json:"status,omitempty"`
	StartTime   int64  `json:"start_time,omitempty"`
	EndTime     int64  `json:"end_time,omitempty"`
	ArtifactURI string `json:"artifact_uri,omitempty"`
	// Params are the run's parameters (MLflow keeps them as strings).
	Params map[string]string `json:"params,omitempty"`
	// Metrics is every logged metric value, in logging order per key.
	Metrics []Metric `json:"metrics,omitempty"`
	// Tags carry the lineage: training job, feature views, study, trial.
	Tags map[string]string `json:"tags,omitempty"`
}

// Metric is one logged metric value.
type Metric struct {
	Key       string  `json:"key"`
	Value     float64 `json:"value"`
	Timestamp int64   `json:"timestamp"`
	Step      int64   `json:"step"`
}

// KeyValue is MLflow's param and run tag shape.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Run is MLflow's run object.
type Run struct {
	Info   RunInfo   `json:"info"`
	Data   RunData   `json:"data"`
	Inputs RunInputs `json:"inputs"`
}

// RunInfo is MLflow's run info.
type RunInfo struct {
	RunID          string `json:"run_id"`
	RunUUID        string `json:"run_uuid"`
	RunName        string `json:"run_name,omitempty"`
	ExperimentID   string `json:"experiment_id"`
	UserID         string `json:"user_id"`
	Status         string `json:"status"`
	StartTime      int64  `json:"start_time"`
	EndTime        int64  `json:"end_time,omitempty"`
	ArtifactURI    string `json:"artifact_uri"`
	LifecycleStage string `json:"lifecycle_stage"`
}

// RunData holds the latest value of each metric, the params and the tags.
type RunData struct {
	Metrics []Metric   `json:"metrics,omitempty"`
	Params  []KeyValue `json:"params,omitempty"`
	Tags    []KeyValue `json:"tags,omitempty"`
}

// RunInputs is MLflow's run inputs; Lariat records no datasets.
type RunInputs struct{}

// Experiment is MLflow's experiment object. Experiments are the names runs
// were recorded under; there is no separate experiment record.
type Experiment struct {
	ExperimentID     string     `json:"experiment_id"`
	Name             string     `json:"name"`
	ArtifactLocation string     `json:"artifact_location"`
	LifecycleStage   string     `json:"lifecycle_stage"`
	LastUpdateTime   int64      `json:"last_update_time,omitempty"`
	CreationTime     int64      `json:"creation_time,omitempty"`
	Tags             []KeyValue `json:"tags,omitempty"`
}

// RunSearchRequest is the body of runs/search.
type RunSearchRequest struct {
	ExperimentIDs []string `json:"experiment_ids,omitempty"`
	Filter        string   `json:"filter,omitempty"`
	RunViewType   string   `json:"run_view_type,omitempty"`
	MaxResults    int64    `json:"max_results,omitempty"`
	OrderBy       []string `json:"order_by,omitempty"`
	PageToken     string   `json:"page_token,omitempty"`
}

// ExperimentID returns the id of the experiment named name: "0" for the
// default experiment, else a number derived from the name, stable across
// restarts and stores.
func ExperimentID(name string) string {
	if name == "" || name == DefaultExperiment {
		return "0"
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	// 1 to 2^53-1: a positive id that JSON numbers hold exactly.
	return strconv.FormatUint(h.Sum64()%(1<<53-1)+1, 10)
}
