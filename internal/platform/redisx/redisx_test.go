package redisx_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/redisx"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the tests kill servers on purpose.
	redis.SetLogger(redisx.Logger{Log: slog.New(slog.DiscardHandler)})
	testenv.Main(m)
}

func TestParseSentinelURL(t *testing.T) {
	o, err := redisx.ParseSentinelURL("redis+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/shop?db=3&sentinel_password=sp&sentinel_username=su")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.1:26379", "10.0.0.2:26379", "[::1]:26380"}
	if strings.Join(o.SentinelAddrs, " ") != strings.Join(want, " ") {
		t.Errorf("SentinelAddrs = %v, want %v", o.SentinelAddrs, want)
	}
	if o.MasterName != "shop" || o.DB != 3 || o.Username != "app" || o.Password != "s3cret" ||
		o.SentinelPassword != "sp" || o.SentinelUsername != "su" {
		t.Errorf("options = %+v", o)
	}
	if o.DialTimeout != redisx.DialTimeout || o.ReadTimeout != redisx.ReadTimeout || o.WriteTimeout != redisx.WriteTimeout || o.MaxRetries != redisx.MaxRetries {
		t.Errorf("timeouts = dial %v read %v write %v retries %d; want the package's", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries)
	}
	o, err = redisx.ParseSentinelURL("redis+sentinel://h:1/m?read_timeout=2s&max_retries=0")
	if err != nil {
		t.Fatal(err)
	}
	if o.ReadTimeout != 2*time.Second || o.MaxRetries != 0 || o.DialTimeout != redisx.DialTimeout {
		t.Errorf("explicit timeouts not kept: %+v", o)
	}
}

// TestMalformed: a malformed URL is errs.Invalid with a message naming the
// URL, its passwords redacted.
func TestMalformed(t *testing.T) {
	for _, u := range []string{
		"",
		"localhost:6379",
		"http://user:hunter22@h:6379/0",
		"redis://user:hunter22@h:notaport/0",
		"redis://user:hunter22@h:6379/notadb",
		"redis+sentinel://user:hunter22@/master",
		"redis+sentinel://user:hunter22@h1:26379,,h2/master",
		"redis+sentinel://user:hunter22@h1:99999/master",
		"redis+sentinel://user:hunter22@h1:26379/",
		"redis+sentinel://user:hunter22@h1:26379/a/b",
		"redis+sentinel://user:hunter22@h1:26379/m?db=x",
		"redis+sentinel://h1:26379/m?sentinel_password=hunter22&bogus=1",
	} {
		if err := redisx.Validate(u); !errs.Is(errs.Invalid, err) {
			t.Errorf("Validate(%q) = %v, want Invalid", u, err)
		}
		_, err := redisx.NewClient(u)
		if !errs.Is(errs.Invalid, err) {
			t.Errorf("NewClient(%q) = %v, want Invalid", u, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter22") || strings.Contains(errs.Detail(err), "hunter22") {
			t.Errorf("NewClient(%q): the error shows the password: %v", u, err)
		}
		if u != "" && !strings.Contains(errs.Detail(err), "Redis URL") {
			t.Errorf("NewClient(%q): detail %q does not name the URL", u, errs.Detail(err))
		}
	}
}

func TestValidate(t *testing.T) {
	for _, u := range []string{
		"redis://localhost:6379/0",
		"rediss://user:pw@redis.example:6380/2?read_timeout=300ms",
		"redis+sentinel://s1:26379,s2:26379,s3:26379/globo",
		"redis+sentinel://:pw@s1,s2/globo?db=1&sentinel_password=x",
	} {
		if err := redisx.Validate(u); err != nil {
			t.Errorf("Validate(%s) = %v", u, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://u:pw@h:1/0": "redis://u:xxxxx@h:1/0",
		"redis://:pw@h:1/0":  "redis://:xxxxx@h:1/0",
		"redis://h:1/0":      "redis://h:1/0",
		"redis+sentinel://u:p@w@a,b/m?sentinel_password=x&db=1": "redis+sentinel://u:xxxxx@a,b/m?sentinel_password=xxxxx&db=1",
		"rediss://u@h:1/0?password=x":                           "rediss://u@h:1/0?password=xxxxx",
	} {
		if got := redisx.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpen opens a server and a Sentinel group and writes through each,
// waiting for the replica where there is one.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	for name, url := range map[string]string{"redis": testenv.Redis(t), "sentinel": testenv.Sentinel(t)} {
		t.Run(name, func(t *testing.T) {
			c, err := redisx.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			n, err := redisx.Replicas(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			wantReplicas := map[string]int{"redis": 0, "sentinel": 1}[name]
			if n != wantReplicas {
				t.Errorf("Replicas = %d, want %d", n, wantReplicas)
			}
			var set *redis.StatusCmd
			acked, _, err := redisx.ExecDurable(ctx, c, 1, 100*time.Millisecond, func(p redis.Pipeliner) {
				set = p.Set(ctx, "k", "v", 0)
			})
			if err != nil || set.Err() != nil {
				t.Fatalf("ExecDurable = %v, %v", err, set.Err())
			}
			if acked != int64(wantReplicas) {
				t.Errorf("acknowledged by %d replicas, want %d", acked, wantReplicas)
			}
			if v := c.Get(ctx, "k").Val(); v != "v" {
				t.Errorf("GET k = %q", v)
			}
			// An error reply is returned as it is, not as Unavailable.
			_, _, err = redisx.ExecDurable(ctx, c, 0, 0, func(p redis.Pipeliner) { p.Incr(ctx, "k") })
			if err == nil || errs.Is(errs.Unavailable, err) {
				t.Errorf("INCR of a string = %v, want an error reply", err)
			}
		})
	}
}

// TestOpenDown: a Redis that is not there is errs.Unavailable at Open,
// quickly, with the URL redacted in the message.
func TestOpenDown(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens there
	for _, u := range []string{
		"redis://app:hunter22@" + addr + "/0",
		"redis+sentinel://app:hunter22@" + addr + "/globo",
	} {
		start := time.Now()
		c, err := redisx.Open(context.Background(), u)
		took := time.Since(start)
		if c != nil || !errs.Is(errs.Unavailable, err) {
			t.Errorf("Open(%s) = %v, %v; want Unavailable", redisx.Redact(u), c, err)
		}
		if took > redisx.PingTimeout+time.Second {
			t.Errorf("Open(%s) took %v", redisx.Redact(u), took)
		}
		if err != nil && (strings.Contains(err.Error(), "hunter22") || !strings.Contains(err.Error(), "app:xxxxx@")) {
			t.Errorf("Open error %q: want the URL with its password redacted", err)
		}
		t.Logf("Open of a Redis that is down failed in %v: %v", took.Round(time.Millisecond), err)
	}
}
