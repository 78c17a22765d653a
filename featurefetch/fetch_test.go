package featurefetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const testProject = "lariat_test"

func fetchJSON(t *testing.T, p *Plan, s Store, keys ...string) string {
	t.Helper()
	raw := make([][]byte, len(keys))
	for i, k := range keys {
		raw[i] = []byte(k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := p.Fetch(ctx, s, raw, []byte("prefix:"))
	if err != nil {
		t.Fatalf("Fetch(%v): %v", keys, err)
	}
	if !bytes.HasPrefix(out, []byte("prefix:")) {
		t.Fatalf("Fetch did not append to dst: %s", out)
	}
	out = out[len("prefix:"):]
	if !json.Valid(out) {
		t.Fatalf("Fetch returned invalid JSON: %s", out)
	}
	return string(out)
}

func mustPlan(t testing.TB, v *Views, features []string, opt PlanOptions) *Plan {
	t.Helper()
	p, err := v.NewPlan("", features, opt)
	if err != nil {
		t.Fatalf("NewPlan(%v): %v", features, err)
	}
	return p
}

func TestFetchRoundTripAllTypes(t *testing.T) {
	v := loadTestViews(t)
	forEachStore(t, func(t *testing.T, fx *fixture) {
		values := map[string][]byte{}
		want := map[string]string{}
		var feats []string
		for _, c := range valueCases {
			name := "f_" + strings.ToLower(c.typ.String())
			if _, done := values[name]; done {
				continue
			}
			values[name] = pbValue(t, c.typ, c.goVal)
			want[name] = c.wantJSON
			feats = append(feats, "all_types:"+name)
		}
		if len(feats) != 16 {
			t.Fatalf("valueCases cover %d types, want 16", len(feats))
		}
		fx.putRow(t, testProject, driverKey(1001), "all_types", time.Now(), values)

		p := mustPlan(t, v, feats, PlanOptions{})
		got := fetchJSON(t, p, fx.store, `1001`)
		var rows []map[string]json.RawMessage
		if err := json.Unmarshal([]byte(got), &rows); err != nil || len(rows) != 1 {
			t.Fatalf("rows %s: %v", got, err)
		}
		if string(rows[0]["driver_id"]) != "1001" {
			t.Fatalf("driver_id = %s", rows[0]["driver_id"])
		}
		for name, w := range want {
			if g := string(rows[0][name]); g != w {
				t.Errorf("%s = %s, want %s", name, g, w)
			}
		}
		if len(rows[0]) != 17 {
			t.Fatalf("row has %d keys: %s", len(rows[0]), got)
		}
	})
}

func TestFetchStatuses(t *testing.T) {
	v := loadTestViews(t)
	forEachStore(t, func(t *testing.T, fx *fixture) {
		fresh := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
		stale := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
		fx.putRow(t, testProject, driverKey(1), "driver_stats", fresh, map[string][]byte{
			"conv_rate": pbValue(t, TypeFloat, float32(0.5)), "avg_daily_trips": pbValue(t, TypeInt64, int64(12)),
		})
		fx.putRow(t, testProject, driverKey(2), "driver_stats", stale, map[string][]byte{
			"conv_rate": pbValue(t, TypeFloat, float32(0.25)), "avg_daily_trips": pbValue(t, TypeInt64, int64(7)),
		})
		// Driver 3 does not exist. Driver 4: null value and missing field.
		fx.putRow(t, testProject, driverKey(4), "driver_stats", fresh, map[string][]byte{
			"conv_rate": pbValue(t, TypeFloat, nil),
		})
		// Driver 5: a value the decoder cannot read.
		fx.putRow(t, testProject, driverKey(5), "driver_stats", fresh, map[string][]byte{
			"conv_rate": {0xa2, 0x01, 0x00}, "avg_daily_trips": pbValue(t, TypeInt64, int64(1)),
		})
		// Driver 6: a stale null (Feast's empty Value); driver 7: a fresh null_val.
		fx.putRow(t, testProject, driverKey(6), "driver_stats", stale, map[string][]byte{
			"conv_rate": pbValue(t, TypeFloat, nil), "avg_daily_trips": pbValue(t, TypeInt64, int64(3)),
		})
		fx.putRow(t, testProject, driverKey(7), "driver_stats", fresh, map[string][]byte{
			"conv_rate": pbValue(t, TypeNull, TypeNull), "avg_daily_trips": pbValue(t, TypeInt64, int64(4)),
		})
		feats := []string{"driver_stats:conv_rate", "driver_stats:avg_daily_trips"}
		ts := func(tm time.Time) string { return `"` + string(appendRFC3339(nil, tm.UnixNano())) + `"` }
		epoch := `"1970-01-01T00:00:00Z"`

		p := mustPlan(t, v, feats, PlanOptions{Shape: ShapeColumns})
		got := fetchJSON(t, p, fx.store, `[1,2,3,4,5,6,7]`)
		// As in Feast, a stored null is PRESENT (value null), and a stale one
		// is OUTSIDE_MAX_AGE: the age check comes first.
		rowTimes := ts(fresh) + `,` + ts(stale) + `,` + epoch + `,` + ts(fresh) + `,` + ts(fresh) + `,` + ts(stale) + `,` + ts(fresh)
		want := `{"metadata":{"feature_names":["driver_id","conv_rate","avg_daily_trips"]},"results":[` +
			`{"values":[1,2,3,4,5,6,7],"statuses":["PRESENT","PRESENT","PRESENT","PRESENT","PRESENT","PRESENT","PRESENT"],"event_timestamps":[` + strings.Repeat(epoch+",", 6) + epoch + `]},` +
			`{"values":[0.5,0.25,null,null,null,null,null],"statuses":["PRESENT","OUTSIDE_MAX_AGE","NOT_FOUND","PRESENT","INVALID","OUTSIDE_MAX_AGE","PRESENT"],` +
			`"event_timestamps":[` + rowTimes + `]},` +
			`{"values":[12,7,null,null,1,3,4],"statuses":["PRESENT","OUTSIDE_MAX_AGE","NOT_FOUND","NOT_FOUND","PRESENT","OUTSIDE_MAX_AGE","PRESENT"],` +
			`"event_timestamps":[` + rowTimes + `]}]}`
		if got != want {
			t.Fatalf("columns:\n got %s\nwant %s", got, want)
		}

		// Defaults and DropStale: statuses stay, values are replaced.
		p = mustPlan(t, v, feats, PlanOptions{
			Shape:     ShapeColumns,
			DropStale: true,
			Defaults:  map[string]json.RawMessage{"driver_stats:conv_rate": json.RawMessage(` -1 `)},
		})
		got = fetchJSON(t, p, fx.store, `[1,2,3,4,5,6,7]`)
		if !strings.Contains(got, `{"values":[0.5,-1,-1,-1,-1,-1,-1],"statuses":["PRESENT","OUTSIDE_MAX_AGE","NOT_FOUND","PRESENT","INVALID","OUTSIDE_MAX_AGE","PRESENT"]`) ||
			!strings.Contains(got, `{"values":[12,null,null,null,1,null,4],"statuses":["PRESENT","OUTSIDE_MAX_AGE","NOT_FOUND","NOT_FOUND","PRESENT","OUTSIDE_MAX_AGE","PRESENT"]`) {
			t.Fatalf("defaults/drop stale: %s", got)
		}

		// A per-plan max age longer than the view's makes driver 2 fresh.
		p = mustPlan(t, v, feats, PlanOptions{MaxAge: map[string]time.Duration{"driver_stats": 72 * time.Hour}})
		got = fetchJSON(t, p, fx.store, `[1,2,3]`)
		want = `[{"driver_id":1,"conv_rate":0.5,"avg_daily_trips":12},{"driver_id":2,"conv_rate":0.25,"avg_daily_trips":7},` +
			`{"driver_id":3,"conv_rate":null,"avg_daily_trips":null}]`
		if got != want {
			t.Fatalf("rows:\n got %s\nwant %s", got, want)
		}

		// A shorter max age makes driver 1 stale too.
		p = mustPlan(t, v, feats, PlanOptions{Shape: ShapeColumns, MaxAge: map[string]time.Duration{"driver_stats": time.Minute}})
		if got = fetchJSON(t, p, fx.store, `1`); !strings.Contains(got, `"statuses":["OUTSIDE_MAX_AGE"]`) {
			t.Fatalf("short max age: %s", got)
		}

		// No max age: views without ttl never go stale.
		fx.putRow(t, testProject, driverKey(1), "driver_trips", time.Unix(1000, 0), map[string][]byte{
			"recent_zones": pbValue(t, TypeStringList, []string{"a"}),
		})
		p = mustPlan(t, v, []string{"driver_trips:recent_zones"}, PlanOptions{Shape: ShapeColumns})
		if got = fetchJSON(t, p, fx.store, `1`); !strings.Contains(got, `"values":[["a"]],"statuses":["PRESENT"],"event_timestamps":["1970-01-01T00:16:40Z"]`) {
			t.Fatalf("no ttl: %s", got)
		}
	})
}

func TestFetchReportMissing(t *testing.T) {
	v := loadTestViews(t)
	forEachStore(t, func(t *testing.T, fx *fixture) {
		now := time.Now()
		fx.putRow(t, testProject, driverKey(1), "driver_stats", now, map[string][]byte{
			"conv_rate": pbValue(t, TypeFloat, float32(0.5)), "avg_daily_trips": pbValue(t, TypeInt64, int64(12)),
		})
		// Driver 4 has a row with a null value and a feature left out.
		fx.putRow(t, testProject, driverKey(4), "driver_stats", now, map[string][]byte{
			"conv_rate": pbValue(t, TypeFloat, nil),
		})
		fx.putRow(t, testProject, driverKey(4), "driver_trips", now, map[string][]byte{
			"recent_zones": pbValue(t, TypeStringList, []string{"a"}),
		})
		feats := []string{"driver_stats:conv_rate", "driver_stats:avg_daily_trips"}
		defaults := map[string]json.RawMessage{"driver_stats:conv_rate": json.RawMessage(`-1`), "driver_stats:avg_daily_trips": json.RawMessage(`0`)}
		f := func(p *Plan, keys, want, wantMissing string) {
			t.Helper()
			out, missing, err := p.FetchReport(context.Background(), fx.store, [][]byte{[]byte(keys)}, nil, []byte("m:"))
			if err != nil || string(out) != want || string(missing) != "m:"+wantMissing {
				t.Fatalf("%s: %s, missing %s, %v\nwant %s, missing m:%s", keys, out, missing, err, want, wantMissing)
			}
		}
		p := mustPlan(t, v, feats, PlanOptions{Defaults: defaults})
		f(p, `[1,3,4]`, `[{"driver_id":1,"conv_rate":0.5,"avg_daily_trips":12},{"driver_id":3,"conv_rate":-1,"avg_daily_trips":0},{"driver_id":4,"conv_rate":-1,"avg_daily_trips":0}]`,
			`[{"driver_id":3}]`)
		f(p, `[1,4]`, `[{"driver_id":1,"conv_rate":0.5,"avg_daily_trips":12},{"driver_id":4,"conv_rate":-1,"avg_daily_trips":0}]`, ``)
		// NullMissingRows: a missing row is null; a row that is there keeps
		// its defaults.
		p = mustPlan(t, v, feats, PlanOptions{Defaults: defaults, NullMissingRows: true})
		f(p, `[3,4]`, `[{"driver_id":3,"conv_rate":null,"avg_daily_trips":null},{"driver_id":4,"conv_rate":-1,"avg_daily_trips":0}]`, `[{"driver_id":3}]`)
		// An entity missing from one of the views read is missing.
		p = mustPlan(t, v, append(feats, "driver_trips:recent_zones"), PlanOptions{Shape: ShapeColumns, NullMissingRows: true, Defaults: defaults})
		out, missing, err := p.FetchReport(context.Background(), fx.store, [][]byte{[]byte(`[1,4]`)}, nil, nil)
		if err != nil || string(missing) != `[{"driver_id":1}]` || !strings.Contains(string(out), `{"values":[null,["a"]],"statuses":["NOT_FOUND","PRESENT"]`) {
			t.Fatalf("two views: %s, missing %s, %v", out, missing, err)
		}
	})
}

func TestFetchKeysAndGroups(t *testing.T) {
	v := loadTestViews(t)
	forEachStore(t, func(t *testing.T, fx *fixture) {
		now := time.Now()
		for _, id := range []int64{1001, 1002} {
			fx.putRow(t, testProject, driverKey(id), "driver_stats", now, map[string][]byte{
				"conv_rate": pbValue(t, TypeFloat, float32(id-1000)),
			})
			fx.putRow(t, testProject, driverKey(id), "driver_trips", now, map[string][]byte{
				"recent_trip_km": pbValue(t, TypeFloatList, []float32{float32(id - 1000), 2.5}),
			})
			fx.putRow(t, testProject, []testKey{{"driver_id", TypeInt64, id}, {"customer_id", TypeString, "c\"1"}}, "driver_customer", now,
				map[string][]byte{"trips_together": pbValue(t, TypeInt64, id*10)})
		}
		fx.putRow(t, testProject, []testKey{{"customer_id", TypeString, "c\"1"}}, "customer_profile", now,
			map[string][]byte{"tier": pbValue(t, TypeString, "gold")})
		fx.putRow(t, testProject, []testKey{{"zone_id", TypeInt32, int32(-3)}}, "zone_stats", now,
			map[string][]byte{"demand": pbValue(t, TypeDouble, 1.5)})
		fx.putRow(t, testProject, []testKey{{"device_id", TypeBytes, []byte{0, 0xfe}}}, "device_stats", now,
			map[string][]byte{"battery": pbValue(t, TypeInt32, int32(80))})
		fx.putRow(t, testProject, []testKey{{DummyJoinKey, TypeString, ""}}, "global_stats", now,
			map[string][]byte{"active_drivers": pbValue(t, TypeInt64, int64(42))})

		// Several hashes per entity, a composite key, a broadcast scalar and string ids.
		p := mustPlan(t, v, []string{
			"driver_stats:conv_rate", "driver_trips:recent_trip_km", "driver_customer:trips_together",
			"customer_profile:tier", "global_stats:active_drivers",
		}, PlanOptions{})
		if jk := strings.Join(p.JoinKeys(), ","); jk != "customer_id,driver_id" {
			t.Fatalf("JoinKeys = %s", jk)
		}
		got := fetchJSON(t, p, fx.store, `"c\"1"`, `["1001", 1002, 1003]`)
		want := `[{"customer_id":"c\"1","driver_id":1001,"conv_rate":1,"recent_trip_km":[1,2.5],"trips_together":10010,"tier":"gold","active_drivers":42},` +
			`{"customer_id":"c\"1","driver_id":1002,"conv_rate":2,"recent_trip_km":[2,2.5],"trips_together":10020,"tier":"gold","active_drivers":42},` +
			`{"customer_id":"c\"1","driver_id":1003,"conv_rate":null,"recent_trip_km":null,"trips_together":null,"tier":"gold","active_drivers":42}]`
		if got != want {
			t.Fatalf("rows:\n got %s\nwant %s", got, want)
		}

		// JoinKeyOrder orders the entity columns; Fetch's keys stay sorted.
		p = mustPlan(t, v, []string{"driver_customer:trips_together"}, PlanOptions{JoinKeyOrder: []string{"driver_id", "customer_id"}})
		if jk := strings.Join(p.JoinKeys(), ","); jk != "customer_id,driver_id" {
			t.Fatalf("JoinKeys with an order = %s", jk)
		}
		got = fetchJSON(t, p, fx.store, `"c\"1"`, `[1001]`)
		if want = `[{"driver_id":1001,"customer_id":"c\"1","trips_together":10010}]`; got != want {
			t.Fatalf("rows in join key order:\n got %s\nwant %s", got, want)
		}
		p = mustPlan(t, v, []string{"driver_customer:trips_together", "zone_stats:demand"},
			PlanOptions{Shape: ShapeColumns, JoinKeyOrder: []string{"device_id", "driver_id"}})
		got = fetchJSON(t, p, fx.store, `"c\"1"`, `1002`, `-3`)
		if want = `{"metadata":{"feature_names":["driver_id","customer_id","zone_id","trips_together","demand"]},"results":[{"values":[1002],` +
			`"statuses":["PRESENT"],"event_timestamps":["1970-01-01T00:00:00Z"]},{"values":["c\"1"],`; !strings.HasPrefix(got, want) {
			t.Fatalf("columns in join key order:\n got %s\nwant %s...", got, want)
		}

		p = mustPlan(t, v, []string{"zone_stats:demand", "device_stats:battery"}, PlanOptions{FullNames: true})
		got = fetchJSON(t, p, fx.store, `"AP4="`, `"-3"`)
		want = `[{"device_id":"AP4=","zone_id":-3,"zone_stats__demand":1.5,"device_stats__battery":80}]`
		if got != want {
			t.Fatalf("INT32/BYTES keys:\n got %s\nwant %s", got, want)
		}

		// Entityless only: no join keys, one row.
		p = mustPlan(t, v, []string{"global_stats:active_drivers"}, PlanOptions{Shape: ShapeColumns})
		got = fetchJSON(t, p, fx.store)
		if !strings.HasPrefix(got, `{"metadata":{"feature_names":["active_drivers"]},"results":[{"values":[42],"statuses":["PRESENT"]`) {
			t.Fatalf("entityless: %s", got)
		}

		// Empty entity lists.
		p = mustPlan(t, v, []string{"driver_stats:conv_rate"}, PlanOptions{})
		if got = fetchJSON(t, p, fx.store, `[]`); got != `[]` {
			t.Fatalf("empty rows: %s", got)
		}
		p = mustPlan(t, v, []string{"driver_stats:conv_rate"}, PlanOptions{Shape: ShapeColumns})
		want = `{"metadata":{"feature_names":["driver_id","conv_rate"]},"results":[{"values":[],"statuses":[],"event_timestamps":[]},{"values":[],"statuses":[],"event_timestamps":[]}]}`
		if got = fetchJSON(t, p, fx.store, ` [ ] `); got != want {
			t.Fatalf("empty columns: %s", got)
		}
	})
}

func TestFetchBadKeys(t *testing.T) {
	v := loadTestViews(t)
	s := NewMemoryStore()
	p := mustPlan(t, v, []string{"driver_customer:trips_together"}, PlanOptions{})
	f := func(want string, keys ...string) {
		t.Helper()
		raw := make([][]byte, len(keys))
		for i, k := range keys {
			raw[i] = []byte(k)
		}
		out, err := p.Fetch(context.Background(), s, raw, []byte("keep"))
		var bre *BadRequestError
		if !errors.As(err, &bre) {
			t.Fatalf("Fetch(%v) error = %v, want a BadRequestError", keys, err)
		}
		if bre.Message != want {
			t.Fatalf("Fetch(%v) error\n got %s\nwant %s", keys, bre.Message, want)
		}
		if string(out) != "keep" {
			t.Fatalf("dst changed on error: %s", out)
		}
	}
	f(`got 1 join key values, want 2 (customer_id, driver_id)`, `"c"`)
	f(`join key "driver_id": invalid JSON value`, `"c"`, `[1,`)
	f(`join key "driver_id": invalid JSON value`, `"c"`, ``)
	f(`join key "driver_id" has 3 values, other join keys have 2`, `["a","b"]`, `[1,2,3]`)
	f(`join key "driver_id", entity 1: invalid INT64 "x"`, `"c"`, `[1,"x"]`)
	f(`join key "driver_id", entity 0: want an integer, got JSON`, `"c"`, `{"a":1}`)
	f(`join key "customer_id", entity 0: want a string, got 1.5`, `1.5`, `1`)
	f(`join key "driver_id", entity 0: invalid INT64 "1.0"`, `"c"`, `1.0`)

	pb := mustPlan(t, v, []string{"device_stats:battery"}, PlanOptions{})
	if _, err := pb.Fetch(context.Background(), s, [][]byte{[]byte(`"*"`)}, nil); err == nil {
		t.Fatal("bad base64 accepted")
	}
}

func TestNewPlanErrors(t *testing.T) {
	v := loadTestViews(t)
	f := func(want string, features []string, opt PlanOptions) {
		t.Helper()
		_, err := v.NewPlan("", features, opt)
		if err == nil || err.Error() != want {
			t.Fatalf("NewPlan(%v) error\n got %v\nwant %s", features, err, want)
		}
	}
	f(`no features requested`, nil, PlanOptions{})
	f(`invalid feature reference "conv_rate"; want "view:feature"`, []string{"conv_rate"}, PlanOptions{})
	f(`feature "nope:x": unknown feature view "nope"`, []string{"nope:x"}, PlanOptions{})
	f(`feature "driver_stats:x": view "driver_stats" has no feature "x"`, []string{"driver_stats:x"}, PlanOptions{})
	f(`feature "driver_stats:conv_rate" requested twice`, []string{"driver_stats:conv_rate", "driver_stats:conv_rate"}, PlanOptions{})
	f(`max age set for feature view "driver_trips", which the plan does not read`, []string{"driver_stats:conv_rate"},
		PlanOptions{MaxAge: map[string]time.Duration{"driver_trips": time.Hour}})
	f(`max age of feature view "driver_stats" must not be negative`, []string{"driver_stats:conv_rate"},
		PlanOptions{MaxAge: map[string]time.Duration{"driver_stats": -time.Hour}})
	f(`default set for feature "driver_stats:acc_rate", which the plan does not read`, []string{"driver_stats:conv_rate"},
		PlanOptions{Defaults: map[string]json.RawMessage{"driver_stats:acc_rate": json.RawMessage("0")}})
	f(`default of feature "driver_stats:conv_rate" is not valid JSON: invalid character '}' looking for beginning of value`, []string{"driver_stats:conv_rate"},
		PlanOptions{Defaults: map[string]json.RawMessage{"driver_stats:conv_rate": json.RawMessage("}")}})
	f(`unknown shape 7`, []string{"driver_stats:conv_rate"}, PlanOptions{Shape: 7})
	f(`join key order names "driver_id" twice`, []string{"driver_customer:trips_together"},
		PlanOptions{JoinKeyOrder: []string{"driver_id", "driver_id"}})
}

func TestNewPlanNameCollisions(t *testing.T) {
	doc := `
project: p
entities: [{name: driver_id, value_type: INT64}]
feature_views:
  - {name: a, entities: [driver_id], features: [{name: x, dtype: INT64}, {name: driver_id, dtype: INT64}]}
  - {name: b, entities: [driver_id], features: [{name: x, dtype: INT64}]}
`
	v, err := ParseViews("c.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.NewPlan("", []string{"a:x", "b:x"}, PlanOptions{})
	if err == nil || err.Error() != `features "a:x" and "b:x" both output as "x"; request full feature names` {
		t.Fatalf("got %v", err)
	}
	if _, err = v.NewPlan("", []string{"a:x", "b:x"}, PlanOptions{FullNames: true}); err != nil {
		t.Fatal(err)
	}
	_, err = v.NewPlan("", []string{"a:driver_id"}, PlanOptions{})
	if err == nil || err.Error() != `feature "a:driver_id" has the same output name as join key "driver_id"; request full feature names` {
		t.Fatalf("got %v", err)
	}
}

func TestFetchOtherProject(t *testing.T) {
	v := loadTestViews(t)
	s := NewMemoryStore()
	key := refEntityKey("other", driverKey(7)...)
	_ = s.HSet(context.Background(), key, refField("driver_stats", "conv_rate"), string(pbValue(t, TypeFloat, float32(1))))
	p, err := v.NewPlan("other", []string{"driver_stats:conv_rate"}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fetchJSON(t, p, s, `7`); got != `[{"driver_id":7,"conv_rate":1}]` {
		t.Fatalf("got %s", got)
	}
}

func TestFetchConcurrent(t *testing.T) {
	v := loadTestViews(t)
	forEachStore(t, func(t *testing.T, fx *fixture) {
		for id := int64(1); id <= 20; id++ {
			fx.putRow(t, testProject, driverKey(id), "driver_stats", time.Now(), map[string][]byte{
				"avg_daily_trips": pbValue(t, TypeInt64, id*3),
			})
		}
		p := mustPlan(t, v, []string{"driver_stats:avg_daily_trips"}, PlanOptions{})
		errs := make(chan error, 8)
		for g := 0; g < 8; g++ {
			go func() {
				for i := 0; i < 50; i++ {
					id := int64((g*50+i)%20 + 1)
					out, err := p.Fetch(context.Background(), fx.store, [][]byte{[]byte(fmt.Sprint(id))}, nil)
					if err == nil && string(out) != fmt.Sprintf(`[{"driver_id":%d,"avg_daily_trips":%d}]`, id, id*3) {
						err = fmt.Errorf("driver %d: got %s", id, out)
					}
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for g := 0; g < 8; g++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})
}
