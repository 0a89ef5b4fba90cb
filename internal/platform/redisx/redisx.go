// Package redisx opens go-redis clients from the shop's Redis URLs: a single
// server (redis://, rediss://) or a master found through Redis Sentinel
// (redis+sentinel://), with the short timeouts every caller in the shop
// wants, and runs writes that must survive a failover of the master
// (ExecDurable).
package redisx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Timeouts every client made by Open uses unless its URL says otherwise (the
// go-redis query parameters dial_timeout, read_timeout, write_timeout and
// max_retries of a redis:// URL): a Redis that does not answer costs a
// caller about a second at worst, never a hang; a caller's context
// deadline, when shorter, bounds a call too.
const (
	DialTimeout  = 200 * time.Millisecond
	ReadTimeout  = 500 * time.Millisecond
	WriteTimeout = 500 * time.Millisecond
	// MaxRetries is how many times a command that failed on the network
	// is tried again (once: enough to step over a connection the server
	// closed, or to follow a master that Sentinel just replaced).
	MaxRetries = 1
	// DialAttempts is how many times a connection is dialled before the
	// command fails (50 ms apart): a refused dial fails at once, a
	// blackholed one after about half a second, and one slow dial on a
	// busy machine does not fail a command.
	DialAttempts = 2
	// PingTimeout bounds the PING with which Open checks the server.
	PingTimeout = 2 * time.Second
)

// DefaultSentinelPort is the port of a sentinel named without one.
const DefaultSentinelPort = "26379"

// Open returns a client for the Redis named by rawURL after checking that it
// answers PING:
//
//   - redis://[user:pass@]host:port/db and rediss://... (TLS): one server;
//   - redis+sentinel://[user:pass@]host1:26379,host2:26379/MASTERNAME[?db=0&sentinel_password=...&sentinel_username=...]:
//     the master named MASTERNAME, found by asking the sentinels and
//     followed through failovers (user and password are the master's).
//
// A malformed URL is errs.Invalid, with a message naming the URL with its
// passwords redacted; a Redis that does not answer is errs.Unavailable (the
// client is closed) after PING has failed for PingTimeout. The caller
// closes the client it gets.
func Open(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	const op = "redisx.Open"
	c, err := NewClient(rawURL)
	if err != nil {
		return nil, errs.E(op, err)
	}
	pctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	// PING until it answers or PingTimeout passes: one slow dial on a busy
	// machine must not fail the start.
	var err2 error
	for {
		if err2 = c.Ping(pctx).Err(); err2 == nil || pctx.Err() != nil {
			break
		}
		select {
		case <-pctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := err2; err != nil {
		c.Close()
		return nil, errs.E(op, errs.Unavailable, errs.Msg("redis at %s does not answer", Redact(rawURL)), err)
	}
	return c, nil
}

// Validate checks that rawURL is a Redis URL Open accepts, without
// connecting. errs.Invalid, with the URL redacted in the message.
func Validate(rawURL string) error {
	c, err := NewClient(rawURL)
	if err != nil {
		return err
	}
	return c.Close() // nothing was dialled
}

// NewClient is Open without the PING: the client connects on first use.
// errs.Invalid for a malformed URL.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	scheme, _, _ := strings.Cut(rawURL, "://")
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, invalid(rawURL, err)
		}
		if o.Addr == "" || strings.HasPrefix(o.Addr, ":") {
			return nil, invalid(rawURL, errors.New("no host"))
		}
		q, _ := url.ParseQuery(queryOf(rawURL))
		applyDefaults(q, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries)
		o.DialerRetries, o.DialerRetryTimeout, o.ContextTimeoutEnabled = DialAttempts, 50*time.Millisecond, true
		return redis.NewClient(o), nil
	case "redis+sentinel":
		o, err := ParseSentinelURL(rawURL)
		if err != nil {
			return nil, err
		}
		return redis.NewFailoverClient(o), nil
	default:
		return nil, invalid(rawURL, fmt.Errorf("scheme must be redis, rediss or redis+sentinel"))
	}
}

// ParseSentinelURL parses a redis+sentinel:// URL (see Open) into options for
// redis.NewFailoverClient, with the package's timeouts. errs.Invalid.
func ParseSentinelURL(rawURL string) (*redis.FailoverOptions, error) {
	rest, ok := strings.CutPrefix(rawURL, "redis+sentinel://")
	if !ok {
		return nil, invalid(rawURL, errors.New("scheme must be redis+sentinel"))
	}
	o := &redis.FailoverOptions{}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo := authority[:i]
		authority = authority[i+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return nil, invalid(rawURL, errors.New("bad user name escape"))
		}
		if hasPass {
			if o.Password, err = url.PathUnescape(pass); err != nil {
				return nil, invalid(rawURL, errors.New("bad password escape"))
			}
		}
	}
	if authority == "" {
		return nil, invalid(rawURL, errors.New("no sentinel addresses"))
	}
	for _, h := range strings.Split(authority, ",") {
		if h == "" {
			return nil, invalid(rawURL, errors.New("empty sentinel address"))
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil { // no port: the sentinel's default
			host, port = strings.Trim(h, "[]"), DefaultSentinelPort
		}
		if host == "" {
			return nil, invalid(rawURL, fmt.Errorf("sentinel address %q has no host", h))
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return nil, invalid(rawURL, fmt.Errorf("sentinel address %q has a bad port", h))
		}
		o.SentinelAddrs = append(o.SentinelAddrs, net.JoinHostPort(host, port))
	}
	master, err := url.PathUnescape(strings.TrimSuffix(path, "/"))
	if err != nil || master == "" || strings.Contains(master, "/") {
		return nil, invalid(rawURL, errors.New("the path must be the master's name, as in /mymaster"))
	}
	o.MasterName = master
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, invalid(rawURL, errors.New("bad query"))
	}
	for k := range q {
		switch k {
		case "db", "sentinel_password", "sentinel_username", "dial_timeout", "read_timeout", "write_timeout", "max_retries":
		default:
			return nil, invalid(rawURL, fmt.Errorf("unknown parameter %q", k))
		}
	}
	if v := q.Get("db"); v != "" {
		if o.DB, err = strconv.Atoi(v); err != nil || o.DB < 0 {
			return nil, invalid(rawURL, fmt.Errorf("db must be a number, not %q", v))
		}
	}
	o.SentinelPassword = q.Get("sentinel_password")
	o.SentinelUsername = q.Get("sentinel_username")
	for name, d := range map[string]*time.Duration{"dial_timeout": &o.DialTimeout, "read_timeout": &o.ReadTimeout, "write_timeout": &o.WriteTimeout} {
		if v := q.Get(name); v != "" {
			if *d, err = time.ParseDuration(v); err != nil {
				return nil, invalid(rawURL, fmt.Errorf("%s: %v", name, err))
			}
		}
	}
	if v := q.Get("max_retries"); v != "" {
		if o.MaxRetries, err = strconv.Atoi(v); err != nil {
			return nil, invalid(rawURL, fmt.Errorf("max_retries must be a number, not %q", v))
		}
	}
	applyDefaults(q, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries)
	o.DialerRetries, o.DialerRetryTimeout, o.ContextTimeoutEnabled = DialAttempts, 50*time.Millisecond, true
	return o, nil
}

// applyDefaults sets the package's timeouts and retries where the query did
// not name them.
func applyDefaults(q url.Values, dial, read, write *time.Duration, retries *int) {
	if !q.Has("dial_timeout") {
		*dial = DialTimeout
	}
	if !q.Has("read_timeout") {
		*read = ReadTimeout
	}
	if !q.Has("write_timeout") {
		*write = WriteTimeout
	}
	if !q.Has("max_retries") {
		*retries = MaxRetries
	}
}

func queryOf(rawURL string) string {
	_, q, _ := strings.Cut(rawURL, "?")
	return q
}

// invalid is the error for a malformed URL: it names the URL redacted and
// never quotes the parser's error, which may hold the password.
func invalid(rawURL string, cause error) error {
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err
	}
	return errs.E(errs.Invalid, errs.Msg("malformed Redis URL %s: %s", Redact(rawURL), Redact(cause.Error())))
}

var (
	userinfoPass = regexp.MustCompile(`(://[^/@?#]*?:)[^/?#]*@`)
	queryPass    = regexp.MustCompile(`((?:^|[?&])(?:sentinel_)?password=)[^&#]*`)
)

// Redact returns s with the passwords of a Redis URL in it (the userinfo's,
// and password and sentinel_password parameters) replaced by "xxxxx".
func Redact(s string) string {
	s = userinfoPass.ReplaceAllString(s, "${1}xxxxx@")
	return queryPass.ReplaceAllString(s, "${1}xxxxx")
}

// ExecDurable runs the commands fn queues, then WAIT replicas timeout, on one
// connection (a pipeline), so that WAIT waits for exactly these writes to
// reach the master's replicas. It returns how many replicas acknowledged
// them (0 when the master has none, or none answered within timeout: the
// writes are then on the master only) and fn's commands, whose errors the
// caller checks. A network error is errs.Unavailable; an error reply of a
// queued command is returned as it is. With replicas <= 0 no WAIT is sent.
//
// It does not work with a Cluster client (WAIT would go to an arbitrary
// node).
func ExecDurable(ctx context.Context, c redis.UniversalClient, replicas int, timeout time.Duration, fn func(redis.Pipeliner)) (int64, []redis.Cmder, error) {
	p := c.Pipeline()
	fn(p)
	var wait *redis.Cmd
	if replicas > 0 {
		ms := timeout.Milliseconds()
		if ms < 1 {
			ms = 1 // WAIT's 0 is forever
		}
		wait = p.Do(ctx, "WAIT", replicas, ms)
	}
	cmds, err := p.Exec(ctx)
	if wait != nil && len(cmds) > 0 {
		cmds = cmds[:len(cmds)-1]
	}
	for _, cmd := range cmds {
		if cerr := cmd.Err(); cerr != nil && !errors.Is(cerr, redis.Nil) {
			if IsNetwork(cerr) {
				return 0, cmds, errs.E(errs.Unavailable, cerr)
			}
			return 0, cmds, cerr
		}
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, cmds, errs.E(errs.Unavailable, err)
	}
	if wait == nil {
		return 0, cmds, nil
	}
	n, err := wait.Int64()
	if err != nil {
		return 0, cmds, errs.E(errs.Unavailable, err)
	}
	return n, cmds, nil
}

// IsNetwork reports whether err is a failure to reach Redis (as opposed to
// an error reply of a command that ran).
func IsNetwork(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		// Replies a master gives while it cannot serve are unavailability
		// too: LOADING, READONLY (a demoted master), MASTERDOWN, TRYAGAIN.
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}

// Replicas reports how many replicas are connected to the master c talks to
// (INFO replication, connected_slaves). errs.Unavailable when Redis does not
// answer; another error when it refuses (an ACL without INFO).
func Replicas(ctx context.Context, c redis.UniversalClient) (int, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		if IsNetwork(err) {
			return 0, errs.E("redisx.Replicas", errs.Unavailable, err)
		}
		return 0, errs.E("redisx.Replicas", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, errs.E("redisx.Replicas", fmt.Errorf("connected_slaves: %q", v))
			}
			return n, nil
		}
	}
	return 0, errs.E("redisx.Replicas", errors.New("INFO replication has no connected_slaves"))
}

// Logger passes go-redis's own log lines (failed dials, Sentinel's "new
// master" switches) to a slog.Logger at the given level. Install it once,
// at start: redis.SetLogger(redisx.Logger{Log: log, Level: slog.LevelInfo}).
type Logger struct {
	Log   *slog.Logger
	Level slog.Level
}

// Printf logs one go-redis line.
func (l Logger) Printf(ctx context.Context, format string, v ...any) {
	l.Log.Log(ctx, l.Level, "redis: "+fmt.Sprintf(format, v...))
}
