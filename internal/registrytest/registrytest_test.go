package registrytest

import (
	"context"
	"net"
	"testing"

	"github.com/lariat-gw/lariat/registry"
)

func TestServeStopAndServeAgainOnTheSameStore(t *testing.T) {
	ctx := context.Background()
	store := OpenBolt(t)
	s := Serve(t, store)
	Must[*registry.RegisteredModel](t)(s.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}))

	s.Stop()
	s.Stop() // idempotent
	if _, err := s.Client.GetModel(ctx, "eta"); err == nil {
		t.Fatal("a stopped server still answered")
	}

	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", s.Addr, err)
	}
	again := ServeOn(t, store, ln)
	if again.URL != s.URL {
		t.Fatalf("URL = %q, want %q", again.URL, s.URL)
	}
	if m := Must[*registry.RegisteredModel](t)(again.Client.GetModel(ctx, "eta")); m.Name != "eta" {
		t.Fatalf("model after restart = %+v", m)
	}
}

func TestStartServesAFreshRegistry(t *testing.T) {
	c := registry.NewClient(Start(t), nil)
	if _, err := c.GetModel(context.Background(), "eta"); registry.ErrorCode(err) != registry.CodeResourceDoesNotExist {
		t.Fatalf("GetModel on a fresh registry: %v", err)
	}
}
