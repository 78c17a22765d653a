package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/promexpo"
	"github.com/lariat-gw/lariat/registry"
)

// API path prefixes; the UI variant is served too.
const (
	apiPrefix     = "/api/2.0/mlflow/"
	ajaxAPIPrefix = "/ajax-api/2.0/mlflow/"
)

// ServerOptions configure a Server. Zero values take the defaults.
type ServerOptions struct {
	// RequestTimeout bounds the store work of one request. Default 30s.
	RequestTimeout time.Duration
	// MaxRequestBodySize in bytes. Default 4 MiB.
	MaxRequestBodySize int
	// Logf logs internal errors (those served as 500). Default log.Printf.
	Logf func(format string, args ...any)
}

// Server serves the registry's REST API over fasthttp, plus /healthz and /metrics.
type Server struct {
	svc     *Service
	opts    ServerOptions
	srv     *fasthttp.Server
	routes  map[string]map[string]handlerFunc
	metrics *serverMetrics
}

type handlerFunc func(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error)

// NewServer returns a Server for svc.
func NewServer(svc *Service, opts ServerOptions) *Server {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.MaxRequestBodySize <= 0 {
		opts.MaxRequestBodySize = 4 << 20
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	s := &Server{svc: svc, opts: opts, routes: apiRoutes(), metrics: getServerMetrics()}
	s.srv = &fasthttp.Server{
		Handler:            s.Handler,
		Name:               "lariat-registry",
		ReadTimeout:        time.Minute,
		WriteTimeout:       time.Minute,
		IdleTimeout:        2 * time.Minute,
		MaxRequestBodySize: opts.MaxRequestBodySize,
	}
	return s
}

// Serve serves HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(ln)
}

// Shutdown stops accepting connections and waits, at most until ctx ends, for open
// requests to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.ShutdownWithContext(ctx)
}

func apiRoutes() map[string]map[string]handlerFunc {
	return map[string]map[string]handlerFunc{
		"registered-models/create":              {"POST": handleCreateModel},
		"registered-models/get":                 {"GET": handleGetModel},
		"registered-models/search":              {"GET": handleSearchModels},
		"registered-models/rename":              {"POST": handleRenameModel},
		"registered-models/update":              {"PATCH": handleUpdateModel},
		"registered-models/delete":              {"DELETE": handleDeleteModel},
		"registered-models/get-latest-versions": {"GET": handleLatestVersions, "POST": handleLatestVersions},
		"registered-models/set-tag":             {"POST": handleSetModelTag},
		"registered-models/delete-tag":          {"DELETE": handleDeleteModelTag},
		"registered-models/alias":               {"POST": handleSetAlias, "DELETE": handleDeleteAlias, "GET": handleGetAlias},
		"model-versions/create":                 {"POST": handleCreateVersion},
		"model-versions/get":                    {"GET": handleGetVersion},
		"model-versions/update":                 {"PATCH": handleUpdateVersion},
		"model-versions/delete":                 {"DELETE": handleDeleteVersion},
		"model-versions/search":                 {"GET": handleSearchVersions},
		"model-versions/transition-stage":       {"POST": handleTransitionStage},
		"model-versions/get-download-uri":       {"GET": handleDownloadURI},
		"model-versions/set-tag":                {"POST": handleSetVersionTag},
		"model-versions/delete-tag":             {"DELETE": handleDeleteVersionTag},
		// Tracking reads, for runs lariat-train recorded, and its write.
		"runs/get":                {"GET": handleGetRun},
		"runs/search":             {"POST": handleSearchRuns},
		"runs/record":             {"POST": handleRecordRun},
		"metrics/get-history":     {"GET": handleMetricHistory},
		"experiments/get-by-name": {"GET": handleExperimentByName},
		"experiments/get":         {"GET": handleExperimentByID},
		"logged-models/search":    {"POST": handleSearchLoggedModels},
	}
}

// serverMetrics are registered when the first Server is made, so processes that only
// use the Client or the Resolver do not export them.
type serverMetrics struct {
	requests     *metrics.Counter
	clientErrors *metrics.Counter
	serverErrors *metrics.Counter
}

var (
	serverMetricsOnce sync.Once
	serverMetricsSet  *serverMetrics
)

func getServerMetrics() *serverMetrics {
	serverMetricsOnce.Do(func() {
		s := metrics.NewSet()
		serverMetricsSet = &serverMetrics{
			requests:     s.NewCounter(`lariat_registry_http_requests_total`),
			clientErrors: s.NewCounter(`lariat_registry_http_request_errors_total{reason="client"}`),
			serverErrors: s.NewCounter(`lariat_registry_http_request_errors_total{reason="server"}`),
		}
		metrics.RegisterSet(s)
	})
	return serverMetricsSet
}

// Handler is the fasthttp handler of the API.
func (s *Server) Handler(rc *fasthttp.RequestCtx) {
	path := string(rc.Path())
	switch path {
	case "/healthz":
		rc.SetContentType("text/plain; charset=utf-8")
		rc.SetBodyString("ok\n")
		return
	case "/metrics":
		rc.SetContentType(promexpo.ContentType)
		promexpo.WritePrometheus(rc)
		return
	}
	s.metrics.requests.Inc()
	rest, ok := strings.CutPrefix(path, registry.APIPrefix)
	if !ok {
		rest, ok = strings.CutPrefix(path, ajaxAPIPrefix)
	}
	methods := s.routes[rest]
	if !ok || methods == nil {
		s.writeError(rc, &registry.Error{Code: registry.CodeEndpointNotFound, Message: fmt.Sprintf("No API endpoint %s %s", rc.Method(), path)})
		return
	}
	h := methods[string(rc.Method())]
	if h == nil {
		s.writeError(rc, &registry.Error{Code: registry.CodeBadRequest, Status: fasthttp.StatusMethodNotAllowed,
			Message: fmt.Sprintf("Method %s is not allowed on %s", rc.Method(), path)})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	resp, err := h(s, ctx, rc)
	if err != nil {
		s.writeError(rc, err)
		return
	}
	writeJSON(rc, fasthttp.StatusOK, resp)
}

func writeJSON(rc *fasthttp.RequestCtx, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		data = []byte(`{"error_code":"INTERNAL_ERROR","message":"cannot encode response"}`)
	}
	rc.SetStatusCode(status)
	rc.SetContentType("application/json")
	rc.SetBody(data)
}

func (s *Server) writeError(rc *fasthttp.RequestCtx, err error) {
	var apiErr *registry.Error
	if errors.As(err, &apiErr) {
		s.metrics.clientErrors.Inc()
	} else {
		s.metrics.serverErrors.Inc()
		s.opts.Logf("registry: %s %s: %v", rc.Method(), rc.Path(), err)
		apiErr = &registry.Error{Code: registry.CodeInternalError, Message: err.Error()}
	}
	writeJSON(rc, apiErr.HTTPStatus(), apiErr)
}

// queryArrayFields, queryIntFields and queryBoolFields type the query parameters of
// GET requests when they are turned into a JSON object.
var (
	queryArrayFields = map[string]bool{"order_by": true, "stages": true}
	queryIntFields   = map[string]bool{"max_results": true}
	queryBoolFields  = map[string]bool{"archive_existing_versions": true}
)

// decode fills dst from the query string (GET) or the JSON body (other methods).
func decode(rc *fasthttp.RequestCtx, dst any) error {
	if rc.IsGet() {
		obj := map[string]any{}
		var bad error
		for k, v := range rc.QueryArgs().All() {
			key, val := string(k), string(v)
			switch {
			case queryArrayFields[key]:
				arr, _ := obj[key].([]string)
				obj[key] = append(arr, val)
			case queryIntFields[key]:
				n, err := strconv.ParseInt(val, 10, 64)
				if err != nil && bad == nil {
					bad = registry.InvalidParameter("Invalid value %q for parameter '%s': expected an integer", val, key)
				}
				obj[key] = n
			case queryBoolFields[key]:
				b, err := strconv.ParseBool(val)
				if err != nil && bad == nil {
					bad = registry.InvalidParameter("Invalid value %q for parameter '%s': expected true or false", val, key)
				}
				obj[key] = b
			default:
				obj[key] = val
			}
		}
		if bad != nil {
			return bad
		}
		data, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("cannot encode query parameters: %w", err)
		}
		return unmarshalRequest(data, dst)
	}
	body := bytes.TrimSpace(rc.PostBody())
	if len(body) == 0 {
		body = []byte("{}")
	}
	return unmarshalRequest(body, dst)
}

func unmarshalRequest(data []byte, dst any) error {
	if err := json.Unmarshal(data, dst); err != nil {
		return registry.InvalidParameter("Malformed request: %v", err)
	}
	return nil
}

// flexString decodes a JSON string, number or bool into a string, so that a version
// sent as 3 reads as "3".
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexString) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	if string(data) == "null" {
		*f = ""
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("expected a string or number, got %s", data)
	}
	*f = flexString(n.String())
	return nil
}

// flexBool decodes a JSON bool or the strings "true"/"false".
type flexBool bool

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexBool) UnmarshalJSON(data []byte) error {
	s := strings.Trim(string(data), `"`)
	if s == "null" {
		*f = false
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("expected true or false, got %s", data)
	}
	*f = flexBool(b)
	return nil
}

type empty struct{}

type downloadURIResponse struct {
	ArtifactURI string `json:"artifact_uri"`
}

type nameArgs struct {
	Name flexString `json:"name"`
}

type versionArgs struct {
	Name    flexString `json:"name"`
	Version flexString `json:"version"`
}

type tagArgs struct {
	Name    flexString `json:"name"`
	Version flexString `json:"version"`
	Key     flexString `json:"key"`
	Value   flexString `json:"value"`
}

type aliasArgs struct {
	Name    flexString `json:"name"`
	Alias   flexString `json:"alias"`
	Version flexString `json:"version"`
}

func handleCreateModel(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req registry.CreateModelRequest
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	m, err := s.svc.CreateModel(ctx, req)
	if err != nil {
		return nil, err
	}
	return registry.ModelResponse{RegisteredModel: m}, nil
}

func handleGetModel(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req nameArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	m, err := s.svc.GetModel(ctx, string(req.Name))
	if err != nil {
		return nil, err
	}
	return registry.ModelResponse{RegisteredModel: m}, nil
}

func handleSearchModels(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req registry.SearchRequest
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	ms, next, err := s.svc.SearchModels(ctx, req)
	if err != nil {
		return nil, err
	}
	return registry.ModelsPage{RegisteredModels: ms, NextPageToken: next}, nil
}

func handleRenameModel(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req struct {
		Name    flexString `json:"name"`
		NewName flexString `json:"new_name"`
	}
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	m, err := s.svc.RenameModel(ctx, string(req.Name), string(req.NewName))
	if err != nil {
		return nil, err
	}
	return registry.ModelResponse{RegisteredModel: m}, nil
}

func handleUpdateModel(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req struct {
		Name        flexString `json:"name"`
		Description flexString `json:"description"`
	}
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	m, err := s.svc.UpdateModel(ctx, string(req.Name), string(req.Description))
	if err != nil {
		return nil, err
	}
	return registry.ModelResponse{RegisteredModel: m}, nil
}

func handleDeleteModel(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req nameArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	return empty{}, s.svc.DeleteModel(ctx, string(req.Name))
}

func handleLatestVersions(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req struct {
		Name   flexString `json:"name"`
		Stages []string   `json:"stages"`
	}
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	vs, err := s.svc.LatestVersions(ctx, string(req.Name), req.Stages)
	if err != nil {
		return nil, err
	}
	return registry.VersionsList{ModelVersions: vs}, nil
}

func handleSetModelTag(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req tagArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	return empty{}, s.svc.SetModelTag(ctx, string(req.Name), string(req.Key), string(req.Value))
}

func handleDeleteModelTag(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req tagArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	return empty{}, s.svc.DeleteModelTag(ctx, string(req.Name), string(req.Key))
}

func handleSetAlias(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req aliasArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	return empty{}, s.svc.SetAlias(ctx, string(req.Name), string(req.Alias), string(req.Version))
}

func handleDeleteAlias(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req aliasArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	return empty{}, s.svc.DeleteAlias(ctx, string(req.Name), string(req.Alias))
}

func handleGetAlias(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req aliasArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	v, err := s.svc.VersionByAlias(ctx, string(req.Name), string(req.Alias))
	if err != nil {
		return nil, err
	}
	return registry.VersionResponse{ModelVersion: v}, nil
}

func handleCreateVersion(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req registry.CreateVersionRequest
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	v, err := s.svc.CreateVersion(ctx, req)
	if err != nil {
		return nil, err
	}
	return registry.VersionResponse{ModelVersion: v}, nil
}

func handleGetVersion(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req versionArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	v, err := s.svc.GetVersion(ctx, string(req.Name), string(req.Version))
	if err != nil {
		return nil, err
	}
	return registry.VersionResponse{ModelVersion: v}, nil
}

func handleUpdateVersion(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req struct {
		Name            flexString `json:"name"`
		Version         flexString `json:"version"`
		Description     *string    `json:"description"`
		ServingEndpoint *string    `json:"serving_endpoint"`
	}
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	v, err := s.svc.UpdateVersion(ctx, registry.UpdateVersionRequest{
		Name: string(req.Name), Version: string(req.Version),
		Description: req.Description, ServingEndpoint: req.ServingEndpoint,
	})
	if err != nil {
		return nil, err
	}
	return registry.VersionResponse{ModelVersion: v}, nil
}

func handleDeleteVersion(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req versionArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	return empty{}, s.svc.DeleteVersion(ctx, string(req.Name), string(req.Version))
}

func handleSearchVersions(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req registry.SearchRequest
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	vs, next, err := s.svc.SearchVersions(ctx, req)
	if err != nil {
		return nil, err
	}
	return registry.VersionsPage{ModelVersions: vs, NextPageToken: next}, nil
}

func handleTransitionStage(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req struct {
		Name                    flexString `json:"name"`
		Version                 flexString `json:"version"`
		Stage                   flexString `json:"stage"`
		ArchiveExistingVersions flexBool   `json:"archive_existing_versions"`
	}
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	v, err := s.svc.TransitionStage(ctx, string(req.Name), string(req.Version), string(req.Stage), bool(req.ArchiveExistingVersions))
	if err != nil {
		return nil, err
	}
	return registry.VersionResponse{ModelVersion: v}, nil
}

func handleDownloadURI(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req versionArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	uri, err := s.svc.DownloadURI(ctx, string(req.Name), string(req.Version))
	if err != nil {
		return nil, err
	}
	return downloadURIResponse{ArtifactURI: uri}, nil
}

func handleSetVersionTag(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req tagArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	return empty{}, s.svc.SetVersionTag(ctx, string(req.Name), string(req.Version), string(req.Key), string(req.Value))
}

func handleDeleteVersionTag(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req tagArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	return empty{}, s.svc.DeleteVersionTag(ctx, string(req.Name), string(req.Version), string(req.Key))
}

type runsPage struct {
	Runs          []registry.Run `json:"runs"`
	NextPageToken string         `json:"next_page_token,omitempty"`
}

type experimentResponse struct {
	Experiment *registry.Experiment `json:"experiment"`
}

// runArgs are the run id parameters; older clients send run_uuid.
type runArgs struct {
	RunID     flexString `json:"run_id"`
	RunUUID   flexString `json:"run_uuid"`
	MetricKey flexString `json:"metric_key"`
}

func (a *runArgs) id() string {
	if a.RunID != "" {
		return string(a.RunID)
	}
	return string(a.RunUUID)
}

func handleGetRun(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req runArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	r, err := s.svc.GetRun(ctx, req.id())
	if err != nil {
		return nil, err
	}
	return registry.RunResponse{Run: r}, nil
}

func handleSearchRuns(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req registry.RunSearchRequest
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	runs, next, err := s.svc.SearchRuns(ctx, req)
	if err != nil {
		return nil, err
	}
	return runsPage{Runs: runs, NextPageToken: next}, nil
}

// handleRecordRun is Lariat's write of a whole run (MLflow has none such):
// lariat-train records each job as a run.
func handleRecordRun(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req registry.RunRecord
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	r, err := s.svc.RecordRun(ctx, req)
	if err != nil {
		return nil, err
	}
	return registry.RunResponse{Run: toRun(r)}, nil
}

func handleMetricHistory(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req runArgs
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	ms, err := s.svc.MetricHistory(ctx, req.id(), string(req.MetricKey))
	if err != nil {
		return nil, err
	}
	return struct {
		Metrics []registry.Metric `json:"metrics"`
	}{ms}, nil
}

func handleExperimentByName(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req struct {
		Name flexString `json:"experiment_name"`
	}
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	e, err := s.svc.ExperimentByName(ctx, string(req.Name))
	if err != nil {
		return nil, err
	}
	return experimentResponse{e}, nil
}

func handleExperimentByID(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req struct {
		ID flexString `json:"experiment_id"`
	}
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	e, err := s.svc.ExperimentByID(ctx, string(req.ID))
	if err != nil {
		return nil, err
	}
	return experimentResponse{e}, nil
}

// handleSearchLoggedModels answers that there are no logged models: Lariat
// records runs, not MLflow 3 logged models, so register_model looks for the
// model among the run's artifacts.
func handleSearchLoggedModels(s *Server, ctx context.Context, rc *fasthttp.RequestCtx) (any, error) {
	var req struct {
		ExperimentIDs []string `json:"experiment_ids"`
	}
	if err := decode(rc, &req); err != nil {
		return nil, err
	}
	return struct {
		Models []struct{} `json:"models"`
	}{Models: []struct{}{}}, nil
}
