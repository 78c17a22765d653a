package dialing

import (
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestStartRetriesUntilConnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tries atomic.Int64
		connected := make(chan struct{})
		v := 7
		c := Start(func() (*int, error) {
			if tries.Add(1) < 4 {
				return nil, errors.New("down")
			}
			return &v, nil
		}, time.Second, func() { close(connected) })
		if c.Get() != nil {
			t.Fatal("connected before any attempt succeeded")
		}
		start := time.Now()
		<-connected
		if took := time.Since(start); took != 3*time.Second || *c.Get() != 7 {
			t.Fatalf("connected after %s with %v, want 3s (three retries a second apart)", took, c.Get())
		}
		if got := c.Stop(); got != &v {
			t.Fatal("Stop did not return the connection")
		}
	})
}

func TestStartConnectedAtOnce(t *testing.T) {
	v := 1
	c := Start(func() (*int, error) { return &v, nil }, time.Hour, func() { t.Fatal("onConnect called for a connection made at once") })
	if c.Get() != &v || c.Stop() != &v {
		t.Fatal("not connected at once")
	}
}

func TestStopEndsTheAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tries atomic.Int64
		c := Start(func() (*int, error) { tries.Add(1); return nil, errors.New("down") }, time.Second, nil)
		time.Sleep(2500 * time.Millisecond)
		if c.Stop() != nil {
			t.Fatal("Stop returned a connection never made")
		}
		n := tries.Load()
		time.Sleep(5 * time.Second)
		if tries.Load() != n || n != 3 {
			t.Fatalf("%d attempts, then %d after Stop; want 3 and no more", n, tries.Load())
		}
	})
}
