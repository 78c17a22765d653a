package training

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/internal/httpjson"
)

// Client calls a lariat-train server. It is safe for concurrent use.
type Client struct {
	base string
	api  *httpjson.Client
}

// APIError is an error answer of the server.
type APIError struct {
	Status  int
	Message string
}

// Error implements error.
func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// NewClient returns a client of the server at baseURL (e.g. "http://127.0.0.1:8060").
// A nil hc uses a client with a 30s timeout.
func NewClient(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	base := strings.TrimRight(baseURL, "/")
	return &Client{base: base, api: httpjson.New("lariat-train", base, hc, apiError)}
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, contentType string, out any) error {
	return c.api.Do(ctx, method, path, body, contentType, out)
}

// apiError reads the server's {"error": "..."} answer, or else the start of the body.
func apiError(status int, data []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(data))
		if len(e.Error) > 200 {
			e.Error = e.Error[:200]
		}
	}
	return &APIError{Status: status, Message: e.Error}
}

// SubmitJob submits a job spec (YAML or JSON).
func (c *Client) SubmitJob(ctx context.Context, spec []byte) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodPost, JobsPath, spec, "application/yaml", &j)
	return j, err
}

// Job returns a job.
func (c *Client) Job(ctx context.Context, id string) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodGet, JobsPath+"/"+url.PathEscape(id), nil, "", &j)
	return j, err
}

// Jobs lists jobs.
func (c *Client) Jobs(ctx context.Context, f JobFilter) ([]Job, error) {
	q := url.Values{}
	if f.Study != "" {
		q.Set("study", f.Study)
	}
	if f.Phase != "" {
		q.Set("phase", string(f.Phase))
	}
	p := JobsPath
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out struct {
		Jobs []Job `json:"jobs"`
	}
	err := c.do(ctx, http.MethodGet, p, nil, "", &out)
	return out.Jobs, err
}

// CancelJob asks the server to stop a job.
func (c *Client) CancelJob(ctx context.Context, id string) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodPost, JobsPath+"/"+url.PathEscape(id)+"/cancel", []byte("{}"), "application/json", &j)
	return j, err
}

// WaitJob polls a job every interval until it finishes or ctx ends.
func (c *Client) WaitJob(ctx context.Context, id string, interval time.Duration) (Job, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		j, err := c.Job(ctx, id)
		if err != nil || j.Status.Finished() {
			return j, err
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-t.C:
		}
	}
}

// Logs returns a job's output; with follow, the stream lasts until the job ends.
func (c *Client) Logs(ctx context.Context, id string, follow bool) (io.ReadCloser, error) {
	p := JobsPath + "/" + url.PathEscape(id) + "/logs"
	if follow {
		p += "?follow=true"
	}
	return c.api.Stream(ctx, p)
}

// SubmitStudy submits a study spec (YAML or JSON).
func (c *Client) SubmitStudy(ctx context.Context, spec []byte) (Study, error) {
	var s Study
	err := c.do(ctx, http.MethodPost, StudiesPath, spec, "application/yaml", &s)
	return s, err
}

// Study returns a study.
func (c *Client) Study(ctx context.Context, id string) (Study, error) {
	var s Study
	err := c.do(ctx, http.MethodGet, StudiesPath+"/"+url.PathEscape(id), nil, "", &s)
	return s, err
}

// Studies lists studies.
func (c *Client) Studies(ctx context.Context) ([]Study, error) {
	var out struct {
		Studies []Study `json:"studies"`
	}
	err := c.do(ctx, http.MethodGet, StudiesPath, nil, "", &out)
	return out.Studies, err
}

// CancelStudy asks the server to stop a study.
func (c *Client) CancelStudy(ctx context.Context, id string) (Study, error) {
	var s Study
	err := c.do(ctx, http.MethodPost, StudiesPath+"/"+url.PathEscape(id)+"/cancel", []byte("{}"), "application/json", &s)
	return s, err
}

// WaitStudy polls a study every interval until it finishes or ctx ends.
func (c *Client) WaitStudy(ctx context.Context, id string, interval time.Duration) (Study, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s, err := c.Study(ctx, id)
		if err != nil || s.Status.Finished() {
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-t.C:
		}
	}
}
