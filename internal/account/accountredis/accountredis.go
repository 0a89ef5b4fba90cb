// Package accountredis keeps the account service's login sessions in Redis
// (a single server or a master behind Sentinel), so that every instance
// shares them and none needs the SQL database to authenticate a request.
//
// Each session is a hash, prefix+"s:"+token hash, with fields a (account
// id), c (created) and e (expires, Unix milliseconds), whose Redis expiry is
// the session's: an expired session vanishes by itself. Each account has a
// set, prefix+"a:"+account id, of its sessions' token hashes, which outlives
// its longest session, so that all of an account's sessions can be deleted
// at once. Every change is one Lua script, so a session and its account's
// set change together.
//
// A session acknowledged by CreateSession (and a delete acknowledged by
// DeleteSession) has reached a replica when the master has one that
// answers within the WAIT timeout, so a failover of the master loses
// neither (see WithWait). A standalone or Sentinel client will do; a
// Cluster client will not (a session and its account's set lie in
// different slots).
package accountredis

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/redisx"
)

// Defaults of WithWait: a write waits up to 100 ms for one replica.
const (
	DefaultWaitReplicas = 1
	DefaultWaitTimeout  = 100 * time.Millisecond
)

// replicaCheckEvery is how often the store asks the master how many
// replicas it has (INFO replication): a write waits only for replicas that
// are there, so a master without any costs no WAIT timeout.
const replicaCheckEvery = 5 * time.Second

// pruneAbove is the size of an account's set beyond which creating a
// session removes from it the hashes of sessions that have expired.
const pruneAbove = 32

// Store keeps sessions in Redis. Safe for concurrent use.
type Store struct {
	client   redis.UniversalClient
	prefix   string
	clock    clock.Clock
	log      *slog.Logger
	replicas int
	timeout  time.Duration

	mu        sync.Mutex
	connected int       // replicas of the master at checkedAt
	checkedAt time.Time // zero: never checked
}

var _ account.SessionStore = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithWait makes every write wait (WAIT) for n replicas to acknowledge it,
// for at most timeout (default 1 replica, 100 ms), or for as many as the
// master has when it has fewer (checked every few seconds; a master with
// none costs no wait). A write not acknowledged in time still succeeds,
// with a warning in the log: it is on the master, and lost only if the
// master dies before it reaches a replica. n = 0 sends no WAIT.
func WithWait(n int, timeout time.Duration) Option {
	return func(s *Store) { s.replicas, s.timeout = n, timeout }
}

// WithLogger sets where the store logs writes no replica acknowledged
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// New returns the store keeping sessions in client's Redis under keys
// beginning with prefix (for instance "globo:session:"). Expiries are set
// relative to clk's now (Redis counts them down by its own clock).
func New(client redis.UniversalClient, prefix string, clk clock.Clock, opts ...Option) *Store {
	s := &Store{client: client, prefix: prefix, clock: clk, log: slog.Default(),
		replicas: DefaultWaitReplicas, timeout: DefaultWaitTimeout}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Store) sessionKey(hash string) string { return s.prefix + "s:" + hash }
func (s *Store) accountKey(id string) string   { return s.prefix + "a:" + id }

// hashOf is the token hash of a session key (account.SessionKey); the shard
// the key may name is not needed: one Redis holds every session.
func hashOf(key string) string {
	h, _, _ := account.ParseSessionKey(key)
	return h
}

// ttlMillis is how long from the clock's now until t, in whole milliseconds
// rounded up; 0 or less when t has passed.
func (s *Store) ttlMillis(t time.Time) int64 {
	d := t.Sub(s.clock.Now())
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// createScript stores a session unless one with its hash exists; a retry of
// the same create (same account and creation time) succeeds. It adds the
// hash to the account's set, makes the set outlive the session, and prunes
// the set of expired sessions when it has grown.
//
// KEYS: session, account set. ARGV: account id, created ms, expires ms,
// ttl ms, token hash, session key prefix, prune threshold.
const createScript = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'a') == ARGV[1] and redis.call('HGET', KEYS[1], 'c') == ARGV[2] then
    return 1
  end
  return 0
end
redis.call('HSET', KEYS[1], 'a', ARGV[1], 'c', ARGV[2], 'e', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
local ttl = redis.call('PTTL', KEYS[2])
if ttl < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if redis.call('SCARD', KEYS[2]) > tonumber(ARGV[7]) then
  for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', ARGV[6] .. h) == 0 then
      redis.call('SREM', KEYS[2], h)
    end
  end
end
return 1
`

// CreateSession stores sess with a Redis expiry at its ExpiresAt, then waits
// for a replica (see WithWait). errs.Conflict when a session with its token
// hash exists; errs.Unavailable when Redis does not answer. A session that
// has already expired is not stored.
func (s *Store) CreateSession(ctx context.Context, sess account.StoredSession) error {
	const op = "accountredis.CreateSession"
	ttl := s.ttlMillis(sess.ExpiresAt)
	if ttl <= 0 {
		return nil
	}
	var cmd *redis.Cmd
	err := s.durable(ctx, op, func(p redis.Pipeliner) {
		cmd = p.Eval(ctx, createScript, []string{s.sessionKey(sess.TokenHash), s.accountKey(sess.AccountID)},
			sess.AccountID, sess.CreatedAt.UnixMilli(), sess.ExpiresAt.UnixMilli(), ttl, sess.TokenHash, s.prefix+"s:", pruneAbove)
	})
	if err != nil {
		return fail(op, err)
	}
	if n, _ := cmd.Int64(); n != 1 {
		return errs.E(op, errs.Conflict, errs.Msg("session exists"))
	}
	return nil
}

// waitFor is how many replicas a write waits for: those asked for by
// WithWait, or fewer when the master has fewer. errs.Unavailable when
// Redis does not answer (the write would not either).
func (s *Store) waitFor(ctx context.Context) (int, error) {
	if s.replicas <= 0 {
		return 0, nil
	}
	now := s.clock.Now()
	s.mu.Lock()
	n, at := s.connected, s.checkedAt
	s.mu.Unlock()
	if at.IsZero() || now.Sub(at) >= replicaCheckEvery || now.Before(at) {
		var err error
		if n, err = redisx.Replicas(ctx, s.client); err != nil {
			if errs.Is(errs.Unavailable, err) {
				return 0, err
			}
			return s.replicas, nil // INFO refused (an ACL): wait as asked
		}
		s.mu.Lock()
		s.connected, s.checkedAt = n, now
		s.mu.Unlock()
	}
	return min(n, s.replicas), nil
}

// durable runs fn's commands and a WAIT for the replicas there are.
func (s *Store) durable(ctx context.Context, op string, fn func(redis.Pipeliner)) error {
	want, err := s.waitFor(ctx)
	if err != nil {
		return err
	}
	acked, _, err := redisx.ExecDurable(ctx, s.client, want, s.timeout, fn)
	if err != nil {
		return err
	}
	if int(acked) < want {
		s.log.WarnContext(ctx, "redis session write not acknowledged by a replica; a failover now would lose it",
			"op", op, "acked", acked, "wanted", want, "timeout", s.timeout)
		s.mu.Lock()
		s.checkedAt = time.Time{} // ask again at the next write
		s.mu.Unlock()
	}
	return nil
}

// LookupSession returns the session with the session key. errs.NotFound
// (expired sessions are gone); errs.Unavailable when Redis does not answer.
func (s *Store) LookupSession(ctx context.Context, key string) (account.StoredSession, error) {
	const op = "accountredis.LookupSession"
	hash := hashOf(key)
	vals, err := s.client.HMGet(ctx, s.sessionKey(hash), "a", "c", "e").Result()
	if err != nil {
		return account.StoredSession{}, fail(op, err)
	}
	acc, _ := vals[0].(string)
	created, cerr := millis(vals[1])
	expires, eerr := millis(vals[2])
	if acc == "" {
		return account.StoredSession{}, errs.E(op, errs.NotFound, errs.Msg("session not found"))
	}
	if err := errors.Join(cerr, eerr); err != nil {
		return account.StoredSession{}, errs.E(op, errs.Msg("corrupt session"), err)
	}
	return account.StoredSession{TokenHash: hash, AccountID: acc, CreatedAt: created, ExpiresAt: expires}, nil
}

// fail is the error of op for err: errs.Unavailable when Redis could not be
// reached or could not serve, else err's kind (an error reply is a bug).
func fail(op string, err error) error {
	if errs.Is(errs.Unavailable, err) || redisx.IsNetwork(err) {
		return errs.E(op, errs.Unavailable, errs.Msg("session store unavailable"), err)
	}
	return errs.E(op, err)
}

func millis(v any) (time.Time, error) {
	str, _ := v.(string)
	ms, err := strconv.ParseInt(str, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms).UTC(), nil
}

// extendScript moves a session's expiry later, never earlier, and makes its
// account's set outlive it; it creates nothing.
//
// KEYS: session. ARGV: expires ms, ttl ms, account set prefix, token hash.
const extendScript = `
local cur = redis.call('HGET', KEYS[1], 'e')
if not cur or tonumber(ARGV[1]) <= tonumber(cur) then
  return 0
end
redis.call('HSET', KEYS[1], 'e', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local set = ARGV[3] .. redis.call('HGET', KEYS[1], 'a')
redis.call('SADD', set, ARGV[4])
if redis.call('PTTL', set) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', set, ARGV[2])
end
return 1
`

// ExtendSession moves the session's expiry (and its Redis expiry) to
// expiresAt if that is later; an unknown or expired session is not an error
// and is not created. errs.Unavailable.
func (s *Store) ExtendSession(ctx context.Context, key string, expiresAt time.Time) error {
	const op = "accountredis.ExtendSession"
	ttl := s.ttlMillis(expiresAt)
	if ttl <= 0 {
		return nil // not later than a session the store still has
	}
	hash := hashOf(key)
	// No WAIT: an extension lost in a failover leaves the session valid,
	// only with its earlier expiry (weeks away), and is made again on the
	// next use an hour later.
	err := s.client.Eval(ctx, extendScript, []string{s.sessionKey(hash)},
		expiresAt.UnixMilli(), ttl, s.prefix+"a:", hash).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fail(op, err)
	}
	return nil
}

// deleteScript deletes a session and takes it out of its account's set.
//
// KEYS: session. ARGV: account set prefix, token hash.
const deleteScript = `
local a = redis.call('HGET', KEYS[1], 'a')
if not a then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[1] .. a, ARGV[2])
return 1
`

// DeleteSession deletes the session and waits for a replica (see WithWait),
// so that a logout is not undone by a failover; an unknown session is not
// an error. errs.Unavailable.
func (s *Store) DeleteSession(ctx context.Context, key string) error {
	const op = "accountredis.DeleteSession"
	hash := hashOf(key)
	err := s.durable(ctx, op, func(p redis.Pipeliner) {
		p.Eval(ctx, deleteScript, []string{s.sessionKey(hash)}, s.prefix+"a:", hash)
	})
	if err != nil {
		return fail(op, err)
	}
	return nil
}

// deleteAccountScript deletes every session in an account's set, and the
// set, and returns how many sessions it deleted.
//
// KEYS: account set. ARGV: session key prefix.
const deleteAccountScript = `
local n = 0
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. h)
end
redis.call('DEL', KEYS[1])
return n
`

// DeleteAccountSessions deletes every session of the account and reports
// how many it deleted, waiting for a replica (see WithWait).
// errs.Unavailable.
func (s *Store) DeleteAccountSessions(ctx context.Context, accountID string) (int64, error) {
	const op = "accountredis.DeleteAccountSessions"
	var cmd *redis.Cmd
	err := s.durable(ctx, op, func(p redis.Pipeliner) {
		cmd = p.Eval(ctx, deleteAccountScript, []string{s.accountKey(accountID)}, s.prefix+"s:")
	})
	if err != nil {
		return 0, fail(op, err)
	}
	n, _ := cmd.Int64()
	return n, nil
}

// deleteOthersScript deletes every session in an account's set but one,
// leaves the set holding only that one, and returns how many it deleted.
//
// KEYS: account set. ARGV: session key prefix, token hash to keep.
const deleteOthersScript = `
local n = 0
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if h ~= ARGV[2] then
    n = n + redis.call('DEL', ARGV[1] .. h)
    redis.call('SREM', KEYS[1], h)
  end
end
return n
`

// DeleteOtherSessions deletes every session of the account but the one of
// the session key keep ("" keeps none) and reports how many it deleted,
// waiting for a replica (see WithWait). errs.Unavailable.
func (s *Store) DeleteOtherSessions(ctx context.Context, accountID, keep string) (int64, error) {
	const op = "accountredis.DeleteOtherSessions"
	if keep == "" {
		return s.DeleteAccountSessions(ctx, accountID)
	}
	var cmd *redis.Cmd
	err := s.durable(ctx, op, func(p redis.Pipeliner) {
		cmd = p.Eval(ctx, deleteOthersScript, []string{s.accountKey(accountID)}, s.prefix+"s:", hashOf(keep))
	})
	if err != nil {
		return 0, fail(op, err)
	}
	n, _ := cmd.Int64()
	return n, nil
}

// DeleteExpiredSessions deletes nothing and reports 0: Redis removes each
// session when it expires.
func (s *Store) DeleteExpiredSessions(context.Context, time.Time) (int64, error) {
	return 0, nil
}
