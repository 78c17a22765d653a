package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Mode selects how requests are paced.
type Mode string

const (
	// ModeOpen sends requests at a fixed rate, whatever the server does.
	// Latency is measured from each request's scheduled send time.
	ModeOpen Mode = "open"
	// ModeClosed keeps Connections requests in flight: each worker sends its
	// next request as soon as the previous one completes. Latency is measured
	// from the actual send time.
	ModeClosed Mode = "closed"
)

// Defaults applied by Run to zero Config fields.
const (
	DefaultConnections = 50
	DefaultTimeout     = 2 * time.Second
	DefaultName        = "run"
)

// maxRate bounds Config.Rate so slot arithmetic stays exact in float64.
const maxRate = 10_000_000

// Header is one request header sent with every request.
type Header struct {
	Name  string
	Value string
}

// ParseHeader parses "Name: Value" as given on the command line.
func ParseHeader(s string) (Header, error) {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return Header{}, fmt.Errorf("cannot parse header %q: want \"Name: Value\"", s)
	}
	if strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
		return Header{}, fmt.Errorf("cannot parse header %q: name has spaces or value has line breaks", s)
	}
	return Header{Name: name, Value: strings.TrimSpace(value)}, nil
}

// Config describes one load run. Zero fields take the defaults documented on
// each field.
type Config struct {
	// Name labels the run in reports, e.g. "lariat" or "direct". Default "run".
	Name string
	// URL is the only target requests are sent to: http:// or https://,
	// host and port, path and query. Redirects are not followed.
	URL string
	// Method is the HTTP method. Default GET, or POST when a body is set.
	Method string
	// Headers are sent with every request. When a body is set and no
	// Content-Type is given, Content-Type is application/json.
	Headers []Header
	// Body is a request body template; see ParseTemplate for its
	// placeholders ({{seq}}, {{rand A B}}). Mutually exclusive with Bodies.
	Body string
	// Bodies are sent as they are, request i using Bodies[i % len(Bodies)];
	// see ReadBodies for loading a JSONL file. Mutually exclusive with Body.
	Bodies [][]byte

	// Mode is ModeOpen or ModeClosed. Default ModeClosed.
	Mode Mode
	// Rate is the open-loop request rate in requests per second. Required
	// in ModeOpen, must be zero in ModeClosed.
	Rate float64
	// Connections is the number of workers, each with its own keep-alive
	// connection, so it caps the requests in flight. In ModeOpen it must be
	// large enough for Rate times the worst latency; when it is not, requests
	// start late and the wait shows as latency and in Result.Generator.
	// Default 50.
	Connections int

	// Duration bounds the run in time. At least one of Duration and Requests
	// is required; the run stops at whichever comes first. In ModeOpen,
	// requests scheduled inside the window but not yet sent when it closes
	// are still sent during a grace period of Timeout.
	Duration time.Duration
	// Requests bounds the run in number of requests.
	Requests int64
	// Timeout bounds each request, from the moment it is sent. Default 2s.
	Timeout time.Duration
	// Deadline, when positive, counts in Result.Deadline the responses that
	// arrived within it (latency as in Result.Latency), e.g. a route's
	// timeout plus a small margin. It must not exceed Timeout.
	Deadline time.Duration

	// Progress, when set, receives live progress lines.
	Progress io.Writer
	// ProgressRedraw redraws a single line with '\r' (for a terminal);
	// otherwise a plain line is written every ProgressInterval.
	ProgressRedraw bool
	// ProgressInterval is the time between progress updates. Default 500ms
	// when redrawing, 5s otherwise.
	ProgressInterval time.Duration

	// Dial overrides how connections are opened, e.g. to an in-memory
	// listener. Nil dials the URL's host over TCP.
	Dial fasthttp.DialFunc

	// Conns, when set, holds the connections instead of the run: they are
	// reused from an earlier run with the same Conns (a warmup, a previous
	// round) and stay open afterwards, so the run measures kept-alive
	// connections only. It must be for the URL's host and hold at least
	// Connections connections; Dial is then ignored.
	Conns *Conns
}

// Conns is a pool of kept-alive connections to one host that successive
// runs share. It is safe for one run at a time.
type Conns struct {
	addr   string
	max    int
	client *fasthttp.HostClient
}

// NewConns returns a pool of up to max connections to the host of url,
// opened with dial (nil: TCP) when a run first needs them.
func NewConns(url string, max int, dial fasthttp.DialFunc) (*Conns, error) {
	t, err := (&Config{URL: url, Requests: 1, Connections: max}).prepare()
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, fmt.Errorf("a connection pool needs a positive size, got %d", max)
	}
	return &Conns{addr: t.addr, max: max, client: newClient(t.addr, t.isTLS, max, dial)}, nil
}

// Close closes the idle connections.
func (c *Conns) Close() {
	c.client.CloseIdleConnections()
}

func newClient(addr string, isTLS bool, maxConns int, dial fasthttp.DialFunc) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                      addr,
		IsTLS:                     isTLS,
		Dial:                      dial,
		Name:                      "lariat-bench",
		MaxConns:                  maxConns,
		MaxIdemponentCallAttempts: 1, // a retry would hide a failure
		ReadBufferSize:            16 << 10,
		DisablePathNormalizing:    true,
		MaxIdleConnDuration:       time.Minute,
	}
}

// target is the validated, normalized form of Config.
type target struct {
	cfg      Config
	addr     string
	isTLS    bool
	method   string
	tmpl     *Template
	interval float64 // ns between open-loop slots
}

func (c *Config) prepare() (*target, error) {
	t := &target{cfg: *c}
	cfg := &t.cfg
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeClosed
	}
	if cfg.Connections == 0 {
		cfg.Connections = DefaultConnections
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = 5 * time.Second
		if cfg.ProgressRedraw {
			cfg.ProgressInterval = 500 * time.Millisecond
		}
	}

	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse url %q: %w", cfg.URL, err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		t.isTLS = true
	default:
		return nil, fmt.Errorf("url %q: scheme must be http or https", cfg.URL)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("url %q: missing host", cfg.URL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("url %q: user info is not supported; send an Authorization header", cfg.URL)
	}
	t.addr = u.Host
	if u.Port() == "" {
		port := "80"
		if t.isTLS {
			port = "443"
		}
		t.addr = u.Host + ":" + port
	}

	hasBody := cfg.Body != "" || len(cfg.Bodies) > 0
	if cfg.Body != "" && len(cfg.Bodies) > 0 {
		return nil, errors.New("set either a body template or bodies, not both")
	}
	if cfg.Body != "" {
		if t.tmpl, err = ParseTemplate(cfg.Body); err != nil {
			return nil, err
		}
	}
	t.method = strings.ToUpper(cfg.Method)
	if t.method == "" {
		t.method = fasthttp.MethodGet
		if hasBody {
			t.method = fasthttp.MethodPost
		}
	}
	for _, h := range cfg.Headers {
		if h.Name == "" || strings.ContainsAny(h.Name, " \t\r\n:") || strings.ContainsAny(h.Value, "\r\n") {
			return nil, fmt.Errorf("invalid header %q", h.Name)
		}
	}

	switch cfg.Mode {
	case ModeOpen:
		if !(cfg.Rate > 0) || cfg.Rate > maxRate || math.IsInf(cfg.Rate, 0) {
			return nil, fmt.Errorf("open mode needs a rate in (0, %d] requests per second, got %v", maxRate, cfg.Rate)
		}
		t.interval = float64(time.Second) / cfg.Rate
	case ModeClosed:
		if cfg.Rate != 0 {
			return nil, errors.New("a rate applies only to open mode")
		}
	default:
		return nil, fmt.Errorf("unknown mode %q: want %q or %q", cfg.Mode, ModeOpen, ModeClosed)
	}
	if cfg.Connections < 0 {
		return nil, fmt.Errorf("connections must be positive, got %d", cfg.Connections)
	}
	if cfg.Duration < 0 || cfg.Requests < 0 || cfg.Timeout < 0 || cfg.ProgressInterval < 0 || cfg.Deadline < 0 {
		return nil, errors.New("duration, requests, timeout, deadline and progress interval must not be negative")
	}
	if cfg.Deadline > cfg.Timeout {
		return nil, fmt.Errorf("deadline %s is longer than the request timeout %s", cfg.Deadline, cfg.Timeout)
	}
	if cfg.Duration == 0 && cfg.Requests == 0 {
		return nil, errors.New("set a duration or a number of requests (or both)")
	}
	if c := cfg.Conns; c != nil {
		if c.addr != t.addr {
			return nil, fmt.Errorf("the connection pool is for %s, not %s", c.addr, t.addr)
		}
		if c.max < cfg.Connections {
			return nil, fmt.Errorf("the connection pool holds %d connections, fewer than the run's %d", c.max, cfg.Connections)
		}
	}
	return t, nil
}

// Validate reports whether c describes a runnable load, without sending
// anything.
func (c *Config) Validate() error {
	_, err := c.prepare()
	return err
}
