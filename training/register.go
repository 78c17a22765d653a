package training

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/registry"
)

// registerWithRetry registers j's model, retrying transport errors and server
// errors with exponential backoff.
func (m *Manager) registerWithRetry(ctx context.Context, j *Job, reg *Register, mets map[string]float64, tags map[string]string) (*ModelVersionRef, error) {
	backoff := m.opts.RegisterBackoff
	var err error
	for attempt := 1; ; attempt++ {
		var ref *ModelVersionRef
		ref, err = m.register(ctx, j, reg, mets, tags)
		if err == nil {
			registrations.Inc()
			return ref, nil
		}
		registrationErrors.Inc()
		if attempt >= m.opts.RegisterAttempts || !retryableRegistryError(err) {
			break
		}
		m.opts.Logf("training: job %s: registering model %s failed (attempt %d of %d, retrying in %s): %v",
			j.ID, reg.Model, attempt, m.opts.RegisterAttempts, backoff, err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("cannot register model %s: %w", reg.Model, errors.Join(err, ctx.Err()))
		case <-t.C:
		}
		backoff *= 2
	}
	return nil, fmt.Errorf("cannot register model %s: %w", reg.Model, err)
}

// retryableRegistryError reports whether a registry call may succeed when tried
// again: transport errors and 5xx answers.
func retryableRegistryError(err error) bool {
	var apiErr *registry.Error
	if errors.As(err, &apiErr) {
		return apiErr.HTTPStatus() >= http.StatusInternalServerError
	}
	return !errors.Is(err, context.Canceled)
}

// register creates (once) the model version trained by j with its lineage: the job
// id, hyperparameters, metrics, feature views, artifact URI and serving endpoint.
// A version already registered for j (found by training_job) is reused, so a
// registration interrupted by a restart is not duplicated.
func (m *Manager) register(ctx context.Context, j *Job, reg *Register, mets map[string]float64, extraTags map[string]string) (*ModelVersionRef, error) {
	c := m.reg
	if c == nil {
		return nil, fmt.Errorf("the sidecar has no model registry")
	}
	if _, err := c.EnsureModel(ctx, registry.CreateModelRequest{Name: reg.Model}); err != nil {
		return nil, err
	}
	found, _, err := c.SearchVersions(ctx, registry.SearchRequest{
		Filter: fmt.Sprintf("name = '%s' AND training_job = '%s'", reg.Model, j.ID),
	})
	if err != nil {
		return nil, err
	}
	var mv *registry.ModelVersion
	if len(found) > 0 {
		mv = &found[0]
	} else {
		endpoint := ""
		if reg.ServingEndpoint != "" && !strings.Contains(reg.ServingEndpoint, "{version}") {
			if endpoint, err = expandEndpoint(reg.ServingEndpoint, reg.Model, "", j.ID, j.Trial); err != nil {
				return nil, err
			}
		}
		tags := make([]registry.Tag, 0, len(reg.Tags)+len(extraTags))
		for _, k := range sortedKeys(reg.Tags) {
			tags = append(tags, registry.Tag{Key: k, Value: reg.Tags[k]})
		}
		for _, k := range sortedKeys(extraTags) {
			tags = append(tags, registry.Tag{Key: k, Value: extraTags[k]})
		}
		mv, err = c.CreateVersion(ctx, registry.CreateVersionRequest{
			Name:            reg.Model,
			Source:          j.Outputs.ArtifactURI,
			RunID:           j.ID,
			Tags:            tags,
			Description:     reg.Description,
			ServingEndpoint: endpoint,
			TrainingJob:     j.ID,
			Params:          hyperparameterTexts(j.Spec.Hyperparameters),
			Metrics:         mets,
			FeatureViews:    featureViews(&j.Spec.Inputs),
		})
		if err != nil {
			return nil, err
		}
	}
	if reg.ServingEndpoint != "" && strings.Contains(reg.ServingEndpoint, "{version}") {
		ep, err := expandEndpoint(reg.ServingEndpoint, reg.Model, mv.Version, j.ID, j.Trial)
		if err != nil {
			return nil, err
		}
		if mv.ServingEndpoint != ep {
			if mv, err = c.UpdateVersion(ctx, registry.UpdateVersionRequest{Name: reg.Model, Version: mv.Version, ServingEndpoint: &ep}); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range reg.Aliases {
		if err := c.SetAlias(ctx, reg.Model, a, mv.Version); err != nil {
			return nil, err
		}
	}
	return &ModelVersionRef{Name: mv.Name, Version: mv.Version, Source: mv.Source, ServingEndpoint: mv.ServingEndpoint}, nil
}

// featureViews lists the feature views a job reads: those named, plus the views
// of the features named, sorted and without duplicates.
func featureViews(in *Inputs) []string {
	set := map[string]bool{}
	for _, v := range in.FeatureViews {
		set[v] = true
	}
	for _, f := range in.Features {
		if v, _, ok := strings.Cut(f, ":"); ok {
			set[v] = true
		}
	}
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// recordRun records j as a run in the registry (experiment: the job's name,
// or its study's for a trial), so that MLflow clients read its params,
// metrics, artifact location and lineage and can register a model from it.
// Failures are logged: a job does not fail because its run was not recorded.
func (m *Manager) recordRun(ctx context.Context, j *Job, status string, mets map[string]float64, end time.Time) {
	if m.reg == nil {
		return
	}
	// A cancelled job's context has ended; its run is recorded all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	r := registry.RunRecord{
		RunID:       j.ID,
		Experiment:  j.Spec.Name,
		RunName:     j.ID,
		Status:      status,
		StartTime:   j.CreatedAt.UnixMilli(),
		EndTime:     end.UnixMilli(),
		ArtifactURI: j.Outputs.ArtifactURI,
		Params:      hyperparameterTexts(j.Spec.Hyperparameters),
		Tags:        map[string]string{"lariat.training_job": j.ID, "lariat.backend": j.Backend},
	}
	if j.Status.StartTime != nil {
		r.StartTime = j.Status.StartTime.UnixMilli()
	}
	if j.Study != "" {
		r.Experiment = strings.TrimSuffix(j.Spec.Name, "-t"+strconv.Itoa(j.Trial))
		r.Tags["lariat.study"] = j.Study
		r.Tags["lariat.trial"] = strconv.Itoa(j.Trial)
	}
	if fv := featureViews(&j.Spec.Inputs); len(fv) > 0 {
		r.Tags["lariat.feature_views"] = strings.Join(fv, ",")
	}
	if j.Spec.Inputs.Dataset != "" {
		r.Tags["lariat.dataset"] = j.Spec.Inputs.Dataset
	}
	for _, k := range sortedKeys(mets) {
		r.Metrics = append(r.Metrics, registry.Metric{Key: k, Value: mets[k], Timestamp: r.EndTime})
	}
	backoff := m.opts.RegisterBackoff
	for attempt := 1; ; attempt++ {
		_, err := m.reg.RecordRun(ctx, r)
		if err == nil {
			return
		}
		if attempt >= m.opts.RegisterAttempts || !retryableRegistryError(err) {
			m.opts.Logf("training: job %s: cannot record its run in the registry: %v", j.ID, err)
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff *= 2
	}
}
