package server

import (
	"context"
	"testing"

	"github.com/lariat-gw/lariat/registry"
)

// BenchmarkServerGetVersion measures the registry's read path end to end through the
// fasthttp handler (no network), on the embedded store.
func BenchmarkServerGetVersion(b *testing.B) {
	store, err := OpenBoltStore(b.TempDir() + "/registry.db")
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	svc := NewService(store)
	ctx := context.Background()
	if _, err := svc.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://x", ServingEndpoint: "http://127.0.0.1:9000"}); err != nil {
		b.Fatal(err)
	}
	if err := svc.SetAlias(ctx, "eta", "champion", "1"); err != nil {
		b.Fatal(err)
	}
	srv := NewServer(svc, ServerOptions{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var rc fasthttpCtx
		for pb.Next() {
			rc.reset("GET", "/api/2.0/mlflow/registered-models/alias?name=eta&alias=champion")
			srv.Handler(rc.ctx())
			if rc.ctx().Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", rc.ctx().Response.StatusCode(), rc.ctx().Response.Body())
			}
		}
	})
}
