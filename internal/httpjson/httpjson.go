// Package httpjson is the JSON-over-HTTP client that the clients of the
// sidecars (the registry's, lariat-train's) share: it sends a request, reads
// a bounded answer, decodes a successful one and turns any other into the
// caller's API error.
package httpjson

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// MaxAnswerSize bounds what a Client reads from one answer.
const MaxAnswerSize = 64 << 20

// Client calls one server. It is safe for concurrent use.
type Client struct {
	name     string
	base     string
	hc       *http.Client
	stream   *http.Client
	apiError func(status int, body []byte) error
}

// New returns a Client of the server whose paths start with base. name starts
// its error messages ("registry GET model-versions/get: ..."). apiError turns
// an answer whose status is not 2xx into the server's API error; when it
// returns nil, the error names the status and the start of the body.
func New(name, base string, hc *http.Client, apiError func(status int, body []byte) error) *Client {
	return &Client{
		name: name, base: base, hc: hc, apiError: apiError,
		// Streams last as long as the server sends: no overall timeout.
		stream: &http.Client{Transport: hc.Transport},
	}
}

// WithQuery returns path with q as its query string, or path when q is empty.
func WithQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// DoJSON sends in encoded as JSON (no body when in is nil) and decodes the
// answer into out (see Do).
func (c *Client) DoJSON(ctx context.Context, method, path string, in, out any) error {
	if in == nil {
		return c.Do(ctx, method, path, nil, "", out)
	}
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("cannot encode %s request: %w", trimQuery(path), err)
	}
	return c.Do(ctx, method, path, body, "application/json", out)
}

// Do sends body (none when nil) with contentType to path under the base and
// decodes a 2xx answer into out, unless out is nil.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, contentType string, out any) error {
	resp, err := c.send(ctx, c.hc, method, path, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerSize))
	if err != nil {
		return fmt.Errorf("%s %s %s: cannot read answer: %w", c.name, method, trimQuery(path), err)
	}
	if resp.StatusCode/100 != 2 {
		return c.statusError(method, path, resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s %s: cannot decode answer: %w", c.name, method, trimQuery(path), err)
	}
	return nil
}

// Stream sends a GET to path and returns the body of a 200 answer, for the
// caller to read and close. It has no overall timeout: ctx bounds it.
func (c *Client) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, c.stream, http.MethodGet, path, nil, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, c.statusError(http.MethodGet, path, resp.StatusCode, data)
	}
	return resp.Body, nil
}

func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, body []byte, contentType string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("cannot build %s request: %w", trimQuery(path), err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s %s: %w", c.name, method, trimQuery(path), err)
	}
	return resp, nil
}

func (c *Client) statusError(method, path string, status int, body []byte) error {
	if c.apiError != nil {
		if err := c.apiError(status, body); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s %s %s: unexpected status %d: %.200s", c.name, method, trimQuery(path), status, body)
}

func trimQuery(path string) string {
	p, _, _ := strings.Cut(path, "?")
	return p
}
