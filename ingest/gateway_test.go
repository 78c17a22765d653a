package ingest_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/gateway"
	"github.com/lariat-gw/lariat/ingest"
	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/tasks"
	"github.com/lariat-gw/lariat/upstream"
)

const featureRoute = `
name: drivers
endpoint: /drivers
timeout: 2s
tasks:
  features:
    type: feature
    inputs:
      entities: {driver_id: '{{ .request.ids }}'}
      features: [driver_stats:conv_rate, driver_stats:avg_daily_trips, driver_stats:vehicle_type, driver_trips:recent_zones]
    output: {path: response.body}
`

// TestGatewayReadsIngestedRows loads files with the ingestion sidecar's
// code and reads them back through a real gateway route with a feature task.
func TestGatewayReadsIngestedRows(t *testing.T) {
	srv := redistest.Start(t)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	w, err := ingest.NewWriter(ctx, c, ingest.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	views, err := featurefetch.LoadViews("testdata/featureviews.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"stats.csv": "driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,rating,vehicle_type,is_active\n" +
			"1001,2026-05-01T10:00:00Z,0.25,0.5,12,4.5,sedan,true\n" +
			"1002,2026-05-01T10:00:00Z,0.75,0.5,3,4.5,bike,false\n" +
			"1001,2026-04-01T10:00:00Z,0.99,0.5,99,4.5,old,true\n", // older: skipped
		"trips.jsonl": `{"driver_id":1001,"event_timestamp":"2026-05-01T10:00:00Z","recent_trip_km":[1.5],"recent_ratings":[5],"recent_zones":["north","east"]}` + "\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, view := range map[string]string{"stats.csv": "driver_stats", "trips.jsonl": "driver_trips"} {
		s, err := ingest.NewSchema(views, view, ingest.SchemaOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ingest.Load(ctx, w, s, filepath.Join(dir, name), ingest.LoadOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	store := featurefetch.NewRedisStoreFromClient(c, time.Second, false)
	routes := t.TempDir()
	if err := os.WriteFile(filepath.Join(routes, "drivers.yaml"), []byte(featureRoute), 0o644); err != nil {
		t.Fatal(err)
	}
	env := tasks.NewEnv(nil)
	tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: store, Breaker: upstream.BreakerSettings{Disabled: true}})
	g := gateway.New(gateway.Options{RoutesDir: routes, Env: env, Logger: slog.New(slog.DiscardHandler)})
	if errs := g.Load(); len(errs) > 0 {
		t.Fatalf("route errors: %v", errs)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = g.Shutdown(sctx)
	})

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+ln.Addr().String()+"/drivers", "application/json", strings.NewReader(`{"ids":[1001,1002,7]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `[{"driver_id":1001,"conv_rate":0.25,"avg_daily_trips":12,"vehicle_type":"sedan","recent_zones":["north","east"]},` +
		`{"driver_id":1002,"conv_rate":0.75,"avg_daily_trips":3,"vehicle_type":"bike","recent_zones":null},` +
		`{"driver_id":7,"conv_rate":null,"avg_daily_trips":null,"vehicle_type":null,"recent_zones":null}]`
	if resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("gateway answered %d\n%s\nwant\n%s", resp.StatusCode, body, want)
	}
}
