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
	if cfg.Duration < 0 || cfg.Requests < 0 || cfg.Timeout < 0 || cfg.ProgressInterval < 0 {
		return nil, errors.New("duration, requests, timeout and progress interval must not be negative")
	}
	if cfg.Duration == 0 && cfg.Requests == 0 {
		return nil, errors.New("set a duration or a number of requests (or both)")
	}
	return t, nil
}

// Validate reports whether c describes a runnable load, without sending
// anything.
func (c *Config) Validate() error {
	_, err := c.prepare()
	return err
}
