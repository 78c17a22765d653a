package featurefetch

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDemoStore(t *testing.T) {
	v, s, err := NewDemoStore()
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 50+20 {
		t.Fatalf("demo store has %d hashes", s.Len())
	}
	p := mustPlan(t, v, []string{
		"driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:avg_daily_trips",
		"driver_trips:recent_zones", "customer_profile:tier",
	}, PlanOptions{Shape: ShapeColumns})
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = strconv.Itoa(1001 + i)
	}
	out := fetchJSON(t, p, s, `"c1001"`, "["+strings.Join(ids, ",")+"]")
	var resp feastResponse
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Results {
		for j, st := range r.Statuses {
			if st != "PRESENT" {
				t.Fatalf("%s row %d: %s", resp.Metadata.FeatureNames[i], j, st)
			}
		}
	}
	// The demo views file parses as a file too.
	if _, err := ParseViews("demo.yaml", DemoViewsYAML()); err != nil {
		t.Fatal(err)
	}
	if len(DemoSeed()) == 0 {
		t.Fatal("empty demo seed")
	}
}

func TestSeedRedisMatchesMemory(t *testing.T) {
	v, err := DemoViews()
	if err != nil {
		t.Fatal(err)
	}
	seed := []byte(`{"view":"driver_stats","entities":{"driver_id":1},"features":{"conv_rate":0.5,"vehicle_type":"suv"},"event_timestamp":"2026-01-01T00:00:00Z"}

{"view":"customer_profile","entities":{"customer_id":"c1"},"features":{"tier":"gold","lifetime_trip_count":"7"},"event_timestamp":"2026-01-02T03:04:05.5Z"}
`)
	fx := newRedisFixture(t, RedisOptions{})
	mem := NewMemoryStore()
	for _, w := range []RowWriter{fx.store.(*RedisStore), mem} {
		n, err := v.Seed(context.Background(), w, "", seed)
		if err != nil || n != 2 {
			t.Fatalf("Seed: %d rows, %v", n, err)
		}
	}
	p := mustPlan(t, v, []string{"driver_stats:conv_rate", "driver_stats:vehicle_type", "customer_profile:tier", "customer_profile:lifetime_trip_count"},
		PlanOptions{Shape: ShapeColumns, MaxAge: map[string]time.Duration{"driver_stats": 1 << 62, "customer_profile": 1 << 62}})
	a := fetchJSON(t, p, fx.store, `"c1"`, `1`)
	b := fetchJSON(t, p, mem, `"c1"`, `1`)
	if a != b {
		t.Fatalf("redis and memory differ:\n%s\n%s", a, b)
	}
	if !strings.Contains(a, `{"values":[0.5],"statuses":["PRESENT"],"event_timestamps":["2026-01-01T00:00:00Z"]}`) ||
		!strings.Contains(a, `{"values":[7],"statuses":["PRESENT"]`) {
		t.Fatalf("seeded values: %s", a)
	}
	// Bytes written by EncodeRow match the reference layout.
	key := refEntityKey("lariat_demo", driverKey(1)...)
	got, ok := mem.HGet(key, refField("driver_stats", "vehicle_type"))
	if !ok || got != string(pbValue(t, TypeString, "suv")) {
		t.Fatalf("stored value %x", got)
	}
	got, ok = mem.HGet(key, "_ts:driver_stats")
	if !ok || got != string(pbTimestamp(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))) {
		t.Fatalf("stored timestamp %x", got)
	}
}

func TestSeedErrors(t *testing.T) {
	v := loadTestViews(t)
	f := func(line, want string) {
		t.Helper()
		_, err := v.Seed(context.Background(), NewMemoryStore(), "", []byte(line))
		if err == nil || err.Error() != want {
			t.Fatalf("Seed(%s)\n got %v\nwant %s", line, err, want)
		}
	}
	f(`{"view":"nope"}`, `seed line 1: unknown feature view "nope"`)
	f(`{"view":"driver_stats","entities":{}}`, `seed line 1: view "driver_stats": missing entity "driver_id"`)
	f(`{"view":"driver_stats","entities":{"driver_id":1,"x":2}}`, `seed line 1: view "driver_stats" has no entity "x"`)
	f(`{"view":"driver_stats","entities":{"driver_id":"a"}}`, `seed line 1: view "driver_stats": entity "driver_id": invalid INT64 "a"`)
	f(`{"view":"driver_stats","entities":{"driver_id":1},"features":{"nope":1}}`, `seed line 1: view "driver_stats" has no feature "nope"`)
	f(`{"view":"driver_stats","entities":{"driver_id":1},"features":{"conv_rate":"x"}}`, `seed line 1: view "driver_stats": feature "conv_rate": invalid number "x"`)
	f("\n{\"views\":1}", `seed line 2: json: unknown field "views"`)

	// Entityless rows use the dummy key.
	s := NewMemoryStore()
	if _, err := v.Seed(context.Background(), s, "", []byte(`{"view":"global_stats","features":{"active_drivers":3}}`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.HGet(refEntityKey(testProject, testKey{DummyJoinKey, TypeString, ""}), refField("global_stats", "active_drivers")); !ok {
		t.Fatal("entityless row not stored under the dummy key")
	}
}
