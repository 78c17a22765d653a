package server_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/internal/registrytest"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/registry/server"
)

// storeFactory makes a fresh storage location for one test and returns a function
// opening a Store on it; the function may be called again after Close to reopen.
type storeFactory func(t *testing.T) (open func() server.Store)

func boltFactory(t *testing.T) func() server.Store {
	path := filepath.Join(t.TempDir(), "registry.db")
	return func() server.Store {
		s, err := server.OpenBoltStore(path)
		if err != nil {
			t.Fatalf("open bolt store: %v", err)
		}
		return s
	}
}

// testServer is a registry server on 127.0.0.1 that also takes raw API calls.
type testServer struct {
	*registrytest.Server
}

func startServer(t *testing.T, store server.Store) *testServer {
	t.Helper()
	return &testServer{registrytest.Serve(t, store)}
}

// apiResult is a raw API response.
type apiResult struct {
	Status int
	Body   []byte
}

// JSON decodes the body into a generic value.
func (r apiResult) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v: %s", r.Status, err, r.Body)
	}
	return m
}

// call sends a raw request to path under /api/2.0/mlflow/ (or to an absolute path).
func (ts *testServer) call(t *testing.T, method, path, body string) apiResult {
	t.Helper()
	u := ts.URL + "/api/2.0/mlflow/" + path
	if strings.HasPrefix(path, "/") {
		u = ts.URL + path
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apiResult{Status: resp.StatusCode, Body: data}
}

// expectError checks an error response's status and code.
func expectError(t *testing.T, r apiResult, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %s", r.Status, status, r.Body)
	}
	m := r.JSON(t)
	if m["error_code"] != code {
		t.Fatalf("error_code = %v, want %s; body %s", m["error_code"], code, r.Body)
	}
	if msg, _ := m["message"].(string); msg == "" {
		t.Fatalf("error without message: %s", r.Body)
	}
}

func expectOK(t *testing.T, r apiResult) map[string]any {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", r.Status, r.Body)
	}
	return r.JSON(t)
}

// expectCode checks that err is an API error with code.
func expectCode(t *testing.T, err error, code string) {
	t.Helper()
	var apiErr *registry.Error
	if !errors.As(err, &apiErr) || apiErr.Code != code {
		t.Fatalf("want API error %s, got %v", code, err)
	}
}
