package upstream

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/lariat-gw/lariat/internal/shortage"
	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"
)

// Options are the connection and protection settings every upstream
// shares. The zero value of a field means its default.
type Options struct {
	// MaxConns bounds the connections to one upstream host (1024). A try
	// that finds them all busy is refused as overloaded, not counted
	// against the upstream.
	MaxConns int
	// IdleTimeout closes a kept-alive connection idle this long (4s),
	// before common servers' own keep-alive timeouts (uvicorn 5s, Node
	// 5s) close it under a request.
	IdleTimeout time.Duration
	// DialTimeout bounds connecting (3s; never past the try's deadline).
	DialTimeout time.Duration
	// MaxBodySize is the largest answer body read, chunked or not
	// (16 MiB); a larger answer fails the try with ErrTooLarge.
	MaxBodySize int
	// BodyMemory bounds the memory of large answers being read at once
	// across all upstreams (16 MiB): the capacity their body buffers grow
	// into, the first 64 KiB of each answer not counted. Past it, the
	// reads that need more memory fail as overloaded, so that many large
	// answers at once cannot exhaust the gateway's memory; an answer read
	// alone is never refused. Raise it with the memory given to the gateway
	// when upstreams answer megabytes routinely.
	BodyMemory int64
	// Breaker is the breaker of upstreams whose tasks set none.
	Breaker BreakerSettings
	// Limit is the adaptive concurrency limit of each upstream.
	Limit LimitSettings
	// Pipeline maps an upstream "host:port" (as routes name it, lower
	// case) to the number of connections its calls are pipelined over
	// (HTTP/1.1 pipelining): calls waiting at the same time go out in one
	// write and their answers come back in one read, which saves system
	// calls on both sides under load. Only for upstreams that answer
	// fast: the upstream answers a connection's requests in order, so a
	// slow answer delays the ones queued behind it, and a connection
	// whose answer takes longer than PipelineReadTimeout is closed,
	// failing the calls queued on it. Upstreams not listed get a
	// connection per call in flight.
	Pipeline map[string]int
	// Logger, when set, receives a line when a breaker opens and one when
	// it closes again.
	Logger *slog.Logger
	// Transport, when set, replaces the network: tests pass a plain
	// function.
	Transport Transport
	// Dial, when set, replaces dialing TCP under the default Transport:
	// tests pass in-memory connections, so that connection timing runs
	// under virtual time.
	Dial func(addr string, timeout time.Duration) (net.Conn, error)
}

// PipelineReadTimeout bounds the wait for each answer on a pipelined
// connection (see Options.Pipeline).
const PipelineReadTimeout = 2 * time.Second

// DefaultOptions are the settings used where Options leave a field zero.
var DefaultOptions = Options{
	MaxConns:    1024,
	IdleTimeout: 4 * time.Second,
	DialTimeout: 3 * time.Second,
	MaxBodySize: 16 << 20,
	BodyMemory:  16 << 20,
	Breaker:     DefaultBreaker,
	Limit:       DefaultLimit,
}

func (o Options) withDefaults() Options {
	d := DefaultOptions
	if o.MaxConns <= 0 {
		o.MaxConns = d.MaxConns
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = d.IdleTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = d.DialTimeout
	}
	if o.MaxBodySize <= 0 {
		o.MaxBodySize = d.MaxBodySize
	}
	if o.BodyMemory <= 0 {
		o.BodyMemory = d.BodyMemory
	}
	if o.Breaker == (BreakerSettings{}) {
		o.Breaker = d.Breaker
	} else {
		o.Breaker = d.Breaker.Merge(o.Breaker)
	}
	if o.Limit == (LimitSettings{}) {
		o.Limit = d.Limit
	}
	return o
}

// Transport sends req to the host and reads its answer into resp by
// deadline. The default one is fasthttp's, with one resend on a fresh
// connection when a kept-alive one turns out dead.
type Transport func(h *Host, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error

// Pool keeps one Host per upstream host:port and one breaker per
// upstream and breaker setting. They outlive route reloads, so
// connections stay warm and limits keep what they learned.
type Pool struct {
	o       Options
	resolve map[string]string
	budget  *memBudget

	mu       sync.Mutex
	hosts    map[string]*Host
	breakers map[string]*Breaker
	// labels counts the breakers by label (their shared series).
	labels map[string]int

	staleResends *metrics.Counter

	// dialer dials upstreams by name, caching what DNS answered for
	// dnsCacheDuration; dnsForgotAt is when a failed dial last made it
	// forget (unix nanoseconds).
	dialer      *fasthttp.TCPDialer
	dnsForgotAt atomic.Int64
	// tlsSessions keeps TLS sessions to resume, by server name.
	tlsSessions tls.ClientSessionCache
}

// dnsCacheDuration is how long an upstream name resolved is dialled
// without asking DNS again (fasthttp's default is a minute): the
// addresses behind a name change when the model server's pods or load
// balancer nodes are replaced. A failed dial forgets them at once.
const dnsCacheDuration = 10 * time.Second

// dnsForgetEvery spaces the DNS queries failed dials cause, so that an
// upstream that is down does not cost a query per call.
var dnsForgetEvery = time.Second

// dialTCP dials addr (host:port, the host a name or an address); when the
// dial fails for want of the upstream, the names resolved are forgotten,
// so that the next dial asks DNS for the upstream's addresses now.
func (p *Pool) dialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := p.dialer.DialTimeout(addr, timeout)
	if err != nil && !shortage.Local(err) {
		now := time.Now().UnixNano()
		if last := p.dnsForgotAt.Load(); now-last >= int64(dnsForgetEvery) && p.dnsForgotAt.CompareAndSwap(last, now) {
			p.dialer.FlushDNSCache()
		}
	}
	return c, err
}

// NewPool returns a pool; resolve maps "host" or "host:port" to the
// address to dial instead of resolving the name.
func NewPool(resolve map[string]string, o Options) *Pool {
	o = o.withDefaults()
	return &Pool{
		o:            o,
		resolve:      resolve,
		budget:       &memBudget{max: o.BodyMemory},
		hosts:        map[string]*Host{},
		breakers:     map[string]*Breaker{},
		labels:       map[string]int{},
		staleResends: metrics.GetOrCreateCounter(`lariat_upstream_stale_connections_total`),
		dialer:       &fasthttp.TCPDialer{DNSCacheDuration: dnsCacheDuration},
		tlsSessions:  tls.NewLRUClientSessionCache(1024),
	}
}

// Options returns the pool's settings, defaults applied.
func (p *Pool) Options() Options { return p.o }

// DialAddr returns the address dialled for hostPort, after overrides.
func (p *Pool) DialAddr(hostPort string) string {
	hp := strings.ToLower(hostPort)
	if a, ok := p.resolve[hp]; ok {
		return withPort(a, hp)
	}
	host, _, err := net.SplitHostPort(hp)
	if err != nil {
		host = hp
	}
	if a, ok := p.resolve[host]; ok {
		return withPort(a, hp)
	}
	return hostPort
}

func withPort(addr, hostPort string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	_, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(addr, port)
}

// Host is one upstream host:port: its connection pool and its adaptive
// concurrency limit.
type Host struct {
	// Name is scheme://host:port, as metrics label it.
	Name   string
	client *fasthttp.HostClient
	// pipe, when set, carries the host's calls instead of client (see
	// Options.Pipeline).
	pipe  *fasthttp.PipelineClient
	limit *Limiter
	pool  *Pool
	// refs counts the targets using the host (under Pool.mu).
	refs int
	// answers follows the answers of the host's targets.
	answers Answers
}

// Client returns the host's connection pool.
func (h *Host) Client() *fasthttp.HostClient { return h.client }

// Limiter returns the host's concurrency limit (nil when disabled).
func (h *Host) Limiter() *Limiter { return h.limit }

// hostLocked returns the Host of scheme and hostPort, creating it once;
// p.mu is held.
func (p *Pool) hostLocked(tlsOn bool, hostPort string) *Host {
	name := "http://" + hostPort
	if tlsOn {
		name = "https://" + hostPort
	}
	if h := p.hosts[name]; h != nil {
		return h
	}
	h := &Host{Name: name, pool: p, limit: NewLimiter(name, p.o.Limit)}
	dialAddr := p.DialAddr(hostPort)
	dial := p.o.Dial
	if dial == nil {
		dial = p.dialTCP
	}
	h.client = &fasthttp.HostClient{
		Addr:                          dialAddr,
		Name:                          "lariat",
		IsTLS:                         tlsOn,
		MaxConns:                      p.o.MaxConns,
		MaxIdleConnDuration:           p.o.IdleTimeout,
		MaxResponseBodySize:           p.o.MaxBodySize,
		ReadBufferSize:                maxAnswerHeaderBytes,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		// Retries are the caller's: fasthttp never resends on its own.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			c, err := dial(addr, min(timeout, p.o.DialTimeout))
			if err != nil {
				return nil, err
			}
			tc := &trackedConn{Conn: c, budget: p.budget}
			tc.addr.conn = tc
			return tc, nil
		},
	}
	if tlsOn {
		hostName, _, _ := net.SplitHostPort(hostPort)
		// Sessions are resumed: a connection that replaces one closed
		// idle skips the full handshake.
		h.client.TLSConfig = &tls.Config{ServerName: hostName, MinVersion: tls.VersionTLS12, ClientSessionCache: p.tlsSessions}
	}
	if n := p.o.Pipeline[strings.ToLower(hostPort)]; n > 0 {
		h.pipe = &fasthttp.PipelineClient{
			Addr:                dialAddr,
			Name:                "lariat",
			IsTLS:               tlsOn,
			TLSConfig:           h.client.TLSConfig,
			MaxConns:            n,
			MaxPendingRequests:  p.o.MaxConns,
			MaxIdleConnDuration: p.o.IdleTimeout,
			MaxResponseBodySize: p.o.MaxBodySize,
			ReadBufferSize:      maxAnswerHeaderBytes,
			ReadTimeout:         PipelineReadTimeout,
			// A failed connection fails the calls on it, which count it.
			Logger:                        quietLogger{},
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			Dial: func(addr string) (net.Conn, error) {
				return dial(addr, p.o.DialTimeout)
			},
		}
	}
	p.hosts[name] = h
	return h
}

// Breaker returns the breaker shared by every target of tenant's routes
// on upstream (a Host's Name) with settings s; nil when s disables it.
// Each tenant has its own breakers ("" is the routes without a tenant),
// so one tenant's failing calls cannot open another's.
func (p *Pool) Breaker(tenant, upstream string, s BreakerSettings) *Breaker {
	if s.Disabled {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.breakerLocked(tenant, upstream, s)
}

func (p *Pool) breakerLocked(tenant, upstream string, s BreakerSettings) *Breaker {
	key := upstream + "|" + s.key()
	if tenant != "" {
		key = tenant + "|" + key
	}
	if b := p.breakers[key]; b != nil {
		return b
	}
	b := NewTenantBreaker(tenant, upstream, s)
	b.key = key
	b.SetLogger(p.o.Logger)
	p.breakers[key] = b
	p.labels[b.label]++
	return b
}

// Target returns a target of tenant's routes ("" for none) calling path
// on scheme://host (host as written in the route; hostPort is what it
// resolves to), guarded by the tenant's breaker with settings bs.
// Connections and the adaptive limit of a host are shared by all tenants.
//
// The target holds its host and breaker until Release: the last target
// to let go of them retires them (their series leave /metrics).
func (p *Pool) Target(tenant, scheme, host, hostPort, path string, bs BreakerSettings) *Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.hostLocked(scheme == "https", hostPort)
	h.refs++
	tg := &Target{Host: h, Scheme: scheme, HostHdr: host, Path: path, answered: h.answers.Join()}
	if !bs.Disabled {
		tg.Breaker = p.breakerLocked(tenant, h.Name, bs)
		tg.Breaker.refs++
	}
	return tg
}

// Release lets go of the target's host and breaker; the last target to
// let go of one retires it. Calls still running on the target finish;
// a target made later for the same host starts afresh. Release is
// idempotent.
func (tg *Target) Release() {
	if tg.Host == nil || tg.Host.pool == nil || !tg.released.CompareAndSwap(false, true) {
		return
	}
	p := tg.Host.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := tg.Host; h.refs > 0 {
		tg.answered.Leave()
		if h.refs--; h.refs == 0 && p.hosts[h.Name] == h {
			delete(p.hosts, h.Name)
			h.limit.unregister()
			h.client.CloseIdleConnections()
		}
	}
	if b := tg.Breaker; b != nil && b.refs > 0 {
		if b.refs--; b.refs == 0 && p.breakers[b.key] == b {
			delete(p.breakers, b.key)
			p.labels[b.label]--
			shared := p.labels[b.label] > 0
			if !shared {
				delete(p.labels, b.label)
			}
			b.unregister(shared)
		}
	}
}

// CloseIdle closes idle upstream connections.
func (p *Pool) CloseIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		h.client.CloseIdleConnections()
	}
}

// OpenConns counts the open upstream connections, busy and idle, but for
// pipelined ones (Options.Pipeline).
func (p *Pool) OpenConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, h := range p.hosts {
		n += h.client.ConnsCount()
	}
	return n
}

// BreakerStates returns the state of every breaker by upstream and
// settings, for status pages.
func (p *Pool) BreakerStates() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]string, len(p.breakers))
	for k, b := range p.breakers {
		out[k] = b.State()
	}
	return out
}

// roundTrip is the default Transport: one call on the host's connection
// pool. A request that meets a kept-alive connection the upstream has
// closed (it idled past the upstream's keep-alive timeout, or the
// upstream restarted) fails before any answer byte: the upstream never
// saw it, so it is sent once more, on a fresh connection, and the
// host's other idle connections, as old as the dead one, are dropped.
func roundTrip(h *Host, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	if h.pipe != nil {
		return pipelined(h, req, resp, deadline)
	}
	err := h.client.DoDeadline(req, resp, deadline)
	if err != nil && earlyAnswer(resp) {
		// The upstream answered before taking the whole request.
		settle(resp, false)
		return nil
	}
	if err != nil && deadConn(err, resp) && time.Now().Before(deadline) {
		h.pool.staleResends.Inc()
		h.client.CloseIdleConnections()
		err = h.client.DoDeadline(req, resp, deadline)
	}
	if err != nil {
		err = connFailure(resp, err)
	}
	settle(resp, err == nil)
	return err
}

// connFailure returns the failure of the connection of resp when err
// hides it: fasthttp reports a failure in the middle of a chunked answer
// as ErrBrokenChunk, which does not unwrap, so the answer memory refusing
// a read or a read running past its deadline would otherwise look like a
// broken connection.
func connFailure(resp *fasthttp.Response, err error) error {
	a, ok := resp.RemoteAddr().(*connAddr)
	switch {
	case !ok:
		return err
	case a.conn.memoryRefused.Load() && !errors.Is(err, errMemory):
		return fmt.Errorf("%w (%w)", errMemory, err)
	case a.conn.timedOut.Load() && !isTimeout(err):
		return fmt.Errorf("%w (%w)", fasthttp.ErrTimeout, err)
	}
	return err
}

// isTimeout reports whether err is a timeout: of the call, of dialing, or
// of a read or write.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.As(err, &ne) && ne.Timeout()
}

// quietLogger drops fasthttp's log lines.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// pipelined sends req on a pipelined connection. The pipeline takes the
// request's body and may still write it after a timeout returned, so it
// gets a copy, and req stays whole for a retry.
//
// A request queued on a pipelined connection that stopped (closed after
// an answer behind which it waited ran out of time) was not served: an
// upstream serves a connection's requests in order, and the one before
// it never finished. It is sent once more, on the next connection.
func pipelined(h *Host, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	cp := fasthttp.AcquireRequest()
	req.CopyTo(cp)
	err := h.pipe.DoDeadline(cp, resp, deadline)
	if err != nil && err.Error() == errPipelineConnStopped && time.Now().Before(deadline) {
		h.pool.staleResends.Inc()
		resp.Reset()
		req.CopyTo(cp)
		err = h.pipe.DoDeadline(cp, resp, deadline)
	}
	fasthttp.ReleaseRequest(cp)
	return err
}

// errPipelineConnStopped is the text of the error fasthttp's pipelined
// client fails the requests still queued on a connection that stopped
// with (the error itself is not exported).
const errPipelineConnStopped = "pipeline connection has been stopped"

// deadConn reports whether err is a kept-alive connection found dead: the
// connection had carried an answer before, and failed on this request
// before any byte of an answer came.
func deadConn(err error, resp *fasthttp.Response) bool {
	a, ok := resp.RemoteAddr().(*connAddr)
	if !ok || !a.conn.answered.Load() {
		return false
	}
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// settle returns what reading the answer took from the memory budget,
// and marks the connection of a complete answer as having carried one.
func settle(resp *fasthttp.Response, answered bool) {
	if a, ok := resp.RemoteAddr().(*connAddr); ok {
		if answered {
			a.conn.answered.Store(true)
		}
		a.conn.release()
	}
}

// memBudget counts the memory of answers being read.
type memBudget struct {
	max  int64
	used atomic.Int64
}

// errMemory fails a read that would take the answer memory past its
// budget.
var errMemory = errors.New("answers being read exceed the gateway's answer memory")

// trackedConn is an upstream connection that knows whether it has carried
// an answer (so a failure on it may be a dead kept-alive connection) and
// charges the memory its answer takes to the answer memory budget until
// the answer is settled. One whose read or write ran out of time is closed
// with a reset.
type trackedConn struct {
	net.Conn
	budget   *memBudget
	addr     connAddr
	answered atomic.Bool
	// timedOut is set when a read or write passed its deadline: the
	// connection is left in the middle of a request.
	timedOut atomic.Bool
	// memoryRefused is set when the answer memory refused a read.
	memoryRefused atomic.Bool
	// read counts the bytes of the answer being read; charged is what the
	// budget holds for them.
	read    atomic.Int64
	charged atomic.Int64
	// written counts the bytes of the request being written; early holds
	// an answer the upstream sent before taking the whole request (see
	// Write).
	written atomic.Int64
	early   atomic.Pointer[[]byte]
}

// maxAnswerHeaderBytes bounds the status line and headers of an answer
// (fasthttp reads them whole into its read buffer, 4 KiB by default, too
// little for some proxies' and servers' headers).
const maxAnswerHeaderBytes = 16 << 10

// earlyAnswerBytes bounds the early answer read after a failed write, and
// earlyAnswerWait the wait for it.
const (
	earlyAnswerBytes = 4 << 10
	earlyAnswerWait  = 10 * time.Millisecond
)

// maxRead bounds one read of an answer, so that no read takes more than
// this much memory past the budget.
const maxRead = 64 << 10

// freeAnswerBytes of each answer are not charged to the budget: the
// answers of model servers are mostly smaller, and the budget is for the
// rare large ones.
const freeAnswerBytes = 64 << 10

// answerMemory is what an answer of n bytes read holds: nothing up to
// freeAnswerBytes, then the capacity of the body buffer that holds them,
// which grows by doubling.
func answerMemory(n int64) int64 {
	if n <= freeAnswerBytes {
		return 0
	}
	return 1 << bits.Len64(uint64(n-1))
}

// Read reserves the memory the answer will hold once b is read before
// reading into it. A read that would take the budget past its maximum
// fails, unless its answer is the only one charged: one answer up to the
// largest size allowed can always be read.
func (c *trackedConn) Read(b []byte) (int, error) {
	if len(b) > maxRead {
		b = b[:maxRead]
	}
	read, charged := c.read.Load(), c.charged.Load()
	if want := answerMemory(read+int64(len(b))) - charged; want > 0 {
		if used := c.budget.used.Add(want); used > c.budget.max && used != charged+want {
			c.budget.used.Add(-want)
			c.memoryRefused.Store(true)
			return 0, errMemory
		}
		charged = c.charged.Add(want)
	}
	n, err := c.Conn.Read(b)
	if err != nil {
		c.noteTimeout(err)
	}
	read = c.read.Add(int64(n))
	// Give back what was reserved for bytes that did not come.
	if over := charged - answerMemory(read); over > 0 {
		c.charged.Add(-over)
		c.budget.used.Add(-over)
	}
	return n, err
}

func (c *trackedConn) release() {
	c.read.Store(0)
	c.written.Store(0)
	if n := c.charged.Swap(0); n != 0 {
		c.budget.used.Add(-n)
	}
}

// Write writes b, noting a write that ran out of time. When the upstream
// closes the connection in the middle of a request it took the start of,
// it has most often answered first (413, a body larger than it accepts):
// that answer is kept for the transport (see earlyAnswer), rather than
// the write's failure making a refused request look like a broken
// upstream.
func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.noteTimeout(err)
		if c.written.Load() > 0 && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
			c.readEarlyAnswer()
		}
	}
	c.written.Add(int64(n))
	return n, err
}

// readEarlyAnswer reads what the upstream sent before closing, if
// anything.
func (c *trackedConn) readEarlyAnswer() {
	if c.Conn.SetReadDeadline(time.Now().Add(earlyAnswerWait)) != nil {
		return
	}
	buf := make([]byte, earlyAnswerBytes)
	n, _ := io.ReadFull(c.Conn, buf)
	if n > 0 {
		buf = buf[:n]
		c.early.Store(&buf)
	}
}

// earlyAnswer parses into resp the answer the upstream sent on resp's
// connection before taking the whole request, and reports whether there
// was one. Its body may be cut short.
func earlyAnswer(resp *fasthttp.Response) bool {
	a, ok := resp.RemoteAddr().(*connAddr)
	if !ok {
		return false
	}
	b := a.conn.early.Swap(nil)
	if b == nil {
		return false
	}
	resp.Reset()
	br := bufio.NewReader(bytes.NewReader(*b))
	if resp.Header.Read(br) != nil || resp.StatusCode() < 200 {
		return false
	}
	rest, _ := io.ReadAll(br)
	if n := resp.Header.ContentLength(); n >= 0 && n < len(rest) {
		rest = rest[:n]
	}
	resp.SetBodyRaw(rest)
	return true
}

func (c *trackedConn) noteTimeout(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
}

// Close closes the connection. One abandoned in the middle of a request (a
// try that timed out: the upstream hangs or is slow) is reset rather than
// closed gracefully: a graceful close would leave the socket waiting for
// the upstream's own close (FIN_WAIT2) as long as the upstream hangs,
// holding a local port, and a hanging upstream called a thousand times a
// second would use up the ports to it within seconds. A reset frees the
// socket and its port at once, and tells the upstream to stop working on
// the request.
func (c *trackedConn) Close() error {
	c.release()
	if c.timedOut.Load() {
		if tc, ok := c.Conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	return c.Conn.Close()
}

// RemoteAddr returns the peer's address, through which a response finds
// its connection again.
func (c *trackedConn) RemoteAddr() net.Addr { return &c.addr }

// connAddr is a connection's remote address that points back to it.
type connAddr struct{ conn *trackedConn }

func (a *connAddr) Network() string { return a.conn.Conn.RemoteAddr().Network() }
func (a *connAddr) String() string  { return a.conn.Conn.RemoteAddr().String() }

// Target is one endpoint a task calls: a path on a Host, with the
// breaker that guards it.
type Target struct {
	Host    *Host
	Breaker *Breaker
	// Scheme is http or https; HostHdr the Host header (the host as
	// written in the route); Path the path and query, for fixed
	// endpoints.
	Scheme  string
	HostHdr string
	Path    string

	// usual is the usual latency of the target's successful tries.
	usual UsualLatency
	// answered is the target's part of its host's answers.
	answered *Answered
	released atomic.Bool
}

// Prepare points req at the target: uri (the path and query) on the
// target's scheme and host.
func (tg *Target) Prepare(req *fasthttp.Request, uri []byte) {
	req.SetRequestURIBytes(uri)
	tg.setHost(req)
}

// Retarget points a copy of another target's request at tg's own path.
func (tg *Target) Retarget(req *fasthttp.Request) {
	req.SetRequestURI(tg.Path)
	tg.setHost(req)
}

func (tg *Target) setHost(req *fasthttp.Request) {
	req.URI().SetScheme(tg.Scheme)
	req.Header.SetHost(tg.HostHdr)
	req.UseHostHeader = true
}

// DeadlineHeader carries, on a call, the milliseconds left before the
// route deadline; a gateway receiving it keeps to it (see router).
const DeadlineHeader = "X-Lariat-Deadline-Ms"

var deadlineHeader = []byte(DeadlineHeader)

// pooledBodyMax is the largest answer body buffer kept for reuse: a
// larger one, left by a rare large answer, goes back to the garbage
// collector instead of holding memory in a pool.
const pooledBodyMax = freeAnswerBytes

// AcquireResponse returns an empty response from the pool, for Try.
func AcquireResponse() *fasthttp.Response { return fasthttp.AcquireResponse() }

// ReleaseResponse returns resp to the pool, dropping a large body buffer.
// resp must not be used afterwards.
func ReleaseResponse(resp *fasthttp.Response) {
	resp.ReleaseBody(pooledBodyMax)
	fasthttp.ReleaseResponse(resp)
}

// Try makes one try of req on tg, bounded by timeout and the route
// deadline: admission by the host's concurrency limit, then the breaker,
// then the transport. It leaves the answer in resp and returns the
// upstream's status and why the try failed (nil: a 2xx answer with a
// JSON body). It touches nothing but its arguments, so it may run on any
// goroutine.
func (tg *Target) Try(req *fasthttp.Request, resp *fasthttp.Response, routeDeadline time.Time, timeout time.Duration) (int, *Error) {
	start := time.Now()
	deadline := start.Add(timeout)
	if routeDeadline.Before(deadline) {
		deadline = routeDeadline
	}
	h := tg.Host
	if !h.limit.Acquire() {
		return 0, &Error{Reason: ReasonOverloaded, Host: tg.HostHdr, Err: fmt.Errorf("%w: %d calls in flight", ErrOverloaded, h.limit.InFlight())}
	}
	var status int
	var failure *Error
	var limitReason Reason
	var end time.Time
	ran := tg.Breaker.Do(start, func() (Reason, int) {
		status, failure = tg.send(req, resp, start, deadline, routeDeadline)
		end = time.Now()
		r := ReasonNone
		if failure != nil {
			r = failure.Reason
		}
		switch r {
		case ReasonNone, ReasonStatus, ReasonInvalid, ReasonTooLarge:
			// The host answered.
			tg.answered.Mark(end, r == ReasonNone)
		}
		// The breaker counts the host's faults only (see
		// Answered.Reason); so does the limit for timeouts, but it
		// still backs off on a 429 or 503, which a host shedding load
		// answers some calls with while it serves others.
		breakerReason := tg.answered.Reason(r, status, end)
		limitReason = r
		if r == ReasonTimeout {
			limitReason = breakerReason
		}
		return breakerReason, status
	})
	if !ran {
		h.limit.Release(0, ReasonBreakerOpen, 0)
		return 0, &Error{Reason: ReasonBreakerOpen, Host: tg.HostHdr}
	}
	took := end.Sub(start)
	if failure == nil {
		tg.usual.Observe(took)
	}
	h.limit.Release(took, limitReason, status)
	return status, failure
}

// send runs the transport and classifies its outcome.
func (tg *Target) send(req *fasthttp.Request, resp *fasthttp.Response, start, deadline, routeDeadline time.Time) (int, *Error) {
	var ms [20]byte
	req.Header.SetBytesKV(deadlineHeader, strconv.AppendInt(ms[:0], int64(routeDeadline.Sub(start)/time.Millisecond), 10))
	resp.Reset()
	transport := tg.Host.pool.o.Transport
	if transport == nil {
		transport = roundTrip
	}
	if err := transport(tg.Host, req, resp, deadline); err != nil {
		return 0, tg.classify(err, start, deadline, routeDeadline)
	}
	status := resp.StatusCode()
	if status < 200 || status > 299 {
		e := &Error{Reason: ReasonStatus, Host: tg.HostHdr, Status: status, Answer: shownAnswer(resp.Body())}
		if status == 429 || status == 503 {
			e.RetryAfter = retryAfter(resp.Header.Peek("Retry-After"), time.Now())
		}
		return status, e
	}
	if !gjson.ValidBytes(resp.Body()) {
		return status, &Error{Reason: ReasonInvalid, Host: tg.HostHdr, Err: fmt.Errorf("upstream answered with invalid JSON (%d bytes)", len(resp.Body()))}
	}
	return status, nil
}

// maxRetryAfter caps the pause an upstream may ask for.
const maxRetryAfter = time.Hour

// retryAfter parses a Retry-After value, delay-seconds or an HTTP date,
// into the pause it asks for from now; 0 when v is empty or malformed.
func retryAfter(v []byte, now time.Time) time.Duration {
	if len(v) == 0 {
		return 0
	}
	if n, err := strconv.ParseUint(string(v), 10, 32); err == nil {
		return min(time.Duration(n)*time.Second, maxRetryAfter)
	}
	if t, err := fasthttp.ParseHTTPDate(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// classify maps a transport error to its reason.
func (tg *Target) classify(err error, start, deadline, routeDeadline time.Time) *Error {
	e := &Error{Host: tg.HostHdr, Err: err, After: time.Since(start)}
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e.Reason = ReasonTooLarge
		e.Err = fmt.Errorf("%w: larger than %d bytes", ErrTooLarge, tg.Host.pool.o.MaxBodySize)
	case errors.As(err, new(*fasthttp.ErrSmallBuffer)) || errors.Is(err, fasthttp.ErrSmallReadBuffer):
		e.Reason = ReasonTooLarge
		e.Err = fmt.Errorf("%w: headers larger than %d bytes", ErrTooLarge, maxAnswerHeaderBytes)
	case errors.Is(err, errMemory):
		e.Reason = ReasonOverloaded
		e.Err = fmt.Errorf("%w: %w", ErrOverloaded, err)
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		e.Reason = ReasonOverloaded
		e.Err = fmt.Errorf("%w: all %d connections busy", ErrOverloaded, tg.Host.pool.o.MaxConns)
	case shortage.Local(err): // this machine's, not the upstream's
		e.Reason = ReasonOverloaded
		e.Err = fmt.Errorf("%w: cannot open a connection: %w", ErrOverloaded, err)
	case isTimeout(err):
		// The route deadline cut the try short before the upstream was
		// late by much: the caller's budget ran out, which is not the
		// upstream's fault.
		if !deadline.Before(routeDeadline) && !time.Now().Before(routeDeadline) && !tg.usual.Hung(e.After) {
			e.Reason = ReasonDeadline
		} else {
			e.Reason = ReasonTimeout
		}
	default:
		e.Reason = ReasonConnect
	}
	return e
}
