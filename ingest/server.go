package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/promexpo"
)

// ServerOptions configure a Server. Zero values take the defaults.
type ServerOptions struct {
	// PushSources maps a push source name to the feature views it feeds, as
	// Feast's push sources do. A name not listed feeds the view of that name.
	PushSources map[string][]string
	// Schema applies to every view (project override, key expiry).
	Schema SchemaOptions
	// MaxRequestBodySize in bytes; default 16 MiB.
	MaxRequestBodySize int
	// WriteTimeout bounds the Redis writes of one request; default 10s.
	WriteTimeout time.Duration
	// Logf logs internal errors (those answered with 5xx); default log.Printf.
	Logf func(format string, args ...any)
}

// Server serves Feast's write API for streaming writers:
//
//	POST /push                   {"push_source_name": "...", "df": {"column": [values...], ...}, "to": "online"}
//	POST /write-to-online-store  {"feature_view_name": "...", "df": {...}}
//	GET  /healthz                200 when Redis answers, else 503
//	GET  /metrics                Prometheus text format
//
// A request's rows are all checked before any is written: one bad row
// answers 400 (as {"error": "...", "status_code": 400}) and writes nothing.
// Rows are then written newest-wins, like Load's. Success answers 200 with
// Feast's bodies (empty for /push, null for /write-to-online-store) and the
// headers X-Lariat-Rows-Written and X-Lariat-Rows-Skipped.
type Server struct {
	w       *Writer
	schemas map[string]*Schema
	push    map[string][]*Schema
	opts    ServerOptions
	srv     *fasthttp.Server
	metrics map[string]*routeMetrics
}

type routeMetrics struct {
	duration *metrics.PrometheusHistogram
	byCode   map[int]*metrics.Counter
}

var routeCodes = []int{200, 400, 404, 405, 413, 500, 503}

// NewServer compiles a Schema for every view of views and returns a Server
// writing through w. Push sources must name known views.
func NewServer(w *Writer, views *featurefetch.Views, opts ServerOptions) (*Server, error) {
	if opts.MaxRequestBodySize <= 0 {
		opts.MaxRequestBodySize = 16 << 20
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	s := &Server{w: w, schemas: map[string]*Schema{}, push: map[string][]*Schema{}, opts: opts, metrics: map[string]*routeMetrics{}}
	for _, fv := range views.FeatureViews {
		sch, err := NewSchema(views, fv.Name, opts.Schema)
		if err != nil {
			return nil, err
		}
		s.schemas[fv.Name] = sch
	}
	for src, names := range opts.PushSources {
		if len(names) == 0 {
			return nil, fmt.Errorf("push source %q feeds no view", src)
		}
		for _, name := range names {
			sch, ok := s.schemas[name]
			if !ok {
				return nil, fmt.Errorf("push source %q: unknown feature view %q", src, name)
			}
			s.push[src] = append(s.push[src], sch)
		}
	}
	for _, path := range []string{"/push", "/write-to-online-store", "/healthz", "/metrics", "other"} {
		label := `{path="` + path + `"`
		rm := &routeMetrics{
			duration: metrics.GetOrCreatePrometheusHistogram(`lariat_ingest_request_duration_seconds` + label + `}`),
			byCode:   map[int]*metrics.Counter{},
		}
		for _, code := range routeCodes {
			rm.byCode[code] = metrics.GetOrCreateCounter(`lariat_ingest_requests_total` + label + `,code="` + strconv.Itoa(code) + `"}`)
		}
		s.metrics[path] = rm
	}
	s.srv = &fasthttp.Server{
		Handler:            s.Handler,
		Name:               "lariat-ingest",
		ReadTimeout:        time.Minute,
		WriteTimeout:       time.Minute,
		IdleTimeout:        2 * time.Minute,
		MaxRequestBodySize: opts.MaxRequestBodySize,
		ErrorHandler:       s.requestError,
		Logger:             fasthttpLogger(opts.Logf),
	}
	return s, nil
}

// requestError answers requests fasthttp could not read.
func (s *Server) requestError(rc *fasthttp.RequestCtx, err error) {
	he := &httpError{status: fasthttp.StatusBadRequest, msg: "cannot read request: " + err.Error()}
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		he = &httpError{status: fasthttp.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body larger than %d bytes", s.opts.MaxRequestBodySize)}
	}
	s.answerError(rc, he)
}

type fasthttpLogger func(format string, args ...any)

func (l fasthttpLogger) Printf(format string, args ...any) { l(format, args...) }

// Serve serves HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(ln)
}

// Shutdown stops accepting connections and waits, at most until ctx ends,
// for open requests to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.ShutdownWithContext(ctx)
}

// httpError is an error answered with its status.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// Handler serves one request.
func (s *Server) Handler(rc *fasthttp.RequestCtx) {
	start := time.Now()
	path := string(rc.Path())
	rm, ok := s.metrics[path]
	if !ok {
		rm = s.metrics["other"]
	}
	var err error
	switch path {
	case "/push", "/write-to-online-store":
		if !rc.IsPost() {
			rc.Response.Header.Set("Allow", "POST")
			err = errorf(fasthttp.StatusMethodNotAllowed, "method %s not allowed; use POST", rc.Method())
			break
		}
		err = s.write(rc, path == "/push")
	case "/healthz":
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = s.w.Ping(ctx)
		cancel()
		if err != nil {
			err = errorf(fasthttp.StatusServiceUnavailable, "%s", err)
			break
		}
		rc.SetContentType("text/plain; charset=utf-8")
		rc.SetBodyString("ok\n")
	case "/metrics":
		rc.SetContentType(promexpo.ContentType)
		promexpo.WritePrometheus(rc)
	default:
		err = errorf(fasthttp.StatusNotFound, "no route %s; the routes are POST /push, POST /write-to-online-store, GET /healthz, GET /metrics", path)
	}
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			he = &httpError{status: fasthttp.StatusInternalServerError, msg: err.Error()}
		}
		if he.status >= 500 {
			s.opts.Logf("%s %s: %s", rc.Method(), path, he.msg)
		}
		s.answerError(rc, he)
	}
	if c, ok := rm.byCode[rc.Response.StatusCode()]; ok {
		c.Inc()
	}
	rm.duration.UpdateDuration(start)
}

// answerError sends {"error": msg, "status_code": status}.
func (s *Server) answerError(rc *fasthttp.RequestCtx, he *httpError) {
	body, _ := json.Marshal(struct {
		Error      string `json:"error"`
		StatusCode int    `json:"status_code"`
	}{he.msg, he.status})
	rc.SetStatusCode(he.status)
	rc.SetContentType("application/json")
	rc.SetBody(body)
}

// maxShownRowErrors bounds the rejected rows named in a 400 answer.
const maxShownRowErrors = 5

// write serves /push (push) and /write-to-online-store.
func (s *Server) write(rc *fasthttp.RequestCtx, push bool) error {
	body := rc.PostBody()
	if !gjson.ValidBytes(body) {
		return errorf(fasthttp.StatusBadRequest, "request body is not valid JSON")
	}
	// The results alias the body, which outlives this call's use of them.
	req := gjson.Parse(b2s(body))
	if !req.IsObject() {
		return errorf(fasthttp.StatusBadRequest, "request body must be a JSON object")
	}
	var targets []*Schema
	if push {
		name := req.Get("push_source_name")
		if name.Type != gjson.String || name.Str == "" {
			return errorf(fasthttp.StatusBadRequest, `"push_source_name" must be a non-empty string`)
		}
		switch to := req.Get("to"); {
		case !to.Exists() || to.Type == gjson.Null || to.Type == gjson.String && to.Str == "online":
		case to.Type == gjson.String && (to.Str == "offline" || to.Str == "online_and_offline"):
			return errorf(fasthttp.StatusBadRequest, `"to": %q is not supported; this server writes the online store only ("online")`, to.Str)
		default:
			return errorf(fasthttp.StatusBadRequest, `"to" must be "online", "offline" or "online_and_offline"`)
		}
		targets = s.push[name.Str]
		if targets == nil {
			if sch, ok := s.schemas[name.Str]; ok {
				targets = []*Schema{sch}
			} else {
				return errorf(fasthttp.StatusNotFound, "push source %q not found", name.Str)
			}
		}
	} else {
		name := req.Get("feature_view_name")
		if name.Type != gjson.String || name.Str == "" {
			return errorf(fasthttp.StatusBadRequest, `"feature_view_name" must be a non-empty string`)
		}
		sch, ok := s.schemas[name.Str]
		if !ok {
			return errorf(fasthttp.StatusNotFound, "feature view %q not found", name.Str)
		}
		targets = []*Schema{sch}
	}
	df, err := parseDF(req.Get("df"))
	if err != nil {
		return err
	}
	defer df.release()
	if df.n == 0 {
		rc.Response.Header.Set("X-Lariat-Rows-Written", "0")
		rc.Response.Header.Set("X-Lariat-Rows-Skipped", "0")
		if !push {
			rc.SetContentType("application/json")
			rc.SetBodyString("null")
		}
		return nil
	}

	// Check and encode every row of every target view, then write.
	batches := make([]*batch, 0, len(targets))
	defer func() {
		for _, b := range batches {
			b.s.putBatch(b)
		}
	}()
	var rejected []*RowError
	nRejected := 0
	var rowArr [32]gjson.Result
	for _, sch := range targets {
		if err := df.columnsFor(sch); err != nil {
			return err
		}
		b := sch.getBatch()
		batches = append(batches, b)
		row := rowArr[:0]
		if len(sch.columns) > len(rowArr) {
			row = make([]gjson.Result, 0, len(sch.columns))
		}
		row = row[:len(sch.columns)]
		for i := 0; i < df.n; i++ {
			for slot := range row {
				row[slot] = df.vals[df.slots[slot]+i]
			}
			if err := jsonRow(b, Pos{Row: int64(i), kind: posDFRow}, row); err != nil {
				var re *RowError
				if !errors.As(err, &re) {
					return err
				}
				sch.metrics.rejected[re.Reason].Inc()
				nRejected++
				if len(rejected) < maxShownRowErrors {
					rejected = append(rejected, re)
				}
			}
		}
	}
	if nRejected > 0 {
		return errorf(fasthttp.StatusBadRequest, "%s", rowErrorsMessage(rejected, nRejected, "rejected; nothing written"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.opts.WriteTimeout)
	defer cancel()
	var written, skipped int
	var failures []*RowError
	nFailed := 0
	for _, b := range batches {
		if err := s.w.write(ctx, b); err != nil {
			return errorf(fasthttp.StatusServiceUnavailable, "%s", err)
		}
		var w, sk int
		for _, o := range b.outcome {
			switch o {
			case outcomeWritten:
				w++
			case outcomeSkipped:
				sk++
			}
		}
		written += w
		skipped += sk
		b.s.metrics.written.Add(w)
		b.s.metrics.skipped.Add(sk)
		for _, re := range b.failures {
			b.s.metrics.rejected[re.Reason].Inc()
			nFailed++
			if len(failures) < maxShownRowErrors {
				failures = append(failures, re)
			}
		}
	}
	rc.Response.Header.Set("X-Lariat-Rows-Written", strconv.Itoa(written))
	rc.Response.Header.Set("X-Lariat-Rows-Skipped", strconv.Itoa(skipped))
	if nFailed > 0 {
		return errorf(fasthttp.StatusInternalServerError, "%s", rowErrorsMessage(failures, nFailed, "not written"))
	}
	rc.SetStatusCode(fasthttp.StatusOK)
	if !push {
		rc.SetContentType("application/json")
		rc.SetBodyString("null")
	}
	return nil
}

func rowErrorsMessage(errs []*RowError, n int, what string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d rows %s: ", n, what)
	for i, e := range errs {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(e.Error())
	}
	if n > len(errs) {
		fmt.Fprintf(&sb, "; and %d more", n-len(errs))
	}
	return sb.String()
}

// dataFrame is a push request's df: column name -> one value per row, all
// values in one slice. The results alias the request body.
type dataFrame struct {
	n     int
	names []string
	first []int // per column: index of its first value in vals
	vals  []gjson.Result
	slots []int // per schema column: index of its first value, for columnsFor
}

var dataFramePool = sync.Pool{New: func() any { return new(dataFrame) }}

func (d *dataFrame) release() {
	clear(d.vals)
	clear(d.names)
	d.vals, d.names, d.first, d.slots = d.vals[:0], d.names[:0], d.first[:0], d.slots[:0]
	dataFramePool.Put(d)
}

func parseDF(df gjson.Result) (*dataFrame, error) {
	if !df.IsObject() {
		return nil, errorf(fasthttp.StatusBadRequest, `"df" must be an object mapping column names to lists of values`)
	}
	d := dataFramePool.Get().(*dataFrame)
	d.n = -1
	var err error
	df.ForEach(func(k, v gjson.Result) bool {
		if !v.IsArray() {
			err = errorf(fasthttp.StatusBadRequest, "df: column %q must be a list of values", k.Str)
			return false
		}
		start := len(d.vals)
		v.ForEach(func(_, e gjson.Result) bool {
			d.vals = append(d.vals, e)
			return true
		})
		n := len(d.vals) - start
		switch {
		case d.n < 0:
			d.n = n
		case n != d.n:
			err = errorf(fasthttp.StatusBadRequest, "df: column %q has %d values, column %q has %d", k.Str, n, d.names[0], d.n)
			return false
		}
		d.names = append(d.names, k.Str)
		d.first = append(d.first, start)
		return true
	})
	if err != nil {
		d.release()
		return nil, err
	}
	if d.n < 0 {
		d.n = 0
	}
	return d, nil
}

// columnsFor finds the df columns of sch's columns; value of schema column
// slot in row i is then d.vals[d.slots[slot]+i].
func (d *dataFrame) columnsFor(sch *Schema) error {
	d.slots = d.slots[:0]
	var missing []string
	for _, col := range sch.columns {
		at := -1
		// Few columns: a linear search beats building a map per request.
		for i, name := range d.names {
			if name == col.Name {
				at = d.first[i] // a repeated name: the last one wins
			}
		}
		if at < 0 {
			missing = append(missing, strconv.Quote(col.Name))
		}
		d.slots = append(d.slots, at)
	}
	if missing != nil {
		slices.Sort(missing)
		return errorf(fasthttp.StatusBadRequest, "df: feature view %q needs missing columns %s", sch.view.Name, strings.Join(missing, ", "))
	}
	return nil
}

// maxPooledBatchBytes keeps unusually large batches out of the pool.
const maxPooledBatchBytes = 1 << 20

// getBatch returns a batch for a request, from the schema's pool.
func (s *Schema) getBatch() *batch {
	if b, ok := s.pool.Get().(*batch); ok {
		return b
	}
	return newBatch(s, 16)
}

// putBatch returns b to the pool; b must not be used afterwards.
func (s *Schema) putBatch(b *batch) {
	if cap(b.buf) > maxPooledBatchBytes {
		return
	}
	b.reset()
	s.pool.Put(b)
}
