package featurefetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/internal/testwait"
)

// hmgetCalls returns the server's HMGET call count from INFO commandstats.
func hmgetCalls(t *testing.T, raw rueidis.Client) int {
	t.Helper()
	info, err := raw.Do(context.Background(), raw.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_hmget:calls="); ok {
			n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			if err != nil {
				t.Fatalf("bad commandstats line %q", line)
			}
			return n
		}
	}
	return 0
}

func resetStats(t *testing.T, raw rueidis.Client) {
	t.Helper()
	if err := raw.Do(context.Background(), raw.B().ConfigResetstat().Build()).Error(); err != nil {
		t.Fatalf("CONFIG RESETSTAT: %v", err)
	}
}

// writeCounter counts the socket writes carrying HMGET commands.
type writeCounter struct {
	mu     sync.Mutex
	writes int // writes containing at least one HMGET
	hmgets int // HMGET commands seen
}

func (w *writeCounter) reset() {
	w.mu.Lock()
	w.writes, w.hmgets = 0, 0
	w.mu.Unlock()
}

func (w *writeCounter) get() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes, w.hmgets
}

type countingConn struct {
	net.Conn
	w *writeCounter
}

func (c countingConn) Write(p []byte) (int, error) {
	if n := bytes.Count(p, []byte("\r\nHMGET\r\n")); n > 0 {
		c.w.mu.Lock()
		c.w.writes++
		c.w.hmgets += n
		c.w.mu.Unlock()
	}
	return c.Conn.Write(p)
}

func TestRedisOneRoundTripPerFetch(t *testing.T) {
	v := loadTestViews(t)
	srv := redistest.Start(t)
	wc := &writeCounter{}
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{srv.Addr()},
		ForceSingleClient: true,
		DialCtxFn: func(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return countingConn{Conn: conn, w: wc}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewRedisStoreFromClient(c, 0, true)
	raw := newRawClient(t, srv.Addr())

	// Two hashes per entity: driver_id and (customer_id, driver_id).
	p := mustPlan(t, v, []string{"driver_stats:conv_rate", "driver_stats:acc_rate", "driver_trips:recent_zones", "driver_customer:trips_together"}, PlanOptions{})
	for _, n := range []int{1, 100} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = strconv.Itoa(1000 + i)
		}
		keys := [][]byte{[]byte(`"c1"`), []byte("[" + strings.Join(ids, ",") + "]")}
		// Warm up the connection, then count.
		if _, err := p.Fetch(context.Background(), s, keys, nil); err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 3; round++ {
			resetStats(t, raw)
			wc.reset()
			out, err := p.Fetch(context.Background(), s, keys, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(string(out), `"driver_id"`); got != n {
				t.Fatalf("%d entities: %d rows in %s", n, got, out)
			}
			if got := hmgetCalls(t, raw); got != 2*n {
				t.Fatalf("%d entities: server saw %d HMGET, want %d", n, got, 2*n)
			}
			if writes, hmgets := wc.get(); writes != 1 || hmgets != 2*n {
				t.Fatalf("%d entities: %d HMGET in %d socket writes, want %d in 1", n, hmgets, writes, 2*n)
			}
		}
	}
}

func TestRedisClientSideCache(t *testing.T) {
	v := loadTestViews(t)
	fx := newRedisFixture(t, RedisOptions{})
	fx.putRow(t, testProject, driverKey(1), "driver_stats", time.Now(), map[string][]byte{
		"avg_daily_trips": pbValue(t, TypeInt64, int64(1)),
	})
	p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{CacheTTL: time.Minute})
	if got := fetchJSON(t, p, fx.store, `1`); got != `[{"driver_id":1,"avg_daily_trips":1}]` {
		t.Fatalf("first read: %s", got)
	}
	resetStats(t, fx.raw)
	hits := cacheHits.Get()
	for i := 0; i < 5; i++ {
		if got := fetchJSON(t, p, fx.store, `1`); got != `[{"driver_id":1,"avg_daily_trips":1}]` {
			t.Fatalf("cached read: %s", got)
		}
	}
	if calls := hmgetCalls(t, fx.raw); calls != 0 {
		t.Fatalf("cached reads reached the server %d times", calls)
	}
	if got := cacheHits.Get() - hits; got < 5 {
		t.Fatalf("lariat_feature_cache_hits_total grew by %d over 5 cached reads", got)
	}

	// A write by another client invalidates the cached entry.
	fx.putRow(t, testProject, driverKey(1), "driver_stats", time.Now(), map[string][]byte{
		"avg_daily_trips": pbValue(t, TypeInt64, int64(2)),
	})
	var got string
	if !testwait.Within(testwait.Timeout, func() bool {
		got = fetchJSON(t, p, fx.store, `1`)
		return got == `[{"driver_id":1,"avg_daily_trips":2}]`
	}) {
		t.Fatalf("cache not invalidated after %s: %s", testwait.Timeout, got)
	}

	// A missing key is cached as missing and invalidated when it appears.
	if got := fetchJSON(t, p, fx.store, `2`); got != `[{"driver_id":2,"avg_daily_trips":null}]` {
		t.Fatalf("missing: %s", got)
	}
	fx.putRow(t, testProject, driverKey(2), "driver_stats", time.Now(), map[string][]byte{
		"avg_daily_trips": pbValue(t, TypeInt64, int64(3)),
	})
	if !testwait.Within(testwait.Timeout, func() bool {
		got = fetchJSON(t, p, fx.store, `2`)
		return got == `[{"driver_id":2,"avg_daily_trips":3}]`
	}) {
		t.Fatalf("new key not visible after %s: %s", testwait.Timeout, got)
	}
}

func TestRedisDownAndBack(t *testing.T) {
	v := loadTestViews(t)
	fx := newRedisFixture(t, RedisOptions{ReadTimeout: 300 * time.Millisecond})
	write := func() {
		fx.putRow(t, testProject, driverKey(1), "driver_stats", time.Now(), map[string][]byte{
			"avg_daily_trips": pbValue(t, TypeInt64, int64(5)),
		})
	}
	write()
	const want = `[{"driver_id":1,"avg_daily_trips":5}]`
	for _, cacheTTL := range []time.Duration{0, time.Minute} {
		p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{CacheTTL: cacheTTL})
		if got := fetchJSON(t, p, fx.store, `1`); got != want {
			t.Fatalf("before stop: %s", got)
		}
	}

	fx.srv.Stop()
	// Reads fail, and return by the context deadline (or the store's read
	// timeout when the context has none) instead of hanging.
	for _, cacheTTL := range []time.Duration{0, time.Minute} {
		p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{CacheTTL: cacheTTL})
		for _, withDeadline := range []bool{true, false} {
			done := make(chan error, 1)
			go func() {
				ctx := context.Background()
				if withDeadline {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
					defer cancel()
				}
				// Key 2 is not cached, so this read must reach the server.
				_, err := p.Fetch(ctx, fx.store, [][]byte{[]byte(`2`)}, nil)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("cache %v, deadline %v: read succeeded with Redis stopped", cacheTTL, withDeadline)
				}
				var bre *BadRequestError
				if errors.As(err, &bre) {
					t.Fatalf("store failure reported as a bad request: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("cache %v, deadline %v: read hung with Redis stopped", cacheTTL, withDeadline)
			}
		}
	}

	fx.srv.Restart()
	write() // the restarted server is empty
	p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{})
	var out []byte
	var err error
	if !testwait.Within(testwait.Timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		out, err = p.Fetch(ctx, fx.store, [][]byte{[]byte(`1`)}, nil)
		return err == nil && string(out) == want
	}) {
		t.Fatalf("no successful read %s after restart: %s %v", testwait.Timeout, out, err)
	}
}

// TestRedisCacheForgetsARestartedServer: rows cached from a server that
// restarted (here empty) are not served from the client-side cache: the
// restarted server's state is, and its new writes are seen.
func TestRedisCacheForgetsARestartedServer(t *testing.T) {
	v := loadTestViews(t)
	fx := newRedisFixture(t, RedisOptions{})
	fx.putRow(t, testProject, driverKey(1), "driver_stats", time.Now(), map[string][]byte{
		"avg_daily_trips": pbValue(t, TypeInt64, int64(1)),
	})
	p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{CacheTTL: time.Hour})
	for range 2 {
		if got := fetchJSON(t, p, fx.store, `1`); got != `[{"driver_id":1,"avg_daily_trips":1}]` {
			t.Fatalf("before the restart: %s", got)
		}
	}
	fx.srv.Restart()
	var got string
	if !testwait.Within(testwait.Timeout, func() bool {
		out, err := p.Fetch(context.Background(), fx.store, [][]byte{[]byte("1")}, nil)
		got = string(out)
		return err == nil
	}) || got != `[{"driver_id":1,"avg_daily_trips":null}]` {
		t.Fatalf("after the restart: %s, want the row gone", got)
	}
	fx.putRow(t, testProject, driverKey(1), "driver_stats", time.Now(), map[string][]byte{
		"avg_daily_trips": pbValue(t, TypeInt64, int64(7)),
	})
	if !testwait.Within(testwait.Timeout, func() bool {
		got = fetchJSON(t, p, fx.store, `1`)
		return got == `[{"driver_id":1,"avg_daily_trips":7}]`
	}) {
		t.Fatalf("a write after the restart not seen: %s", got)
	}
}

func TestRedisPasswordAndDB(t *testing.T) {
	v := loadTestViews(t)
	srv := redistest.Start(t, "--requirepass", "s3cret")
	if _, err := NewRedisStore(RedisOptions{Addrs: []string{srv.Addr()}, Password: "wrong"}); err == nil {
		t.Fatal("wrong password accepted")
	}
	opt, err := ParseRedisURL("redis://:s3cret@" + srv.Addr() + "/3")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewRedisStore(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	key := refEntityKey(testProject, driverKey(9)...)
	if err := s.HSet(context.Background(), key, refField("driver_stats", "avg_daily_trips"), string(pbValue(t, TypeInt64, int64(9)))); err != nil {
		t.Fatal(err)
	}
	p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{})
	if got := fetchJSON(t, p, s, `9`); got != `[{"driver_id":9,"avg_daily_trips":9}]` {
		t.Fatalf("got %s", got)
	}
	// The row went to database 3, not 0.
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Password: "s3cret", DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if n, err := raw.Do(context.Background(), raw.B().Dbsize().Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("db 0 size = %d, %v", n, err)
	}
}

func TestNewRedisStoreUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := NewRedisStore(RedisOptions{Addrs: []string{addr}, DialTimeout: time.Second}); err == nil {
		t.Fatal("NewRedisStore succeeded without a server")
	}
	if _, err := NewRedisStore(RedisOptions{}); err == nil || err.Error() != "no redis address configured" {
		t.Fatalf("no address: %v", err)
	}
}

func TestParseRedisURL(t *testing.T) {
	f := func(url string, want RedisOptions) {
		t.Helper()
		got, err := ParseRedisURL(url)
		if err != nil {
			t.Fatalf("ParseRedisURL(%q): %v", url, err)
		}
		if got.TLS != nil {
			got.TLS = &tls.Config{ServerName: got.TLS.ServerName}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseRedisURL(%q)\n got %+v\nwant %+v", url, got, want)
		}
	}
	f("redis://127.0.0.1:6379", RedisOptions{Addrs: []string{"127.0.0.1:6379"}})
	f("redis://u:p@10.0.0.1:7000/2?client_name=gw&read_timeout=50ms", RedisOptions{
		Addrs: []string{"10.0.0.1:7000"}, Username: "u", Password: "p", DB: 2, ClientName: "gw", ReadTimeout: 50 * time.Millisecond,
	})
	f("redis://a:1?addr=b:2&addr=c:3&cluster=true&client_cache=0", RedisOptions{
		Addrs: []string{"a:1", "b:2", "c:3"}, Cluster: true, DisableCache: true,
	})
	f("redis://:pw@s1:26379?addr=s2:26379&master_set=mymaster", RedisOptions{
		Addrs: []string{"s1:26379", "s2:26379"}, Password: "pw", SentinelMaster: "mymaster", SentinelPassword: "pw",
	})
	f("rediss://cache.example:6380", RedisOptions{Addrs: []string{"cache.example:6380"}, TLS: &tls.Config{ServerName: "cache.example"}})

	for _, bad := range []string{"http://x", "redis://x/abc", "redis://x?cluster=maybe", "redis://x?read_timeout=soon"} {
		if _, err := ParseRedisURL(bad); err == nil {
			t.Fatalf("ParseRedisURL(%q) succeeded", bad)
		}
	}
}

func TestRedisClientOption(t *testing.T) {
	opt := RedisOptions{Addrs: []string{"s:26379"}, SentinelMaster: "m", SentinelPassword: "sp", Password: "mp"}
	co, err := opt.ClientOption()
	if err != nil {
		t.Fatal(err)
	}
	if co.Sentinel.MasterSet != "m" || co.Sentinel.Password != "sp" || co.Password != "mp" || co.ForceSingleClient {
		t.Fatalf("sentinel options: %+v", co)
	}
	co, _ = (&RedisOptions{Addrs: []string{"a:1"}}).ClientOption()
	if !co.ForceSingleClient {
		t.Fatal("single address should force a single-node client")
	}
	co, _ = (&RedisOptions{Addrs: []string{"a:1"}, Cluster: true}).ClientOption()
	if co.ForceSingleClient {
		t.Fatal("cluster must not force a single-node client")
	}
	for _, bad := range []RedisOptions{
		{Addrs: []string{"a:1"}, Cluster: true, SentinelMaster: "m"},
		{Addrs: []string{"a:1"}, Cluster: true, DB: 1},
	} {
		if _, err := bad.ClientOption(); err == nil {
			t.Fatalf("accepted %+v", bad)
		}
	}
}

func TestRedisWrongType(t *testing.T) {
	v := loadTestViews(t)
	fx := newRedisFixture(t, RedisOptions{})
	key := refEntityKey(testProject, driverKey(1)...)
	if err := fx.raw.Do(context.Background(), fx.raw.B().Set().Key(key).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{})
	_, err := p.Fetch(context.Background(), fx.store, [][]byte{[]byte("[2, 1]")}, nil)
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Read != 1 || ke.Entity != `{"driver_id":1} in view driver_stats` || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("got %v", err)
	}
}

func TestRedisSlowServerHonoursDeadline(t *testing.T) {
	v := loadTestViews(t)
	fx := newRedisFixture(t, RedisOptions{})
	fx.putRow(t, testProject, driverKey(1), "driver_stats", time.Now(), map[string][]byte{
		"avg_daily_trips": pbValue(t, TypeInt64, int64(5)),
	})
	p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{})
	const want = `[{"driver_id":1,"avg_daily_trips":5}]`
	if got := fetchJSON(t, p, fx.store, `1`); got != want {
		t.Fatalf("before pause: %s", got)
	}
	// Stall every client, readers included, for a second.
	if err := fx.raw.Do(context.Background(), fx.raw.B().ClientPause().Timeout(1000).All().Build()).Error(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := p.Fetch(ctx, fx.store, [][]byte{[]byte(`1`)}, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("read from a paused server: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read hung on a paused server")
	}
	// Once the pause ends the same store reads again.
	var out []byte
	var err error
	if !testwait.Within(testwait.Timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		out, err = p.Fetch(ctx, fx.store, [][]byte{[]byte(`1`)}, nil)
		return err == nil && string(out) == want
	}) {
		t.Fatalf("no successful read after the pause: %s %v", out, err)
	}
}

// TestAllReplied: replies, error replies included, count as replied; a
// result the context cut short does not, since rueidis may still write
// its command after DoMulti returned.
func TestAllReplied(t *testing.T) {
	fx := newRedisFixture(t, RedisOptions{})
	fx.hset(t, "h", "f", "v")
	c := fx.raw
	ctx := context.Background()
	resps := c.DoMulti(ctx,
		c.B().Hmget().Key("h").Field("f").Build(),
		c.B().Hmget().Key("missing").Field("f").Build(),
		c.B().Get().Key("h").Build()) // WRONGTYPE: an error reply
	if _, ok := rueidis.IsRedisErr(resps[2].Error()); !ok {
		t.Fatalf("GET of a hash: %v, want an error reply", resps[2].Error())
	}
	if !AllReplied(resps) {
		t.Fatal("replies and an error reply: AllReplied false")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	resps = c.DoMulti(canceled, c.B().Hmget().Key("h").Field("f").Build())
	if AllReplied(resps) {
		t.Fatalf("a read whose context ended first (%v): AllReplied true", resps[0].Error())
	}
}

// TestDialRedisStoreBeforeRedis: a store dialled while Redis is down is
// usable at once: reads fail with ErrNotConnected until Redis answers,
// then succeed without anything else done.
func TestDialRedisStoreBeforeRedis(t *testing.T) {
	v := loadTestViews(t)
	srv := redistest.Start(t)
	srv.Stop()
	connected := make(chan struct{})
	d, err := DialRedisStore(RedisOptions{Addrs: []string{srv.Addr()}, DialTimeout: time.Second}, 20*time.Millisecond, func() { close(connected) })
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{})
	if _, err := p.Fetch(context.Background(), d, [][]byte{[]byte("1")}, nil); !errors.Is(err, ErrNotConnected) || d.Connected() {
		t.Fatalf("Redis down: %v (connected %v), want ErrNotConnected", err, d.Connected())
	}
	srv.Restart()
	select {
	case <-connected:
	case <-time.After(testwait.Timeout):
		t.Fatal("not connected after Redis started")
	}
	if got, err := p.Fetch(context.Background(), d, [][]byte{[]byte("1")}, nil); err != nil || string(got) != `[{"driver_id":1,"avg_daily_trips":null}]` {
		t.Fatalf("Redis up: %s %v", got, err)
	}
	if _, err := DialRedisStore(RedisOptions{}, time.Second, nil); err == nil {
		t.Fatal("no address: want an error")
	}
}

// TestRedisReadsOfChangingShapes reads hashes through one store with read
// sets of different sizes and field lists one after the other, as plans
// of different routes do: the HMGET commands the store reuses must carry
// each read's own key and fields, and so must the client-side cache's
// entries.
func TestRedisReadsOfChangingShapes(t *testing.T) {
	fx := newRedisFixture(t, RedisOptions{})
	ctx := context.Background()
	stored := map[string]map[string]string{
		"h1": {"a": "1", "b": "2", "c": "3"},
		"h2": {"a": "x", "b": "y"},
		"h3": {"c": "z"},
	}
	for key, fields := range stored {
		cmd := fx.raw.B().Hset().Key(key).FieldValue()
		for f, v := range fields {
			cmd = cmd.FieldValue(f, v)
		}
		if err := fx.raw.Do(ctx, cmd.Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// Neighbouring sets read as many fields at the same place with other
	// keys and fields, so that a command is reused.
	sets := [][]HashRead{
		{{Key: "h1", Fields: []string{"a", "b", "c"}}, {Key: "h2", Fields: []string{"a", "b"}}},
		{{Key: "h1", Fields: []string{"c", "b", "a"}}, {Key: "h2", Fields: []string{"b", "a"}}},
		{{Key: "h2", Fields: []string{"a", "b", "c"}}, {Key: "h1", Fields: []string{"c", "a"}}},
		{{Key: "h3", Fields: []string{"a", "b"}}, {Key: "h1", Fields: []string{"c", "b", "a"}}, {Key: "h2", Fields: []string{"b"}}},
		{{Key: "missing", Fields: []string{"a"}}, {Key: "h3", Fields: []string{"c"}}, {Key: "h1", Fields: []string{"b", "c"}}, {Key: "h2", Fields: []string{"b", "a", "c"}}},
	}
	// Reads from the server, then through the client-side cache: its
	// first round fills the cache, the others are answered from it.
	for round := range 6 {
		ttl := time.Duration(0)
		if round >= 3 {
			ttl = time.Minute
		}
		for si, reads := range sets {
			hits := cacheHits.Get()
			got, err := fx.store.ReadHashes(ctx, reads, ttl, nil)
			if err != nil {
				t.Fatalf("round %d, set %d: %v", round, si, err)
			}
			var want []FieldValue
			for _, r := range reads {
				for _, f := range r.Fields {
					v, ok := stored[r.Key][f]
					want = append(want, FieldValue{Data: v, Found: ok})
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d, set %d: got %v, want %v", round, si, got, want)
			}
			if n := cacheHits.Get() - hits; round > 3 && n != uint64(len(reads)) {
				t.Fatalf("round %d, set %d: %d of %d reads were cache hits", round, si, n, len(reads))
			}
		}
	}

	// Callers reading at once each take commands of their own.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				reads := sets[(g+i)%len(sets)]
				got, err := fx.store.ReadHashes(ctx, reads, time.Duration(i%2)*time.Minute, nil)
				if err != nil {
					errs <- err
					return
				}
				k := 0
				for _, r := range reads {
					for _, f := range r.Fields {
						v, ok := stored[r.Key][f]
						if got[k] != (FieldValue{Data: v, Found: ok}) {
							errs <- fmt.Errorf("caller %d, read %d: %s %s is %v, want %q", g, i, r.Key, f, got[k], v)
							return
						}
						k++
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
