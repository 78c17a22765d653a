package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/lariat-gw/lariat/registry"
)

// Service implements the registry's operations on a Store. Its methods return *Error
// for anything the caller got wrong (missing or invalid parameters, unknown or
// duplicate resources) and plain wrapped errors for store failures.
type Service struct {
	store Store
	// now returns the current time in milliseconds since the epoch.
	now func() int64
}

// NewService returns a Service on store.
func NewService(store Store) *Service {
	return &Service{store: store, now: func() int64 { return time.Now().UnixMilli() }}
}

// Store returns the service's store.
func (s *Service) Store() Store {
	return s.store
}

// storeErr turns the store sentinels into API errors.
func storeErr(err error, notFound func() *registry.Error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound) && notFound != nil:
		return notFound()
	}
	var apiErr *registry.Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	return fmt.Errorf("registry store: %w", err)
}

// modelNotFound is passed to storeErr for operations on the model name.
func modelNotFound(name string) func() *registry.Error {
	return func() *registry.Error { return errModelNotFound(name) }
}

// lockModel reads (and in an Update, locks) the model, mapping ErrNotFound to the API error.
func lockModel(tx Tx, name string) (*ModelRecord, error) {
	m, err := tx.Model(name)
	if errors.Is(err, ErrNotFound) {
		return nil, errModelNotFound(name)
	}
	return m, err
}

func getVersion(tx Tx, name string, n int64) (*registry.ModelVersion, error) {
	v, err := tx.Version(name, n)
	if errors.Is(err, ErrNotFound) {
		return nil, errVersionNotFound(name, formatVersion(n))
	}
	return v, err
}

// versionAliases returns the aliases of m that point at version.
func versionAliases(m *ModelRecord, version string) []string {
	var out []string
	for _, a := range m.Aliases {
		if a.Version == version {
			out = append(out, a.Alias)
		}
	}
	return out
}

// modelView builds the API object from a record and the model's versions.
func modelView(m *ModelRecord, versions []*registry.ModelVersion) *registry.RegisteredModel {
	rm := &registry.RegisteredModel{
		Name:                 m.Name,
		CreationTimestamp:    m.CreationTimestamp,
		LastUpdatedTimestamp: m.LastUpdatedTimestamp,
		UserID:               m.UserID,
		Description:          m.Description,
		Tags:                 m.Tags,
		Aliases:              m.Aliases,
	}
	for _, v := range latestPerStage(versions, allStages) {
		v.Aliases = versionAliases(m, v.Version)
		rm.LatestVersions = append(rm.LatestVersions, *v)
	}
	return rm
}

// latestPerStage returns, for each stage in stages, the highest version in it.
func latestPerStage(versions []*registry.ModelVersion, stages []string) []*registry.ModelVersion {
	var out []*registry.ModelVersion
	for _, st := range stages {
		var best *registry.ModelVersion
		var bestN int64
		for _, v := range versions {
			if v.CurrentStage != st {
				continue
			}
			n, err := parseVersion(v.Version)
			if err != nil {
				continue
			}
			if best == nil || n > bestN {
				best, bestN = v, n
			}
		}
		if best != nil {
			out = append(out, best)
		}
	}
	return out
}

func collectVersions(tx Tx, name string) ([]*registry.ModelVersion, error) {
	var vs []*registry.ModelVersion
	err := tx.ScanVersions(name, func(v *registry.ModelVersion) error {
		vs = append(vs, v)
		return nil
	})
	return vs, err
}

func readModel(tx Tx, m *ModelRecord) (*registry.RegisteredModel, error) {
	vs, err := collectVersions(tx, m.Name)
	if err != nil {
		return nil, err
	}
	return modelView(m, vs), nil
}

// viewModel reads the model name in a View transaction and calls read on it.
func (s *Service) viewModel(ctx context.Context, name string, read func(tx Tx, m *ModelRecord) error) error {
	return s.store.View(ctx, func(tx Tx) error {
		m, err := lockModel(tx, name)
		if err != nil {
			return err
		}
		return read(tx, m)
	})
}

// changeModel is the read-modify-write of every change to a model, inside tx: it
// locks the model name, lets change modify its record (change may also write
// other records through tx) and stores the record.
func changeModel(tx Tx, name string, change func(tx Tx, m *ModelRecord) error) (*ModelRecord, error) {
	m, err := lockModel(tx, name)
	if err != nil {
		return nil, err
	}
	if err := change(tx, m); err != nil {
		return nil, err
	}
	return m, tx.PutModel(m)
}

// updateModel runs changeModel in an Update transaction and returns the
// transaction's error, for the caller to map with storeErr.
func (s *Service) updateModel(ctx context.Context, name string, change func(tx Tx, m *ModelRecord) error) error {
	return s.store.Update(ctx, func(tx Tx) error {
		_, err := changeModel(tx, name, change)
		return err
	})
}

// updateModelView is updateModel that also returns the changed model as the API
// shows it, read back in the same transaction.
func (s *Service) updateModelView(ctx context.Context, name string, change func(tx Tx, m *ModelRecord) error) (*registry.RegisteredModel, error) {
	var out *registry.RegisteredModel
	err := s.store.Update(ctx, func(tx Tx) error {
		m, err := changeModel(tx, name, change)
		if err != nil {
			return err
		}
		out, err = readModel(tx, m)
		return err
	})
	return out, err
}

// CreateModel registers a new model.
func (s *Service) CreateModel(ctx context.Context, req registry.CreateModelRequest) (*registry.RegisteredModel, error) {
	if err := registry.ValidateModelName("name", req.Name); err != nil {
		return nil, err
	}
	tags, err := normalizeTags(req.Tags)
	if err != nil {
		return nil, err
	}
	now := s.now()
	m := &ModelRecord{
		Name:                 req.Name,
		CreationTimestamp:    now,
		LastUpdatedTimestamp: now,
		Description:          req.Description,
		Tags:                 tags,
	}
	err = s.store.Update(ctx, func(tx Tx) error { return tx.InsertModel(m) })
	if errors.Is(err, ErrAlreadyExists) {
		return nil, registry.NewError(registry.CodeResourceAlreadyExists, "Registered Model (name=%s) already exists.", req.Name)
	}
	if err != nil {
		return nil, storeErr(err, nil)
	}
	return modelView(m, nil), nil
}

// GetModel returns a registered model with its latest version per stage.
func (s *Service) GetModel(ctx context.Context, name string) (*registry.RegisteredModel, error) {
	if name == "" {
		return nil, registry.MissingParameter("name")
	}
	var out *registry.RegisteredModel
	err := s.viewModel(ctx, name, func(tx Tx, m *ModelRecord) (err error) {
		out, err = readModel(tx, m)
		return err
	})
	return out, storeErr(err, nil)
}

// SearchModels returns one page of the models matching req and the token of the next
// page ("" on the last page).
func (s *Service) SearchModels(ctx context.Context, req registry.SearchRequest) ([]registry.RegisteredModel, string, error) {
	filter, err := parseFilter(req.Filter, searchModels)
	if err != nil {
		return nil, "", err
	}
	keys, err := parseOrderBy(req.OrderBy, searchModels)
	if err != nil {
		return nil, "", err
	}
	var out []registry.RegisteredModel
	var next string
	err = s.store.View(ctx, func(tx Tx) error {
		var page []*ModelRecord
		page, next, err = searchPage(modelLimits, req.MaxResults, req.PageToken,
			tx.ScanModels, filter.matchModel, compareBy(keys, compareModelField))
		if err != nil {
			return err
		}
		out = make([]registry.RegisteredModel, 0, len(page))
		for _, m := range page {
			rm, err := readModel(tx, m)
			if err != nil {
				return err
			}
			out = append(out, *rm)
		}
		return nil
	})
	if err != nil {
		return nil, "", storeErr(err, nil)
	}
	return out, next, nil
}

// RenameModel renames a registered model; its versions and aliases follow.
func (s *Service) RenameModel(ctx context.Context, name, newName string) (*registry.RegisteredModel, error) {
	if name == "" {
		return nil, registry.MissingParameter("name")
	}
	if err := registry.ValidateModelName("new_name", newName); err != nil {
		return nil, err
	}
	out, err := s.updateModelView(ctx, name, func(tx Tx, m *ModelRecord) error {
		if newName != name {
			err := tx.RenameModel(name, newName)
			if errors.Is(err, ErrAlreadyExists) {
				return registry.NewError(registry.CodeResourceAlreadyExists, "Registered Model (name=%s) already exists.", newName)
			}
			if err != nil {
				return err
			}
		}
		m.Name = newName
		m.LastUpdatedTimestamp = s.now()
		return nil
	})
	return out, storeErr(err, modelNotFound(name))
}

// UpdateModel sets a registered model's description.
func (s *Service) UpdateModel(ctx context.Context, name, description string) (*registry.RegisteredModel, error) {
	if name == "" {
		return nil, registry.MissingParameter("name")
	}
	out, err := s.updateModelView(ctx, name, func(_ Tx, m *ModelRecord) error {
		m.Description = description
		m.LastUpdatedTimestamp = s.now()
		return nil
	})
	return out, storeErr(err, modelNotFound(name))
}

// DeleteModel deletes a registered model and all its versions.
func (s *Service) DeleteModel(ctx context.Context, name string) error {
	if name == "" {
		return registry.MissingParameter("name")
	}
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := lockModel(tx, name); err != nil {
			return err
		}
		return tx.DeleteModel(name)
	})
	return storeErr(err, modelNotFound(name))
}

// LatestVersions returns the highest version in each of stages (all stages when empty).
func (s *Service) LatestVersions(ctx context.Context, name string, stages []string) ([]registry.ModelVersion, error) {
	if name == "" {
		return nil, registry.MissingParameter("name")
	}
	want := allStages
	if len(stages) > 0 {
		want = nil
		for _, st := range stages {
			c, ok := registry.CanonicalStage(st)
			if !ok {
				return nil, registry.InvalidParameter("Invalid Model Version stage: %s. Value must be one of None, Staging, Production, Archived.", st)
			}
			want = append(want, c)
		}
	}
	var out []registry.ModelVersion
	err := s.viewModel(ctx, name, func(tx Tx, m *ModelRecord) error {
		vs, err := collectVersions(tx, name)
		if err != nil {
			return err
		}
		out = nil
		for _, v := range latestPerStage(vs, want) {
			v.Aliases = versionAliases(m, v.Version)
			out = append(out, *v)
		}
		return nil
	})
	return out, storeErr(err, nil)
}

// SetModelTag sets a tag on a registered model.
func (s *Service) SetModelTag(ctx context.Context, name, key, value string) error {
	if name == "" {
		return registry.MissingParameter("name")
	}
	if err := validateTag(key, value); err != nil {
		return err
	}
	err := s.updateModel(ctx, name, func(_ Tx, m *ModelRecord) error {
		m.Tags = setTag(m.Tags, key, value)
		return nil
	})
	return storeErr(err, modelNotFound(name))
}

// DeleteModelTag removes a tag from a registered model; a missing tag is not an error.
func (s *Service) DeleteModelTag(ctx context.Context, name, key string) error {
	if name == "" {
		return registry.MissingParameter("name")
	}
	if key == "" {
		return registry.MissingParameter("key")
	}
	err := s.updateModel(ctx, name, func(_ Tx, m *ModelRecord) error {
		m.Tags = deleteTag(m.Tags, key)
		return nil
	})
	return storeErr(err, modelNotFound(name))
}

// CreateVersion registers a new version of a model, numbered one above the last
// version the model ever had.
func (s *Service) CreateVersion(ctx context.Context, req registry.CreateVersionRequest) (*registry.ModelVersion, error) {
	if req.Name == "" {
		return nil, registry.MissingParameter("name")
	}
	if req.Source == "" {
		return nil, registry.MissingParameter("source")
	}
	tags, err := normalizeTags(req.Tags)
	if err != nil {
		return nil, err
	}
	for _, fv := range req.FeatureViews {
		if fv == "" {
			return nil, registry.InvalidParameter("Invalid value for parameter 'feature_views': empty feature view name")
		}
	}
	var out *registry.ModelVersion
	err = s.updateModel(ctx, req.Name, func(tx Tx, m *ModelRecord) error {
		now := s.now()
		m.LastVersion++
		m.LastUpdatedTimestamp = now
		v := &registry.ModelVersion{
			Name:                 req.Name,
			Version:              formatVersion(m.LastVersion),
			CreationTimestamp:    now,
			LastUpdatedTimestamp: now,
			CurrentStage:         registry.StageNone,
			Description:          req.Description,
			Source:               req.Source,
			RunID:                req.RunID,
			Status:               registry.StatusReady,
			Tags:                 tags,
			RunLink:              req.RunLink,
			ServingEndpoint:      req.ServingEndpoint,
			TrainingJob:          req.TrainingJob,
			Params:               req.Params,
			Metrics:              req.Metrics,
			FeatureViews:         req.FeatureViews,
		}
		if err := tx.PutVersion(v); err != nil {
			return err
		}
		out = v
		return nil
	})
	if err != nil {
		return nil, storeErr(err, nil)
	}
	return out, nil
}

// withVersion checks name and version, then, in a transaction run by txn
// (s.store.View or s.store.Update), locks the model, reads the version, calls
// fn on both when fn is set, and returns the version with its aliases.
func (s *Service) withVersion(ctx context.Context, txn func(context.Context, func(Tx) error) error, name, version string,
	fn func(tx Tx, m *ModelRecord, v *registry.ModelVersion) error) (*registry.ModelVersion, error) {
	if name == "" {
		return nil, registry.MissingParameter("name")
	}
	n, err := parseVersion(version)
	if err != nil {
		return nil, err
	}
	var out *registry.ModelVersion
	err = txn(ctx, func(tx Tx) error {
		m, err := lockModel(tx, name)
		if err != nil {
			return err
		}
		v, err := getVersion(tx, name, n)
		if err != nil {
			return err
		}
		if fn != nil {
			if err := fn(tx, m, v); err != nil {
				return err
			}
		}
		v.Aliases = versionAliases(m, v.Version)
		out = v
		return nil
	})
	return out, storeErr(err, nil)
}

// GetVersion returns a model version.
func (s *Service) GetVersion(ctx context.Context, name, version string) (*registry.ModelVersion, error) {
	return s.withVersion(ctx, s.store.View, name, version, nil)
}

// updateVersion runs change on a locked model version and stores the result.
func (s *Service) updateVersion(ctx context.Context, name, version string, change func(m *ModelRecord, v *registry.ModelVersion) error) (*registry.ModelVersion, error) {
	return s.withVersion(ctx, s.store.Update, name, version, func(tx Tx, m *ModelRecord, v *registry.ModelVersion) error {
		if err := change(m, v); err != nil {
			return err
		}
		return tx.PutVersion(v)
	})
}

// UpdateVersion changes a version's description and, as an extension, its serving endpoint.
func (s *Service) UpdateVersion(ctx context.Context, req registry.UpdateVersionRequest) (*registry.ModelVersion, error) {
	return s.updateVersion(ctx, req.Name, req.Version, func(_ *ModelRecord, v *registry.ModelVersion) error {
		if req.Description != nil {
			v.Description = *req.Description
		}
		if req.ServingEndpoint != nil {
			v.ServingEndpoint = *req.ServingEndpoint
		}
		v.LastUpdatedTimestamp = s.now()
		return nil
	})
}

// DeleteVersion deletes a model version and the aliases pointing at it.
func (s *Service) DeleteVersion(ctx context.Context, name, version string) error {
	if name == "" {
		return registry.MissingParameter("name")
	}
	n, err := parseVersion(version)
	if err != nil {
		return err
	}
	err = s.updateModel(ctx, name, func(tx Tx, m *ModelRecord) error {
		if _, err := getVersion(tx, name, n); err != nil {
			return err
		}
		if err := tx.DeleteVersion(name, n); err != nil {
			return err
		}
		m.Aliases = slices.DeleteFunc(m.Aliases, func(a registry.Alias) bool { return a.Version == version })
		m.LastUpdatedTimestamp = s.now()
		return nil
	})
	return storeErr(err, nil)
}

// SearchVersions returns one page of the versions matching req and the next page token.
func (s *Service) SearchVersions(ctx context.Context, req registry.SearchRequest) ([]registry.ModelVersion, string, error) {
	filter, err := parseFilter(req.Filter, searchVersions)
	if err != nil {
		return nil, "", err
	}
	keys, err := parseOrderBy(req.OrderBy, searchVersions)
	if err != nil {
		return nil, "", err
	}
	name, _ := filter.nameEquals()
	var out []registry.ModelVersion
	var next string
	err = s.store.View(ctx, func(tx Tx) error {
		scan := func(yield func(*registry.ModelVersion) error) error { return tx.ScanVersions(name, yield) }
		var page []*registry.ModelVersion
		page, next, err = searchPage(versionLimits, req.MaxResults, req.PageToken,
			scan, filter.matchVersion, compareBy(keys, compareVersionField))
		if err != nil {
			return err
		}
		models := map[string]*ModelRecord{}
		out = make([]registry.ModelVersion, 0, len(page))
		for _, v := range page {
			m, ok := models[v.Name]
			if !ok {
				if m, err = tx.Model(v.Name); err != nil {
					return err
				}
				models[v.Name] = m
			}
			v.Aliases = versionAliases(m, v.Version)
			out = append(out, *v)
		}
		return nil
	})
	if err != nil {
		return nil, "", storeErr(err, nil)
	}
	return out, next, nil
}

// TransitionStage moves a version to stage. With archiveExisting, the other versions
// in that stage (Staging or Production only) move to Archived.
func (s *Service) TransitionStage(ctx context.Context, name, version, stage string, archiveExisting bool) (*registry.ModelVersion, error) {
	if stage == "" {
		return nil, registry.MissingParameter("stage")
	}
	st, ok := registry.CanonicalStage(stage)
	if !ok {
		return nil, registry.InvalidParameter("Invalid Model Version stage: %s. Value must be one of None, Staging, Production, Archived.", stage)
	}
	if archiveExisting && st != registry.StageStaging && st != registry.StageProduction {
		return nil, registry.InvalidParameter("Model version transition cannot archive existing model versions because '%s' is not an Active stage. Valid stages are Staging and Production.", st)
	}
	return s.withVersion(ctx, s.store.Update, name, version, func(tx Tx, _ *ModelRecord, v *registry.ModelVersion) error {
		now := s.now()
		if archiveExisting {
			var others []*registry.ModelVersion
			err := tx.ScanVersions(name, func(o *registry.ModelVersion) error {
				if o.Version != v.Version && o.CurrentStage == st {
					others = append(others, o)
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, o := range others {
				o.CurrentStage = registry.StageArchived
				o.LastUpdatedTimestamp = now
				if err := tx.PutVersion(o); err != nil {
					return err
				}
			}
		}
		v.CurrentStage = st
		v.LastUpdatedTimestamp = now
		return tx.PutVersion(v)
	})
}

// DownloadURI returns where a version's artifacts live: its source.
func (s *Service) DownloadURI(ctx context.Context, name, version string) (string, error) {
	v, err := s.GetVersion(ctx, name, version)
	if err != nil {
		return "", err
	}
	return v.Source, nil
}

// SetVersionTag sets a tag on a model version.
func (s *Service) SetVersionTag(ctx context.Context, name, version, key, value string) error {
	if err := validateTag(key, value); err != nil {
		return err
	}
	_, err := s.updateVersion(ctx, name, version, func(_ *ModelRecord, v *registry.ModelVersion) error {
		v.Tags = setTag(v.Tags, key, value)
		return nil
	})
	return err
}

// DeleteVersionTag removes a tag from a model version; a missing tag is not an error.
func (s *Service) DeleteVersionTag(ctx context.Context, name, version, key string) error {
	if key == "" {
		return registry.MissingParameter("key")
	}
	_, err := s.updateVersion(ctx, name, version, func(_ *ModelRecord, v *registry.ModelVersion) error {
		v.Tags = deleteTag(v.Tags, key)
		return nil
	})
	return err
}

// SetAlias points alias at a version of a model, moving it if it exists.
func (s *Service) SetAlias(ctx context.Context, name, alias, version string) error {
	if name == "" {
		return registry.MissingParameter("name")
	}
	if err := registry.ValidateAlias(alias); err != nil {
		return err
	}
	n, err := parseVersion(version)
	if err != nil {
		return err
	}
	err = s.updateModel(ctx, name, func(tx Tx, m *ModelRecord) error {
		if _, err := getVersion(tx, name, n); err != nil {
			return err
		}
		version := formatVersion(n)
		found := false
		for i := range m.Aliases {
			if m.Aliases[i].Alias == alias {
				m.Aliases[i].Version = version
				found = true
			}
		}
		if !found {
			m.Aliases = append(m.Aliases, registry.Alias{Alias: alias, Version: version})
			sort.Slice(m.Aliases, func(i, j int) bool { return m.Aliases[i].Alias < m.Aliases[j].Alias })
		}
		return nil
	})
	return storeErr(err, nil)
}

// DeleteAlias removes an alias; a missing alias is not an error.
func (s *Service) DeleteAlias(ctx context.Context, name, alias string) error {
	if name == "" {
		return registry.MissingParameter("name")
	}
	if alias == "" {
		return registry.MissingParameter("alias")
	}
	err := s.updateModel(ctx, name, func(_ Tx, m *ModelRecord) error {
		m.Aliases = slices.DeleteFunc(m.Aliases, func(a registry.Alias) bool { return a.Alias == alias })
		return nil
	})
	return storeErr(err, nil)
}

// VersionByAlias returns the version an alias points at. As in MLflow, an unknown
// alias of an existing model is INVALID_PARAMETER_VALUE, an unknown model
// RESOURCE_DOES_NOT_EXIST.
func (s *Service) VersionByAlias(ctx context.Context, name, alias string) (*registry.ModelVersion, error) {
	if name == "" {
		return nil, registry.MissingParameter("name")
	}
	if alias == "" {
		return nil, registry.MissingParameter("alias")
	}
	var out *registry.ModelVersion
	err := s.viewModel(ctx, name, func(tx Tx, m *ModelRecord) error {
		for _, a := range m.Aliases {
			if a.Alias != alias {
				continue
			}
			n, err := parseVersion(a.Version)
			if err != nil {
				return fmt.Errorf("stored alias %q of %q: %w", alias, name, err)
			}
			v, err := getVersion(tx, name, n)
			if err != nil {
				return err
			}
			v.Aliases = versionAliases(m, v.Version)
			out = v
			return nil
		}
		return registry.InvalidParameter("Registered model alias %s not found.", alias)
	})
	return out, storeErr(err, nil)
}
