package featurefetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/redis/rueidis"
)

// DefaultReadTimeout bounds reads whose context carries no deadline.
const DefaultReadTimeout = time.Second

// RedisOptions configures a RedisStore.
type RedisOptions struct {
	// Addrs are "host:port" addresses: the server, cluster seed nodes, or the
	// sentinels when SentinelMaster is set.
	Addrs    []string
	Username string
	Password string
	// DB is the database index (standalone and sentinel only).
	DB int
	// TLS enables TLS with this configuration when not nil.
	TLS *tls.Config
	// SentinelMaster is the master set name; when set, Addrs are sentinels.
	SentinelMaster   string
	SentinelUsername string
	SentinelPassword string
	// Cluster makes the client discover a Redis Cluster from Addrs. When false
	// and only one address is given, the client talks to that node alone.
	Cluster bool
	// ClientName is sent with CLIENT SETNAME.
	ClientName string
	// DisableCache turns client-side caching off (servers without RESP3 or
	// CLIENT TRACKING); plans with a CacheTTL then read from the server.
	DisableCache bool
	// CacheSizeEachConn is the client-side cache size per connection in bytes;
	// 0 means rueidis' default (128 MiB).
	CacheSizeEachConn int
	// DialTimeout bounds connecting; 0 means 5s.
	DialTimeout time.Duration
	// ReadTimeout bounds reads whose context has no deadline; 0 means
	// DefaultReadTimeout, a negative value means no bound (reads then retry until
	// the server answers).
	ReadTimeout time.Duration
}

// ParseRedisURL parses redis://[user:password@]host:port[/db][?addr=host2:port2&...]
// (rediss:// for TLS). Extra query parameters: master_set=NAME (sentinel; the
// addresses are sentinels), cluster=true, client_cache=0 (DisableCache),
// dial_timeout=DURATION, read_timeout=DURATION, client_name=NAME, skip_verify=true.
func ParseRedisURL(s string) (RedisOptions, error) {
	ro, err := rueidis.ParseURL(s)
	if err != nil {
		return RedisOptions{}, fmt.Errorf("cannot parse redis URL: %w", err)
	}
	opt := RedisOptions{
		Addrs:          ro.InitAddress,
		Username:       ro.Username,
		Password:       ro.Password,
		DB:             ro.SelectDB,
		TLS:            ro.TLSConfig,
		SentinelMaster: ro.Sentinel.MasterSet,
		ClientName:     ro.ClientName,
		DisableCache:   ro.DisableCache,
		DialTimeout:    ro.Dialer.Timeout,
	}
	u, err := url.Parse(s)
	if err != nil {
		return RedisOptions{}, fmt.Errorf("cannot parse redis URL: %w", err)
	}
	q := u.Query()
	if v := q.Get("cluster"); v != "" {
		if opt.Cluster, err = strconv.ParseBool(v); err != nil {
			return RedisOptions{}, fmt.Errorf("cannot parse redis URL: invalid cluster=%q", v)
		}
	}
	if v := q.Get("read_timeout"); v != "" {
		if opt.ReadTimeout, err = time.ParseDuration(v); err != nil {
			return RedisOptions{}, fmt.Errorf("cannot parse redis URL: invalid read_timeout=%q", v)
		}
	}
	if opt.SentinelMaster != "" {
		// In a sentinel URL the credentials are the master's; sentinels use the same
		// unless configured otherwise in RedisOptions.
		opt.SentinelUsername, opt.SentinelPassword = opt.Username, opt.Password
	}
	return opt, nil
}

// ClientOption returns the rueidis options for opt.
func (opt *RedisOptions) ClientOption() (rueidis.ClientOption, error) {
	if len(opt.Addrs) == 0 {
		return rueidis.ClientOption{}, errors.New("no redis address configured")
	}
	if opt.Cluster && opt.SentinelMaster != "" {
		return rueidis.ClientOption{}, errors.New("redis cluster and sentinel cannot be combined")
	}
	if opt.Cluster && opt.DB != 0 {
		return rueidis.ClientOption{}, errors.New("redis cluster supports only database 0")
	}
	co := rueidis.ClientOption{
		InitAddress:       append([]string(nil), opt.Addrs...),
		Username:          opt.Username,
		Password:          opt.Password,
		SelectDB:          opt.DB,
		TLSConfig:         opt.TLS,
		ClientName:        opt.ClientName,
		DisableCache:      opt.DisableCache,
		CacheSizeEachConn: opt.CacheSizeEachConn,
	}
	co.Dialer.Timeout = opt.DialTimeout
	if opt.SentinelMaster != "" {
		co.Sentinel = rueidis.SentinelOption{
			MasterSet: opt.SentinelMaster,
			Username:  opt.SentinelUsername,
			Password:  opt.SentinelPassword,
			TLSConfig: opt.TLS,
			Dialer:    co.Dialer,
		}
	} else if !opt.Cluster && len(opt.Addrs) == 1 {
		co.ForceSingleClient = true
	}
	return co, nil
}

// RedisStore is a Store (and RowWriter) on a rueidis client.
type RedisStore struct {
	c       rueidis.Client
	timeout time.Duration
	cache   bool
	owned   bool
	// slotless is set when the client is not a cluster's: reads are built
	// without the hash slot of their key (a CRC16 of it), which only a
	// cluster client routes by.
	slotless bool

	cmdPool   sync.Pool // *[]rueidis.Completed
	cachePool sync.Pool // *cachedReads
}

// cachedReads are the commands of one read through the client-side cache.
type cachedReads struct {
	pinned []rueidis.Completed // when slotless, see reuseReads
	cts    []rueidis.CacheableTTL
}

var (
	_ Store     = (*RedisStore)(nil)
	_ RowWriter = (*RedisStore)(nil)
)

// NewRedisStore connects to Redis. It fails when no address is reachable;
// afterwards the client reconnects by itself whenever connections break.
func NewRedisStore(opt RedisOptions) (*RedisStore, error) {
	co, err := opt.ClientOption()
	if err != nil {
		return nil, err
	}
	if !opt.Cluster && runtime.GOMAXPROCS(0) <= 2 {
		// rueidis pipelines over two connections on two CPUs, and splits
		// a cached multi-key read between them on goroutines: one
		// connection serves client-side cache hits with 13% less CPU
		// and reads from Redis alike (bench/README.md).
		co.PipelineMultiplex = -1
	}
	c, err := rueidis.NewClient(co)
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("cannot connect to redis at %v: %w", opt.Addrs, err)
	}
	s := NewRedisStoreFromClient(c, opt.ReadTimeout, !opt.DisableCache)
	s.owned = true
	return s, nil
}

// NewRedisStoreFromClient wraps an existing client; Close does not close it.
// readTimeout is as RedisOptions.ReadTimeout; cache tells whether the client
// has client-side caching enabled.
func NewRedisStoreFromClient(c rueidis.Client, readTimeout time.Duration, cache bool) *RedisStore {
	if readTimeout == 0 {
		readTimeout = DefaultReadTimeout
	}
	return &RedisStore{c: c, timeout: readTimeout, cache: cache, slotless: c.Mode() != rueidis.ClientModeCluster}
}

// Client returns the underlying rueidis client, e.g. for writers sharing the connection.
func (s *RedisStore) Client() rueidis.Client {
	return s.c
}

// Close closes the client if NewRedisStore created it.
func (s *RedisStore) Close() {
	if s.owned {
		s.c.Close()
	}
}

// Ping checks that the server answers.
func (s *RedisStore) Ping(ctx context.Context) error {
	ctx, cancel := s.withTimeout(ctx)
	if cancel != nil {
		defer cancel()
	}
	if err := s.c.Do(ctx, s.c.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("redis ping failed: %w", err)
	}
	return nil
}

func (s *RedisStore) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || s.timeout < 0 {
		return ctx, nil
	}
	return context.WithTimeout(ctx, s.timeout)
}

// AllReplied reports whether every result of a DoMulti is a reply from
// Redis (an error reply included). When one is not (the context ended
// first, or the connection broke), rueidis may still write the commands
// after DoMulti returned: the slice that holds them must not be used
// again.
func AllReplied(resps []rueidis.RedisResult) bool {
	for i := range resps {
		if err := resps[i].Error(); err != nil {
			if _, ok := rueidis.IsRedisErr(err); !ok {
				return false
			}
		}
	}
	return true
}

// Client-side cache outcomes of cached reads, one per hash read.
var (
	cacheHits   = metrics.NewCounter(`lariat_feature_cache_hits_total`)
	cacheMisses = metrics.NewCounter(`lariat_feature_cache_misses_total`)
)

// ReadHashes implements Store with one pipelined HMGET per read (DoMulti), or
// DoMultiCache when cacheTTL > 0 and the client caches.
func (s *RedisStore) ReadHashes(ctx context.Context, reads []HashRead, cacheTTL time.Duration, dst []FieldValue) ([]FieldValue, error) {
	if len(reads) == 0 {
		return dst, nil
	}
	ctx, cancel := s.withTimeout(ctx)
	if cancel != nil {
		defer cancel()
	}
	var resps []rueidis.RedisResult
	if cacheTTL > 0 && s.cache {
		c, _ := s.cachePool.Get().(*cachedReads)
		if c == nil {
			c = new(cachedReads)
		}
		cts := c.cts[:0]
		if s.slotless {
			c.pinned = s.reuseReads(c.pinned, reads)
			for i := range c.pinned {
				cts = append(cts, rueidis.CT(rueidis.Cacheable(c.pinned[i]), cacheTTL))
			}
		} else {
			for i := range reads {
				cmd := s.c.B().Hmget().Key(reads[i].Key).Field(reads[i].Fields...).Cache()
				cts = append(cts, rueidis.CT(cmd, cacheTTL))
			}
		}
		resps = s.c.DoMultiCache(ctx, cts...)
		var hits uint64
		for i := range resps {
			if resps[i].IsCacheHit() {
				hits++
			}
		}
		cacheHits.Add(int(hits))
		cacheMisses.Add(len(resps) - int(hits))
		// When a read did not get its reply, rueidis may still write its
		// command, and file the reply in the cache under the command's
		// key: leave them to the collector. Otherwise the pinned commands
		// are reused; the others went back to rueidis' pool.
		if AllReplied(resps) {
			clear(cts)
			c.cts = cts[:0]
			s.cachePool.Put(c)
		}
	} else {
		p, _ := s.cmdPool.Get().(*[]rueidis.Completed)
		if p == nil {
			p = new([]rueidis.Completed)
		}
		cmds := *p
		if s.slotless {
			cmds = s.reuseReads(cmds, reads)
		} else {
			cmds = cmds[:0]
			for i := range reads {
				cmds = append(cmds, s.c.B().Hmget().Key(reads[i].Key).Field(reads[i].Fields...).Build())
			}
		}
		resps = s.c.DoMulti(ctx, cmds...)
		if AllReplied(resps) {
			if !s.slotless {
				clear(cmds)
				cmds = cmds[:0]
			}
			*p = cmds
			s.cmdPool.Put(p)
		}
	}
	for i := range resps {
		arr, err := resps[i].ToArray()
		if err != nil {
			if re, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(re.Error(), "WRONGTYPE") {
				return dst, &KeyError{Read: i, Err: err}
			}
			return dst, fmt.Errorf("cannot read features from redis: %w", err)
		}
		if len(arr) != len(reads[i].Fields) {
			return dst, fmt.Errorf("cannot read features from redis: HMGET returned %d values for %d fields", len(arr), len(reads[i].Fields))
		}
		for j := range arr {
			if arr[j].IsNil() {
				dst = append(dst, FieldValue{})
				continue
			}
			v, err := arr[j].ToString()
			if err != nil {
				return dst, fmt.Errorf("cannot read features from redis: %w", err)
			}
			dst = append(dst, FieldValue{Data: v, Found: true})
		}
	}
	return dst, nil
}

// reuseReads returns one HMGET per read in cmds, reusing the commands
// cmds already holds: each is pinned (rueidis does not recycle it), and
// one with as many arguments as the read needs gets the read's key and
// fields written over its arguments, which saves building the command
// and returning it to rueidis' pool on every read.
func (s *RedisStore) reuseReads(cmds []rueidis.Completed, reads []HashRead) []rueidis.Completed {
	cmds = slices.Grow(cmds[:0], len(reads))[:len(reads)]
	for i := range reads {
		r := &reads[i]
		var args []string
		if !cmds[i].IsEmpty() {
			args = cmds[i].Commands()
		}
		if len(args) != 2+len(r.Fields) {
			cmds[i] = s.c.B().Arbitrary("HMGET").Args(r.Key).Args(r.Fields...).ReadOnly().Pin()
			continue
		}
		args[1] = r.Key
		copy(args[2:], r.Fields)
	}
	return cmds
}

// HSet implements RowWriter with one HSET.
func (s *RedisStore) HSet(ctx context.Context, key string, fieldValues ...string) error {
	if len(fieldValues) < 2 {
		return nil
	}
	ctx, cancel := s.withTimeout(ctx)
	if cancel != nil {
		defer cancel()
	}
	cmd := s.c.B().Hset().Key(key).FieldValue()
	for i := 0; i+1 < len(fieldValues); i += 2 {
		cmd = cmd.FieldValue(fieldValues[i], fieldValues[i+1])
	}
	if err := s.c.Do(ctx, cmd.Build()).Error(); err != nil {
		return fmt.Errorf("cannot write features to redis: %w", err)
	}
	return nil
}
