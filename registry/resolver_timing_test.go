package registry

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func newBenchResolver(b *testing.B, refs int) (*Resolver, []string) {
	b.Helper()
	r := NewResolver(NewClient("http://127.0.0.1:1", nil), ResolverOptions{Interval: time.Hour})
	b.Cleanup(r.Stop)
	names := make([]string, refs)
	m := make(map[string]Resolved, refs)
	for i := range names {
		names[i] = fmt.Sprintf("model-%d@champion", i)
		m[names[i]] = Resolved{Name: fmt.Sprintf("model-%d", i), Version: "3", ServingEndpoint: "http://127.0.0.1:9000"}
		r.refs[names[i]] = modelRef{}
	}
	r.snap.Store(&m)
	return r, names
}

func BenchmarkResolverLookup(b *testing.B) {
	r, names := newBenchResolver(b, 64)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := r.Lookup(names[i&63]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}

func BenchmarkResolverLookupBytes(b *testing.B) {
	r, names := newBenchResolver(b, 64)
	keys := make([][]byte, len(names))
	for i, n := range names {
		keys[i] = []byte(n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := r.LookupBytes(keys[i&63]); !ok {
			b.Fatal("miss")
		}
	}
}

func TestResolverLookupDoesNotAllocate(t *testing.T) {
	r := NewResolver(NewClient("http://127.0.0.1:1", nil), ResolverOptions{Interval: time.Hour})
	defer r.Stop()
	m := map[string]Resolved{"eta@champion": {Name: "eta", Version: "1"}}
	r.snap.Store(&m)
	key := []byte("eta@champion")
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := r.Lookup("eta@champion"); !ok {
			t.Fatal("miss")
		}
		if _, ok := r.LookupBytes(key); !ok {
			t.Fatal("miss")
		}
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %.1f times per call", allocs)
	}
}

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
	if _, err := svc.CreateModel(ctx, CreateModelRequest{Name: "eta"}); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.CreateVersion(ctx, CreateVersionRequest{Name: "eta", Source: "s3://x", ServingEndpoint: "http://127.0.0.1:9000"}); err != nil {
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
