package redistest

import (
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	if err := ping(addr); err != nil {
		t.Fatalf("ping after Start: %v", err)
	}
	s.Stop()
	if err := ping(addr); err == nil {
		t.Fatalf("ping after Stop succeeded")
	}
	s.Stop() // stopping twice is fine
	s.Restart()
	if got := s.Addr(); got != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, got)
	}
	if err := ping(addr); err != nil {
		t.Fatalf("ping after Restart: %v", err)
	}
}

func TestStartWithArgs(t *testing.T) {
	s := Start(t, "--requirepass", "secret")
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping a password-protected server: %v", err)
	}
}

func TestStartSentinel(t *testing.T) {
	master := Start(t)
	s := StartSentinel(t, "mymaster", master)
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping sentinel: %v", err)
	}
	if s.Addr() == master.Addr() {
		t.Fatal("sentinel shares the master's address")
	}
}
