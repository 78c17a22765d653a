// Package fakemodel owns the fake model server of the benchmark scenarios: a
// small fasthttp server that answers every request with a fixed JSON body
// after a configurable latency (base plus uniform jitter, with a share of slow
// answers), optionally working on a fixed number of requests at a time as a
// model server's worker pool does (the rest wait in line), and fails a configurable share of requests with status 500. It
// runs as its own process (lariat-bench upstream) so that it does not share a
// Go scheduler with the gateway it serves.
//
// Besides the model path (any path not under /-/) it serves:
//
//	GET  /-/healthz    {"status":"ok"}
//	GET  /-/stats      {"requests":N,"errors":N,"slow":N}
//	POST /-/capture    keep the body of the next model request
//	GET  /-/captured   that body (204 until one arrived)
package fakemodel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lariat-gw/lariat/internal/accept"
	"github.com/valyala/fasthttp"
)

// DefaultBody is the answer when Config.Body is empty.
const DefaultBody = `{"score":0.5}`

// Config describes a fake model's behaviour. The zero value answers at once
// with DefaultBody.
type Config struct {
	// Latency is the base time before answering.
	Latency time.Duration
	// Jitter spreads the latency uniformly over [Latency-Jitter,
	// Latency+Jitter], clamped at zero.
	Jitter time.Duration
	// ErrorRate is the share of requests, in [0, 1], answered with status
	// 500 (after the usual latency).
	ErrorRate float64
	// SlowRate is the share of requests, in [0, 1], answered after Slow
	// instead of the usual latency.
	SlowRate float64
	// Slow is the latency of slow answers.
	Slow time.Duration
	// Body is the JSON answer; default DefaultBody.
	Body []byte
	// Workers, when positive, is how many requests are worked on at once;
	// the others wait in line, first come first served, so the server's
	// capacity is about Workers / Latency requests per second and its
	// latency grows with the line when offered more.
	Workers int
}

// Validate reports whether c is usable.
func (c *Config) Validate() error {
	if c.Latency < 0 || c.Jitter < 0 || c.Slow < 0 || c.Workers < 0 {
		return errors.New("latency, jitter, slow and workers must not be negative")
	}
	if !(c.ErrorRate >= 0 && c.ErrorRate <= 1) || !(c.SlowRate >= 0 && c.SlowRate <= 1) {
		return fmt.Errorf("error and slow rates must be in [0, 1], got %v and %v", c.ErrorRate, c.SlowRate)
	}
	if c.SlowRate > 0 && c.Slow == 0 {
		return errors.New("a slow rate needs a slow latency")
	}
	if len(c.Body) > 0 && !json.Valid(c.Body) {
		return fmt.Errorf("body is not valid JSON: %.64q", c.Body)
	}
	return nil
}

// Server is a fake model server.
type Server struct {
	cfg     Config
	body    []byte
	srv     *fasthttp.Server
	workers chan struct{} // a token per request worked on; nil: no bound

	requests atomic.Int64
	errs     atomic.Int64
	slow     atomic.Int64

	armed    atomic.Bool
	mu       sync.Mutex
	captured []byte
	got      bool
}

var errorBody = []byte(`{"error":"injected failure"}`)

// New returns a server with the behaviour cfg describes.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid fake model: %w", err)
	}
	s := &Server{cfg: cfg, body: cfg.Body}
	if cfg.Workers > 0 {
		s.workers = make(chan struct{}, cfg.Workers)
	}
	if len(s.body) == 0 {
		s.body = []byte(DefaultBody)
	}
	s.srv = &fasthttp.Server{
		Handler:         s.Handle,
		Name:            "fakemodel",
		NoDefaultDate:   true,
		CloseOnShutdown: true,
		ReadTimeout:     30 * time.Second,
		IdleTimeout:     60 * time.Second,
	}
	return s, nil
}

// Serve serves ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(accept.Retrying(ln, nil))
}

// Shutdown stops accepting connections and waits for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.ShutdownWithContext(ctx)
}

// Stats are a server's counters.
type Stats struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	Slow     int64 `json:"slow"`
}

// Stats returns the counts of model requests, injected errors and slow
// answers so far.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Errors: s.errs.Load(), Slow: s.slow.Load()}
}

// latency draws one request's latency and whether it is a slow one.
func (s *Server) latency() (time.Duration, bool) {
	c := &s.cfg
	if c.SlowRate > 0 && rand.Float64() < c.SlowRate {
		return c.Slow, true
	}
	d := c.Latency
	if c.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*c.Jitter)+1)) - c.Jitter
	}
	return max(d, 0), false
}

var adminPrefix = []byte("/-/")

// Handle answers one request; it is the server's fasthttp handler.
func (s *Server) Handle(rc *fasthttp.RequestCtx) {
	if path := rc.Path(); bytes.HasPrefix(path, adminPrefix) {
		s.admin(rc, string(path))
		return
	}
	s.requests.Add(1)
	if s.armed.Load() {
		s.capture(rc.PostBody())
	}
	if s.workers != nil {
		s.workers <- struct{}{}
		defer func() { <-s.workers }()
	}
	d, slow := s.latency()
	if slow {
		s.slow.Add(1)
	}
	if d > 0 {
		time.Sleep(d)
	}
	rc.SetContentType("application/json")
	if s.cfg.ErrorRate > 0 && rand.Float64() < s.cfg.ErrorRate {
		s.errs.Add(1)
		rc.SetStatusCode(fasthttp.StatusInternalServerError)
		rc.Response.SetBodyRaw(errorBody)
		return
	}
	rc.Response.SetBodyRaw(s.body)
}

func (s *Server) capture(body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.armed.Load() {
		return
	}
	s.captured = append(s.captured[:0], body...)
	s.got = true
	s.armed.Store(false)
}

func (s *Server) admin(rc *fasthttp.RequestCtx, path string) {
	rc.SetContentType("application/json")
	switch path {
	case "/-/healthz":
		rc.SetBodyString(`{"status":"ok"}`)
	case "/-/stats":
		b, _ := json.Marshal(s.Stats()) // plain integers cannot fail
		rc.SetBody(b)
	case "/-/capture":
		if !rc.IsPost() {
			rc.SetStatusCode(fasthttp.StatusMethodNotAllowed)
			rc.SetBodyString(`{"error":"use POST /-/capture"}`)
			return
		}
		s.mu.Lock()
		s.captured, s.got = s.captured[:0], false
		s.armed.Store(true)
		s.mu.Unlock()
		rc.SetBodyString(`{"armed":true}`)
	case "/-/captured":
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.got {
			rc.SetStatusCode(fasthttp.StatusNoContent)
			return
		}
		rc.SetBody(s.captured)
	default:
		rc.SetStatusCode(fasthttp.StatusNotFound)
		rc.SetBodyString(`{"error":"unknown path; see /-/healthz, /-/stats, /-/capture, /-/captured"}`)
	}
}
