package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// S3Options configure an S3 store.
type S3Options struct {
	Endpoint     string // host:port of the S3 API
	AccessKey    string
	SecretKey    string
	SessionToken string // optional, for temporary credentials
	Bucket       string
	// Prefix is put before every key, so that several shops (or tests) can
	// share one bucket: "shop-a/" keeps this store's blobs under shop-a/.
	// A missing trailing slash is added. Empty means the bucket's root.
	Prefix string
	TLS    bool   // https rather than http
	Region string // empty lets the client ask the server
	// PartSize is the size of the parts a large Put is uploaded in, and the
	// size up to which a Put is buffered and sent as one request. Zero means
	// DefaultPartSize; S3 refuses parts below 5 MiB but the last.
	PartSize int64
	// MaxRetries is how many times the client tries a request that failed
	// for a transient reason; zero means 3, 1 means no retry.
	MaxRetries int
	// Transport, when set, carries the client's requests.
	Transport http.RoundTripper
}

// String describes the options as an s3:// spec with the secret redacted,
// so that logging a configuration does not leak it.
func (o S3Options) String() string {
	u := url.URL{Scheme: "s3", Host: o.Endpoint, Path: "/" + o.Bucket}
	if o.AccessKey != "" {
		u.User = url.UserPassword(o.AccessKey, "xxxxx")
	}
	q := url.Values{}
	if o.Prefix != "" {
		q.Set("prefix", o.Prefix)
	}
	if !o.TLS {
		q.Set("tls", "false")
	}
	if o.Region != "" {
		q.Set("region", o.Region)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// DefaultPartSize is the part size of multipart uploads when S3Options
// leave it zero.
const DefaultPartSize = 8 << 20

// minPartSize is the smallest part S3 accepts (but for the last one).
const minPartSize = 5 << 20

// S3 is a Store on a bucket of an S3-compatible object store.
//
// Put buffers up to PartSize bytes and sends them in one request; a longer
// body is streamed as a multipart upload, which the server makes visible only
// when it completes, so readers never see a partial object. A failed or
// cancelled multipart Put is aborted. Missing keys are errs.NotFound; any
// other failure of the object store is errs.Unavailable.
type S3 struct {
	core     minio.Core
	bucket   string
	prefix   string
	partSize int64
}

var (
	_ Store  = (*S3)(nil)
	_ Pinger = (*S3)(nil)
)

// NewS3 returns a store on the bucket o describes. It sends no request: use
// Ping (or EnsureBucket) to check that the bucket is reachable.
func NewS3(o S3Options) (*S3, error) {
	const op = "blob.NewS3"
	if o.Endpoint == "" {
		return nil, errs.E(op, errs.Invalid, errs.Msg("S3 endpoint missing"))
	}
	if err := s3utils.CheckValidBucketNameStrict(o.Bucket); err != nil {
		return nil, errs.E(op, errs.Invalid, errs.Msg("invalid S3 bucket name %q", o.Bucket))
	}
	prefix := o.Prefix
	if prefix != "" {
		prefix = strings.TrimSuffix(prefix, "/")
		if !ValidKey(prefix) {
			return nil, errs.E(op, errs.Invalid, errs.Msg("invalid S3 key prefix %q", o.Prefix))
		}
		prefix += "/"
	}
	part := o.PartSize
	if part == 0 {
		part = DefaultPartSize
	}
	if part < minPartSize {
		return nil, errs.E(op, errs.Invalid, errs.Msg("S3 part size %d below the 5 MiB minimum", part))
	}
	retries := o.MaxRetries
	if retries <= 0 {
		retries = 3
	}
	c, err := minio.New(o.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken),
		Secure:     o.TLS,
		Region:     o.Region,
		Transport:  o.Transport,
		MaxRetries: retries,
	})
	if err != nil {
		return nil, errs.E(op, errs.Invalid, errs.Msg("invalid S3 endpoint"), err)
	}
	return &S3{core: minio.Core{Client: c}, bucket: o.Bucket, prefix: prefix, partSize: part}, nil
}

// Ping checks that the bucket exists and the credentials may reach it.
func (s *S3) Ping(ctx context.Context) error {
	const op = "blob.Ping"
	ok, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return errs.E(op, errs.Unavailable, err)
	}
	if !ok {
		return errs.E(op, errs.Unavailable, errs.Msg("bucket %q does not exist", s.bucket))
	}
	return nil
}

// EnsureBucket creates the bucket if it does not exist, then checks that it
// is reachable.
func (s *S3) EnsureBucket(ctx context.Context, region string) error {
	const op = "blob.EnsureBucket"
	ok, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return errs.E(op, errs.Unavailable, err)
	}
	if ok {
		return nil
	}
	err = s.core.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err != nil {
		// Another process may have created it meanwhile.
		if code := minio.ToErrorResponse(err).Code; code != minio.BucketAlreadyOwnedByYou {
			return errs.E(op, errs.Unavailable, err)
		}
	}
	return s.Ping(ctx)
}

// object is the object name of key, or a BadRequest error.
func (s *S3) object(op, key string) (string, error) {
	if !ValidKey(key) {
		return "", errs.E(op, errs.BadRequest, errs.Msg("invalid blob key"))
	}
	return s.prefix + key, nil
}

// Put stores r's contents under key. The object becomes visible whole or
// not at all; a Put whose ctx is cancelled or whose reader fails leaves the
// previous object, if any.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) error {
	const op = "blob.Put"
	name, err := s.object(op, key)
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ContentType: contentType(key)}
	r = ctxReader{ctx, r}

	// Most blobs (images, thumbnails) are smaller than a part: read up to
	// one part and, if the body ends there, send it in a single request.
	var first bytes.Buffer
	n, err := io.CopyN(&first, r, s.partSize)
	if err != nil && err != io.EOF {
		return errs.E(op, err) // the body failed, not the store
	}
	if n < s.partSize {
		if _, err := s.core.Client.PutObject(ctx, s.bucket, name, &first, n, opts); err != nil {
			return s.fail(op, err)
		}
		return nil
	}
	return s.putMultipart(ctx, op, name, io.MultiReader(&first, r), opts)
}

// putMultipart streams r as a multipart upload of partSize parts, holding
// one part in memory at a time. The upload is aborted if anything fails, so
// no parts are left behind.
func (s *S3) putMultipart(ctx context.Context, op, name string, r io.Reader, opts minio.PutObjectOptions) (err error) {
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, name, opts)
	if err != nil {
		return s.fail(op, err)
	}
	defer func() {
		if err == nil {
			return
		}
		// The caller's ctx may be what failed: abort on a context of our own.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = s.core.AbortMultipartUpload(actx, s.bucket, name, id)
	}()

	buf := make([]byte, s.partSize)
	var parts []minio.CompletePart
	for num := 1; ; num++ {
		n, rerr := io.ReadFull(r, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return errs.E(op, rerr) // the body failed, not the store
		}
		if n == 0 && num > 1 {
			break
		}
		p, err := s.core.PutObjectPart(ctx, s.bucket, name, id, num, bytes.NewReader(buf[:n]), int64(n), minio.PutObjectPartOptions{})
		if err != nil {
			return s.fail(op, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: p.PartNumber, ETag: p.ETag})
		if rerr != nil { // the body ended inside this part
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return s.fail(op, err)
	}
	if _, err := s.core.CompleteMultipartUpload(ctx, s.bucket, name, id, parts, opts); err != nil {
		return s.fail(op, err)
	}
	return nil
}

// Get opens the blob at key. The returned object reads (and seeks, with
// ranged requests) under ctx.
func (s *S3) Get(ctx context.Context, key string) (Object, Info, error) {
	const op = "blob.Get"
	name, err := s.object(op, key)
	if err != nil {
		return nil, Info{}, err
	}
	obj, err := s.core.Client.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, Info{}, s.fail(op, err)
	}
	oi, err := obj.Stat() // sends the request
	if err != nil {
		obj.Close()
		return nil, Info{}, s.fail(op, err)
	}
	return obj, s.info(key, oi), nil
}

// Stat describes the blob at key.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	const op = "blob.Stat"
	name, err := s.object(op, key)
	if err != nil {
		return Info{}, err
	}
	oi, err := s.core.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s.fail(op, err)
	}
	return s.info(key, oi), nil
}

// Delete removes the blob at key; deleting a missing key is not an error.
func (s *S3) Delete(ctx context.Context, key string) error {
	const op = "blob.Delete"
	name, err := s.object(op, key)
	if err != nil {
		return err
	}
	if err := s.core.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil {
		if errs.Is(errs.NotFound, s.fail(op, err)) {
			return nil
		}
		return s.fail(op, err)
	}
	return nil
}

func (s *S3) info(key string, oi minio.ObjectInfo) Info {
	ct := oi.ContentType
	if ct == "" || ct == "binary/octet-stream" {
		ct = contentType(key)
	}
	return Info{
		Key:         key,
		Size:        oi.Size,
		ModTime:     oi.LastModified.UTC(),
		ContentType: ct,
		ETag:        strings.Trim(oi.ETag, `"`),
	}
}

// fail maps an error of the object store to the package's errors: a missing
// key is NotFound, anything else Unavailable.
func (s *S3) fail(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return errs.E(op, errs.Unavailable, err)
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == minio.NoSuchKey:
		return errs.E(op, errs.NotFound, errs.Msg("no such blob"), err)
	case resp.Code == minio.NoSuchBucket:
		return errs.E(op, errs.Unavailable, errs.Msg("blob bucket missing"), err)
	case resp.StatusCode == http.StatusNotFound && resp.Code == "":
		// A HEAD answer has no body to carry the code.
		return errs.E(op, errs.NotFound, errs.Msg("no such blob"), err)
	}
	return errs.E(op, errs.Unavailable, err)
}
