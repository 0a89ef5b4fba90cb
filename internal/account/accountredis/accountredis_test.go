package accountredis_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/account/accountredis"
	"github.com/globomantics/globomantics/internal/account/sessiontest"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/redisx"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the tests kill servers on purpose.
	redis.SetLogger(redisx.Logger{Log: slog.New(slog.DiscardHandler)})
	testenv.Main(m)
}

// open returns a client of url, closed when the test ends.
func open(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	c, err := redisx.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// warnings counts the store's warnings that a write reached no replica.
type warnings struct{ n atomic.Int64 }

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && strings.Contains(r.Message, "not acknowledged") {
		w.n.Add(1)
	}
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// TestConformance runs the session store suite against Redis alone and
// against a master behind Sentinel (with a replica, so every write waits
// for it).
func TestConformance(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		c := open(t, testenv.Redis(t))
		sessiontest.Run(t, func(t *testing.T) account.SessionStore {
			return accountredis.New(c, "t:"+ids.New("p", time.Now())+":", clock.Real{}, accountredis.WithLogger(testenv.Logger(t)))
		})
	})
	t.Run("sentinel", func(t *testing.T) {
		c := open(t, testenv.Sentinel(t))
		w := &warnings{}
		sessiontest.Run(t, func(t *testing.T) account.SessionStore {
			return accountredis.New(c, "t:"+ids.New("p", time.Now())+":", clock.Real{}, accountredis.WithLogger(slog.New(w)))
		})
		if n := w.n.Load(); n > 0 {
			t.Errorf("%d writes were not acknowledged by the replica", n)
		}
	})
}

// TestKeys checks what the store leaves in Redis: the session's expiry is
// Redis's, and the account's set outlives it and goes with its last session.
func TestKeys(t *testing.T) {
	ctx := context.Background()
	c := open(t, testenv.Redis(t))
	clk := clock.NewFake(time.Now())
	s := accountredis.New(c, "k:", clk)
	now := clk.Now().Truncate(time.Millisecond)
	sess := account.StoredSession{TokenHash: "h1", AccountID: "acc_1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	ttl := c.PTTL(ctx, "k:s:h1").Val()
	if ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("session PTTL = %v, want about 1h", ttl)
	}
	if m := c.SMembers(ctx, "k:a:acc_1").Val(); len(m) != 1 || m[0] != "h1" {
		t.Errorf("account set = %v, want [h1]", m)
	}
	if ttl := c.PTTL(ctx, "k:a:acc_1").Val(); ttl < 59*time.Minute {
		t.Errorf("account set PTTL = %v, want at least the session's", ttl)
	}
	// Extending moves Redis's expiry too (relative to the store's clock).
	if err := s.ExtendSession(ctx, "h1", now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, "k:s:h1").Val(); ttl < 47*time.Hour {
		t.Errorf("session PTTL after extend = %v, want about 48h", ttl)
	}
	if ttl := c.PTTL(ctx, "k:a:acc_1").Val(); ttl < 47*time.Hour {
		t.Errorf("account set PTTL after extend = %v, want about 48h", ttl)
	}
	if err := s.DeleteSession(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, "k:s:h1", "k:a:acc_1").Val(); n != 0 {
		t.Errorf("%d keys left after the account's only session was deleted", n)
	}
	// An account's set sheds the sessions that expired when it grows.
	for i := range 40 {
		h := fmt.Sprintf("old%d", i)
		if err := s.CreateSession(ctx, account.StoredSession{TokenHash: h, AccountID: "acc_2", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		c.Del(ctx, "k:s:"+h) // as if it had expired
	}
	if n := c.SCard(ctx, "k:a:acc_2").Val(); n > 33 {
		t.Errorf("account set holds %d hashes of sessions long gone", n)
	}
}

// TestService runs the account service with accounts in SQLite and sessions
// in Redis: each login makes a new session, logout ends only its own, use
// slides the expiry (in Redis too), an idle session expires, and logging out
// everywhere ends them all.
func TestService(t *testing.T) {
	ctx := context.Background()
	c := open(t, testenv.Redis(t))
	accounts, err := accountdb.Open(ctx, testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	sessions := accountredis.New(c, "svc:", clk)
	svc := account.NewService(accounts, clk,
		account.WithSessionStore(sessions),
		account.WithArgonParams(account.ArgonParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}))

	a, err := svc.Register(ctx, account.Registration{Email: "ada@example.com", Password: "correct horse", Name: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := svc.Login(ctx, "ada@example.com", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := svc.Login(ctx, "ada@example.com", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if s1.Token == s2.Token {
		t.Fatal("two logins share a session token")
	}
	for _, s := range []account.Session{s1, s2} {
		if got, err := svc.Authenticate(ctx, s.Token); err != nil || got != a {
			t.Errorf("Authenticate = %+v, %v; want %+v", got, err, a)
		}
	}
	// The token itself is never stored: only its hash names the key.
	if keys := c.Keys(ctx, "*"+s1.Token+"*").Val(); len(keys) != 0 {
		t.Errorf("a key holds the token: %v", keys)
	}

	// Logout ends that session only.
	if err := svc.Logout(ctx, s1.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, s1.Token); !errs.Is(errs.Unauthorized, err) {
		t.Errorf("after logout: %v, want Unauthorized", err)
	}
	if _, err := svc.Authenticate(ctx, s2.Token); err != nil {
		t.Errorf("other session after logout: %v", err)
	}

	// Use slides the expiry: 29 days on, the session is used and lives
	// another 30 days, in Redis too.
	clk.Advance(29 * 24 * time.Hour)
	if _, err := svc.Authenticate(ctx, s2.Token); err != nil {
		t.Fatal(err)
	}
	key := "svc:s:" + strings.SplitN(account.SessionKey(s2.Token), ".", 2)[0]
	if ttl := c.PTTL(ctx, key).Val(); ttl < account.SessionTTL-time.Minute {
		t.Errorf("Redis expiry after use = %v, want about %v", ttl, account.SessionTTL)
	}
	// Idle for longer than SessionTTL, it has expired.
	clk.Advance(account.SessionTTL + time.Minute)
	if _, err := svc.Authenticate(ctx, s2.Token); !errs.Is(errs.Unauthorized, err) {
		t.Errorf("idle session: %v, want Unauthorized", err)
	}
	if n := c.Exists(ctx, key).Val(); n != 0 {
		t.Error("the expired session is still in Redis")
	}

	// Logging out everywhere ends every session of the account.
	var toks []string
	for range 3 {
		s, err := svc.Login(ctx, "ada@example.com", "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, s.Token)
	}
	if n, err := svc.LogoutEverywhere(ctx, a.ID); err != nil || n != 3 {
		t.Errorf("LogoutEverywhere = %d, %v; want 3", n, err)
	}
	for _, tok := range toks {
		if _, err := svc.Authenticate(ctx, tok); !errs.Is(errs.Unauthorized, err) {
			t.Errorf("after LogoutEverywhere: %v, want Unauthorized", err)
		}
	}
}

// TestRedisDown: with Redis stopped or hung, every call fails quickly with
// errs.Unavailable, and the service's Authenticate passes that on (it does
// not say Unauthorized: the session may be fine).
func TestRedisDown(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	c := open(t, srv.URL())
	accounts, err := accountdb.Open(ctx, testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	store := accountredis.New(c, "down:", clock.Real{}, accountredis.WithLogger(testenv.Logger(t)))
	svc := account.NewService(accounts, clock.Real{}, account.WithSessionStore(store),
		account.WithArgonParams(account.ArgonParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}))
	if _, err := svc.Register(ctx, account.Registration{Email: "bob@example.com", Password: "correct horse", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	sess, err := svc.Login(ctx, "bob@example.com", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	key := account.SessionKey(sess.Token)

	check := func(t *testing.T, limit time.Duration) {
		t.Helper()
		for name, call := range map[string]func() error{
			"LookupSession": func() error { _, err := store.LookupSession(ctx, key); return err },
			"CreateSession": func() error {
				return store.CreateSession(ctx, account.StoredSession{TokenHash: "x", AccountID: "acc_x", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
			},
			"ExtendSession": func() error { return store.ExtendSession(ctx, key, time.Now().Add(time.Hour)) },
			// Another session: a write that timed out on a paused server
			// may still be applied when it resumes.
			"DeleteSession": func() error { return store.DeleteSession(ctx, account.SessionKey("another token")) },
			"Authenticate":  func() error { _, err := svc.Authenticate(ctx, sess.Token); return err },
			"Login":         func() error { _, err := svc.Login(ctx, "bob@example.com", "correct horse"); return err },
		} {
			start := time.Now()
			err := call()
			took := time.Since(start)
			if !errs.Is(errs.Unavailable, err) {
				t.Errorf("%s = %v (kind %v), want Unavailable", name, err, errs.KindOf(err))
			}
			if took > limit {
				t.Errorf("%s took %v, more than %v", name, took, limit)
			}
			t.Logf("%s failed in %v: %v", name, took.Round(time.Millisecond), err)
		}
	}
	t.Run("paused", func(t *testing.T) {
		srv.Pause()
		defer srv.Resume()
		// Read timeout 500 ms, one retry; a write first asks for the
		// replicas (also bounded), then writes.
		check(t, 4*time.Second)
	})
	// Back, the session is there again.
	testenv.CheckFor(t, 5*time.Second, func() error { _, err := svc.Authenticate(ctx, sess.Token); return err })
	t.Run("stopped", func(t *testing.T) {
		srv.Stop()
		check(t, time.Second)
	})
}

// TestFailover kills the master behind Sentinel with SIGKILL: every session
// acknowledged before the kill is valid after the replica is promoted. It
// reports how long lookups failed.
func TestFailover(t *testing.T) {
	ctx := context.Background()
	g := testenv.StartSentinel(t)
	c := open(t, g.URL())
	w := &warnings{}
	store := accountredis.New(c, "fo:", clock.Real{}, accountredis.WithLogger(slog.New(w)))

	const n = 200
	now := time.Now().Truncate(time.Millisecond)
	keys := make([]string, n)
	for i := range n {
		acc := fmt.Sprintf("acc_%d", i%20)
		keys[i] = account.SessionKey(ids.TokenInShard(uint16(shard.ForUser(acc))))
		h, _, _ := strings.Cut(keys[i], ".")
		if err := store.CreateSession(ctx, account.StoredSession{TokenHash: h, AccountID: acc, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.n.Load(); got != 0 {
		t.Fatalf("%d of %d sessions not acknowledged by the replica before the kill", got, n)
	}
	// A logout acknowledged before the kill stays a logout.
	if err := store.DeleteSession(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}

	old := g.KillMaster(t)
	killed := time.Now()
	var (
		mu       sync.Mutex
		firstOK  time.Duration
		failures int
	)
	testenv.CheckFor(t, 20*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := store.LookupSession(cctx, keys[1])
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures++
			if !errs.Is(errs.Unavailable, err) {
				return fmt.Errorf("lookup during failover: %v (kind %v), want Unavailable", err, errs.KindOf(err))
			}
			return err
		}
		firstOK = time.Since(killed)
		return nil
	})
	newMaster := g.WaitNewMaster(t, old, 10*time.Second)
	t.Logf("master %s killed; replica %s promoted; first successful lookup %v after the kill (%d failed lookups before)",
		old, newMaster, firstOK.Round(time.Millisecond), failures)

	lost := 0
	for i, k := range keys[1:] {
		if _, err := store.LookupSession(ctx, k); err != nil {
			lost++
			if lost < 5 {
				t.Errorf("session %d after failover: %v", i+1, err)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged sessions lost in the failover", lost, n-1)
	}
	if _, err := store.LookupSession(ctx, keys[0]); !errs.Is(errs.NotFound, err) {
		t.Errorf("session deleted before the failover: %v, want NotFound", err)
	}
	// The new master takes writes (it has no replica now: no WAIT).
	start := time.Now()
	h, _, _ := strings.Cut(account.SessionKey(ids.TokenInShard(1)), ".")
	if err := store.CreateSession(ctx, account.StoredSession{TokenHash: h, AccountID: "acc_new", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatalf("CreateSession on the new master: %v", err)
	}
	t.Logf("first create on the new master took %v", time.Since(start).Round(time.Millisecond))
}

// BenchmarkCreateSession measures what a login pays to store its session:
// on one Redis (no replica: no WAIT), and behind Sentinel with a replica,
// with and without waiting for it.
func BenchmarkCreateSession(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		url  func(testing.TB) string
		opts []accountredis.Option
	}{
		{"redis", testenv.Redis, nil},
		{"sentinel/wait", testenv.Sentinel, nil},
		{"sentinel/no-wait", testenv.Sentinel, []accountredis.Option{accountredis.WithWait(0, 0)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := open(b, bc.url(b))
			s := accountredis.New(c, "bench:", clock.Real{}, bc.opts...)
			now := time.Now()
			for i := 0; b.Loop(); i++ {
				err := s.CreateSession(ctx, account.StoredSession{TokenHash: fmt.Sprintf("h%d", i), AccountID: fmt.Sprintf("acc_%d", i%100), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMigrating: turning Redis sessions on logs nobody out. Sessions made
// while they were kept in SQL are still honoured (extended and ended where
// they are) through account.MigratingSessions, whose store passes the
// conformance suite too.
func TestMigrating(t *testing.T) {
	ctx := context.Background()
	c := open(t, testenv.Redis(t))
	t.Run("conformance", func(t *testing.T) {
		sessiontest.Run(t, func(t *testing.T) account.SessionStore {
			legacy, err := accountdb.Open(ctx, testenv.SQLite(t))
			if err != nil {
				t.Fatal(err)
			}
			return account.MigratingSessions{
				Primary: accountredis.New(c, "m:"+ids.New("p", time.Now())+":", clock.Real{}),
				Legacy:  legacy,
			}
		})
	})

	accounts, err := accountdb.Open(ctx, testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	cheap := account.WithArgonParams(account.ArgonParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	before := account.NewService(accounts, clk, cheap) // sessions in SQL
	if _, err := before.Register(ctx, account.Registration{Email: "cy@example.com", Password: "correct horse", Name: "Cy"}); err != nil {
		t.Fatal(err)
	}
	var old []account.Session
	for range 2 {
		s, err := before.Login(ctx, "cy@example.com", "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, s)
	}

	redisSessions := accountredis.New(c, "mig:", clk)
	after := account.NewService(accounts, clk, cheap,
		account.WithSessionStore(account.MigratingSessions{Primary: redisSessions, Legacy: accounts}))
	for _, s := range old {
		if _, err := after.Authenticate(ctx, s.Token); err != nil {
			t.Errorf("session made before the move: %v", err)
		}
	}
	// A new login lands in Redis.
	fresh, err := after.Login(ctx, "cy@example.com", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redisSessions.LookupSession(ctx, account.SessionKey(fresh.Token)); err != nil {
		t.Errorf("new session not in Redis: %v", err)
	}
	if _, err := accounts.LookupSession(ctx, account.SessionKey(fresh.Token)); !errs.Is(errs.NotFound, err) {
		t.Errorf("new session in SQL: %v", err)
	}
	// Use extends an old session where it is.
	clk.Advance(2 * time.Hour)
	if _, err := after.Authenticate(ctx, old[0].Token); err != nil {
		t.Fatal(err)
	}
	if st, err := accounts.LookupSession(ctx, account.SessionKey(old[0].Token)); err != nil || !st.ExpiresAt.Equal(clk.Now().Add(account.SessionTTL).Truncate(time.Millisecond)) {
		t.Errorf("old session after use = %+v, %v; want its expiry slid in SQL", st, err)
	}
	// Logout ends an old session.
	if err := after.Logout(ctx, old[0].Token); err != nil {
		t.Fatal(err)
	}
	if _, err := after.Authenticate(ctx, old[0].Token); !errs.Is(errs.Unauthorized, err) {
		t.Errorf("old session after logout: %v, want Unauthorized", err)
	}
	// Logging out everywhere ends old and new.
	acc, _ := accounts.GetAccountByEmail(ctx, "cy@example.com")
	if n, err := after.LogoutEverywhere(ctx, acc.ID); err != nil || n != 2 {
		t.Errorf("LogoutEverywhere = %d, %v; want 2 (one old, one new)", n, err)
	}
	for _, tok := range []string{old[1].Token, fresh.Token} {
		if _, err := after.Authenticate(ctx, tok); !errs.Is(errs.Unauthorized, err) {
			t.Errorf("after LogoutEverywhere: %v, want Unauthorized", err)
		}
	}
}
