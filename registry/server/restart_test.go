package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/lariat-gw/lariat/internal/pgtest"
	"github.com/lariat-gw/lariat/registry/server"
)

// TestPostgresRestart: PostgreSQL restarts (a failover, an upgrade) under
// a registry whose pool holds connections used a moment ago. Once the
// server accepts connections again, the next reads and writes succeed:
// a transaction that finds its pooled connection ended before it ran
// anything, or a read-only one that lost it, is run again on a new one.
func TestPostgresRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	pg := pgtest.Start(t)
	store, err := server.OpenPostgresStore(context.Background(), pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ts := startServer(t, store)
	expectOK(t, ts.call(t, "POST", "registered-models/create", `{"name":"m"}`))
	const callers = 8
	round := func(name string) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed []string
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := ts.call(t, "GET", "registered-models/get?name=m", "")
				if i == 0 {
					r = ts.call(t, "POST", "model-versions/create", fmt.Sprintf(`{"name":"m","source":"s3://m/%s"}`, name))
				}
				if r.Status != 200 {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%d %s", r.Status, r.Body))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(failed) > 0 {
			t.Fatalf("%s: %d of %d calls failed: %v", name, len(failed), callers, failed)
		}
	}
	round("before")
	pg.Restart(t)
	round("after")
}
