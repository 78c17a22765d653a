package main

import (
	"context"
	"fmt"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/tasks"
)

// offlineEnv is the environment routes compile in when they are checked or
// drawn rather than served: feature tasks compile against the views file
// (nothing is read), and model references are checked for syntax only.
func offlineEnv(viewsFile string) (*tasks.Env, error) {
	env := tasks.NewEnv(nil)
	tasks.ModelRegistry.Provide(env, offlineModels{})
	if viewsFile != "" {
		views, err := featurefetch.LoadViews(viewsFile)
		if err != nil {
			return nil, fmt.Errorf("cannot load --feature-views=%q: %w", viewsFile, err)
		}
		tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: featurefetch.NewMemoryStore()})
	}
	return env, nil
}

// offlineModels accepts every well-formed model reference without asking a
// registry.
type offlineModels struct{}

func (offlineModels) Register(_ context.Context, ref string) (tasks.ResolvedModel, error) {
	if err := registry.ValidateRef(ref); err != nil {
		return tasks.ResolvedModel{}, err
	}
	return tasks.ResolvedModel{Name: ref, Version: "offline", Endpoint: "http://registry.invalid/"}, nil
}

func (offlineModels) Lookup(string) (tasks.ResolvedModel, bool) { return tasks.ResolvedModel{}, false }
