package registry

import (
	"context"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
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

// Run search limits, as MLflow sets them.
const (
	defaultRunResults = 1000
	maxRunResults     = 50000
)

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

func errRunNotFound(id string) *Error {
	return newError(CodeResourceDoesNotExist, "Run with id=%s not found", id)
}

func errExperimentNotFound(what string) *Error {
	return newError(CodeResourceDoesNotExist, "Could not find experiment with %s", what)
}

// RecordRun stores r, replacing a run of the same id: lariat-train records a
// run when its job starts and again when it ends.
func (s *Service) RecordRun(ctx context.Context, r RunRecord) (*RunRecord, error) {
	if r.RunID == "" {
		return nil, errMissing("run_id")
	}
	if strings.ContainsAny(r.RunID, "/\\") {
		return nil, errInvalid("Invalid run_id %q: it must not contain slashes", r.RunID)
	}
	if r.Experiment == "" {
		r.Experiment = DefaultExperiment
	}
	switch r.Status {
	case "":
		r.Status = RunRunning
	case RunRunning, RunScheduled, RunFinished, RunFailed, RunKilled:
	default:
		return nil, errInvalid("Invalid run status %q: want RUNNING, SCHEDULED, FINISHED, FAILED or KILLED", r.Status)
	}
	for _, m := range r.Metrics {
		if m.Key == "" {
			return nil, errInvalid("Invalid metric: missing key")
		}
	}
	if r.StartTime == 0 {
		r.StartTime = s.now()
	}
	err := s.store.Update(ctx, func(tx Tx) error { return tx.PutRun(&r) })
	if err != nil {
		return nil, storeErr(err, nil)
	}
	return &r, nil
}

// GetRun returns the run with MLflow's shape.
func (s *Service) GetRun(ctx context.Context, id string) (*Run, error) {
	if id == "" {
		return nil, errMissing("run_id")
	}
	var r *RunRecord
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		r, err = tx.Run(id)
		return err
	})
	if err != nil {
		return nil, storeErr(err, func() *Error { return errRunNotFound(id) })
	}
	return r.toRun(), nil
}

// MetricHistory returns every value logged for a metric of a run.
func (s *Service) MetricHistory(ctx context.Context, runID, key string) ([]Metric, error) {
	if runID == "" {
		return nil, errMissing("run_id")
	}
	if key == "" {
		return nil, errMissing("metric_key")
	}
	var r *RunRecord
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		r, err = tx.Run(runID)
		return err
	})
	if err != nil {
		return nil, storeErr(err, func() *Error { return errRunNotFound(runID) })
	}
	out := []Metric{}
	for _, m := range r.Metrics {
		if m.Key == key {
			out = append(out, m)
		}
	}
	return out, nil
}

// ExperimentByName returns the experiment runs were recorded under.
func (s *Service) ExperimentByName(ctx context.Context, name string) (*Experiment, error) {
	if name == "" {
		return nil, errMissing("experiment_name")
	}
	return s.experiment(ctx, func(e string) bool { return e == name }, "name="+name)
}

// ExperimentByID returns the experiment with the given id.
func (s *Service) ExperimentByID(ctx context.Context, id string) (*Experiment, error) {
	if id == "" {
		return nil, errMissing("experiment_id")
	}
	return s.experiment(ctx, func(e string) bool { return ExperimentID(e) == id }, "id="+id)
}

func (s *Service) experiment(ctx context.Context, match func(name string) bool, what string) (*Experiment, error) {
	var e *Experiment
	err := s.store.View(ctx, func(tx Tx) error {
		return tx.ScanRuns(func(r *RunRecord) error {
			if !match(r.Experiment) {
				return nil
			}
			if e == nil {
				e = &Experiment{ExperimentID: ExperimentID(r.Experiment), Name: r.Experiment, LifecycleStage: "active",
					CreationTime: r.StartTime}
			}
			e.CreationTime = min(e.CreationTime, r.StartTime)
			e.LastUpdateTime = max(e.LastUpdateTime, r.StartTime, r.EndTime)
			return nil
		})
	})
	if err != nil {
		return nil, storeErr(err, nil)
	}
	if e == nil {
		// MLflow's default experiment always exists.
		if match(DefaultExperiment) {
			return &Experiment{ExperimentID: "0", Name: DefaultExperiment, LifecycleStage: "active"}, nil
		}
		return nil, errExperimentNotFound(what)
	}
	return e, nil
}

// SearchRuns returns one page of the runs of req's experiments that match its
// filter, and the next page token. Filters take metrics.<key> (numbers),
// params.<key>, tags.<key> and the attributes run_id, run_name, status,
// user_id, artifact_uri, start_time and end_time; a clause on a metric,
// param or tag the run lacks is false, as in MLflow.
func (s *Service) SearchRuns(ctx context.Context, req RunSearchRequest) ([]Run, string, error) {
	filter, err := parseFilter(req.Filter, searchRuns)
	if err != nil {
		return nil, "", err
	}
	order, err := parseRunOrderBy(req.OrderBy)
	if err != nil {
		return nil, "", err
	}
	switch strings.ToUpper(req.RunViewType) {
	case "", "ACTIVE_ONLY", "ALL", "DELETED_ONLY":
	default:
		return nil, "", errInvalid("Invalid run_view_type %q: want ACTIVE_ONLY, DELETED_ONLY or ALL", req.RunViewType)
	}
	limit := int64(defaultRunResults)
	switch {
	case req.MaxResults < 0:
		return nil, "", errInvalid("Invalid value %d for parameter 'max_results': it must be positive", req.MaxResults)
	case req.MaxResults > maxRunResults:
		return nil, "", errInvalid("Invalid value %d for parameter 'max_results': it must be at most %d", req.MaxResults, maxRunResults)
	case req.MaxResults > 0:
		limit = req.MaxResults
	}
	start, err := decodePageToken(req.PageToken)
	if err != nil {
		return nil, "", err
	}
	var runs []*RunRecord
	if !strings.EqualFold(req.RunViewType, "DELETED_ONLY") { // runs are never deleted
		err = s.store.View(ctx, func(tx Tx) error {
			return tx.ScanRuns(func(r *RunRecord) error {
				if len(req.ExperimentIDs) > 0 && !slices.Contains(req.ExperimentIDs, ExperimentID(r.Experiment)) {
					return nil
				}
				if filter.matchRun(r) {
					runs = append(runs, r)
				}
				return nil
			})
		})
		if err != nil {
			return nil, "", storeErr(err, nil)
		}
	}
	sortRuns(runs, order)
	start = min(start, len(runs))
	end := min(start+int(limit), len(runs))
	next := ""
	if end < len(runs) {
		next = encodePageToken(end)
	}
	out := make([]Run, 0, end-start)
	for _, r := range runs[start:end] {
		out = append(out, *r.toRun())
	}
	return out, next, nil
}

// toRun returns r with MLflow's shape: the latest value of each metric (the
// highest step, then the latest timestamp), params and tags sorted by key,
// and the run name as the mlflow.runName tag too.
func (r *RunRecord) toRun() *Run {
	run := &Run{Info: RunInfo{
		RunID: r.RunID, RunUUID: r.RunID, RunName: r.RunName, ExperimentID: ExperimentID(r.Experiment),
		UserID: r.UserID, Status: r.Status, StartTime: r.StartTime, EndTime: r.EndTime,
		ArtifactURI: r.ArtifactURI, LifecycleStage: "active",
	}}
	for _, m := range r.latestMetrics() {
		run.Data.Metrics = append(run.Data.Metrics, m)
	}
	for _, k := range sortedMapKeys(r.Params) {
		run.Data.Params = append(run.Data.Params, KeyValue{k, r.Params[k]})
	}
	tags := r.Tags
	if r.RunName != "" {
		if _, ok := tags["mlflow.runName"]; !ok {
			tags = make(map[string]string, len(r.Tags)+1)
			for k, v := range r.Tags {
				tags[k] = v
			}
			tags["mlflow.runName"] = r.RunName
		}
	}
	for _, k := range sortedMapKeys(tags) {
		run.Data.Tags = append(run.Data.Tags, KeyValue{k, tags[k]})
	}
	return run
}

// latestMetrics returns the latest value of each metric, sorted by key.
func (r *RunRecord) latestMetrics() []Metric {
	latest := map[string]Metric{}
	for _, m := range r.Metrics {
		cur, ok := latest[m.Key]
		if !ok || m.Step > cur.Step || m.Step == cur.Step && m.Timestamp >= cur.Timestamp {
			latest[m.Key] = m
		}
	}
	out := make([]Metric, 0, len(latest))
	for _, k := range sortedMapKeys(latest) {
		out = append(out, latest[k])
	}
	return out
}

func (r *RunRecord) metric(key string) (float64, bool) {
	found, v := false, 0.0
	var step, ts int64
	for _, m := range r.Metrics {
		if m.Key == key && (!found || m.Step > step || m.Step == step && m.Timestamp >= ts) {
			found, v, step, ts = true, m.Value, m.Step, m.Timestamp
		}
	}
	return v, found
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (f searchFilter) matchRun(r *RunRecord) bool {
	for i := range f {
		c := &f[i]
		var ok bool
		switch {
		case c.metric:
			v, found := r.metric(c.key)
			ok = found && c.matchFloat(v)
		case c.param:
			v, found := r.Params[c.key]
			ok = found && c.matchString(v)
		case c.tag:
			v, found := r.Tags[c.key]
			if c.key == "mlflow.runName" && !found && r.RunName != "" {
				v, found = r.RunName, true
			}
			ok = found && c.matchString(v)
		case c.key == "start_time":
			ok = c.matchFloat(float64(r.StartTime))
		case c.key == "end_time":
			ok = r.EndTime != 0 && c.matchFloat(float64(r.EndTime))
		default:
			ok = c.matchString(runAttr(r, c.key))
		}
		if !ok {
			return false
		}
	}
	return true
}

func runAttr(r *RunRecord, key string) string {
	switch key {
	case "run_id":
		return r.RunID
	case "run_name":
		return r.RunName
	case "status":
		return r.Status
	case "user_id":
		return r.UserID
	case "artifact_uri":
		return r.ArtifactURI
	case "lifecycle_stage":
		return "active"
	}
	return ""
}

// runOrderKey is one order_by clause of runs/search.
type runOrderKey struct {
	kind string // "metric", "param", "tag" or "attr"
	key  string
	desc bool
}

func parseRunOrderBy(clauses []string) ([]runOrderKey, error) {
	var keys []runOrderKey
	for _, c := range clauses {
		fields := strings.Fields(c)
		if len(fields) == 0 || len(fields) > 2 {
			return nil, errInvalid("Invalid order_by clause %q", c)
		}
		k := runOrderKey{kind: "attr"}
		if len(fields) == 2 {
			switch strings.ToUpper(fields[1]) {
			case "ASC":
			case "DESC":
				k.desc = true
			default:
				return nil, errInvalid("Invalid order_by clause %q: want ASC or DESC after the key", c)
			}
		}
		name := fields[0]
		if prefix, key, ok := strings.Cut(name, "."); ok {
			key = strings.Trim(key, "`\"")
			switch strings.ToLower(prefix) {
			case "metrics", "metric":
				k.kind, k.key = "metric", key
			case "params", "param", "parameters", "parameter":
				k.kind, k.key = "param", key
			case "tags", "tag":
				k.kind, k.key = "tag", key
			case "attributes", "attribute", "attr", "run":
				name = key
			default:
				return nil, errInvalid("Invalid order_by clause %q: unknown entity %q", c, prefix)
			}
		}
		if k.kind == "attr" {
			attr, ok := runAttrs[strings.ToLower(name)]
			if !ok {
				return nil, errInvalid("Invalid order_by clause %q: unknown attribute %q", c, name)
			}
			k.key = attr
		}
		keys = append(keys, k)
	}
	// MLflow's default: newest first, then run id.
	keys = append(keys, runOrderKey{kind: "attr", key: "start_time", desc: true}, runOrderKey{kind: "attr", key: "run_id"})
	return keys, nil
}

// sortRuns orders runs by keys; runs lacking a metric, param or tag come last.
func sortRuns(runs []*RunRecord, keys []runOrderKey) {
	slices.SortStableFunc(runs, func(a, b *RunRecord) int {
		for _, k := range keys {
			var c int
			switch k.kind {
			case "metric":
				va, oka := a.metric(k.key)
				vb, okb := b.metric(k.key)
				c = cmpPresent(oka, okb, func() int { return cmpFloat(va, vb) }, k.desc)
			case "param":
				va, oka := a.Params[k.key]
				vb, okb := b.Params[k.key]
				c = cmpPresent(oka, okb, func() int { return strings.Compare(va, vb) }, k.desc)
			case "tag":
				va, oka := a.Tags[k.key]
				vb, okb := b.Tags[k.key]
				c = cmpPresent(oka, okb, func() int { return strings.Compare(va, vb) }, k.desc)
			default:
				switch k.key {
				case "start_time":
					c = cmpInt(a.StartTime, b.StartTime)
				case "end_time":
					c = cmpInt(a.EndTime, b.EndTime)
				default:
					c = strings.Compare(runAttr(a, k.key), runAttr(b, k.key))
				}
				if k.desc {
					c = -c
				}
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

// cmpPresent compares two optional values, missing ones last in either
// direction.
func cmpPresent(oka, okb bool, cmp func() int, desc bool) int {
	switch {
	case !oka && !okb:
		return 0
	case !oka:
		return 1
	case !okb:
		return -1
	}
	if desc {
		return -cmp()
	}
	return cmp()
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	case math.IsNaN(a) && !math.IsNaN(b):
		return 1
	case !math.IsNaN(a) && math.IsNaN(b):
		return -1
	}
	return 0
}
