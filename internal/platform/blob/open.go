package blob

import (
	"context"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Spec says which store to open: a local directory (Dir) or an S3 bucket
// (S3). ParseSpec builds one from a string.
type Spec struct {
	Dir string // local directory, when not S3
	// S3, when Dir is empty, describes the bucket.
	S3 S3Options
	// Create makes OpenSpec create a missing bucket instead of failing.
	Create bool
}

// String is the directory, or the S3 spec with its secret redacted.
func (s Spec) String() string {
	if s.Dir != "" {
		return s.Dir
	}
	out := s.S3.String()
	if s.Create {
		sep := "?"
		if strings.Contains(out, "?") {
			sep = "&"
		}
		out += sep + "create=true"
	}
	return out
}

// ParseSpec parses a store spec: either a local directory path, or
//
//	s3://ACCESS:SECRET@host:port/bucket?prefix=p&tls=false&region=us-east-1&create=true
//
// where the credentials, when absent from the URL, come from getenv's
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and (optionally)
// AWS_SESSION_TOKEN. tls defaults to true, region to the server's, create to
// false; partsize (bytes) sets S3Options.PartSize. A malformed spec is an
// errs.Invalid error whose message names the spec with its secret redacted.
func ParseSpec(spec string, getenv func(string) string) (Spec, error) {
	bad := func(why string) (Spec, error) {
		return Spec{}, errs.E("blob.ParseSpec", errs.Invalid, errs.Msg("blob store %q: %s", Redact(spec), why))
	}
	if strings.TrimSpace(spec) == "" {
		return bad("empty")
	}
	scheme, _, isURL := strings.Cut(spec, "://")
	if !isURL {
		return Spec{Dir: spec}, nil
	}
	if scheme != "s3" {
		return bad("unknown scheme " + strconv.Quote(scheme) + " (want a directory or s3://)")
	}
	u, err := url.Parse(spec)
	if err != nil {
		// url.Parse's error quotes the whole spec, secret included.
		return bad("not a valid URL (a secret holding / ? # @ must be percent-encoded)")
	}
	if u.Host == "" || u.Hostname() == "" {
		return bad("no host")
	}
	if u.Port() != "" {
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			return bad("bad port")
		}
	}
	bucket := strings.TrimPrefix(u.Path, "/")
	if bucket == "" {
		return bad("no bucket (want s3://host:port/bucket)")
	}
	if strings.Contains(bucket, "/") {
		return bad("the path must be just the bucket; use ?prefix= for a key prefix")
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return bad("invalid bucket name")
	}
	if u.Fragment != "" {
		return bad("unexpected #fragment")
	}
	o := S3Options{Endpoint: u.Host, Bucket: bucket, TLS: true}
	s := Spec{}
	if u.User != nil {
		o.AccessKey = u.User.Username()
		o.SecretKey, _ = u.User.Password()
		if o.AccessKey == "" || o.SecretKey == "" {
			return bad("credentials must be ACCESS:SECRET")
		}
	} else {
		o.AccessKey = getenv("AWS_ACCESS_KEY_ID")
		o.SecretKey = getenv("AWS_SECRET_ACCESS_KEY")
		o.SessionToken = getenv("AWS_SESSION_TOKEN")
		if o.AccessKey == "" || o.SecretKey == "" {
			return bad("no credentials in the URL nor in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("bad query")
	}
	for k, v := range q {
		if len(v) != 1 {
			return bad(k + " given more than once")
		}
		val := v[0]
		switch k {
		case "prefix":
			if p := strings.TrimSuffix(val, "/"); p != "" && !ValidKey(p) {
				return bad("invalid prefix")
			}
			o.Prefix = val
		case "tls":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return bad("tls must be true or false")
			}
			o.TLS = b
		case "region":
			o.Region = val
		case "create":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return bad("create must be true or false")
			}
			s.Create = b
		case "partsize":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < minPartSize {
				return bad("partsize must be a number of bytes of at least 5 MiB")
			}
			o.PartSize = n
		default:
			return bad("unknown parameter " + strconv.Quote(k))
		}
	}
	s.S3 = o
	return s, nil
}

// Redact returns spec with the secret of an s3:// URL replaced by "xxxxx",
// for messages and logs. It works on specs url.Parse refuses too.
func Redact(spec string) string {
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok {
		return spec
	}
	// The credentials end at the last @ before the query.
	auth := rest
	if i := strings.IndexAny(auth, "?#"); i >= 0 {
		auth = auth[:i]
	}
	at := strings.LastIndex(auth, "@")
	if at < 0 {
		return spec
	}
	user, _, hasSecret := strings.Cut(auth[:at], ":")
	if !hasSecret {
		return spec
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// Open opens the store spec names (see ParseSpec), taking missing S3
// credentials from the process environment. An S3 store is checked to be
// reachable (and its bucket created when the spec says create=true); a
// directory is created if needed.
func Open(ctx context.Context, spec string) (Store, error) {
	s, err := ParseSpec(spec, os.Getenv)
	if err != nil {
		return nil, err
	}
	return OpenSpec(ctx, s)
}

// OpenSpec opens the store s describes, as Open does.
func OpenSpec(ctx context.Context, s Spec) (Store, error) {
	if s.Dir != "" {
		fs, err := NewFS(s.Dir)
		if err != nil {
			return nil, errs.E("blob.Open", errs.Unavailable, err)
		}
		return fs, nil
	}
	st, err := NewS3(s.S3)
	if err != nil {
		return nil, err
	}
	if s.Create {
		err = st.EnsureBucket(ctx, s.S3.Region)
	} else {
		err = st.Ping(ctx)
	}
	if err != nil {
		return nil, errs.E("blob.Open", err)
	}
	return st, nil
}
