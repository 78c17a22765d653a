package featurefetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// feastResponse mirrors Feast's /get-online-features response.
type feastResponse struct {
	Metadata struct {
		FeatureNames []string `json:"feature_names"`
	} `json:"metadata"`
	Results []struct {
		Values          []json.RawMessage `json:"values"`
		Statuses        []string          `json:"statuses"`
		EventTimestamps []string          `json:"event_timestamps"`
	} `json:"results"`
}

func TestAppendOnlineFeatures(t *testing.T) {
	v := loadTestViews(t)
	forEachStore(t, func(t *testing.T, fx *fixture) {
		ts := time.Now().Add(-time.Minute).Truncate(time.Second)
		fx.putRow(t, testProject, driverKey(1001), "driver_stats", ts, map[string][]byte{
			"conv_rate": pbValue(t, TypeFloat, float32(0.53)), "avg_daily_trips": pbValue(t, TypeInt64, int64(12)),
		})
		req := `{"features": ["driver_stats:conv_rate", "driver_stats:avg_daily_trips"], "entities": {"driver_id": [1001, 1002]}, "full_feature_names": false}`
		out, err := v.AppendOnlineFeatures(context.Background(), fx.store, []byte(req), nil)
		if err != nil {
			t.Fatal(err)
		}
		tsJSON := ts.UTC().Format("2006-01-02T15:04:05Z")
		want := `{"metadata":{"feature_names":["driver_id","conv_rate","avg_daily_trips"]},"results":[` +
			`{"values":[1001,1002],"statuses":["PRESENT","PRESENT"],"event_timestamps":["1970-01-01T00:00:00Z","1970-01-01T00:00:00Z"]},` +
			`{"values":[0.53,null],"statuses":["PRESENT","NOT_FOUND"],"event_timestamps":["` + tsJSON + `","1970-01-01T00:00:00Z"]},` +
			`{"values":[12,null],"statuses":["PRESENT","NOT_FOUND"],"event_timestamps":["` + tsJSON + `","1970-01-01T00:00:00Z"]}]}`
		if string(out) != want {
			t.Fatalf("response\n got %s\nwant %s", out, want)
		}
		var resp feastResponse
		dec := json.NewDecoder(strings.NewReader(string(out)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&resp); err != nil {
			t.Fatalf("response does not have Feast's shape: %v", err)
		}
		if len(resp.Results) != len(resp.Metadata.FeatureNames) {
			t.Fatalf("%d results for %d names", len(resp.Results), len(resp.Metadata.FeatureNames))
		}
		for _, r := range resp.Results {
			if len(r.Values) != 2 || len(r.Statuses) != 2 || len(r.EventTimestamps) != 2 {
				t.Fatalf("column lengths: %+v", r)
			}
			for _, s := range r.EventTimestamps {
				if _, err := time.Parse(time.RFC3339, s); err != nil {
					t.Fatalf("timestamp %q: %v", s, err)
				}
			}
		}

		// Full feature names, entity ids as strings, extra entity columns ignored.
		req = `{"features":["driver_stats:conv_rate"],"entities":{"customer_id":["x"],"driver_id":["1001"]},"full_feature_names":true}`
		out, err = v.AppendOnlineFeatures(context.Background(), fx.store, []byte(req), []byte("dst:"))
		if err != nil {
			t.Fatal(err)
		}
		want = `dst:{"metadata":{"feature_names":["driver_id","driver_stats__conv_rate"]},"results":[` +
			`{"values":[1001],"statuses":["PRESENT"],"event_timestamps":["1970-01-01T00:00:00Z"]},` +
			`{"values":[0.53],"statuses":["PRESENT"],"event_timestamps":["` + tsJSON + `"]}]}`
		if string(out) != want {
			t.Fatalf("full names\n got %s\nwant %s", out, want)
		}
	})
}

// TestAppendOnlineFeaturesEntityOrder checks that entity columns come in the
// order the request names them, also when a cached plan served another order.
func TestAppendOnlineFeaturesEntityOrder(t *testing.T) {
	v := loadTestViews(t)
	forEachStore(t, func(t *testing.T, fx *fixture) {
		ts := time.Now().Add(-time.Minute).Truncate(time.Second)
		fx.putRow(t, testProject, []testKey{{"driver_id", TypeInt64, int64(7)}, {"customer_id", TypeString, "c9"}}, "driver_customer", ts,
			map[string][]byte{"trips_together": pbValue(t, TypeInt64, int64(70))})
		tsJSON := ts.UTC().Format("2006-01-02T15:04:05Z")
		f := func(entities, wantNames, wantFirst, wantSecond string) {
			t.Helper()
			req := `{"features":["driver_customer:trips_together"],"entities":` + entities + `}`
			out, err := v.AppendOnlineFeatures(context.Background(), fx.store, []byte(req), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := `{"metadata":{"feature_names":[` + wantNames + `,"trips_together"]},"results":[` +
				`{"values":[` + wantFirst + `],"statuses":["PRESENT"],"event_timestamps":["1970-01-01T00:00:00Z"]},` +
				`{"values":[` + wantSecond + `],"statuses":["PRESENT"],"event_timestamps":["1970-01-01T00:00:00Z"]},` +
				`{"values":[70],"statuses":["PRESENT"],"event_timestamps":["` + tsJSON + `"]}]}`
			if string(out) != want {
				t.Fatalf("entities %s:\n got %s\nwant %s", entities, out, want)
			}
		}
		f(`{"driver_id":[7],"customer_id":["c9"]}`, `"driver_id","customer_id"`, `7`, `"c9"`)
		f(`{"customer_id":["c9"],"driver_id":[7]}`, `"customer_id","driver_id"`, `"c9"`, `7`)
		f(`{"zone_id":[1],"driver_id":[7],"x":[1],"customer_id":["c9"]}`, `"driver_id","customer_id"`, `7`, `"c9"`)
	})
}

func TestAppendOnlineFeaturesBadRequests(t *testing.T) {
	v := loadTestViews(t)
	s := NewMemoryStore()
	f := func(req, want string) {
		t.Helper()
		out, err := v.AppendOnlineFeatures(context.Background(), s, []byte(req), []byte("keep"))
		var bre *BadRequestError
		if !errors.As(err, &bre) {
			t.Fatalf("request %s: error %v, want a BadRequestError", req, err)
		}
		if bre.Error() != want {
			t.Fatalf("request %s:\n got %s\nwant %s", req, bre.Message, want)
		}
		if string(out) != "keep" {
			t.Fatalf("dst changed: %s", out)
		}
	}
	f(`{`, `request body is not valid JSON`)
	f(`[]`, `request body must be a JSON object`)
	f(`{"feature_service":"svc","entities":{"driver_id":[1]}}`, `feature_service is not supported; list the features`)
	f(`{"entities":{"driver_id":[1]}}`, `"features" must be a list of "view:feature" strings`)
	f(`{"features":[1],"entities":{"driver_id":[1]}}`, `"features" must be a list of "view:feature" strings`)
	f(`{"features":["driver_stats:conv_rate"]}`, `"entities" must be an object mapping join keys to lists of values`)
	f(`{"features":["driver_stats:conv_rate"],"entities":{}}`, `entities: missing join key "driver_id"`)
	f(`{"features":["driver_stats:nope"],"entities":{"driver_id":[1]}}`, `feature "driver_stats:nope": view "driver_stats" has no feature "nope"`)
	f(`{"features":["driver_stats:conv_rate"],"entities":{"driver_id":["x"]}}`, `join key "driver_id", entity 0: invalid INT64 "x"`)
	f(`{"features":["driver_stats:conv_rate"],"entities":{"driver_id":[1]},"full_feature_names":"yes"}`, `"full_feature_names" must be a boolean`)
	f(`{"features":["driver_stats:conv_rate"],"entities":{"driver_id":[1]},"request_context":{"x":[1]}}`, `request_context is not supported`)
}

func TestAppendOnlineFeaturesPlanCache(t *testing.T) {
	v := loadTestViews(t)
	s := NewMemoryStore()
	plans := func() int {
		v.plansMu.RLock()
		defer v.plansMu.RUnlock()
		return len(v.plans)
	}
	req := []byte(`{"features":["driver_stats:conv_rate"],"entities":{"driver_id":[1]}}`)
	for i := 0; i < 3; i++ {
		if _, err := v.AppendOnlineFeatures(context.Background(), s, req, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := plans(); n != 1 {
		t.Fatalf("%d cached plans after repeating one request", n)
	}
	// Many distinct feature lists stay bounded.
	for i := 0; i < maxCachedPlans+50; i++ {
		req := fmt.Sprintf(`{"features":["driver_stats:conv_rate"%s],"entities":{"driver_id":[1]}}`, strings.Repeat(" ", i))
		if _, err := v.AppendOnlineFeatures(context.Background(), s, []byte(req), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := plans(); n > maxCachedPlans {
		t.Fatalf("%d cached plans, limit %d", n, maxCachedPlans)
	}
}
