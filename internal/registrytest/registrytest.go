// Package registrytest runs real model registries (registry/server on a bbolt
// store in a temporary folder, or on any store a test opens) on 127.0.0.1 for
// tests of the packages that talk to one, and stops them when the test ends.
package registrytest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/registry/server"
)

// Server is a registry served on 127.0.0.1 until the test ends or Stop.
type Server struct {
	// Addr is the listening address, "127.0.0.1:port".
	Addr string
	// URL is the base URL, "http://" + Addr.
	URL string
	// Client is a client of the server.
	Client *registry.Client

	srv  *server.Server
	done chan error
}

// Start serves a registry on a fresh bbolt store until the test ends and
// returns its base URL.
func Start(tb testing.TB) string {
	tb.Helper()
	return Serve(tb, OpenBolt(tb)).URL
}

// OpenBolt opens a bbolt store in a temporary folder and closes it when the
// test ends (after the servers started on it later have stopped).
func OpenBolt(tb testing.TB) *server.BoltStore {
	tb.Helper()
	store, err := server.OpenBoltStore(filepath.Join(tb.TempDir(), "registry.db"))
	if err != nil {
		tb.Fatalf("open bolt store: %v", err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	return store
}

// Serve serves a registry on store at a free 127.0.0.1 port.
func Serve(tb testing.TB, store server.Store) *Server {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ServeOn(tb, store, ln)
}

// ServeOn serves a registry on store at ln.
func ServeOn(tb testing.TB, store server.Store, ln net.Listener) *Server {
	tb.Helper()
	srv := server.NewServer(server.NewService(store), server.ServerOptions{Logf: tb.Logf})
	s := &Server{Addr: ln.Addr().String(), srv: srv, done: make(chan error, 1)}
	s.URL = "http://" + s.Addr
	s.Client = registry.NewClient(s.URL, nil)
	go func() { s.done <- srv.Serve(ln) }()
	tb.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down; it may be called more than once.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
	s.srv = nil
}

// Must returns a function that fails the test when a call returned an error
// and otherwise returns the call's value, for one-line setup calls such as
// Must[*registry.ModelVersion](t)(client.CreateVersion(ctx, req)).
func Must[T any](tb testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
}
