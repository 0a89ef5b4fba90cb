package blob_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

func TestParseSpecGood(t *testing.T) {
	env := map[string]string{"AWS_ACCESS_KEY_ID": "envAK", "AWS_SECRET_ACCESS_KEY": "envSK", "AWS_SESSION_TOKEN": "tok"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		spec string
		want blob.Spec
	}{
		{"/var/lib/globo/blobs", blob.Spec{Dir: "/var/lib/globo/blobs"}},
		{"blobs", blob.Spec{Dir: "blobs"}},
		{"./data/blobs", blob.Spec{Dir: "./data/blobs"}},
		{
			"s3://AK:SK@127.0.0.1:9000/shop?prefix=p&tls=false&region=us-east-1",
			blob.Spec{S3: blob.S3Options{Endpoint: "127.0.0.1:9000", AccessKey: "AK", SecretKey: "SK", Bucket: "shop", Prefix: "p", Region: "us-east-1"}},
		},
		{
			// A secret with / and + percent-encoded, as AWS secrets need.
			"s3://AK:a%2Fb%2Bc%40d@minio.internal/shop-images",
			blob.Spec{S3: blob.S3Options{Endpoint: "minio.internal", AccessKey: "AK", SecretKey: "a/b+c@d", Bucket: "shop-images", TLS: true}},
		},
		{
			"s3://s3.eu-west-1.amazonaws.com/shop?region=eu-west-1&create=true&prefix=shop-a/&partsize=16777216",
			blob.Spec{Create: true, S3: blob.S3Options{
				Endpoint: "s3.eu-west-1.amazonaws.com", AccessKey: "envAK", SecretKey: "envSK", SessionToken: "tok",
				Bucket: "shop", Prefix: "shop-a/", Region: "eu-west-1", TLS: true, PartSize: 16 << 20,
			}},
		},
		{
			"s3://AK:SK@[::1]:9000/b12?tls=1",
			blob.Spec{S3: blob.S3Options{Endpoint: "[::1]:9000", AccessKey: "AK", SecretKey: "SK", Bucket: "b12", TLS: true}},
		},
	} {
		got, err := blob.ParseSpec(tc.spec, getenv)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.spec, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseSpec(%q)\n got %+v\nwant %+v", tc.spec, got, tc.want)
		}
	}
}

func TestParseSpecBad(t *testing.T) {
	const secret = "TOPSECRETvalue"
	noEnv := func(string) string { return "" }
	for spec, why := range map[string]string{
		"":                                             "empty",
		"   ":                                          "empty",
		"gs://b":                                       "unknown scheme",
		"http://AK:" + secret + "@host/b":              "unknown scheme",
		"s3://AK:" + secret + "@/b":                    "no host",
		"s3://AK:" + secret + "@host:9000":             "no bucket",
		"s3://AK:" + secret + "@host:9000/":            "no bucket",
		"s3://AK:" + secret + "@host:99999/b":          "bad port",
		"s3://AK:" + secret + "@host:9000/b/sub":       "just the bucket",
		"s3://AK:" + secret + "@host:9000/B_Bad":       "invalid bucket name",
		"s3://AK:" + secret + "@host:9000/abc?tls=yes": "tls must be",
		"s3://AK:" + secret + "@host/bkt?create=maybe": "create must be",
		"s3://AK:" + secret + "@host/bkt?prefix=../x":  "invalid prefix",
		"s3://AK:" + secret + "@host/bkt?prefix=a//b":  "invalid prefix",
		"s3://AK:" + secret + "@host/bkt?partsize=1":   "partsize",
		"s3://AK:" + secret + "@host/bkt?prefx=a":      "unknown parameter",
		"s3://AK:" + secret + "@host/bkt?tls=1&tls=0":  "more than once",
		"s3://AK:" + secret + "@host/bkt#frag":         "fragment",
		"s3://AK:@host/bkt":                            "ACCESS:SECRET",
		"s3://:" + secret + "@host/bkt":                "ACCESS:SECRET",
		"s3://host/bkt":                                "no credentials",
		// An AWS secret pasted raw, with a /, is not a URL url.Parse takes
		// apart as meant: refused, and still redacted.
		"s3://AK:ab/" + secret + "@host/bkt":  "",
		"s3://AK:" + secret + "%zz@host/bkt":  "not a valid URL",
		"s3://AK:" + secret + "@ho st:90/bkt": "not a valid URL",
	} {
		_, err := blob.ParseSpec(spec, noEnv)
		if err == nil {
			t.Errorf("ParseSpec(%q) succeeded", spec)
			continue
		}
		if !errs.Is(errs.Invalid, err) {
			t.Errorf("ParseSpec(%q) = %v, want Invalid", spec, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, why) {
			t.Errorf("ParseSpec(%q) = %q, want it to say %q", spec, msg, why)
		}
		if strings.Contains(msg, secret) || strings.Contains(errs.Detail(err), secret) {
			t.Errorf("ParseSpec(%q): the message shows the secret: %q", spec, msg)
		}
		if strings.TrimSpace(spec) != "" && !strings.Contains(msg, "blob store \"") {
			t.Errorf("ParseSpec(%q) = %q, want it to name the spec", spec, msg)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"s3://AK:SK@host:9000/b?prefix=p": "s3://AK:xxxxx@host:9000/b?prefix=p",
		"s3://AK:a/b@c@host/b":            "s3://AK:xxxxx@host/b",
		"s3://host:9000/b":                "s3://host:9000/b",
		"s3://AK@host/b":                  "s3://AK@host/b",
		"/var/blobs":                      "/var/blobs",
		"s3://AK:SK@host/b?x=a@b":         "s3://AK:xxxxx@host/b?x=a@b",
	} {
		if got := blob.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "blobs")
	s, err := blob.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	fs, ok := s.(*blob.FS)
	if !ok {
		t.Fatalf("Open(dir) = %T, want *blob.FS", s)
	}
	if err := fs.Ping(context.Background()); err != nil {
		t.Errorf("Ping = %v", err)
	}
	if err := s.Put(context.Background(), "k", strings.NewReader("v")); err != nil {
		t.Fatal(err)
	}
}

func TestSpecPrintsNoSecret(t *testing.T) {
	sp, err := blob.ParseSpec("s3://AK:hunter2secret@h:9000/bkt?prefix=p&tls=false", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(sp), fmt.Sprintf("%+v", sp), fmt.Sprintf("%v", sp.S3), sp.S3.String()} {
		if strings.Contains(s, "hunter2secret") {
			t.Errorf("printed spec shows the secret: %s", s)
		}
	}
	if got, want := sp.String(), "s3://AK:xxxxx@h:9000/bkt?prefix=p&tls=false"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	sp.Create = true
	if got, want := sp.String(), "s3://AK:xxxxx@h:9000/bkt?prefix=p&tls=false&create=true"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (blob.Spec{Dir: "/srv/blobs"}).String(); got != "/srv/blobs" {
		t.Errorf("String() = %q", got)
	}
}
