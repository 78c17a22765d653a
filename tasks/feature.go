package tasks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/lazymetric"
	"github.com/lariat-gw/lariat/upstream"
)

func init() {
	Register(Kind{Name: "feature", Inputs: reflect.TypeFor[FeatureInputs](), New: newFeatureTask, UsesContext: true})
}

// FeatureEnv gives feature tasks their store and feature-view definitions.
type FeatureEnv struct {
	Views *featurefetch.Views
	Store featurefetch.Store
	// Name names the store's endpoint in metrics (its address).
	Name string
	// Breaker guards the store: consecutive store faults (connection
	// errors, timeouts) open it and feature tasks then fail at once, or
	// take their defaults. Fields left zero keep DefaultStoreBreaker.
	Breaker upstream.BreakerSettings

	breakerOnce sync.Once
	breaker     *upstream.Breaker
	// answers follows the answers of the store's readers (see
	// JoinAnswers).
	answers upstream.Answers
}

// JoinAnswers adds a reader of the store (a feature task, the Feast
// serving API) to those whose answers tell a reader's own timeouts from
// the store's (see upstream.Answered.Reason); Leave takes it out.
func (fe *FeatureEnv) JoinAnswers() *upstream.Answered {
	return fe.answers.Join()
}

// DefaultStoreBreaker is the feature store's breaker: it opens after 5
// store faults in a row and lets a trial read through every 250ms, so
// reads recover within a fraction of a second of the store answering
// again.
var DefaultStoreBreaker = upstream.BreakerSettings{Failures: 5, OpenFor: 250 * time.Millisecond, HalfOpenRequests: 1}

// StoreBreaker returns the store's breaker, made once: one per store
// endpoint, shared by the feature tasks of every route and the Feast
// serving API. It logs its outages to log (the first caller's).
func (fe *FeatureEnv) StoreBreaker(log *slog.Logger) *upstream.Breaker {
	fe.breakerOnce.Do(func() {
		name := fe.Name
		if name == "" {
			name = "featurestore"
		}
		fe.breaker = upstream.NewBreaker(name, DefaultStoreBreaker.Merge(fe.Breaker))
		fe.breaker.SetLogger(log)
	})
	return fe.breaker
}

// FeatureInputs are the settings of a feature task: one read of online
// features for the entities a request names, in one round trip to the
// feature store. The gateway needs feature-view definitions and a store to
// load such a route.
type FeatureInputs struct {
	// Project is the feature-store project; the project of the
	// feature-view definitions when left out.
	Project config.String `yaml:"project"`
	// Entities maps each join key to a template giving one value or a list
	// of values (one per entity), e.g. driver_id: '{{ .request.drivers.#.id }}'.
	// Every join key of the requested features needs one. Rows and columns
	// name the join keys in the order they are written here.
	Entities map[string]config.String `yaml:"entities"`
	// Features are the features to read, as "view:feature" references; at
	// least one, each once.
	Features []config.String `yaml:"features" jsonschema:"required,minItems=1,uniqueItems,items.pattern=^[^:]+:.+$"`
	// Defaults maps "view:feature" to the JSON value used when that
	// feature is missing.
	Defaults map[string]json.RawMessage `yaml:"defaults" jsonschema:"keys.pattern=^[^:]+:.+$"`
	// MaxAge maps a feature-view name to the maximum age of its values,
	// overriding the view's TTL; older values are reported
	// OUTSIDE_MAX_AGE.
	MaxAge map[string]config.Duration `yaml:"max_age"`
	// DropStale treats values older than their maximum age as missing.
	DropStale bool `yaml:"drop_stale"`
	// CacheTTL, when positive, serves reads from the client-side cache
	// (kept coherent by the server, RESP3 tracking) for at most this long.
	CacheTTL config.Duration `yaml:"cache_ttl"`
	// Shape is the result shape: rows (one object per entity, the
	// default) or columns (Feast's /get-online-features response).
	Shape config.String `yaml:"shape" jsonschema:"enum=rows,enum=columns,default=rows"`
	// FullNames names features view__feature in the result.
	FullNames bool `yaml:"full_names"`
	// Timeout bounds the read; the route timeout when left out, never
	// longer than it.
	Timeout config.Duration `yaml:"timeout"`
	// OnMissing says what an entity the store has no row for does:
	// default gives its features their defaults (null where none is set),
	// pass gives them null even where a default is set, fail fails the
	// task (400). Either way .tasks.<task>.missing lists the missing
	// entities.
	OnMissing config.String `yaml:"on_missing" jsonschema:"enum=fail,enum=default,enum=pass,default=default"`
}

type featureTask struct {
	plan    *featurefetch.Plan
	store   featurefetch.Store
	keys    []*Template
	timeout time.Duration
	breaker *upstream.Breaker
	// usual is the usual latency of the task's reads.
	usual    upstream.UsualLatency
	errStore *lazymetric.Counter
	errReq   *lazymetric.Counter
	// failMissing fails the task when an entity has no row.
	failMissing bool
	// views names the feature views read, in order.
	views string
	// answered is the task's part of the store's answers.
	answered *upstream.Answered
}

var (
	_ Describer = (*featureTask)(nil)
	_ Cleaner   = (*featureTask)(nil)
)

// Cleanup takes the task out of the store's answers.
func (t *featureTask) Cleanup() { t.answered.Leave() }

// Describe implements Describer: the feature views the task reads.
func (t *featureTask) Describe() Detail { return Detail{Target: t.views} }

func newFeatureTask(s *Spec) (Task, error) {
	var in FeatureInputs
	if err := s.Decode(&in); err != nil {
		return nil, err
	}
	fe, err := FeatureStore.Need(s, s.Task.Type.Pos, "feature tasks need")
	if err != nil {
		return nil, err
	}
	if fe == nil || fe.Views == nil || fe.Store == nil {
		return nil, s.Errorf(s.Task.Type.Pos, "feature tasks need %s: %s", FeatureStore.Name, FeatureStore.Provider)
	}
	if len(in.Features) == 0 {
		return nil, s.Errorf(s.Task.NamePos, "inputs.features: list at least one \"view:feature\"")
	}
	feats := make([]string, len(in.Features))
	for i, f := range in.Features {
		feats[i] = f.Value
	}
	opt := featurefetch.PlanOptions{
		Defaults:  in.Defaults,
		DropStale: in.DropStale,
		CacheTTL:  in.CacheTTL.D,
		FullNames: in.FullNames,
	}
	failMissing := false
	switch in.OnMissing.Value {
	case "", "default":
	case "pass":
		opt.NullMissingRows = true
	case "fail":
		failMissing = true
	default:
		return nil, s.Errorf(in.OnMissing.Pos, "inputs.on_missing must be fail, default or pass, got %q", in.OnMissing.Value)
	}
	for k := range in.Entities {
		opt.JoinKeyOrder = append(opt.JoinKeyOrder, k)
	}
	slices.SortFunc(opt.JoinKeyOrder, func(a, b string) int {
		pa, pb := in.Entities[a].Pos, in.Entities[b].Pos
		return cmp.Or(cmp.Compare(pa.Line, pb.Line), cmp.Compare(pa.Col, pb.Col), strings.Compare(a, b))
	})
	switch in.Shape.Value {
	case "", "rows":
		opt.Shape = featurefetch.ShapeRows
	case "columns":
		opt.Shape = featurefetch.ShapeColumns
	default:
		return nil, s.Errorf(in.Shape.Pos, "inputs.shape must be rows or columns, got %q", in.Shape.Value)
	}
	if len(in.MaxAge) > 0 {
		opt.MaxAge = map[string]time.Duration{}
		for view, d := range in.MaxAge {
			if _, ok := fe.Views.View(view); !ok {
				return nil, s.Errorf(d.Pos, "inputs.max_age: unknown feature view %q", view)
			}
			opt.MaxAge[view] = d.D
		}
	}
	if s.Tenant != nil {
		for _, f := range in.Features {
			if view, _, ok := strings.Cut(f.Value, ":"); ok {
				if err := s.CheckFeatureView(f.Pos, "inputs.features", view); err != nil {
					return nil, err
				}
			}
		}
	}
	plan, err := fe.Views.NewPlan(in.Project.Value, feats, opt)
	if err != nil {
		return nil, s.Errorf(in.Features[0].Pos, "inputs.features: %v", err)
	}
	var views []string
	for _, f := range feats {
		if view, _, ok := strings.Cut(f, ":"); ok && !slices.Contains(views, view) {
			views = append(views, view)
		}
	}
	t := &featureTask{plan: plan, store: fe.Store, timeout: s.Route.Timeout.D, failMissing: failMissing, views: strings.Join(views, ", ")}
	for _, k := range plan.JoinKeys() {
		src, ok := in.Entities[k]
		if !ok {
			return nil, s.Errorf(s.Task.NamePos, "inputs.entities: these features need join key %q; give it a value, e.g. %s: '{{ .request.%s }}'", k, k, k)
		}
		tmpl, err := s.Template("entities."+k, src, ModeJSON)
		if err != nil {
			return nil, err
		}
		t.keys = append(t.keys, tmpl)
	}
	for k, v := range in.Entities {
		if !contains(plan.JoinKeys(), k) {
			return nil, s.Errorf(v.Pos, "inputs.entities: %q is not a join key of the requested features (want %v)", k, plan.JoinKeys())
		}
	}
	if in.Timeout.Set {
		if err := s.CheckTimeout("inputs.timeout", in.Timeout); err != nil {
			return nil, err
		}
		t.timeout = in.Timeout.D
	}
	var log *slog.Logger
	if s.Env.Upstreams != nil {
		log = s.Env.Upstreams.Options().Logger
	}
	t.breaker = fe.StoreBreaker(log)
	t.errStore = lazymetric.NewCounter(s.Metrics, `lariat_upstream_errors_total{`+s.Labels+`,reason="feature_store"}`)
	t.errReq = lazymetric.NewCounter(s.Metrics, `lariat_upstream_errors_total{`+s.Labels+`,reason="bad_entities"}`)
	t.answered = fe.JoinAnswers()
	return t, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Run renders the entity values and reads every feature in one round trip.
func (t *featureTask) Run(x *Exchange, r *Result) error {
	r.Attempts = 1
	var offs [8]int
	ends := offs[:0]
	r.scratch = r.scratch[:0]
	for _, k := range t.keys {
		r.scratch = k.Append(r.scratch, x)
		ends = append(ends, len(r.scratch))
	}
	var arr [8][]byte
	keys := arr[:0]
	start := 0
	for _, end := range ends {
		keys = append(keys, r.scratch[start:end])
		start = end
	}
	ctx := x.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if t.timeout < x.Remaining() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.timeout)
		defer cancel()
	}
	var out, missing []byte
	var err error
	var reason upstream.Reason
	var took time.Duration
	began := time.Now()
	ran := t.breaker.Do(began, func() (upstream.Reason, int) {
		if x.LogFeatures {
			out, missing, r.FeatureLog, err = t.plan.FetchLogged(ctx, t.store, keys, r.Body[:0], r.Missing[:0], r.FeatureLog[:0])
		} else {
			out, missing, err = t.plan.FetchReport(ctx, t.store, keys, r.Body[:0], r.Missing[:0])
		}
		end := time.Now()
		took = end.Sub(began)
		if err != nil {
			reason = t.answered.Reason(t.reason(err, x, end, took), 0, end)
		} else {
			t.usual.Observe(took)
			t.answered.Mark(end, true)
		}
		return reason, 0
	})
	if !ran {
		t.errStore.Inc()
		return fmt.Errorf("feature store: %w", ErrBreakerOpen)
	}
	if err == nil {
		r.Body, r.Missing = out, missing
		r.Status = 200
		if t.failMissing && len(missing) > 0 {
			t.errReq.Inc()
			return &RequestError{Msg: "feature rows missing for entities " + string(missing)}
		}
		return nil
	}
	var bre *featurefetch.BadRequestError
	switch {
	case errors.As(err, &bre):
		t.errReq.Inc()
		return &RequestError{Msg: "feature entities: " + bre.Message}
	case reason == upstream.ReasonDeadline:
		t.errStore.Inc()
		return fmt.Errorf("feature store: %w", ErrDeadline)
	case errors.Is(err, context.DeadlineExceeded):
		t.errStore.Inc()
		return fmt.Errorf("feature store: %w after %s", ErrTimeout, took.Round(time.Millisecond))
	}
	t.errStore.Inc()
	return fmt.Errorf("feature store: %w", err)
}

// reason classifies a read's outcome for the store's breaker (see
// StoreReason); the request ending is not the store's fault either, nor
// the route deadline cutting short a read that ran for took, ending at
// end, before the store was late by much (see upstream.UsualLatency).
func (t *featureTask) reason(err error, x *Exchange, end time.Time, took time.Duration) upstream.Reason {
	r := StoreReason(err)
	switch {
	case r == upstream.ReasonNone || r == upstream.ReasonOther:
		return r
	case x.Canceled():
		return upstream.ReasonCanceled
	case r == upstream.ReasonTimeout && !x.Deadline.After(end) && !t.usual.Hung(took):
		return upstream.ReasonDeadline
	}
	return r
}

// StoreReason classifies the outcome of a read of the feature store for
// its breaker: entity values the request got wrong and a key holding
// something else than a feature row are not the store's faults; a read
// past its time is a timeout; other failures are the store's.
func StoreReason(err error) upstream.Reason {
	var bre *featurefetch.BadRequestError
	switch {
	case err == nil:
		return upstream.ReasonNone
	case errors.As(err, &bre), errors.As(err, new(*featurefetch.KeyError)):
		return upstream.ReasonOther
	case errors.Is(err, context.DeadlineExceeded):
		return upstream.ReasonTimeout
	case errors.Is(err, context.Canceled):
		return upstream.ReasonCanceled
	}
	return upstream.ReasonConnect
}

// RequestError is a task failure caused by the request's content; the
// route answers 400.
type RequestError struct{ Msg string }

func (e *RequestError) Error() string { return e.Msg }
