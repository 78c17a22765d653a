package featurefetch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lariat-gw/lariat/internal/dialing"
)

// ErrNotConnected fails the reads of a DialingStore whose Redis has not
// answered yet.
var ErrNotConnected = errors.New("redis has not answered yet")

// DialingStore is a Store on Redis that can be used before Redis answers:
// a gateway starting while Redis is down (a failover, a restart, pods
// started in any order) serves its routes at once, and only feature reads
// fail until Redis answers. It keeps trying to connect in the background.
type DialingStore struct {
	conn  *dialing.Conn[RedisStore]
	addrs []string
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
	return &DialingStore{conn: dialing.Start(func() (*RedisStore, error) { return NewRedisStore(opt) }, retry, onConnect), addrs: opt.Addrs}, nil
}

// Connected reports whether Redis has answered.
func (d *DialingStore) Connected() bool { return d.conn.Get() != nil }

// ReadHashes implements Store.
func (d *DialingStore) ReadHashes(ctx context.Context, reads []HashRead, cacheTTL time.Duration, dst []FieldValue) ([]FieldValue, error) {
	s := d.conn.Get()
	if s == nil {
		return dst, fmt.Errorf("cannot read features from redis at %v: %w", d.addrs, ErrNotConnected)
	}
	return s.ReadHashes(ctx, reads, cacheTTL, dst)
}

// Close stops trying to connect and closes the connection made.
func (d *DialingStore) Close() {
	if s := d.conn.Stop(); s != nil {
		s.Close()
	}
}
