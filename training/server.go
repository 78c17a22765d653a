package training

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"

	"github.com/VictoriaMetrics/metrics"

	"github.com/lariat-gw/lariat/internal/promexpo"
)

// API paths.
const (
	JobsPath    = "/api/v1/jobs"
	StudiesPath = "/api/v1/studies"
)

// ServerOptions configure a Server. Zero values take the defaults.
type ServerOptions struct {
	// MaxBodySize bounds a submitted spec in bytes. Default 1 MiB.
	MaxBodySize int64
	// Logf logs internal errors. Default log.Printf.
	Logf func(format string, args ...any)
}

// Server serves the sidecar's REST API (JSON):
//
//	POST /api/v1/jobs                 submit a job spec (YAML or JSON) → 201 job
//	GET  /api/v1/jobs[?study=&phase=] → {"jobs": [...]}
//	GET  /api/v1/jobs/{id}            → job
//	GET  /api/v1/jobs/{id}/logs[?follow=true]  → text/plain output
//	POST /api/v1/jobs/{id}/cancel     → 202 job (409 when finished)
//	POST /api/v1/studies              submit a study spec → 201 study
//	GET  /api/v1/studies              → {"studies": [...]}
//	GET  /api/v1/studies/{id}         → study
//	POST /api/v1/studies/{id}/cancel  → 202 study
//	GET  /healthz, GET /metrics
//
// Errors are {"error": "message"} with 400 (bad spec), 404, 409 or 503.
type Server struct {
	m    *Manager
	opts ServerOptions
	mux  *http.ServeMux
}

var _ http.Handler = (*Server)(nil)

var (
	apiRequests     = metrics.NewCounter(`lariat_train_api_requests_total`)
	apiClientErrors = metrics.NewCounter(`lariat_train_api_errors_total{kind="client"}`)
	apiServerErrors = metrics.NewCounter(`lariat_train_api_errors_total{kind="server"}`)
)

// NewServer returns the API handler for m.
func NewServer(m *Manager, opts ServerOptions) *Server {
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = 1 << 20
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	s := &Server{m: m, opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST "+JobsPath, s.submitJob)
	s.mux.HandleFunc("GET "+JobsPath, s.listJobs)
	s.mux.HandleFunc("GET "+JobsPath+"/{id}", s.getJob)
	s.mux.HandleFunc("GET "+JobsPath+"/{id}/logs", s.jobLogs)
	s.mux.HandleFunc("POST "+JobsPath+"/{id}/cancel", s.cancelJob)
	s.mux.HandleFunc("POST "+StudiesPath, s.submitStudy)
	s.mux.HandleFunc("GET "+StudiesPath, s.listStudies)
	s.mux.HandleFunc("GET "+StudiesPath+"/{id}", s.getStudy)
	s.mux.HandleFunc("POST "+StudiesPath+"/{id}/cancel", s.cancelStudy)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", promexpo.ContentType)
		promexpo.WritePrometheus(w)
	})
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	apiRequests.Inc()
	s.mux.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// writeError maps Manager errors to statuses.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrFinished):
		status = http.StatusConflict
	case errors.Is(err, ErrClosed):
		status = http.StatusServiceUnavailable
	}
	if status >= 500 {
		apiServerErrors.Inc()
		s.opts.Logf("training: API error: %v", err)
	} else {
		apiClientErrors.Inc()
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiClientErrors.Inc()
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "spec larger than " + strconv.FormatInt(mbe.Limit, 10) + " bytes"})
			return nil, false
		}
		apiClientErrors.Inc()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "cannot read body: " + err.Error()})
		return nil, false
	}
	return body, true
}

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	spec, err := ParseJobSpec("request", body)
	if err != nil {
		s.writeError(w, fmt.Errorf("%w: %w", ErrInvalid, err))
		return
	}
	j, err := s.m.Submit(*spec)
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("Location", JobsPath+"/"+j.ID)
	writeJSON(w, http.StatusCreated, j)
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	writeJSON(w, http.StatusOK, map[string]any{"jobs": s.m.Jobs(JobFilter{Study: q.Get("study"), Phase: Phase(q.Get("phase"))})})
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.m.Job(r.PathValue("id"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.m.Cancel(r.PathValue("id"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, j)
}

func (s *Server) jobLogs(w http.ResponseWriter, r *http.Request) {
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	rc, err := s.m.Logs(r.Context(), r.PathValue("id"), follow)
	if err != nil {
		s.writeError(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *Server) submitStudy(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	spec, err := ParseStudySpec("request", body)
	if err != nil {
		s.writeError(w, fmt.Errorf("%w: %w", ErrInvalid, err))
		return
	}
	st, err := s.m.SubmitStudy(*spec)
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("Location", StudiesPath+"/"+st.ID)
	writeJSON(w, http.StatusCreated, st)
}

func (s *Server) listStudies(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"studies": s.m.Studies()})
}

func (s *Server) getStudy(w http.ResponseWriter, r *http.Request) {
	st, err := s.m.Study(r.PathValue("id"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) cancelStudy(w http.ResponseWriter, r *http.Request) {
	st, err := s.m.CancelStudy(r.PathValue("id"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, st)
}
