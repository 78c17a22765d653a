package registry_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/registrytest"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/registry/server"
)

// resolverFixture is a registry server with model "eta" (versions 1..3 with serving
// endpoints, alias champion -> 1, version 2 in Production).
func resolverFixture(t *testing.T) (*registrytest.Server, server.Store) {
	t.Helper()
	store := registrytest.OpenBolt(t)
	ts := registrytest.Serve(t, store)
	ctx := context.Background()
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}))
	for _, ep := range []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"} {
		registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://x", ServingEndpoint: ep}))
	}
	if err := ts.Client.SetAlias(ctx, "eta", "champion", "1"); err != nil {
		t.Fatal(err)
	}
	registrytest.Must[*registry.ModelVersion](t)(ts.Client.TransitionStage(ctx, "eta", "2", "Production", false))
	return ts, store
}

func TestResolverResolvesAndFollowsAliasMoves(t *testing.T) {
	ts, _ := resolverFixture(t)
	ctx := context.Background()
	var mu sync.Mutex
	var changes []string
	r := registry.NewResolver(ts.Client, registry.ResolverOptions{
		Interval: time.Hour, // refreshed by hand below
		OnChange: func(ref string, from, to registry.Resolved) {
			mu.Lock()
			changes = append(changes, ref+":"+from.Version+"->"+to.Version)
			mu.Unlock()
		},
	})
	defer r.Stop()

	f := func(ref string, version, endpoint string) {
		t.Helper()
		got, err := r.Register(ctx, ref)
		if err != nil {
			t.Fatalf("Register(%q): %v", ref, err)
		}
		want := registry.Resolved{Name: "eta", Version: version, ServingEndpoint: endpoint}
		if got != want {
			t.Fatalf("Register(%q) = %+v, want %+v", ref, got, want)
		}
		if got, ok := r.Lookup(ref); !ok || got != want {
			t.Fatalf("Lookup(%q) = %+v, %v", ref, got, ok)
		}
	}
	f("eta@champion", "1", "http://127.0.0.1:9001")
	f("eta/3", "3", "http://127.0.0.1:9003")
	f("eta/latest", "3", "http://127.0.0.1:9003")
	f("eta/Production", "2", "http://127.0.0.1:9002")
	f("models:/eta@champion", "1", "http://127.0.0.1:9001")

	if _, ok := r.Lookup("eta@other"); ok {
		t.Fatal("Lookup of an unregistered ref succeeded")
	}
	if _, err := r.Register(ctx, "eta@other"); err == nil {
		t.Fatal("Register of an unknown alias succeeded")
	}
	if _, err := r.Register(ctx, "nope/1"); err == nil {
		t.Fatal("Register of an unknown model succeeded")
	}
	if _, err := r.Register(ctx, "not a ref"); err == nil {
		t.Fatal("Register of a malformed ref succeeded")
	}

	// Move the alias: the mapping changes at the next refresh, not before.
	if err := ts.Client.SetAlias(ctx, "eta", "champion", "3"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Lookup("eta@champion"); got.Version != "1" {
		t.Fatalf("mapping changed before a refresh: %+v", got)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Lookup("eta@champion"); got.Version != "3" || got.ServingEndpoint != "http://127.0.0.1:9003" {
		t.Fatalf("after refresh: %+v", got)
	}
	mu.Lock()
	gotChanges := strings.Join(changes, ",")
	mu.Unlock()
	if !strings.Contains(gotChanges, "eta@champion:1->3") {
		t.Fatalf("OnChange calls = %q", gotChanges)
	}
	st := r.Status()
	if st.Stale || st.LastError != "" || st.LastSuccess.IsZero() || st.Refs != 5 {
		t.Fatalf("status after a good refresh: %+v", st)
	}

	r.Forget("eta/3")
	if _, ok := r.Lookup("eta/3"); ok {
		t.Fatal("Lookup of a forgotten ref succeeded")
	}
}

func TestResolverBackgroundRefresh(t *testing.T) {
	ts, _ := resolverFixture(t)
	ctx := context.Background()
	r := registry.NewResolver(ts.Client, registry.ResolverOptions{Interval: 20 * time.Millisecond})
	defer r.Stop()
	if _, err := r.Register(ctx, "eta@champion"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Client.SetAlias(ctx, "eta", "champion", "2"); err != nil {
		t.Fatal(err)
	}
	// Bounded wait for the background loop; no timing is asserted.
	for i := 0; ; i++ {
		if got, _ := r.Lookup("eta@champion"); got.Version == "2" {
			break
		}
		if i == 1000 {
			t.Fatal("background refresh never picked up the alias move")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Stop()
	r.Stop() // idempotent
}

func TestResolverKeepsLastGoodMappingWhenRegistryIsDown(t *testing.T) {
	ts, store := resolverFixture(t)
	ctx := context.Background()
	r := registry.NewResolver(ts.Client, registry.ResolverOptions{Interval: time.Hour, Timeout: time.Second})
	defer r.Stop()
	want, err := r.Register(ctx, "eta@champion")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	lastGood := r.Status().LastSuccess
	addr := ts.Addr
	errorsBefore := registry.RefreshErrors(r)

	ts.Stop()
	if err := r.Refresh(ctx); err == nil {
		t.Fatal("refresh against a stopped registry succeeded")
	}
	if got, ok := r.Lookup("eta@champion"); !ok || got != want {
		t.Fatalf("mapping lost while the registry is down: %+v, %v", got, ok)
	}
	st := r.Status()
	if !st.Stale || st.LastError == "" || !st.LastSuccess.Equal(lastGood) {
		t.Fatalf("status while down: %+v", st)
	}
	if registry.RefreshErrors(r) <= errorsBefore {
		t.Fatal("refresh errors were not counted")
	}
	// A new ref cannot be resolved, but is kept (ErrUnreachable) for the
	// refreshes; a second one, moments later, does not wait for the
	// registry again. A known one is resolved from the cache.
	if _, err := r.Register(ctx, "eta/3"); !errors.Is(err, registry.ErrUnreachable) {
		t.Fatalf("Register of an uncached ref while the registry is down: %v, want ErrUnreachable", err)
	}
	if _, err := r.Register(ctx, "eta/2"); !errors.Is(err, registry.ErrUnreachable) || !strings.Contains(err.Error(), "did not answer moments ago") {
		t.Fatalf("second Register while the registry is down: %v", err)
	}
	if got, err := r.Register(ctx, "eta@champion"); err != nil || got != want {
		t.Fatalf("Register of a cached ref while down = %+v, %v", got, err)
	}

	// The registry comes back on the same address: the next refresh clears the state.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	registrytest.ServeOn(t, store, ln)
	if err := r.Refresh(ctx); err != nil {
		t.Fatalf("refresh after the registry came back: %v", err)
	}
	if st := r.Status(); st.Stale || st.LastError != "" {
		t.Fatalf("status after recovery: %+v", st)
	}
	for ref, version := range map[string]string{"eta/3": "3", "eta/2": "2"} {
		if got, ok := r.Lookup(ref); !ok || got.Version != version {
			t.Fatalf("%s registered while the registry was down, after it came back: %+v, %v", ref, got, ok)
		}
	}
	if got, err := r.Register(ctx, "eta/1"); err != nil || got.Version != "1" {
		t.Fatalf("Register once the registry is back: %+v, %v", got, err)
	}
}
