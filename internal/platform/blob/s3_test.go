package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/blob/blobtest"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// s3Store is a store on b with the smallest part size S3 allows, so that
// blobtest's big object goes up in several parts.
func s3Store(t *testing.T, b testenv.MinIOBucket, prefix string) *blob.S3 {
	t.Helper()
	s, err := blob.NewS3(blob.S3Options{
		Endpoint: b.Endpoint, AccessKey: b.AccessKey, SecretKey: b.SecretKey,
		Bucket: b.Bucket, Prefix: prefix, Region: "us-east-1",
		PartSize: 5 << 20, MaxRetries: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawClient talks to the bucket's server directly, to look behind the store.
func rawClient(t *testing.T, b testenv.MinIOBucket) minio.Core {
	t.Helper()
	c, err := minio.New(b.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(b.AccessKey, b.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return minio.Core{Client: c}
}

func TestS3Conformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		b := testenv.MinIO(t)
		s := s3Store(t, b, "")
		t.Cleanup(func() { checkNoUploadsLeft(t, b) })
		return s
	})
}

// TestS3ConformancePrefixed runs the suite on stores opened from specs, all
// sharing one bucket under different prefixes.
func TestS3ConformancePrefixed(t *testing.T) {
	b := testenv.MinIO(t)
	n := 0
	blobtest.Run(t, func(t *testing.T) blob.Store {
		n++
		s, err := blob.Open(context.Background(), b.URL(fmt.Sprintf("shop-%d/", n))+"&partsize=5242880")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	checkNoUploadsLeft(t, b)
}

// checkNoUploadsLeft fails the test if a multipart upload was left open in
// the bucket: a failed or cancelled Put must abort its upload.
func checkNoUploadsLeft(t *testing.T, b testenv.MinIOBucket) {
	t.Helper()
	res, err := rawClient(t, b).ListMultipartUploads(context.Background(), b.Bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range res.Uploads {
		t.Errorf("multipart upload of %q left open", u.Key)
	}
}

func TestS3PrefixesShareABucket(t *testing.T) {
	b := testenv.MinIO(t)
	ctx := context.Background()
	shopA, shopB := s3Store(t, b, "shop-a"), s3Store(t, b, "shop-b/")
	root := s3Store(t, b, "")
	if err := shopA.Put(ctx, "img/1.png", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	if err := shopB.Put(ctx, "img/1.png", strings.NewReader("bb")); err != nil {
		t.Fatal(err)
	}
	for s, want := range map[blob.Store]int64{shopA: 1, shopB: 2} {
		st, err := s.Stat(ctx, "img/1.png")
		if err != nil || st.Size != want || st.Key != "img/1.png" {
			t.Errorf("Stat = %+v, %v; want size %d", st, err, want)
		}
	}
	// The objects sit under the prefixes, as another tool sees them.
	for key, want := range map[string]int64{"shop-a/img/1.png": 1, "shop-b/img/1.png": 2} {
		if st, err := root.Stat(ctx, key); err != nil || st.Size != want {
			t.Errorf("root Stat(%q) = %+v, %v", key, st, err)
		}
	}
	if _, err := root.Stat(ctx, "img/1.png"); !errs.Is(errs.NotFound, err) {
		t.Errorf("unprefixed key: %v, want NotFound", err)
	}
	if err := shopA.Delete(ctx, "img/1.png"); err != nil {
		t.Fatal(err)
	}
	if _, err := shopB.Stat(ctx, "img/1.png"); err != nil {
		t.Errorf("deleting shop-a's blob touched shop-b's: %v", err)
	}
	if _, err := blob.NewS3(blob.S3Options{Endpoint: b.Endpoint, Bucket: b.Bucket, Prefix: "../x"}); !errs.Is(errs.Invalid, err) {
		t.Errorf("prefix ../x: %v, want Invalid", err)
	}
}

func TestS3StoresContentTypeAndETag(t *testing.T) {
	b := testenv.MinIO(t)
	ctx := context.Background()
	s := s3Store(t, b, "p")
	if err := s.Put(ctx, "x.jpg", strings.NewReader("jpeg")); err != nil {
		t.Fatal(err)
	}
	// What a browser fetching the object directly from the bucket sees.
	oi, err := rawClient(t, b).StatObject(ctx, b.Bucket, "p/x.jpg", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if oi.ContentType != "image/jpeg" {
		t.Errorf("stored Content-Type %q, want image/jpeg", oi.ContentType)
	}
	st, err := s.Stat(ctx, "x.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if st.ETag == "" || st.ETag != strings.Trim(oi.ETag, `"`) || strings.Contains(st.ETag, `"`) {
		t.Errorf("ETag %q, object's %q", st.ETag, oi.ETag)
	}
}

// TestS3Unavailable stops the server under a store: every operation is
// Unavailable, names its op, and returns promptly.
func TestS3Unavailable(t *testing.T) {
	srv := testenv.StartMinIO(t)
	b := srv.NewBucket(t)
	s := s3Store(t, b, "")
	ctx := context.Background()
	if err := s.Put(ctx, "k.txt", strings.NewReader("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	srv.Stop()

	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	_, _, getErr := s.Get(ctx, "k.txt")
	_, statErr := s.Stat(ctx, "k.txt")
	for op, err := range map[string]error{
		"blob.Get":    getErr,
		"blob.Stat":   statErr,
		"blob.Put":    s.Put(ctx, "k.txt", strings.NewReader("v2")),
		"blob.Delete": s.Delete(ctx, "k.txt"),
		"blob.Ping":   s.Ping(ctx),
	} {
		if !errs.Is(errs.Unavailable, err) {
			t.Errorf("%s with the server down = %v (kind %v), want Unavailable", op, err, errs.KindOf(err))
		}
		var e *errs.Error
		if !errors.As(err, &e) || e.Op != op {
			t.Errorf("%s: error %v does not name its op", op, err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("five calls to a dead server took %v", d)
	}
	if _, err := blob.Open(ctx, b.URL("")); !errs.Is(errs.Unavailable, err) {
		t.Errorf("Open with the server down = %v, want Unavailable", err)
	}
}

func TestOpenS3(t *testing.T) {
	b := testenv.MinIO(t)
	ctx := context.Background()

	// The bucket exists: Open checks it and hands back a working store.
	s, err := blob.Open(ctx, b.URL("o/"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*blob.S3); !ok {
		t.Fatalf("Open(s3://...) = %T", s)
	}
	if err := s.Put(ctx, "a.txt", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	if err := s.(blob.Pinger).Ping(ctx); err != nil {
		t.Errorf("Ping = %v", err)
	}

	// A missing bucket is refused, unless create=true.
	missing := b
	missing.Bucket = b.Bucket + "-new"
	if _, err := blob.Open(ctx, missing.URL("")); !errs.Is(errs.Unavailable, err) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Open of a missing bucket = %v, want Unavailable: does not exist", err)
	}
	for range 2 { // creating an existing bucket is fine too
		s2, err := blob.Open(ctx, missing.URL("")+"&create=true")
		if err != nil {
			t.Fatalf("Open with create=true: %v", err)
		}
		if err := s2.Put(ctx, "b.txt", strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}

	// Wrong credentials: refused at start, and the secret is not in the error.
	bad := b
	bad.SecretKey = "not-the-secret-42"
	_, err = blob.Open(ctx, bad.URL(""))
	if !errs.Is(errs.Unavailable, err) {
		t.Errorf("Open with a wrong secret = %v, want Unavailable", err)
	}
	if err != nil && strings.Contains(err.Error(), bad.SecretKey) {
		t.Errorf("the error shows the secret: %v", err)
	}

	// Credentials from the environment when the URL has none.
	spec := "s3://" + b.Endpoint + "/" + b.Bucket + "?tls=false&prefix=o"
	env := map[string]string{"AWS_ACCESS_KEY_ID": b.AccessKey, "AWS_SECRET_ACCESS_KEY": b.SecretKey}
	sp, err := blob.ParseSpec(spec, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	s3, err := blob.OpenSpec(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	obj, _, err := s3.Get(ctx, "a.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if got, _ := io.ReadAll(obj); string(got) != "hello" {
		t.Errorf("read %q through env credentials", got)
	}
}

// TestS3PutSizes puts bodies around the part size, of unknown length: up
// to a part goes up in one request, more as a multipart upload of 5 MiB
// parts (whose ETag ends in -<parts>).
func TestS3PutSizes(t *testing.T) {
	b := testenv.MinIO(t)
	s := s3Store(t, b, "")
	ctx := context.Background()
	const part = 5 << 20
	for _, tc := range []struct {
		size  int
		parts string // "" for a single PUT
	}{
		{0, ""}, {1, ""}, {part - 1, ""}, {part, "-1"}, {part + 1, "-2"}, {2*part + 7, "-3"},
	} {
		body := bytes.Repeat([]byte{byte(tc.size)}, tc.size)
		for i := range body {
			body[i] += byte(i / 4096)
		}
		key := fmt.Sprintf("sizes/%d.bin", tc.size)
		// io.MultiReader hides the length from the store.
		if err := s.Put(ctx, key, io.MultiReader(bytes.NewReader(body))); err != nil {
			t.Fatalf("Put %d bytes: %v", tc.size, err)
		}
		obj, info, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil || !bytes.Equal(got, body) || info.Size != int64(tc.size) {
			t.Errorf("%d bytes: read %d back (%v), size %d", tc.size, len(got), err, info.Size)
		}
		if multi := strings.Contains(info.ETag, "-"); multi != (tc.parts != "") || !strings.HasSuffix(info.ETag, tc.parts) {
			t.Errorf("%d bytes: ETag %q, want parts %q", tc.size, info.ETag, tc.parts)
		}
	}
}
