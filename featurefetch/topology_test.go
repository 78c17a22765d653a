package featurefetch

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/internal/testwait"
)

// TestRedisClusterStore runs reads through the cluster client against a
// one-node Redis Cluster holding every slot, so one Fetch spans many slots.
func TestRedisClusterStore(t *testing.T) {
	v := loadTestViews(t)
	srv := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	raw := newRawClient(t, srv.Addr())
	ctx := context.Background()
	if err := raw.Do(ctx, raw.B().Arbitrary("CLUSTER", "ADDSLOTSRANGE", "0", "16383").Build()).Error(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	var info string
	var err error
	if !testwait.Within(testwait.Timeout, func() bool {
		info, err = raw.Do(ctx, raw.B().ClusterInfo().Build()).ToString()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}) {
		t.Fatalf("cluster not ready: %q %v", info, err)
	}

	s, err := NewRedisStore(RedisOptions{Addrs: []string{srv.Addr()}, Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Client().Mode() != "cluster" {
		t.Fatalf("client mode %s", s.Client().Mode())
	}
	ids := make([]string, 50)
	var seed strings.Builder
	for i := range ids {
		ids[i] = strconv.Itoa(100 + i)
		seed.WriteString(`{"view":"driver_stats","entities":{"driver_id":` + ids[i] + `},"features":{"avg_daily_trips":` + ids[i] + `}}` + "\n")
	}
	if _, err := v.Seed(ctx, s, "", []byte(seed.String())); err != nil {
		t.Fatal(err)
	}
	for _, cache := range []time.Duration{0, time.Minute} {
		p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{CacheTTL: cache})
		got := fetchJSON(t, p, s, "["+strings.Join(ids, ",")+"]")
		for _, id := range ids {
			if !strings.Contains(got, `{"driver_id":`+id+`,"avg_daily_trips":`+id+`}`) {
				t.Fatalf("cache %v: driver %s missing from %s", cache, id, got)
			}
		}
	}
}

// TestRedisSentinelStore finds the master through a sentinel.
func TestRedisSentinelStore(t *testing.T) {
	v := loadTestViews(t)
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, "feast", master)
	opt, err := ParseRedisURL("redis://" + sentinel.Addr() + "?master_set=feast")
	if err != nil {
		t.Fatal(err)
	}
	var s *RedisStore
	// The sentinel may need a moment to report the master.
	if !testwait.Within(testwait.Timeout, func() bool { s, err = NewRedisStore(opt); return err == nil }) {
		t.Fatalf("NewRedisStore through sentinel: %v", err)
	}
	defer s.Close()
	if s.Client().Mode() != "sentinel" {
		t.Fatalf("client mode %s", s.Client().Mode())
	}
	ctx := context.Background()
	if _, err := v.Seed(ctx, s, "", []byte(`{"view":"driver_stats","entities":{"driver_id":1},"features":{"avg_daily_trips":4}}`)); err != nil {
		t.Fatal(err)
	}
	// The row is on the master.
	raw := newRawClient(t, master.Addr())
	if n, err := raw.Do(ctx, raw.B().Dbsize().Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("master holds %d keys, %v", n, err)
	}
	p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{})
	if got := fetchJSON(t, p, s, `1`); got != `[{"driver_id":1,"avg_daily_trips":4}]` {
		t.Fatalf("got %s", got)
	}
}
