package fakemodel_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/bench/fakemodel"
)

// start serves cfg on a fresh 127.0.0.1 port and returns the server and its
// base URL.
func start(t *testing.T, cfg fakemodel.Config) (*fakemodel.Server, string) {
	t.Helper()
	s, err := fakemodel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return s, "http://" + ln.Addr().String()
}

var client = &fasthttp.Client{}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(method)
	req.SetBodyString(body)
	if err := client.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode(), string(resp.Body())
}

func TestAnswersAndCounts(t *testing.T) {
	s, url := start(t, fakemodel.Config{Body: []byte(`{"score":1}`), Latency: time.Millisecond, Jitter: time.Millisecond})
	for i := 0; i < 5; i++ {
		if code, body := do(t, "POST", url+"/predict", `{"x":1}`); code != 200 || body != `{"score":1}` {
			t.Fatalf("answer %d %q", code, body)
		}
	}
	if st := s.Stats(); st != (fakemodel.Stats{Requests: 5}) {
		t.Fatalf("stats %+v", st)
	}
	if code, body := do(t, "GET", url+"/-/stats", ""); code != 200 || body != `{"requests":5,"errors":0,"slow":0}` {
		t.Fatalf("stats endpoint %d %q", code, body)
	}
	if code, body := do(t, "GET", url+"/-/healthz", ""); code != 200 || body != `{"status":"ok"}` {
		t.Fatalf("healthz %d %q", code, body)
	}
	if code, _ := do(t, "GET", url+"/-/nope", ""); code != 404 {
		t.Fatalf("unknown admin path: %d", code)
	}
	// Admin requests are not model requests.
	if st := s.Stats(); st.Requests != 5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDefaultBody(t *testing.T) {
	_, url := start(t, fakemodel.Config{})
	if code, body := do(t, "POST", url+"/", "{}"); code != 200 || body != fakemodel.DefaultBody {
		t.Fatalf("answer %d %q", code, body)
	}
}

func TestInjectedFailures(t *testing.T) {
	s, url := start(t, fakemodel.Config{ErrorRate: 1, SlowRate: 1, Slow: time.Millisecond})
	for i := 0; i < 3; i++ {
		if code, body := do(t, "POST", url+"/predict", "{}"); code != 500 || !strings.Contains(body, "injected failure") {
			t.Fatalf("answer %d %q", code, body)
		}
	}
	if st := s.Stats(); st != (fakemodel.Stats{Requests: 3, Errors: 3, Slow: 3}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestCapture(t *testing.T) {
	_, url := start(t, fakemodel.Config{})
	if code, _ := do(t, "GET", url+"/-/captured", ""); code != 204 {
		t.Fatalf("nothing captured yet: %d", code)
	}
	do(t, "POST", url+"/predict", `{"before":true}`)
	if code, _ := do(t, "GET", url+"/-/capture", ""); code != 405 {
		t.Fatalf("GET /-/capture: %d", code)
	}
	if code, _ := do(t, "POST", url+"/-/capture", ""); code != 200 {
		t.Fatalf("arm: %d", code)
	}
	if code, _ := do(t, "GET", url+"/-/captured", ""); code != 204 {
		t.Fatalf("armed, nothing captured yet: %d", code)
	}
	do(t, "POST", url+"/predict", `{"first":true}`)
	do(t, "POST", url+"/predict", `{"second":true}`)
	if code, body := do(t, "GET", url+"/-/captured", ""); code != 200 || body != `{"first":true}` {
		t.Fatalf("captured %d %q, want the first request after arming", code, body)
	}
}

func TestConfigValidate(t *testing.T) {
	f := func(cfg fakemodel.Config, want string) {
		t.Helper()
		_, err := fakemodel.New(cfg)
		if want == "" {
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one containing %q", err, want)
		}
	}
	f(fakemodel.Config{}, "")
	f(fakemodel.Config{Latency: -1}, "must not be negative")
	f(fakemodel.Config{ErrorRate: 1.5}, "rates must be in [0, 1]")
	f(fakemodel.Config{SlowRate: -0.1}, "rates must be in [0, 1]")
	f(fakemodel.Config{SlowRate: 0.1}, "needs a slow latency")
	f(fakemodel.Config{Body: []byte("{nope")}, "not valid JSON")
}
