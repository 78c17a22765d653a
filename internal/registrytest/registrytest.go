// Package registrytest runs a real model registry (bbolt store in a
// temporary folder) on 127.0.0.1 for tests of the packages that talk to it.
package registrytest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/registry/server"
)

// Start serves a registry until the test ends and returns its base URL.
func Start(tb testing.TB) string {
	tb.Helper()
	store, err := server.OpenBoltStore(filepath.Join(tb.TempDir(), "registry.db"))
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		_ = store.Close()
		tb.Fatal(err)
	}
	srv := server.NewServer(server.NewService(store), server.ServerOptions{Logf: tb.Logf})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		_ = store.Close()
	})
	return "http://" + ln.Addr().String()
}
