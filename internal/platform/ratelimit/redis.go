package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Redis is a Limiter whose state lives in Redis, so that every process
// using the same Redis and prefix shares one budget per key: N storefront
// instances allow a limit between them, not N times it.
//
// Each key is one Redis string, prefix+key, holding the key's theoretical
// arrival time in microseconds since the Unix epoch. A Lua script runs the
// GCRA step (Decide) on it atomically, and gives the string a TTL ending
// at that time, when the bucket is full again, so idle keys vanish on
// their own. A denied event writes nothing.
//
// The time is not Redis's: each call passes its own clock's now to the
// script, so tests can drive it with a fake clock. In production every
// instance passes its wall clock, and the skew between the instances'
// clocks bounds the error: an instance whose clock runs d ahead of the
// others sees keys recover up to d early (and the TTLs, which Redis counts
// on its own clock, may end up to d early or late). Keep the clocks in
// sync with NTP.
//
// Time is kept in whole microseconds: an interval shorter than one (more
// than a million events a second per key) is rounded up to one, and
// retryAfter is exact to the microsecond.
//
// Errors from Redis (unreachable, timed out) are returned from Allow and
// Reset as errs.Unavailable; the caller chooses to fail open or closed.
// Timeouts and retries are the client's: give it short ones, since every
// limited request waits for Redis. Safe for concurrent use.
type Redis struct {
	client redis.UniversalClient
	prefix string
	clock  clock.Clock
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter keeping its state in client's Redis under
// keys beginning with prefix (for instance "globo:ratelimit:"), reading
// time from clk (the real clock when nil). A standalone, Sentinel or
// Cluster client will do: the script touches one key.
func NewRedis(client redis.UniversalClient, prefix string, clk clock.Clock) *Redis {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Redis{client: client, prefix: prefix, clock: clk}
}

// gcraScript is Decide over one key.
//
//	KEYS[1]  the key, holding its theoretical arrival time (µs since the epoch)
//	ARGV[1]  now (µs)
//	ARGV[2]  the limit's interval (µs, at least 1)
//	ARGV[3]  the limit's tolerance (µs)
//
// It returns 0 when the event is allowed (and stored), or else the
// microseconds until it would be (positive). Numbers are below 2^53, so
// Lua's doubles hold them exactly; they are written back with %.0f because
// Redis turns a Lua number into a string with only 14 significant digits.
var gcraScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local allow_at = tat - tolerance
if now < allow_at then
  return allow_at - now
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'PX', string.format('%.0f', math.ceil((new_tat - now) / 1000)))
return 0
`)

// Allow implements Limiter. It fails (with errs.Unavailable) only when
// Redis does.
func (r *Redis) Allow(ctx context.Context, key string, l Limit) (bool, time.Duration, error) {
	if !l.Enabled() {
		return true, 0, nil
	}
	now := r.clock.Now().UnixMicro()
	interval := ceilMicros(l.Interval())
	tolerance := int64(l.Tolerance()/l.Interval()) * interval
	wait, err := gcraScript.Run(ctx, r.client, []string{r.prefix + key}, now, interval, tolerance).Int64()
	if err != nil {
		return false, 0, errs.E("ratelimit.Redis.Allow", errs.Unavailable, err)
	}
	if wait < 0 {
		return false, 0, errs.E("ratelimit.Redis.Allow", fmt.Errorf("script returned %d", wait))
	}
	if wait > 0 {
		return false, time.Duration(wait) * time.Microsecond, nil
	}
	return true, 0, nil
}

// Reset implements Limiter. It fails (with errs.Unavailable) only when
// Redis does.
func (r *Redis) Reset(ctx context.Context, key string) error {
	if err := r.client.Del(ctx, r.prefix+key).Err(); err != nil {
		return errs.E("ratelimit.Redis.Reset", errs.Unavailable, err)
	}
	return nil
}

// ceilMicros is d in whole microseconds, rounded up, and at least one.
func ceilMicros(d time.Duration) int64 {
	return max(int64((d+time.Microsecond-1)/time.Microsecond), 1)
}
