package config

import (
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultRunsEverything(t *testing.T) {
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:8080" || c.DataDir != "data" {
		t.Errorf("defaults: addr %q dir %q", c.HTTPAddr, c.DataDir)
	}
	if !slices.Equal(c.Services, AllServices) {
		t.Errorf("services = %v", c.Services)
	}
	if c.BlobDir != filepath.Join("data", "blobs") || c.MailDir != filepath.Join("data", "mail") {
		t.Errorf("blob %q mail %q", c.BlobDir, c.MailDir)
	}
	if c.DatabaseFor(Catalog) != filepath.Join("data", "catalog.db") {
		t.Errorf("catalog db = %q", c.DatabaseFor(Catalog))
	}
}

const token = "0123456789abcdef0123"

func TestFlagsOverrideEnv(t *testing.T) {
	c, err := Load([]string{"--http-addr", "127.0.0.1:9999", "--services", "catalog,search"},
		env(map[string]string{"GLOBO_HTTP_ADDR": "127.0.0.1:7777", "GLOBO_DATA_DIR": "/tmp/x", "GLOBO_DB_CATALOG": "postgres://h/db", "GLOBO_SERVICE_TOKEN": token}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:9999" || c.DataDir != "/tmp/x" {
		t.Errorf("addr %q dir %q", c.HTTPAddr, c.DataDir)
	}
	if !slices.Equal(c.Services, []string{"catalog", "search"}) {
		t.Errorf("services %v", c.Services)
	}
	if c.DatabaseFor(Catalog) != "postgres://h/db" {
		t.Errorf("dsn %q", c.DatabaseFor(Catalog))
	}
}

func TestPeers(t *testing.T) {
	c, err := Load([]string{"--services", "cart", "--peer", "catalog=http://a:1,http://b:2"},
		env(map[string]string{"GLOBO_PEERS": "catalog=http://c:3", "GLOBO_SERVICE_TOKEN": token}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Peers[Catalog]; !slices.Equal(got, []string{"http://c:3", "http://a:1", "http://b:2"}) {
		t.Errorf("peers = %v", got)
	}
}

func TestInvalid(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"unknown service": {[]string{"--services", "catalog,bogus"}, `unknown service "bogus"`},
		"bad peer url":    {[]string{"--services", "cart", "--peer", "catalog=ftp://x"}, "not an http(s) base URL"},
		"bad addr":        {[]string{"--http-addr", "nope"}, "http address"},
		"nats both":       {[]string{"--nats-url", "nats://x:4222", "--nats-listen", "127.0.0.1:4333"}, "exclude each other"},
		"stray argument":  {[]string{"extra"}, "unexpected argument"},
		"bad peer syntax": {[]string{"--peer", "catalog"}, "want service=url"},
		"bad log level":   {[]string{"--log-level", "loud"}, "log level"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(tc.args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Load([]string{"--services", "catalog"}, env(map[string]string{"GLOBO_SERVICE_TOKEN": "short"}), io.Discard); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short token: %v", err)
	}
}

func TestSplit(t *testing.T) {
	all, _ := Load(nil, env(nil), io.Discard)
	some, _ := Load([]string{"--services", "catalog"}, env(map[string]string{"GLOBO_SERVICE_TOKEN": token}), io.Discard)
	peered, _ := Load([]string{"--peer", "search=http://s:1"}, env(map[string]string{"GLOBO_SERVICE_TOKEN": token}), io.Discard)
	if all.Split() || !some.Split() || !peered.Split() {
		t.Errorf("Split: all %v, some %v, with peers %v", all.Split(), some.Split(), peered.Split())
	}
}

func TestDatabaseAndShardSettingsAreChecked(t *testing.T) {
	load := func(env map[string]string) error {
		_, err := Load(nil, func(k string) string { return env[k] }, io.Discard)
		return err
	}
	good := map[string]string{
		"GLOBO_DB_ORDER":     "postgres://postgres@127.0.0.1:5432,127.0.0.1:5433/order?sslmode=disable&target_session_attrs=read-write",
		"GLOBO_SHARDS_ORDER": "0-511=postgres://u:secret@127.0.0.1:5432/o1;512-1023=postgres://u:secret@127.0.0.1:5434/o2",
	}
	if err := load(good); err != nil {
		t.Fatalf("good settings refused: %v", err)
	}
	for name, env := range map[string]map[string]string{
		"no database":     {"GLOBO_DB_ORDER": "postgres://u:secret@127.0.0.1:5432"},
		"no host":         {"GLOBO_DB_CART": "postgres:///cart"},
		"other scheme":    {"GLOBO_DB_CART": "mysql://h/cart"},
		"gap":             {"GLOBO_SHARDS_ORDER": "0-500=postgres://u:secret@h/o;512-1023=postgres://u:secret@h/o2"},
		"bad range":       {"GLOBO_SHARDS_CART": "0-x=postgres://u:secret@h/o"},
		"bad node":        {"GLOBO_SHARDS_ACCOUNT": "0-1023=postgres://u:secret@/acc"},
		"not sharded svc": {"GLOBO_SHARDS_CATALOG": "0-1023=postgres://u:secret@h/c"},
	} {
		err := load(env)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error repeats a password: %v", name, err)
		}
		var key string
		for k := range env {
			key = k
		}
		if !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error does not name %s: %v", name, key, err)
		}
	}
}

func TestDevPagesOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, true}, // the default address, 127.0.0.1:8080
		{[]string{"--http-addr", "localhost:8080"}, nil, true},
		{[]string{"--http-addr", "[::1]:8080"}, nil, true},
		{[]string{"--http-addr", "127.0.0.1:0", "--dev-pages=false"}, nil, false},
		{[]string{"--http-addr", "0.0.0.0:8080"}, nil, false},
		{[]string{"--http-addr", ":8080"}, nil, false},
		{[]string{"--http-addr", "10.1.2.3:8080"}, nil, false},
		{nil, map[string]string{"GLOBO_HTTP_ADDR": "[::]:8080"}, false},
		{[]string{"--http-addr", "0.0.0.0:8080", "--dev-pages=false"}, nil, false},
	} {
		c, err := Load(tc.args, env(tc.env), io.Discard)
		if err != nil {
			t.Errorf("%v %v: %v", tc.args, tc.env, err)
			continue
		}
		if c.DevPages != tc.want {
			t.Errorf("%v %v: DevPages = %v, want %v", tc.args, tc.env, c.DevPages, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--http-addr", "0.0.0.0:8080", "--dev-pages"}, nil},
		{[]string{"--http-addr", ":8080", "--dev-pages=true"}, nil},
		{nil, map[string]string{"GLOBO_HTTP_ADDR": "192.168.1.5:80", "GLOBO_DEV_PAGES": "1"}},
	} {
		_, err := Load(tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--dev-pages needs --http-addr on loopback") {
			t.Errorf("%v %v: err = %v, want a refusal", tc.args, tc.env, err)
		}
	}
	c := Default()
	c.HTTPAddr = "0.0.0.0:8080"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `not "0.0.0.0:8080"`) {
		t.Errorf("Validate of dev pages on 0.0.0.0 = %v", err)
	}
}

func TestDrainDelay(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, 0}, // loopback: no load balancer in front
		{[]string{"--http-addr", "0.0.0.0:8080"}, nil, DefaultDrainDelay},
		{[]string{"--http-addr", "0.0.0.0:8080", "--drain-delay", "0"}, nil, 0},
		{[]string{"--http-addr", "0.0.0.0:8080", "--shutdown-timeout", "3s"}, nil, 1500 * time.Millisecond},
		{[]string{"--drain-delay", "3s"}, nil, 3 * time.Second},
		{nil, map[string]string{"GLOBO_DRAIN_DELAY": "500ms"}, 500 * time.Millisecond},
		{[]string{"--drain-delay", "1s"}, map[string]string{"GLOBO_DRAIN_DELAY": "500ms"}, time.Second},
		{[]string{"--shutdown-timeout", "30s", "--drain-delay", "15s"}, nil, 15 * time.Second},
	} {
		c, err := Load(tc.args, env(tc.env), io.Discard)
		if err != nil {
			t.Errorf("%v %v: %v", tc.args, tc.env, err)
			continue
		}
		if c.DrainDelay != tc.want {
			t.Errorf("%v %v: DrainDelay = %v, want %v", tc.args, tc.env, c.DrainDelay, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--drain-delay", "5s"}, nil, "drain delay 5s: want 0 to half the shutdown timeout (4.5s)"},
		{[]string{"--drain-delay", "-1s"}, nil, "drain delay -1s"},
		{[]string{"--shutdown-timeout", "20s", "--drain-delay", "11s"}, nil, "drain delay 11s: want 0 to half the shutdown timeout (10s)"},
		{nil, map[string]string{"GLOBO_SHUTDOWN_TIMEOUT": "0s"}, "shutdown timeout 0s"},
		{nil, map[string]string{"GLOBO_DRAIN_DELAY": "soon"}, "GLOBO_DRAIN_DELAY"},
	} {
		_, err := Load(tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: err = %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestAckWait(t *testing.T) {
	c, err := Load([]string{"--ack-wait", "5s"}, env(nil), io.Discard)
	if err != nil || c.AckWait != 5*time.Second {
		t.Fatalf("--ack-wait 5s: %v (%v)", c.AckWait, err)
	}
	c, err = Load(nil, env(map[string]string{"GLOBO_ACK_WAIT": "2m"}), io.Discard)
	if err != nil || c.AckWait != 2*time.Minute {
		t.Fatalf("GLOBO_ACK_WAIT=2m: %v (%v)", c.AckWait, err)
	}
	for _, v := range []string{"1s", "11m", "-5s"} {
		if _, err := Load([]string{"--ack-wait", v}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "ack wait") {
			t.Errorf("--ack-wait %s: err = %v, want it refused", v, err)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil || c.TrustedProxies != nil {
		t.Fatalf("default trusted proxies = %v (%v), want none", c.TrustedProxies, err)
	}
	c, err = Load([]string{"--trusted-proxies", " 10.0.0.0/8, 192.168.1.7 ,2001:db8::/32,::1,10.1.2.3/16,::ffff:172.16.0.1,"},
		env(map[string]string{"GLOBO_TRUSTED_PROXIES": "1.2.3.4"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("172.16.0.1/32"),
	}
	if !slices.Equal(c.TrustedProxies, want) {
		t.Errorf("trusted proxies = %v, want %v (the flag replaces the environment)", c.TrustedProxies, want)
	}
	c, err = Load(nil, env(map[string]string{"GLOBO_TRUSTED_PROXIES": "172.16.0.0/12"}), io.Discard)
	if err != nil || !slices.Equal(c.TrustedProxies, []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}) {
		t.Errorf("from the environment: %v (%v)", c.TrustedProxies, err)
	}

	_, err = Load([]string{"--trusted-proxies", "10.0.0.0/8,10.0.0.300,fe80::1%eth0,10.0.0.0/33,proxy.local"}, env(nil), io.Discard)
	if err == nil {
		t.Fatal("malformed trusted proxies accepted")
	}
	for _, bad := range []string{`"10.0.0.300"`, `"fe80::1%eth0"`, `"10.0.0.0/33"`, `"proxy.local"`} {
		if !strings.Contains(err.Error(), "trusted proxy "+bad) {
			t.Errorf("error does not name %s: %v", bad, err)
		}
	}
	if strings.Contains(err.Error(), `"10.0.0.0/8"`) {
		t.Errorf("error names a good entry: %v", err)
	}
	bad := Default()
	bad.TrustedProxies = []netip.Prefix{{}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "trusted proxy 1: not a valid prefix") {
		t.Errorf("Validate of a zero prefix = %v", err)
	}
}
