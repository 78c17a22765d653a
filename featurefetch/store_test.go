package featurefetch

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/spaolacci/murmur3"

	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/internal/testwait"
)

// fixture is a Store under test plus an independent way to write into it.
type fixture struct {
	store Store
	// hset writes raw field/value pairs without going through the Store.
	hset func(t testing.TB, key string, fieldValues ...string)
	// redis is set for the Redis fixture.
	srv *redistest.Server
	raw rueidis.Client
}

// forEachStore runs fn against a Redis store (real redis-server) and a MemoryStore.
func forEachStore(t *testing.T, fn func(t *testing.T, fx *fixture)) {
	t.Run("redis", func(t *testing.T) {
		fn(t, newRedisFixture(t, RedisOptions{}))
	})
	t.Run("memory", func(t *testing.T) {
		m := NewMemoryStore()
		fn(t, &fixture{
			store: m,
			hset: func(t testing.TB, key string, fieldValues ...string) {
				t.Helper()
				if err := m.HSet(context.Background(), key, fieldValues...); err != nil {
					t.Fatal(err)
				}
			},
		})
	})
}

// newRedisFixture starts redis-server and a RedisStore on it; opt.Addrs is filled in.
func newRedisFixture(t testing.TB, opt RedisOptions) *fixture {
	t.Helper()
	srv := redistest.Start(t)
	opt.Addrs = []string{srv.Addr()}
	s, err := NewRedisStore(opt)
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	t.Cleanup(s.Close)
	raw := newRawClient(t, srv.Addr())
	return &fixture{
		store: s,
		srv:   srv,
		raw:   raw,
		hset: func(t testing.TB, key string, fieldValues ...string) {
			t.Helper()
			cmd := raw.B().Hset().Key(key).FieldValue()
			for i := 0; i+1 < len(fieldValues); i += 2 {
				cmd = cmd.FieldValue(fieldValues[i], fieldValues[i+1])
			}
			built := cmd.Build().Pin() // pinned: may be sent again below
			// Retry connection errors (bounded): the server may just have restarted.
			var err error
			if !testwait.Within(testwait.Timeout, func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err = raw.Do(ctx, built).Error()
				return err == nil
			}) {
				t.Fatalf("HSET: %v", err)
			}
		},
	}
}

func newRawClient(t testing.TB, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatalf("raw client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// refField computes a hash field name with murmur3 directly, hashing the
// whole "view:feature" string in one write. (murmur3.Sum32 is avoided: its
// pointer arithmetic trips the race detector's checkptr.)
func refField(view, feature string) string {
	h := murmur3.New32()
	_, _ = h.Write([]byte(view + ":" + feature))
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], h.Sum32())
	return string(b[:])
}

// putRow writes one view row in Feast's layout with the independent encoders.
// values maps feature name to an encoded Value (pbValue).
func (fx *fixture) putRow(t testing.TB, project string, keys []testKey, view string, ts time.Time, values map[string][]byte) {
	t.Helper()
	fv := []string{"_ts:" + view, string(pbTimestamp(t, ts))}
	for name, val := range values {
		fv = append(fv, refField(view, name), string(val))
	}
	fx.hset(t, refEntityKey(project, keys...), fv...)
}

func driverKey(id int64) []testKey {
	return []testKey{{"driver_id", TypeInt64, id}}
}
