package registry

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/internal/testwait"
)

// resolverFixture is a registry server with model "eta" (versions 1..3 with serving
// endpoints, alias champion -> 1, version 2 in Production).
func resolverFixture(t *testing.T) (*testServer, Store) {
	t.Helper()
	store := boltFactory(t)()
	t.Cleanup(func() { _ = store.Close() })
	ts := startServer(t, store)
	ctx := context.Background()
	must[*RegisteredModel](t)(ts.Client.CreateModel(ctx, CreateModelRequest{Name: "eta"}))
	for _, ep := range []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"} {
		must[*ModelVersion](t)(ts.Client.CreateVersion(ctx, CreateVersionRequest{Name: "eta", Source: "s3://x", ServingEndpoint: ep}))
	}
	if err := ts.Client.SetAlias(ctx, "eta", "champion", "1"); err != nil {
		t.Fatal(err)
	}
	must[*ModelVersion](t)(ts.Client.TransitionStage(ctx, "eta", "2", "Production", false))
	return ts, store
}

func TestParseRef(t *testing.T) {
	f := func(ref string, want modelRef) {
		t.Helper()
		got, err := parseRef(ref)
		if err != nil {
			t.Fatalf("parseRef(%q): %v", ref, err)
		}
		if got != want {
			t.Fatalf("parseRef(%q) = %+v, want %+v", ref, got, want)
		}
	}
	f("eta@champion", modelRef{name: "eta", selector: "champion", kind: refAlias})
	f("models:/eta@champion", modelRef{name: "eta", selector: "champion", kind: refAlias})
	f("eta/3", modelRef{name: "eta", selector: "3", kind: refVersion})
	f("eta/007", modelRef{name: "eta", selector: "7", kind: refVersion})
	f("eta/latest", modelRef{name: "eta", kind: refLatest})
	f("eta/production", modelRef{name: "eta", selector: "Production", kind: refStage})

	bad := func(ref string) {
		t.Helper()
		if err := ValidateRef(ref); err == nil {
			t.Fatalf("ValidateRef(%q) accepted it", ref)
		}
	}
	bad("")
	bad("eta")
	bad("@champion")
	bad("eta@")
	bad("eta@v1")
	bad("eta/")
	bad("/3")
	bad("eta/0")
	bad("eta/-2")
	bad("eta/whatever")
	bad("eta/3/4")
}

func TestResolverResolvesAndFollowsAliasMoves(t *testing.T) {
	ts, _ := resolverFixture(t)
	ctx := context.Background()
	var mu sync.Mutex
	var changes []string
	r := NewResolver(ts.Client, ResolverOptions{
		Interval: time.Hour, // refreshed by hand below
		OnChange: func(ref string, from, to Resolved) {
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
		want := Resolved{Name: "eta", Version: version, ServingEndpoint: endpoint}
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
	r := NewResolver(ts.Client, ResolverOptions{Interval: 20 * time.Millisecond})
	defer r.Stop()
	if _, err := r.Register(ctx, "eta@champion"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Client.SetAlias(ctx, "eta", "champion", "2"); err != nil {
		t.Fatal(err)
	}
	// Bounded wait for the background loop; no timing is asserted.
	testwait.Until(t, "the background refresh to pick up the alias move", func() bool {
		got, _ := r.Lookup("eta@champion")
		return got.Version == "2"
	})
	r.Stop()
	r.Stop() // idempotent
}

func TestResolverKeepsLastGoodMappingWhenRegistryIsDown(t *testing.T) {
	ts, store := resolverFixture(t)
	ctx := context.Background()
	r := NewResolver(ts.Client, ResolverOptions{Interval: time.Hour, Timeout: time.Second})
	defer r.Stop()
	want, err := r.Register(ctx, "eta@champion")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	lastGood := r.Status().LastSuccess
	addr := ts.ln.Addr().String()
	errorsBefore := r.metrics.refreshErrors.Get()

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
	if r.metrics.refreshErrors.Get() <= errorsBefore {
		t.Fatal("refresh errors were not counted")
	}
	// A new ref cannot be registered, a known one still can (from the cache).
	if _, err := r.Register(ctx, "eta/3"); err == nil {
		t.Fatal("Register of an uncached ref succeeded while the registry is down")
	}
	if got, err := r.Register(ctx, "eta@champion"); err != nil || got != want {
		t.Fatalf("Register of a cached ref while down = %+v, %v", got, err)
	}

	// The registry comes back on the same address: the next refresh clears the state.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	serveOn(t, store, ln)
	if err := r.Refresh(ctx); err != nil {
		t.Fatalf("refresh after the registry came back: %v", err)
	}
	if st := r.Status(); st.Stale || st.LastError != "" {
		t.Fatalf("status after recovery: %+v", st)
	}
}
