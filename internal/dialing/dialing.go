// Package dialing keeps trying to make a connection in the background
// until it is made, for clients that serve before what they connect to
// answers (a gateway starting while its Redis is down).
package dialing

import (
	"sync"
	"sync/atomic"
	"time"
)

// Conn is a connection being made: Get returns it once made, nil before.
type Conn[T any] struct {
	v    atomic.Pointer[T]
	stop chan struct{}
	done sync.WaitGroup
}

// Start calls connect now and, until it succeeds, every retry in the
// background; onConnect (when set) is called when a background attempt
// succeeds.
func Start[T any](connect func() (*T, error), retry time.Duration, onConnect func()) *Conn[T] {
	c := &Conn[T]{stop: make(chan struct{})}
	if v, err := connect(); err == nil {
		c.v.Store(v)
		return c
	}
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		t := time.NewTicker(retry)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
			if v, err := connect(); err == nil {
				c.v.Store(v)
				if onConnect != nil {
					onConnect()
				}
				return
			}
		}
	}()
	return c
}

// Get returns the connection, or nil while it is not made.
func (c *Conn[T]) Get() *T { return c.v.Load() }

// Stop stops trying and returns the connection made (nil when none), for
// the caller to close. An attempt running when Stop is called is waited
// for.
func (c *Conn[T]) Stop() *T {
	close(c.stop)
	c.done.Wait()
	return c.v.Load()
}
