package server

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strings"

	"github.com/lariat-gw/lariat/registry"
)

func errRunNotFound(id string) *registry.Error {
	return registry.NewError(registry.CodeResourceDoesNotExist, "Run with id=%s not found", id)
}

func errExperimentNotFound(what string) *registry.Error {
	return registry.NewError(registry.CodeResourceDoesNotExist, "Could not find experiment with %s", what)
}

// RecordRun stores r, replacing a run of the same id: lariat-train records a
// run when its job starts and again when it ends.
func (s *Service) RecordRun(ctx context.Context, r registry.RunRecord) (*registry.RunRecord, error) {
	if r.RunID == "" {
		return nil, registry.MissingParameter("run_id")
	}
	if strings.ContainsAny(r.RunID, "/\\") {
		return nil, registry.InvalidParameter("Invalid run_id %q: it must not contain slashes", r.RunID)
	}
	if r.Experiment == "" {
		r.Experiment = registry.DefaultExperiment
	}
	switch r.Status {
	case "":
		r.Status = registry.RunRunning
	case registry.RunRunning, registry.RunScheduled, registry.RunFinished, registry.RunFailed, registry.RunKilled:
	default:
		return nil, registry.InvalidParameter("Invalid run status %q: want RUNNING, SCHEDULED, FINISHED, FAILED or KILLED", r.Status)
	}
	for _, m := range r.Metrics {
		if m.Key == "" {
			return nil, registry.InvalidParameter("Invalid metric: missing key")
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
func (s *Service) GetRun(ctx context.Context, id string) (*registry.Run, error) {
	if id == "" {
		return nil, registry.MissingParameter("run_id")
	}
	var r *registry.RunRecord
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		r, err = tx.Run(id)
		return err
	})
	if err != nil {
		return nil, storeErr(err, func() *registry.Error { return errRunNotFound(id) })
	}
	return toRun(r), nil
}

// MetricHistory returns every value logged for a metric of a run.
func (s *Service) MetricHistory(ctx context.Context, runID, key string) ([]registry.Metric, error) {
	if runID == "" {
		return nil, registry.MissingParameter("run_id")
	}
	if key == "" {
		return nil, registry.MissingParameter("metric_key")
	}
	var r *registry.RunRecord
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		r, err = tx.Run(runID)
		return err
	})
	if err != nil {
		return nil, storeErr(err, func() *registry.Error { return errRunNotFound(runID) })
	}
	out := []registry.Metric{}
	for _, m := range r.Metrics {
		if m.Key == key {
			out = append(out, m)
		}
	}
	return out, nil
}

// ExperimentByName returns the experiment runs were recorded under.
func (s *Service) ExperimentByName(ctx context.Context, name string) (*registry.Experiment, error) {
	if name == "" {
		return nil, registry.MissingParameter("experiment_name")
	}
	return s.experiment(ctx, func(e string) bool { return e == name }, "name="+name)
}

// ExperimentByID returns the experiment with the given id.
func (s *Service) ExperimentByID(ctx context.Context, id string) (*registry.Experiment, error) {
	if id == "" {
		return nil, registry.MissingParameter("experiment_id")
	}
	return s.experiment(ctx, func(e string) bool { return registry.ExperimentID(e) == id }, "id="+id)
}

func (s *Service) experiment(ctx context.Context, match func(name string) bool, what string) (*registry.Experiment, error) {
	var e *registry.Experiment
	err := s.store.View(ctx, func(tx Tx) error {
		return tx.ScanRuns(func(r *registry.RunRecord) error {
			if !match(r.Experiment) {
				return nil
			}
			if e == nil {
				e = &registry.Experiment{ExperimentID: registry.ExperimentID(r.Experiment), Name: r.Experiment, LifecycleStage: "active",
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
		if match(registry.DefaultExperiment) {
			return &registry.Experiment{ExperimentID: "0", Name: registry.DefaultExperiment, LifecycleStage: "active"}, nil
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
func (s *Service) SearchRuns(ctx context.Context, req registry.RunSearchRequest) ([]registry.Run, string, error) {
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
		return nil, "", registry.InvalidParameter("Invalid run_view_type %q: want ACTIVE_ONLY, DELETED_ONLY or ALL", req.RunViewType)
	}
	scan := func(yield func(*registry.RunRecord) error) error {
		if strings.EqualFold(req.RunViewType, "DELETED_ONLY") { // runs are never deleted
			return nil
		}
		return s.store.View(ctx, func(tx Tx) error { return tx.ScanRuns(yield) })
	}
	match := func(r *registry.RunRecord) bool {
		if len(req.ExperimentIDs) > 0 && !slices.Contains(req.ExperimentIDs, registry.ExperimentID(r.Experiment)) {
			return false
		}
		return filter.matchRun(r)
	}
	page, next, err := searchPage(runLimits, req.MaxResults, req.PageToken, scan, match, compareRuns(order))
	if err != nil {
		return nil, "", storeErr(err, nil)
	}
	out := make([]registry.Run, 0, len(page))
	for _, r := range page {
		out = append(out, *toRun(r))
	}
	return out, next, nil
}

// toRun returns r with MLflow's shape: the latest value of each metric (the
// highest step, then the latest timestamp), params and tags sorted by key,
// and the run name as the mlflow.runName tag too.
func toRun(r *registry.RunRecord) *registry.Run {
	run := &registry.Run{Info: registry.RunInfo{
		RunID: r.RunID, RunUUID: r.RunID, RunName: r.RunName, ExperimentID: registry.ExperimentID(r.Experiment),
		UserID: r.UserID, Status: r.Status, StartTime: r.StartTime, EndTime: r.EndTime,
		ArtifactURI: r.ArtifactURI, LifecycleStage: "active",
	}}
	for _, m := range latestMetrics(r) {
		run.Data.Metrics = append(run.Data.Metrics, m)
	}
	for _, k := range sortedMapKeys(r.Params) {
		run.Data.Params = append(run.Data.Params, registry.KeyValue{Key: k, Value: r.Params[k]})
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
		run.Data.Tags = append(run.Data.Tags, registry.KeyValue{Key: k, Value: tags[k]})
	}
	return run
}

// latestMetrics returns the latest value of each metric, sorted by key.
func latestMetrics(r *registry.RunRecord) []registry.Metric {
	latest := map[string]registry.Metric{}
	for _, m := range r.Metrics {
		cur, ok := latest[m.Key]
		if !ok || m.Step > cur.Step || m.Step == cur.Step && m.Timestamp >= cur.Timestamp {
			latest[m.Key] = m
		}
	}
	out := make([]registry.Metric, 0, len(latest))
	for _, k := range sortedMapKeys(latest) {
		out = append(out, latest[k])
	}
	return out
}

func runMetric(r *registry.RunRecord, key string) (float64, bool) {
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

func (f searchFilter) matchRun(r *registry.RunRecord) bool {
	for i := range f {
		c := &f[i]
		var ok bool
		switch {
		case c.metric:
			v, found := runMetric(r, c.key)
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

func runAttr(r *registry.RunRecord, key string) string {
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
			return nil, registry.InvalidParameter("Invalid order_by clause %q", c)
		}
		k := runOrderKey{kind: "attr"}
		if len(fields) == 2 {
			switch strings.ToUpper(fields[1]) {
			case "ASC":
			case "DESC":
				k.desc = true
			default:
				return nil, registry.InvalidParameter("Invalid order_by clause %q: want ASC or DESC after the key", c)
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
				return nil, registry.InvalidParameter("Invalid order_by clause %q: unknown entity %q", c, prefix)
			}
		}
		if k.kind == "attr" {
			attr, ok := runAttrs[strings.ToLower(name)]
			if !ok {
				return nil, registry.InvalidParameter("Invalid order_by clause %q: unknown attribute %q", c, name)
			}
			k.key = attr
		}
		keys = append(keys, k)
	}
	// MLflow's default: newest first, then run id.
	keys = append(keys, runOrderKey{kind: "attr", key: "start_time", desc: true}, runOrderKey{kind: "attr", key: "run_id"})
	return keys, nil
}

// compareRuns returns the order of keys; runs lacking a metric, param or tag
// come last.
func compareRuns(keys []runOrderKey) func(a, b *registry.RunRecord) int {
	return func(a, b *registry.RunRecord) int {
		for _, k := range keys {
			var c int
			switch k.kind {
			case "metric":
				va, oka := runMetric(a, k.key)
				vb, okb := runMetric(b, k.key)
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
					c = cmp.Compare(a.StartTime, b.StartTime)
				case "end_time":
					c = cmp.Compare(a.EndTime, b.EndTime)
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
	}
}

// cmpPresent compares two optional values, missing ones last in either
// direction.
func cmpPresent(oka, okb bool, compare func() int, desc bool) int {
	switch {
	case !oka && !okb:
		return 0
	case !oka:
		return 1
	case !okb:
		return -1
	}
	if desc {
		return -compare()
	}
	return compare()
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
