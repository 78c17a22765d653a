package training

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls a lariat-train server. It is safe for concurrent use.
type Client struct {
	base string
	hc   *http.Client
	// stream has no overall timeout, for following logs.
	stream *http.Client
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
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: hc, stream: &http.Client{Transport: hc.Transport}}
}

const maxAnswerSize = 64 << 20

func (c *Client) do(ctx context.Context, method, path string, body []byte, contentType string, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("cannot build request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("lariat-train %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerSize))
	if err != nil {
		return fmt.Errorf("lariat-train %s %s: cannot read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return apiError(resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("lariat-train %s %s: cannot decode answer: %w", method, path, err)
	}
	return nil
}

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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+p, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot build request: %w", err)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lariat-train GET %s: %w", p, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, apiError(resp.StatusCode, data)
	}
	return resp.Body, nil
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
