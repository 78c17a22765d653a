package featurefetch

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestFetchLogged checks the prediction-log form of a read: one object
// per entity and feature with the value served, its status and event
// time, and that the answer itself is the same as Fetch's.
func TestFetchLogged(t *testing.T) {
	v := loadTestViews(t)
	forEachStore(t, func(t *testing.T, fx *fixture) {
		fresh := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
		fx.putRow(t, testProject, driverKey(1), "driver_stats", fresh, map[string][]byte{
			"conv_rate": pbValue(t, TypeFloat, float32(0.5)), "avg_daily_trips": pbValue(t, TypeInt64, int64(12)),
		})
		p := mustPlan(t, v, []string{"driver_stats:conv_rate", "driver_stats:avg_daily_trips"}, PlanOptions{
			FullNames: true,
			Defaults:  map[string]json.RawMessage{"driver_stats:conv_rate": json.RawMessage(`-1`)},
		})
		ctx := context.Background()
		keys := [][]byte{[]byte(`[1,"2"]`)}
		out, missing, log, err := p.FetchLogged(ctx, fx.store, keys, nil, nil, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if string(missing) != `[{"driver_id":2}]` {
			t.Fatalf("missing %s", missing)
		}
		plain, err := p.Fetch(ctx, fx.store, keys, nil)
		if err != nil || string(plain) != string(out) {
			t.Fatalf("FetchLogged answered %s, Fetch %s (%v)", out, plain, err)
		}
		ts := `"` + string(appendRFC3339(nil, fresh.UnixNano())) + `"`
		want := `x[{"entity":{"driver_id":1},"view":"driver_stats","name":"conv_rate","value":0.5,"status":"PRESENT","event_time":` + ts + `},` +
			`{"entity":{"driver_id":1},"view":"driver_stats","name":"avg_daily_trips","value":12,"status":"PRESENT","event_time":` + ts + `},` +
			`{"entity":{"driver_id":2},"view":"driver_stats","name":"conv_rate","value":-1,"status":"NOT_FOUND"},` +
			`{"entity":{"driver_id":2},"view":"driver_stats","name":"avg_daily_trips","value":null,"status":"NOT_FOUND"}]`
		if string(log) != want {
			t.Fatalf("log:\n got %s\nwant %s", log, want)
		}

		// A failed read leaves the log as it was.
		_, _, log, err = p.FetchLogged(ctx, fx.store, [][]byte{[]byte(`{"bad":1}`)}, nil, nil, []byte("x"))
		if err == nil || string(log) != "x" {
			t.Fatalf("bad keys: log %q, err %v", log, err)
		}
	})
}
