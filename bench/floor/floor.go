// Package floor owns the direct floor of the benchmark scenarios: a minimal,
// hand-written fasthttp server that does the same upstream work as a gateway
// route (the same feature reads, one pipelined HMGET per entity through
// rueidis, and the same model calls, in parallel goroutines) and merges the
// answers by plain byte appends. It has none of the gateway's features: no
// routing table, templates, retries, circuit breakers, JSON validation of
// upstream answers, deadline or trace headers, metrics or logs. A scenario
// runs the same load through the gateway and through the floor; the ratio of
// the two is the gateway's cost.
package floor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/internal/accept"
)

// Model is one model call made for every request.
type Model struct {
	// Key is the field of the answer that holds this model's result; empty
	// means the answer is the model's result itself (one model only).
	Key string
	// Addr is the model server's host:port.
	Addr string
	// Path is the request path; default "/predict".
	Path string
	// Timeout bounds the call.
	Timeout time.Duration
	// Default is the JSON used in place of the result when the call fails
	// (an error, a timeout or a status other than 2xx). Without one the
	// request fails with status 502 (504 on a timeout).
	Default []byte
}

// Features is the feature read made before the model calls: for each entity
// id in the request, one HMGET of the view's features (and its event-time
// field, as the gateway reads it), all pipelined in one round trip. The rows
// become the models' request body.
type Features struct {
	// Redis is the online store's host:port.
	Redis string
	// Project is the feature-store project, part of every key.
	Project string
	// JoinKey is the entity's join key; its type must be INT64.
	JoinKey string
	// View is the feature view and Names the features read from it.
	View  string
	Names []string
	// IDs is the gjson path of the entity ids (an array of integers) in the
	// request body, e.g. "ids".
	IDs string
	// ModelBodyPrefix and ModelBodySuffix wrap the rows, a JSON array with
	// one object per entity, into the models' request body.
	ModelBodyPrefix string
	ModelBodySuffix string
	// Timeout bounds the read; default one second.
	Timeout time.Duration
}

// Config describes what the floor does per request. Without Features the
// request body is sent to every model as it is.
type Config struct {
	Models   []Model
	Features *Features
}

// Server is the direct floor.
type Server struct {
	models []model
	feat   *features
	srv    *fasthttp.Server
	pool   sync.Pool // *state
}

type model struct {
	Model
	client  *fasthttp.HostClient
	url     string
	keyJSON []byte // `"m1":`
}

type features struct {
	Features
	client    rueidis.Client
	joinKeys  []string // the one join key, as the entity key encoder takes it
	fields    []string // feature field hashes, then the event-time field
	entityKey []byte   // `{"entity_id":`
	nameJSON  [][]byte // `,"f0":`
}

// state is one request's scratch space, pooled.
type state struct {
	reqs   []fasthttp.Request
	resps  []fasthttp.Response
	errs   []error
	wg     sync.WaitGroup
	body   []byte // the models' request body, when built from features
	ids    []int64
	entity [1]featurefetch.EntityValue // the entity of the key being built
	keys   []byte
	ends   []int
	cmds   rueidis.Commands
	out    []byte
}

// New validates cfg and connects to the feature store when there is one.
func New(cfg Config) (*Server, error) {
	if len(cfg.Models) == 0 {
		return nil, errors.New("floor: no models configured")
	}
	s := &Server{}
	for i, m := range cfg.Models {
		if m.Addr == "" || m.Timeout <= 0 {
			return nil, fmt.Errorf("floor: model %d needs an address and a timeout", i)
		}
		if m.Key == "" && len(cfg.Models) > 1 {
			return nil, fmt.Errorf("floor: model %d has no key; only a single model may answer the whole body", i)
		}
		if m.Path == "" {
			m.Path = "/predict"
		}
		mm := model{Model: m, url: "http://" + m.Addr + m.Path}
		if m.Key != "" {
			mm.keyJSON = append(strconv.AppendQuote(nil, m.Key), ':')
		}
		mm.client = &fasthttp.HostClient{
			Addr:                          m.Addr,
			Name:                          "floor",
			MaxConns:                      1024,
			MaxIdleConnDuration:           60 * time.Second,
			MaxResponseBodySize:           64 << 20,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
		}
		s.models = append(s.models, mm)
	}
	if f := cfg.Features; f != nil {
		fs, err := newFeatures(*f)
		if err != nil {
			return nil, err
		}
		s.feat = fs
	}
	n := len(s.models)
	s.pool.New = func() any {
		st := &state{
			reqs:  make([]fasthttp.Request, n),
			resps: make([]fasthttp.Response, n),
			errs:  make([]error, n),
		}
		for i := range st.reqs {
			st.reqs[i].SetRequestURI(s.models[i].url)
			st.reqs[i].Header.SetMethod(fasthttp.MethodPost)
			st.reqs[i].Header.SetContentType("application/json")
		}
		return st
	}
	s.srv = &fasthttp.Server{
		Handler:         s.Handle,
		Name:            "floor",
		NoDefaultDate:   true,
		CloseOnShutdown: true,
		ReadTimeout:     5 * time.Second,
		WriteTimeout:    5 * time.Second,
		IdleTimeout:     60 * time.Second,
	}
	return s, nil
}

func newFeatures(f Features) (*features, error) {
	if f.Redis == "" || f.Project == "" || f.JoinKey == "" || f.View == "" || len(f.Names) == 0 || f.IDs == "" {
		return nil, errors.New("floor: features need a redis address, project, join key, view, feature names and ids path")
	}
	if f.Timeout <= 0 {
		f.Timeout = time.Second
	}
	fs := &features{Features: f}
	fs.joinKeys = []string{f.JoinKey}
	for _, name := range f.Names {
		fs.fields = append(fs.fields, featurefetch.FieldHash(f.View, name))
		fs.nameJSON = append(fs.nameJSON, append(strconv.AppendQuote([]byte(","), name), ':'))
	}
	fs.fields = append(fs.fields, featurefetch.TimestampField(f.View))
	fs.entityKey = append(strconv.AppendQuote([]byte("{"), f.JoinKey), ':')
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{f.Redis},
		ForceSingleClient: true,
		DisableCache:      true,
		ClientName:        "floor",
	})
	if err != nil {
		return nil, fmt.Errorf("floor: cannot connect to redis at %s: %w", f.Redis, err)
	}
	fs.client = c
	return fs, nil
}

// Serve serves ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(accept.Retrying(ln, nil))
}

// Shutdown stops accepting connections, waits for requests in flight and
// closes the feature-store client.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.ShutdownWithContext(ctx)
	s.Close()
	return err
}

// Close closes the feature-store client, if any.
func (s *Server) Close() {
	if s.feat != nil {
		s.feat.client.Close()
	}
}

// Handle answers one request; it is the server's fasthttp handler.
// GET /-/healthz answers {"status":"ok"}; every other request runs the
// configured calls.
func (s *Server) Handle(rc *fasthttp.RequestCtx) {
	if string(rc.Path()) == "/-/healthz" {
		rc.SetContentType("application/json")
		rc.SetBodyString(`{"status":"ok"}`)
		return
	}
	st := s.pool.Get().(*state)
	defer s.pool.Put(st)

	body := rc.PostBody()
	if s.feat != nil {
		var err error
		st.body, err = s.feat.appendBody(st, st.body[:0], body)
		if err != nil {
			fail(rc, fasthttp.StatusBadGateway, err.Error())
			return
		}
		body = st.body
	}

	// The body stays valid until the handler returns, which waits for
	// every call.
	n := len(s.models)
	st.wg.Add(n - 1)
	for i := 1; i < n; i++ {
		go s.callAsync(st, i, body)
	}
	s.call(st, 0, body)
	st.wg.Wait()

	out := st.out[:0]
	if n == 1 && s.models[0].Key == "" {
		m := &s.models[0]
		switch {
		case st.errs[0] == nil:
			out = append(out, st.resps[0].Body()...)
		case m.Default != nil:
			out = append(out, m.Default...)
		default:
			failCall(rc, st.errs[0])
			return
		}
	} else {
		out = append(out, '{')
		for i := range s.models {
			m := &s.models[i]
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, m.keyJSON...)
			switch {
			case st.errs[i] == nil:
				out = append(out, st.resps[i].Body()...)
			case m.Default != nil:
				out = append(out, m.Default...)
			default:
				failCall(rc, st.errs[i])
				return
			}
		}
		out = append(out, '}')
	}
	st.out = out
	rc.SetContentType("application/json")
	rc.SetBody(out)
}

func (s *Server) callAsync(st *state, i int, body []byte) {
	s.call(st, i, body)
	st.wg.Done()
}

var errStatus = errors.New("model answered with a non-2xx status")

func (s *Server) call(st *state, i int, body []byte) {
	m := &s.models[i]
	req, resp := &st.reqs[i], &st.resps[i]
	req.SetBodyRaw(body)
	err := m.client.DoTimeout(req, resp, m.Timeout)
	if err == nil {
		if c := resp.StatusCode(); c < 200 || c > 299 {
			err = errStatus
		}
	}
	st.errs[i] = err
}

func failCall(rc *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrTimeout) {
		fail(rc, fasthttp.StatusGatewayTimeout, "model call timed out")
		return
	}
	fail(rc, fasthttp.StatusBadGateway, "model call failed: "+err.Error())
}

func fail(rc *fasthttp.RequestCtx, status int, msg string) {
	rc.SetStatusCode(status)
	rc.SetContentType("application/json")
	b := strconv.AppendQuote([]byte(`{"error":`), msg)
	rc.SetBody(append(b, '}'))
}

// appendBody reads the features of the request's entities and appends the
// models' request body to dst.
func (f *features) appendBody(st *state, dst, reqBody []byte) ([]byte, error) {
	ids := gjson.GetBytes(reqBody, f.IDs)
	if !ids.IsArray() {
		return dst, fmt.Errorf("request has no %q array of entity ids", f.IDs)
	}
	st.ids = st.ids[:0]
	st.keys = st.keys[:0]
	st.ends = st.ends[:0]
	var err error
	ids.ForEach(func(_, v gjson.Result) bool {
		id := v.Int()
		st.ids = append(st.ids, id)
		st.entity[0] = featurefetch.EntityValue{Type: featurefetch.TypeInt64, Int: id}
		st.keys, err = featurefetch.AppendEntityKey(st.keys, f.Project, f.joinKeys, st.entity[:])
		st.ends = append(st.ends, len(st.keys))
		return err == nil
	})
	if err != nil {
		return dst, err
	}
	// One allocation for every key: rueidis keeps them until the answer.
	all := string(st.keys)
	st.cmds = st.cmds[:0]
	start := 0
	for _, end := range st.ends {
		st.cmds = append(st.cmds, f.client.B().Hmget().Key(all[start:end]).Field(f.fields...).Build())
		start = end
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.Timeout)
	defer cancel()
	res := f.client.DoMulti(ctx, st.cmds...)
	clear(st.cmds)

	dst = append(dst, f.ModelBodyPrefix...)
	dst = append(dst, '[')
	for i, r := range res {
		vals, err := r.ToArray()
		if err != nil {
			return dst, fmt.Errorf("cannot read features: %w", err)
		}
		if len(vals) != len(f.fields) {
			return dst, fmt.Errorf("cannot read features: HMGET returned %d values for %d fields", len(vals), len(f.fields))
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, f.entityKey...)
		dst = strconv.AppendInt(dst, st.ids[i], 10)
		for j, name := range f.nameJSON {
			dst = append(dst, name...)
			if vals[j].IsNil() {
				dst = append(dst, "null"...)
				continue
			}
			s, err := vals[j].ToString()
			if err != nil {
				return dst, fmt.Errorf("cannot read features: %w", err)
			}
			if dst, _, err = featurefetch.AppendValueJSON(dst, s2b(s)); err != nil {
				dst = append(dst, "null"...)
			}
		}
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	return append(dst, f.ModelBodySuffix...), nil
}

// s2b returns the bytes of s without copying; they must only be read.
func s2b(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
