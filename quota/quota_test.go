package quota

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/rueidis"

	"github.com/lariat-gw/lariat/internal/redistest"
	"github.com/lariat-gw/lariat/internal/testwait"
)

func TestLocal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewLocal(10, 5)
		for i := range 5 {
			if ok, _ := b.Allow(); !ok {
				t.Fatalf("request %d of the burst refused", i)
			}
		}
		ok, after := b.Allow()
		if ok || after <= 0 || after > 100*time.Millisecond {
			t.Fatalf("past the burst: %v, retry after %s", ok, after)
		}
		time.Sleep(after)
		if ok, _ := b.Allow(); !ok {
			t.Fatal("refused after waiting the time given")
		}
	})
}

func TestInFlight(t *testing.T) {
	f := NewInFlight(2)
	if !f.Acquire() || !f.Acquire() || f.Acquire() {
		t.Fatal("bound of 2 not kept")
	}
	f.Release()
	if !f.Acquire() || f.Count() != 2 {
		t.Fatal("released slot not reusable")
	}
	var none *InFlight
	if !none.Acquire() {
		t.Fatal("nil bound refused")
	}
}

type failingStore struct{}

func (failingStore) Allow(context.Context, string, float64, int) (bool, time.Duration, error) {
	return false, 0, errors.New("down")
}

func TestGlobalFailsOpen(t *testing.T) {
	before := storeErrors.Get()
	g := NewGlobal(failingStore{}, "k", 1, 1)
	for range 3 {
		if ok, _ := g.Allow(); !ok {
			t.Fatal("a failing store must admit")
		}
	}
	if storeErrors.Get()-before != 3 || storeUp.Load() != 0 {
		t.Fatalf("errors %d, up %d", storeErrors.Get()-before, storeUp.Load())
	}
}

// TestRedisGCRA: two stores on one Redis share a key's burst exactly. The
// rate (1 per 100 s) refills nothing within the test.
func TestRedisGCRA(t *testing.T) {
	srv := redistest.Start(t)
	newStore := func() *Redis {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return NewRedis(c, "test:")
	}
	a, b := newStore(), newStore()
	ctx := context.Background()
	admitted := 0
	var lastWait time.Duration
	for i := range 60 {
		s := a
		if i%2 == 1 {
			s = b
		}
		ok, wait, err := s.Allow(ctx, "tenant", 0.01, 20)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			admitted++
		} else {
			lastWait = wait
		}
	}
	if admitted != 20 {
		t.Fatalf("admitted %d of 60, want the burst of 20", admitted)
	}
	if lastWait < 90*time.Second || lastWait > 101*time.Second {
		t.Fatalf("retry after %s, want about 100s", lastWait)
	}
	// Another key has its own burst.
	if ok, _, err := a.Allow(ctx, "other", 0.01, 1); err != nil || !ok {
		t.Fatalf("other key: %v %v", ok, err)
	}
	// With Redis gone, Global admits and counts the failure.
	g := NewGlobal(a, "tenant", 0.01, 20)
	if ok, _ := g.Allow(); ok {
		t.Fatal("burst exhausted, still admitted")
	}
	srv.Stop()
	before := storeErrors.Get()
	if ok, _ := g.Allow(); !ok {
		t.Fatal("Redis down: must fail open")
	}
	if storeErrors.Get() == before || storeUp.Load() != 0 {
		t.Fatal("store failure not counted")
	}
}

// stallingStore fails every decision after its timeout while stalled, as
// a Redis stalled by a fork or a long script does, and counts the
// decisions asked of it.
type stallingStore struct {
	stalled atomic.Bool
	asked   atomic.Int64
}

func (s *stallingStore) Allow(ctx context.Context, _ string, _ float64, _ int) (bool, time.Duration, error) {
	s.asked.Add(1)
	if s.stalled.Load() {
		time.Sleep(DefaultRedisTimeout)
		return false, 0, context.DeadlineExceeded
	}
	return true, 0, nil
}

// TestGuardedStoreSkipsAStalledStore: while the store is stalled, the
// first decisions wait out its timeout and the rest admit at once without
// asking it; once it answers again, one decision after the open time
// finds it and decisions go back to it.
func TestGuardedStoreSkipsAStalledStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stallingStore{}
		g := NewGlobal(Guarded(s), "k", 1000, 1000)
		s.stalled.Store(true)
		start := time.Now()
		for i := range 100 {
			if ok, _ := g.Allow(); !ok {
				t.Fatalf("decision %d with the store stalled: refused, want admitted", i)
			}
		}
		if n := s.asked.Load(); n != guardFailures {
			t.Fatalf("the stalled store was asked %d times for 100 decisions, want %d", n, guardFailures)
		}
		if took, want := time.Since(start), guardFailures*DefaultRedisTimeout; took != want {
			t.Fatalf("100 decisions took %s, want %s (the first %d waits)", took, want, guardFailures)
		}
		s.stalled.Store(false)
		time.Sleep(guardOpenFor + time.Millisecond)
		for range 10 {
			g.Allow()
		}
		if n := s.asked.Load(); n != guardFailures+10 || storeUp.Load() != 1 {
			t.Fatalf("after the store came back: asked %d times, up %d; want %d, 1", n, storeUp.Load(), guardFailures+10)
		}
	})
}

// TestDialRedisBeforeRedis: a quota store dialled while its Redis is down
// fails its decisions (so NewGlobal admits) until Redis answers, then
// counts without anything else done.
func TestDialRedisBeforeRedis(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	connected := make(chan struct{})
	d := DialRedis(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true}, "test:", 20*time.Millisecond, func() { close(connected) })
	defer d.Close()
	if _, _, err := d.Allow(context.Background(), "k", 0.01, 1); err == nil || d.Connected() {
		t.Fatalf("Redis down: %v (connected %v), want an error", err, d.Connected())
	}
	srv.Restart()
	select {
	case <-connected:
	case <-time.After(testwait.Timeout):
		t.Fatal("not connected after Redis started")
	}
	for i, want := range []bool{true, false} {
		if ok, _, err := d.Allow(context.Background(), "k", 0.01, 1); err != nil || ok != want {
			t.Fatalf("decision %d with Redis up: %v %v, want %v", i, ok, err, want)
		}
	}
}
