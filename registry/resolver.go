package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Resolved is what a model reference resolves to.
type Resolved struct {
	Name            string
	Version         string
	ServingEndpoint string
}

// resolverMetrics are process-wide: a process is expected to run one Resolver. They
// are registered when the first Resolver is made, so processes without one (the
// registry server) do not export them.
type resolverMetrics struct {
	refreshes        *metrics.Counter
	refreshErrors    *metrics.Counter
	changes          *metrics.Counter
	registerFailures *metrics.Counter
	lastSuccess      *metrics.Gauge
	stale            *metrics.Gauge
	refs             *metrics.Gauge
}

var (
	resolverMetricsOnce sync.Once
	resolverMetricsSet  *resolverMetrics
)

func getResolverMetrics() *resolverMetrics {
	resolverMetricsOnce.Do(func() {
		s := metrics.NewSet()
		resolverMetricsSet = &resolverMetrics{
			refreshes:        s.NewCounter(`lariat_registry_refreshes_total`),
			refreshErrors:    s.NewCounter(`lariat_registry_refresh_errors_total`),
			changes:          s.NewCounter(`lariat_registry_resolution_changes_total`),
			registerFailures: s.NewCounter(`lariat_registry_register_errors_total`),
			lastSuccess:      s.NewGauge(`lariat_registry_last_refresh_success_timestamp_seconds`, nil),
			stale:            s.NewGauge(`lariat_registry_stale`, nil),
			refs:             s.NewGauge(`lariat_registry_refs`, nil),
		}
		metrics.RegisterSet(s)
	})
	return resolverMetricsSet
}

// refKind says how a reference selects a version.
type refKind uint8

const (
	refVersion refKind = iota // name/3
	refAlias                  // name@champion
	refLatest                 // name/latest
	refStage                  // name/Production
)

type modelRef struct {
	name     string
	selector string
	kind     refKind
}

// parseRef parses "name@alias", "name/<version>", "name/latest" or "name/<stage>",
// optionally prefixed with "models:/" as in MLflow model URIs.
func parseRef(ref string) (modelRef, error) {
	s := strings.TrimPrefix(ref, "models:/")
	if i := strings.IndexByte(s, '@'); i >= 0 {
		r := modelRef{name: s[:i], selector: s[i+1:], kind: refAlias}
		if r.name == "" || ValidateModelName("name", r.name) != nil {
			return modelRef{}, fmt.Errorf("invalid model reference %q: bad model name", ref)
		}
		if ValidateAlias(r.selector) != nil {
			return modelRef{}, fmt.Errorf("invalid model reference %q: bad alias %q", ref, r.selector)
		}
		return r, nil
	}
	name, sel, ok := strings.Cut(s, "/")
	if !ok || name == "" || sel == "" || ValidateModelName("name", name) != nil {
		return modelRef{}, fmt.Errorf("invalid model reference %q: want name@alias, name/<version>, name/latest or name/<stage>", ref)
	}
	if n, err := strconv.ParseInt(sel, 10, 64); err == nil {
		if n <= 0 {
			return modelRef{}, fmt.Errorf("invalid model reference %q: version must be positive", ref)
		}
		return modelRef{name: name, selector: strconv.FormatInt(n, 10), kind: refVersion}, nil
	}
	if strings.EqualFold(sel, "latest") {
		return modelRef{name: name, kind: refLatest}, nil
	}
	if st, ok := CanonicalStage(sel); ok {
		return modelRef{name: name, selector: st, kind: refStage}, nil
	}
	return modelRef{}, fmt.Errorf("invalid model reference %q: %q is neither a version, latest nor a stage", ref, sel)
}

// ValidateRef checks the syntax of a model reference without contacting the registry.
func ValidateRef(ref string) error {
	_, err := parseRef(ref)
	return err
}

// ResolverOptions configure a Resolver. Zero values take the defaults.
type ResolverOptions struct {
	// Interval between background refreshes of all registered references. Default 2s.
	Interval time.Duration
	// Timeout bounds one Register call and one whole refresh. Default 2s.
	Timeout time.Duration
	// StaleAfter marks the mapping stale when no refresh has succeeded for this long.
	// Default 5 * Interval.
	StaleAfter time.Duration
	// OnChange, if set, is called when a refresh changed what ref resolves to. It runs
	// under the Resolver's lock: it must be quick and must not call the Resolver.
	OnChange func(ref string, from, to Resolved)
}

// ResolverStatus reports the health of a Resolver's mapping.
type ResolverStatus struct {
	// Refs is the number of registered references.
	Refs int
	// LastRefresh is when the last refresh finished.
	LastRefresh time.Time
	// LastSuccess is when a refresh last resolved every reference.
	LastSuccess time.Time
	// LastError is the error of the last refresh, "" when it succeeded.
	LastError string
	// Stale is set when the last refresh failed or none succeeded for StaleAfter:
	// lookups then serve the last known good mapping.
	Stale bool
}

// Resolver maps model references ("eta@champion", "eta/3") to the version and serving
// endpoint they stand for. References are added with Register (at route-load time);
// a background goroutine re-resolves all of them every Interval, so an alias move
// shows up within a few seconds. Lookup reads an immutable snapshot through an atomic
// pointer: no locks, no allocations. When the registry cannot be reached, the last
// known good mapping stays in place and Status reports it stale.
type Resolver struct {
	client  *Client
	opts    ResolverOptions
	metrics *resolverMetrics

	snap atomic.Pointer[map[string]Resolved]

	// mu guards refs, status and writes of snap.
	mu     sync.Mutex
	refs   map[string]modelRef
	status ResolverStatus
	failed bool
	// unreachableUntil is when Register asks the registry again after it
	// did not answer: the routes loading meanwhile do not each wait out
	// Timeout.
	unreachableUntil time.Time

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// NewResolver returns a Resolver using client and starts its refresh goroutine; call
// Stop to end it.
func NewResolver(client *Client, opts ResolverOptions) *Resolver {
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = 5 * opts.Interval
	}
	r := &Resolver{
		client:  client,
		opts:    opts,
		metrics: getResolverMetrics(),
		refs:    map[string]modelRef{},
		stop:    make(chan struct{}),
	}
	empty := map[string]Resolved{}
	r.snap.Store(&empty)
	r.wg.Add(1)
	go r.run()
	return r
}

func (r *Resolver) run() {
	defer r.wg.Done()
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
			_ = r.Refresh(ctx) // the outcome is in Status and the metrics
			cancel()
		}
	}
}

// Stop ends the refresh goroutine and waits for it. Lookups keep working.
func (r *Resolver) Stop() {
	r.stopOnce.Do(func() { close(r.stop) })
	r.wg.Wait()
}

// Lookup returns what ref resolved to at the last successful resolution. ref must be
// spelled exactly as it was registered.
func (r *Resolver) Lookup(ref string) (Resolved, bool) {
	v, ok := (*r.snap.Load())[ref]
	return v, ok
}

// LookupBytes is Lookup for a reference held in a byte slice; it does not allocate.
func (r *Resolver) LookupBytes(ref []byte) (Resolved, bool) {
	v, ok := (*r.snap.Load())[string(ref)]
	return v, ok
}

// Register adds ref to the references kept up to date and returns its resolution.
// The first resolution is synchronous, bounded by ctx and Timeout. It fails when ref
// is malformed, or cannot be resolved and nothing is known about it yet; when
// resolution fails but a mapping is cached, the cached mapping is returned.
func (r *Resolver) Register(ctx context.Context, ref string) (Resolved, error) {
	mr, err := parseRef(ref)
	if err != nil {
		r.metrics.registerFailures.Inc()
		return Resolved{}, err
	}
	r.mu.Lock()
	skip := time.Now().Before(r.unreachableUntil)
	r.mu.Unlock()
	var res Resolved
	if skip {
		err = errSkipped
	} else {
		ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		defer cancel()
		res, err = r.resolve(ctx, mr)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if Unreachable(err) && !skip {
		r.unreachableUntil = time.Now().Add(r.opts.Interval)
	}
	if err != nil {
		if cached, ok := (*r.snap.Load())[ref]; ok {
			r.refs[ref] = mr
			return cached, nil
		}
		r.metrics.registerFailures.Inc()
		if Unreachable(err) {
			// Kept: the refreshes resolve it once the registry answers.
			r.refs[ref] = mr
			return Resolved{}, fmt.Errorf("cannot resolve model reference %q: %w: %w", ref, ErrUnreachable, err)
		}
		return Resolved{}, fmt.Errorf("cannot resolve model reference %q: %w", ref, err)
	}
	r.refs[ref] = mr
	r.storeLocked(map[string]Resolved{ref: res})
	return res, nil
}

// ErrUnreachable marks a reference Register could not resolve because
// the registry did not answer; the reference is kept, and resolved by the
// refreshes once the registry answers.
var ErrUnreachable = errors.New("the registry is not answering")

// errSkipped fails a Register made while the registry was found not
// answering moments ago.
var errSkipped = errors.New("it did not answer moments ago")

// Unreachable reports whether err means the registry did not answer (no
// connection, a timeout, or a server error), rather than answering that
// the reference resolves to nothing.
func Unreachable(err error) bool {
	var ue *url.Error
	var ae *Error
	return errors.Is(err, errSkipped) || errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ae) && ae.Status >= 500
}

// Forget removes ref from the references kept up to date.
func (r *Resolver) Forget(ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.refs, ref)
	r.storeLocked(nil)
}

// storeLocked publishes a new snapshot: the current one restricted to registered refs,
// with updates applied. r.mu must be held.
func (r *Resolver) storeLocked(updates map[string]Resolved) {
	cur := *r.snap.Load()
	next := make(map[string]Resolved, len(r.refs))
	for ref := range r.refs {
		if v, ok := updates[ref]; ok {
			next[ref] = v
		} else if v, ok := cur[ref]; ok {
			next[ref] = v
		}
	}
	r.metrics.refs.Set(float64(len(r.refs)))
	if maps.Equal(cur, next) {
		return
	}
	if r.opts.OnChange != nil {
		for ref, v := range next {
			if old, ok := cur[ref]; ok && old != v {
				r.opts.OnChange(ref, old, v)
			}
		}
	}
	for ref, v := range next {
		if old, ok := cur[ref]; ok && old != v {
			r.metrics.changes.Inc()
		}
	}
	r.snap.Store(&next)
}

// Refresh re-resolves every registered reference now. References that fail keep their
// last known good mapping; the returned error joins the failures.
func (r *Resolver) Refresh(ctx context.Context) error {
	r.mu.Lock()
	refs := maps.Clone(r.refs)
	r.mu.Unlock()

	r.metrics.refreshes.Inc()
	updates := make(map[string]Resolved, len(refs))
	var errs []error
	for ref, mr := range refs {
		res, err := r.resolve(ctx, mr)
		if err != nil {
			r.metrics.refreshErrors.Inc()
			errs = append(errs, fmt.Errorf("%s: %w", ref, err))
			continue
		}
		updates[ref] = res
	}
	err := errors.Join(errs...)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.storeLocked(updates)
	now := time.Now()
	r.status.LastRefresh = now
	if err != nil {
		r.failed = true
		r.status.LastError = err.Error()
	} else {
		r.failed = false
		r.unreachableUntil = time.Time{}
		r.status.LastError = ""
		r.status.LastSuccess = now
		r.metrics.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	}
	if r.staleLocked(now) {
		r.metrics.stale.Set(1)
	} else {
		r.metrics.stale.Set(0)
	}
	if err != nil {
		return fmt.Errorf("registry refresh: %w", err)
	}
	return nil
}

func (r *Resolver) staleLocked(now time.Time) bool {
	if r.failed {
		return true
	}
	return !r.status.LastSuccess.IsZero() && now.Sub(r.status.LastSuccess) > r.opts.StaleAfter
}

// Status reports the state of the mapping, for /readyz and logs.
func (r *Resolver) Status() ResolverStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	st.Refs = len(r.refs)
	st.Stale = r.staleLocked(time.Now())
	return st
}

func (r *Resolver) resolve(ctx context.Context, mr modelRef) (Resolved, error) {
	var v *ModelVersion
	var err error
	switch mr.kind {
	case refAlias:
		v, err = r.client.VersionByAlias(ctx, mr.name, mr.selector)
	case refVersion:
		v, err = r.client.GetVersion(ctx, mr.name, mr.selector)
	case refLatest, refStage:
		var stages []string
		if mr.kind == refStage {
			stages = []string{mr.selector}
		}
		var vs []ModelVersion
		vs, err = r.client.LatestVersions(ctx, mr.name, stages...)
		var best int64
		for i := range vs {
			if n, perr := strconv.ParseInt(vs[i].Version, 10, 64); perr == nil && n > best {
				best, v = n, &vs[i]
			}
		}
		if err == nil && v == nil {
			err = fmt.Errorf("model %q has no version in %s", mr.name, stageOrAll(mr))
		}
	}
	if err != nil {
		return Resolved{}, err
	}
	return Resolved{Name: v.Name, Version: v.Version, ServingEndpoint: v.ServingEndpoint}, nil
}

func stageOrAll(mr modelRef) string {
	if mr.kind == refStage {
		return "stage " + mr.selector
	}
	return "any stage"
}
