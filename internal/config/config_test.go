package config

import (
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
