package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/internal/httpjson"
)

// Client calls a registry server's REST API. Its methods return *Error (check with
// errors.As, ErrorCode or IsNotFound) when the server answered with an API error,
// and wrapped transport errors otherwise. It is safe for concurrent use.
type Client struct {
	base string
	api  *httpjson.Client
}

// NewClient returns a Client for the server at baseURL (e.g. "http://127.0.0.1:8070").
// A nil hc uses a client with a 10s timeout.
func NewClient(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	base := strings.TrimRight(baseURL, "/")
	return &Client{base: base, api: httpjson.New("registry", base+APIPrefix, hc, apiError)}
}

// BaseURL returns the server URL the client talks to.
func (c *Client) BaseURL() string {
	return c.base
}

// apiError decodes an error answer in MLflow's shape.
func apiError(status int, body []byte) error {
	e := &Error{Status: status}
	if json.Unmarshal(body, e) != nil || e.Code == "" {
		return nil
	}
	return e
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	return c.api.DoJSON(ctx, method, httpjson.WithQuery(path, query), body, out)
}

// CreateModel registers a model.
func (c *Client) CreateModel(ctx context.Context, req CreateModelRequest) (*RegisteredModel, error) {
	var out ModelResponse
	if err := c.do(ctx, http.MethodPost, "registered-models/create", nil, req, &out); err != nil {
		return nil, err
	}
	return out.RegisteredModel, nil
}

// EnsureModel registers a model unless it exists already, and returns it.
func (c *Client) EnsureModel(ctx context.Context, req CreateModelRequest) (*RegisteredModel, error) {
	m, err := c.CreateModel(ctx, req)
	if ErrorCode(err) == CodeResourceAlreadyExists {
		return c.GetModel(ctx, req.Name)
	}
	return m, err
}

// GetModel returns a registered model.
func (c *Client) GetModel(ctx context.Context, name string) (*RegisteredModel, error) {
	var out ModelResponse
	if err := c.do(ctx, http.MethodGet, "registered-models/get", url.Values{"name": {name}}, nil, &out); err != nil {
		return nil, err
	}
	return out.RegisteredModel, nil
}

func searchQuery(req SearchRequest) url.Values {
	q := url.Values{}
	if req.Filter != "" {
		q.Set("filter", req.Filter)
	}
	if req.MaxResults != 0 {
		q.Set("max_results", strconv.FormatInt(req.MaxResults, 10))
	}
	if req.PageToken != "" {
		q.Set("page_token", req.PageToken)
	}
	for _, o := range req.OrderBy {
		q.Add("order_by", o)
	}
	return q
}

// SearchModels returns one page of models and the next page token.
func (c *Client) SearchModels(ctx context.Context, req SearchRequest) ([]RegisteredModel, string, error) {
	var out ModelsPage
	if err := c.do(ctx, http.MethodGet, "registered-models/search", searchQuery(req), nil, &out); err != nil {
		return nil, "", err
	}
	return out.RegisteredModels, out.NextPageToken, nil
}

// DeleteModel deletes a registered model and its versions.
func (c *Client) DeleteModel(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "registered-models/delete", nil, map[string]string{"name": name}, nil)
}

// SetModelTag sets a tag on a registered model.
func (c *Client) SetModelTag(ctx context.Context, name, key, value string) error {
	return c.do(ctx, http.MethodPost, "registered-models/set-tag", nil,
		map[string]string{"name": name, "key": key, "value": value}, nil)
}

// CreateVersion registers a new version of a model.
func (c *Client) CreateVersion(ctx context.Context, req CreateVersionRequest) (*ModelVersion, error) {
	var out VersionResponse
	if err := c.do(ctx, http.MethodPost, "model-versions/create", nil, req, &out); err != nil {
		return nil, err
	}
	return out.ModelVersion, nil
}

// GetVersion returns a model version.
func (c *Client) GetVersion(ctx context.Context, name, version string) (*ModelVersion, error) {
	var out VersionResponse
	if err := c.do(ctx, http.MethodGet, "model-versions/get", url.Values{"name": {name}, "version": {version}}, nil, &out); err != nil {
		return nil, err
	}
	return out.ModelVersion, nil
}

// UpdateVersion changes a version's description and/or serving endpoint.
func (c *Client) UpdateVersion(ctx context.Context, req UpdateVersionRequest) (*ModelVersion, error) {
	var out VersionResponse
	if err := c.do(ctx, http.MethodPatch, "model-versions/update", nil, req, &out); err != nil {
		return nil, err
	}
	return out.ModelVersion, nil
}

// SearchVersions returns one page of model versions and the next page token.
func (c *Client) SearchVersions(ctx context.Context, req SearchRequest) ([]ModelVersion, string, error) {
	var out VersionsPage
	if err := c.do(ctx, http.MethodGet, "model-versions/search", searchQuery(req), nil, &out); err != nil {
		return nil, "", err
	}
	return out.ModelVersions, out.NextPageToken, nil
}

// LatestVersions returns the highest version per stage (all stages when none given).
func (c *Client) LatestVersions(ctx context.Context, name string, stages ...string) ([]ModelVersion, error) {
	var out VersionsList
	q := url.Values{"name": {name}}
	for _, st := range stages {
		q.Add("stages", st)
	}
	if err := c.do(ctx, http.MethodGet, "registered-models/get-latest-versions", q, nil, &out); err != nil {
		return nil, err
	}
	return out.ModelVersions, nil
}

// SetVersionTag sets a tag on a model version.
func (c *Client) SetVersionTag(ctx context.Context, name, version, key, value string) error {
	return c.do(ctx, http.MethodPost, "model-versions/set-tag", nil,
		map[string]string{"name": name, "version": version, "key": key, "value": value}, nil)
}

// SetAlias points alias at version.
func (c *Client) SetAlias(ctx context.Context, name, alias, version string) error {
	return c.do(ctx, http.MethodPost, "registered-models/alias", nil,
		map[string]string{"name": name, "alias": alias, "version": version}, nil)
}

// DeleteAlias removes an alias.
func (c *Client) DeleteAlias(ctx context.Context, name, alias string) error {
	return c.do(ctx, http.MethodDelete, "registered-models/alias", nil,
		map[string]string{"name": name, "alias": alias}, nil)
}

// VersionByAlias returns the version alias points at.
func (c *Client) VersionByAlias(ctx context.Context, name, alias string) (*ModelVersion, error) {
	var out VersionResponse
	if err := c.do(ctx, http.MethodGet, "registered-models/alias", url.Values{"name": {name}, "alias": {alias}}, nil, &out); err != nil {
		return nil, err
	}
	return out.ModelVersion, nil
}

// TransitionStage moves a version to stage.
func (c *Client) TransitionStage(ctx context.Context, name, version, stage string, archiveExisting bool) (*ModelVersion, error) {
	var out VersionResponse
	body := map[string]any{"name": name, "version": version, "stage": stage, "archive_existing_versions": archiveExisting}
	if err := c.do(ctx, http.MethodPost, "model-versions/transition-stage", nil, body, &out); err != nil {
		return nil, err
	}
	return out.ModelVersion, nil
}

// RecordRun stores a training run (Lariat's runs/record), replacing one of
// the same id.
func (c *Client) RecordRun(ctx context.Context, r RunRecord) (*Run, error) {
	var out RunResponse
	if err := c.do(ctx, http.MethodPost, "runs/record", nil, r, &out); err != nil {
		return nil, err
	}
	return out.Run, nil
}

// GetRun returns a run with MLflow's shape.
func (c *Client) GetRun(ctx context.Context, runID string) (*Run, error) {
	var out RunResponse
	if err := c.do(ctx, http.MethodGet, "runs/get", url.Values{"run_id": {runID}}, nil, &out); err != nil {
		return nil, err
	}
	return out.Run, nil
}
