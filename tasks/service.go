package tasks

import "github.com/lariat-gw/lariat/config"

// Service names a runtime service of type T that tasks share across
// routes and reloads (a feature store, a model registry). The Env holds
// services by name: the program that runs the gateway provides them
// (Provide), and a kind that needs one asks for it (Need), getting an
// error that says how to provide it when it is missing. A kind with a
// service of its own declares its Service next to it; nothing else
// changes.
type Service[T any] struct {
	// Name names the service in the Env and in messages, e.g. "a model
	// registry".
	Name string
	// Provider says how an operator provides the service, e.g. "start
	// lariat with --registry URL".
	Provider string
}

// The services of the built-in kinds.
var (
	// FeatureStore is the online feature store of feature tasks.
	FeatureStore = Service[*FeatureEnv]{
		Name:     "a feature store",
		Provider: "start lariat with --feature-views FILE and --redis ADDR",
	}
	// ModelRegistry resolves the registry model references of http and
	// infer tasks that name a model instead of an address.
	ModelRegistry = Service[ModelResolver]{
		Name:     "a model registry",
		Provider: "start lariat with --registry URL",
	}
)

// Provide makes v the service of env. It is meant for startup, before env
// compiles routes: Env is not safe for concurrent Provide calls.
func (s Service[T]) Provide(env *Env, v T) {
	if env.services == nil {
		env.services = map[string]any{}
	}
	env.services[s.Name] = v
}

// Lookup returns the service of env, if provided.
func (s Service[T]) Lookup(env *Env) (T, bool) {
	v, ok := env.services[s.Name].(T)
	return v, ok
}

// Need returns the service for the task spec compiles, or an error at pos
// saying who needs it (e.g. "feature tasks need") and how to provide it:
// `task "f": feature tasks need a feature store: start lariat with ...`.
func (s Service[T]) Need(spec *Spec, pos config.Pos, who string) (T, error) {
	v, ok := s.Lookup(spec.Env)
	if !ok {
		return v, spec.Errorf(pos, "%s %s: %s", who, s.Name, s.Provider)
	}
	return v, nil
}
