package tasks

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/lariat-gw/lariat/upstream"
)

// Env holds the runtime services tasks share across routes and reloads:
// the upstream pool (connections, limits and breakers), the tracer, and
// named services that kinds look up (FeatureStore, ModelRegistry; see
// Service).
type Env struct {
	Upstreams *upstream.Pool
	// Tracer, when set, traces every request and task.
	Tracer trace.Tracer
	// NoTaskHistograms turns the per-task latency histograms off for
	// routes that do not say otherwise (route key metrics.task_histograms).
	NoTaskHistograms bool
	// RouteLimit is the adaptive concurrency limit of each route that
	// sets no limits of its own; the zero value means the router's
	// default, Disabled turns it off.
	RouteLimit upstream.LimitSettings

	// batchers are the micro-batchers of infer tasks, shared by routes.
	batchers batchers

	// services holds the named services, by name.
	services map[string]any
}

// NewEnv returns an Env with an upstream pool using the given host
// overrides (see ParseResolve) and default settings.
func NewEnv(resolve map[string]string) *Env {
	return &Env{Upstreams: upstream.NewPool(resolve, upstream.Options{})}
}

// ParseResolve parses a --resolve value, HOST[:PORT]=ADDR, where ADDR is
// host:port or a bare host (the request's port is kept).
func ParseResolve(s string) (key, addr string, err error) {
	key, addr, ok := strings.Cut(s, "=")
	if !ok || key == "" || addr == "" {
		return "", "", fmt.Errorf("invalid --resolve %q: want HOST[:PORT]=ADDR", s)
	}
	return strings.ToLower(key), addr, nil
}

// ModelResolver resolves model-registry references ("fraud@production",
// "fraud/7") to the version and serving endpoint to call.
type ModelResolver interface {
	// Register adds ref to the references kept fresh and resolves it once;
	// it fails when ref cannot be resolved and nothing is known of it.
	// When that is because the registry does not answer, the error wraps
	// ErrRegistryUnreachable and ref is kept: Lookup finds it once the
	// registry answers.
	Register(ctx context.Context, ref string) (ResolvedModel, error)
	// Lookup returns the current resolution of a registered ref. It is
	// called on the request path and must not block.
	Lookup(ref string) (ResolvedModel, bool)
}

// ErrRegistryUnreachable marks a model reference that could not be
// resolved because the model registry does not answer (see
// ModelResolver.Register).
var ErrRegistryUnreachable = errors.New("the model registry is not answering")

// ResolvedModel is a model version and where it is served.
type ResolvedModel struct {
	Name, Version, Endpoint string
}
