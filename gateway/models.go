package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	if errors.Is(err, registry.ErrUnreachable) {
		err = fmt.Errorf("%w: %w", tasks.ErrRegistryUnreachable, err)
	}
	return tasks.ResolvedModel{Name: r.Name, Version: r.Version, Endpoint: r.ServingEndpoint}, err
}

// Lookup implements tasks.ModelResolver.
func (m RegistryModels) Lookup(ref string) (tasks.ResolvedModel, bool) {
	r, ok := m.R.Lookup(ref)
	return tasks.ResolvedModel{Name: r.Name, Version: r.Version, Endpoint: r.ServingEndpoint}, ok
}

// Status reports the resolver's freshness for /readyz.
func (m RegistryModels) Status() any { return newRegistryStatus(m.R.Status()) }

// registryStatus is the registry detail of GET /readyz. Times are null
// until the first refresh (or success).
type registryStatus struct {
	Refs        int        `json:"refs"`
	LastRefresh *time.Time `json:"last_refresh"`
	LastSuccess *time.Time `json:"last_success"`
	LastError   string     `json:"last_error,omitempty"`
	Stale       bool       `json:"stale"`
}

func newRegistryStatus(s registry.ResolverStatus) registryStatus {
	orNull := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return registryStatus{
		Refs:        s.Refs,
		LastRefresh: orNull(s.LastRefresh),
		LastSuccess: orNull(s.LastSuccess),
		LastError:   s.LastError,
		Stale:       s.Stale,
	}
}
