package quota

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/lariat-gw/lariat/internal/dialing"
	"github.com/redis/rueidis"
)

// gcra is the generic cell rate algorithm (GCRA; ITU-T I.371, the
// algorithm of redis-cell and Brandur Leach's "Rate limiting, cells, and
// GCRA"): KEYS[1] holds the theoretical arrival time (TAT) of the next
// request in microseconds of the Redis clock; ARGV[1] is the emission
// interval (1/rate) and ARGV[2] the burst tolerance (interval × burst),
// both in microseconds. A request passes when TAT + interval − tolerance
// is not in the future; it then moves TAT on by one interval. It returns
// 0 when the request passes, else the microseconds to wait. Using the
// server's clock keeps replicas' clocks out of it.
const gcra = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + tonumber(ARGV[1])
local wait = new - tonumber(ARGV[2]) - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], new, 'PX', math.ceil((new - now) / 1000) + 1)
return 0`

var gcraScript = rueidis.NewLuaScript(gcra)

// Redis is a Store counting in Redis with GCRA, so that every replica
// using the same Redis shares one rate per key.
type Redis struct {
	client rueidis.Client
	prefix string
	// Timeout bounds one decision (DefaultRedisTimeout).
	Timeout time.Duration
}

// DefaultRedisTimeout bounds one decision of a Redis store: past it, the
// request is admitted (see NewGlobal).
const DefaultRedisTimeout = 50 * time.Millisecond

// NewRedis returns a store on client; keys are prefixed with prefix
// (e.g. "lariat:quota:").
func NewRedis(client rueidis.Client, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix, Timeout: DefaultRedisTimeout}
}

// Allow implements Store.
func (r *Redis) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, time.Duration, error) {
	if perSecond <= 0 {
		return true, 0, nil
	}
	interval := int64(1e6 / perSecond)
	if interval < 1 {
		interval = 1
	}
	tolerance := interval * int64(max(burst, 1))
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	wait, err := gcraScript.Exec(ctx, r.client, []string{r.prefix + key},
		[]string{strconv.FormatInt(interval, 10), strconv.FormatInt(tolerance, 10)}).AsInt64()
	if err != nil {
		return false, 0, fmt.Errorf("quota store: %w", err)
	}
	if wait > 0 {
		return false, time.Duration(wait) * time.Microsecond, nil
	}
	return true, 0, nil
}

// errNotConnected fails the decisions of a DialingRedis whose Redis has
// not answered yet.
var errNotConnected = errors.New("quota store: redis has not answered yet")

// DialingRedis is a Redis store usable before its Redis answers: a
// gateway starting while the quota Redis is down serves, admitting what
// the store cannot decide (see NewGlobal), and keeps trying to connect in
// the background.
type DialingRedis struct {
	conn *dialing.Conn[Redis]
}

// DialRedis returns a store counting in the Redis opt describes under keys
// prefixed with prefix, connected when Redis answers now; otherwise it
// tries again every retry until it does, calling onConnect (when set)
// then.
func DialRedis(opt rueidis.ClientOption, prefix string, retry time.Duration, onConnect func()) *DialingRedis {
	return &DialingRedis{conn: dialing.Start(func() (*Redis, error) {
		c, err := rueidis.NewClient(opt)
		if err != nil {
			if c != nil {
				c.Close()
			}
			return nil, err
		}
		return NewRedis(c, prefix), nil
	}, retry, onConnect)}
}

// Connected reports whether Redis has answered.
func (d *DialingRedis) Connected() bool { return d.conn.Get() != nil }

// Allow implements Store.
func (d *DialingRedis) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, time.Duration, error) {
	r := d.conn.Get()
	if r == nil {
		return false, 0, errNotConnected
	}
	return r.Allow(ctx, key, perSecond, burst)
}

// Close stops trying to connect and closes the client made.
func (d *DialingRedis) Close() {
	if r := d.conn.Stop(); r != nil {
		r.client.Close()
	}
}
