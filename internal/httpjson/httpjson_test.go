package httpjson

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type apiErr struct{ status int }

func (e *apiErr) Error() string { return "api error" }

func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/echo":
			if r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "want JSON", http.StatusUnsupportedMediaType)
				return
			}
			body := make([]byte, 100)
			n, _ := r.Body.Read(body)
			w.Write([]byte(`{"got":` + string(body[:n]) + `,"q":"` + r.URL.Query().Get("q") + `"}`))
		case "/api/known":
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"code":"x"}`))
		case "/api/unknown":
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`upstream down`))
		case "/api/garbage":
			w.Write([]byte(`{`))
		case "/api/stream":
			w.Write([]byte("line 1\nline 2\n"))
		}
	}))
	defer srv.Close()
	apiError := func(status int, body []byte) error {
		if strings.Contains(string(body), `"code"`) {
			return &apiErr{status}
		}
		return nil
	}
	c := New("test", srv.URL+"/api/", &http.Client{Timeout: 10 * time.Second}, apiError)
	ctx := context.Background()

	var out struct {
		Got struct{ A int }
		Q   string
	}
	if err := c.DoJSON(ctx, http.MethodPost, WithQuery("echo", map[string][]string{"q": {"v"}}), map[string]int{"a": 7}, &out); err != nil || out.Got.A != 7 || out.Q != "v" {
		t.Fatalf("echo = %+v, %v", out, err)
	}
	var ae *apiErr
	if err := c.DoJSON(ctx, http.MethodGet, "known", nil, nil); !errors.As(err, &ae) || ae.status != 404 {
		t.Fatalf("known error = %v", err)
	}
	err := c.DoJSON(ctx, http.MethodGet, "unknown?x=1", nil, nil)
	if err == nil || err.Error() != "test GET unknown: unexpected status 502: upstream down" {
		t.Fatalf("unknown error = %v", err)
	}
	if err := c.DoJSON(ctx, http.MethodGet, "garbage", nil, &out); err == nil || !strings.Contains(err.Error(), "test GET garbage: cannot decode answer") {
		t.Fatalf("garbage = %v", err)
	}
	rc, err := c.Stream(ctx, "stream")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := rc.Read(buf)
	rc.Close()
	if !strings.HasPrefix("line 1\nline 2\n", string(buf[:n])) || n == 0 {
		t.Fatalf("stream read %q", buf[:n])
	}
	if _, err := c.Stream(ctx, "known"); !errors.As(err, &ae) {
		t.Fatalf("stream of an error = %v", err)
	}
}
