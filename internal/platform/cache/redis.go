package cache

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Redis is a Cache kept in Redis, so that every process using the same
// Redis and prefix shares one cache: a Delete by one instance is seen by
// every other at once. Each entry is one Redis string, prefix+key, set
// with a millisecond expiry (PX); Redis evicts by its own maxmemory policy.
//
// Errors from Redis (unreachable, timed out) are returned as
// errs.Unavailable; callers treat them as misses. Timeouts and retries are
// the client's: give it short ones, since a cache slower than the database
// is worse than none. Safe for concurrent use.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

var _ Cache = (*Redis)(nil)

// NewRedis returns a cache keeping its entries in client's Redis under keys
// beginning with prefix (for instance "globo:cache:"). A standalone,
// Sentinel or Cluster client will do: every command touches one key.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

// Get returns the value at key if present and not expired.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := r.client.Get(ctx, r.prefix+key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, errs.E("cache.Redis.Get", errs.Unavailable, err)
	}
	return b, true, nil
}

// Set stores val at key for ttl, rounded up to a whole millisecond. A zero
// or negative ttl is never served: it deletes the key.
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return r.Delete(ctx, key)
	}
	ms := int64((ttl + time.Millisecond - 1) / time.Millisecond)
	if val == nil {
		val = []byte{}
	}
	if err := r.client.Do(ctx, "SET", r.prefix+key, val, "PX", ms).Err(); err != nil {
		return errs.E("cache.Redis.Set", errs.Unavailable, err)
	}
	return nil
}

// Delete removes key; a missing key is no error.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if err := r.client.Del(ctx, r.prefix+key).Err(); err != nil {
		return errs.E("cache.Redis.Delete", errs.Unavailable, err)
	}
	return nil
}
