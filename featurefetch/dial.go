package featurefetch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotConnected fails the reads of a DialingStore whose Redis has not
// answered yet.
var ErrNotConnected = errors.New("redis has not answered yet")

// DialingStore is a Store on Redis that can be used before Redis answers:
// a gateway starting while Redis is down (a failover, a restart, pods
// started in any order) serves its routes at once, and only feature reads
// fail until Redis answers. It keeps trying to connect in the background.
type DialingStore struct {
	store atomic.Pointer[RedisStore]
	addrs []string
	stop  chan struct{}
	done  sync.WaitGroup
}

var _ Store = (*DialingStore)(nil)

// DialRedisStore returns a store on the Redis opt describes, connected
// when Redis answers now. Otherwise it tries again every retry until it
// does, calling onConnect (when set) then, and reads fail with
// ErrNotConnected meanwhile. It fails only on invalid options.
func DialRedisStore(opt RedisOptions, retry time.Duration, onConnect func()) (*DialingStore, error) {
	if _, err := opt.ClientOption(); err != nil {
		return nil, err
	}
	d := &DialingStore{addrs: opt.Addrs, stop: make(chan struct{})}
	if s, err := NewRedisStore(opt); err == nil {
		d.store.Store(s)
		return d, nil
	}
	d.done.Add(1)
	go func() {
		defer d.done.Done()
		t := time.NewTicker(retry)
		defer t.Stop()
		for {
			select {
			case <-d.stop:
				return
			case <-t.C:
			}
			if s, err := NewRedisStore(opt); err == nil {
				d.store.Store(s)
				if onConnect != nil {
					onConnect()
				}
				return
			}
		}
	}()
	return d, nil
}

// Connected reports whether Redis has answered.
func (d *DialingStore) Connected() bool { return d.store.Load() != nil }

// ReadHashes implements Store.
func (d *DialingStore) ReadHashes(ctx context.Context, reads []HashRead, cacheTTL time.Duration, dst []FieldValue) ([]FieldValue, error) {
	s := d.store.Load()
	if s == nil {
		return dst, fmt.Errorf("cannot read features from redis at %v: %w", d.addrs, ErrNotConnected)
	}
	return s.ReadHashes(ctx, reads, cacheTTL, dst)
}

// Close stops trying to connect and closes the connection made.
func (d *DialingStore) Close() {
	close(d.stop)
	d.done.Wait()
	if s := d.store.Load(); s != nil {
		s.Close()
	}
}
