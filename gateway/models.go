package gateway

import (
	"context"

	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/tasks"
)

// RegistryModels lets http tasks name registry models: it adapts a
// registry.Resolver, which keeps every reference fresh in the background
// and keeps the last known good mapping while the registry is down.
type RegistryModels struct {
	R *registry.Resolver
}

var _ tasks.ModelResolver = RegistryModels{}

// Register implements tasks.ModelResolver.
func (m RegistryModels) Register(ctx context.Context, ref string) (tasks.ResolvedModel, error) {
	r, err := m.R.Register(ctx, ref)
	return tasks.ResolvedModel{Name: r.Name, Version: r.Version, Endpoint: r.ServingEndpoint}, err
}

// Lookup implements tasks.ModelResolver.
func (m RegistryModels) Lookup(ref string) (tasks.ResolvedModel, bool) {
	r, ok := m.R.Lookup(ref)
	return tasks.ResolvedModel{Name: r.Name, Version: r.Version, Endpoint: r.ServingEndpoint}, ok
}

// Status reports the resolver's freshness for /readyz.
func (m RegistryModels) Status() any { return m.R.Status() }
