// Package blobtest is the conformance suite every blob.Store passes: the
// local file store, the S3 store, and any wrapper over them.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// BigSize is the size of the object the suite streams through Put: larger
// than a few S3 parts of the 5 MiB minimum, so a store that switches to
// multipart uploads does so.
const BigSize = 12<<20 + 12345

// Run runs the suite. mk returns a new, empty store for each subtest; the
// store must be usable until the subtest ends (use t.Cleanup to release
// it).
func Run(t *testing.T, mk func(t *testing.T) blob.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, blob.Store)
	}{
		{"PutGetRoundTrip", testPutGet},
		{"EmptyObject", testEmpty},
		{"Overwrite", testOverwrite},
		{"BigObjectStreamed", testBig},
		{"Stat", testStat},
		{"ContentTypes", testContentTypes},
		{"Seek", testSeek},
		{"DeleteIdempotent", testDelete},
		{"NotFound", testNotFound},
		{"InvalidKeysRefused", testInvalidKeys},
		{"FailedPutLeavesOldObject", testFailedPut},
		{"CancelDuringPutLeavesNothing", testCancelDuringPut},
		{"ConcurrentPuts", testConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, mk(t)) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, s blob.Store, key, body string) {
	t.Helper()
	if err := s.Put(ctxT(t), key, strings.NewReader(body)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func read(t *testing.T, s blob.Store, key string) (string, blob.Info) {
	t.Helper()
	obj, info, err := s.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return string(b), info
}

// checkInfo checks what every store must say about a blob written between
// before and now.
func checkInfo(t *testing.T, info blob.Info, key string, size int64, before time.Time) {
	t.Helper()
	if info.Key != key || info.Size != size {
		t.Errorf("info = %+v, want key %q size %d", info, key, size)
	}
	if info.ModTime.Location() != time.UTC {
		t.Errorf("ModTime %v not in UTC", info.ModTime)
	}
	// Object stores keep whole seconds; allow for that and a little skew.
	if info.ModTime.Before(before.Add(-2*time.Second)) || info.ModTime.After(time.Now().Add(2*time.Second)) {
		t.Errorf("ModTime %v, want about %v", info.ModTime, before)
	}
}

func testPutGet(t *testing.T, s blob.Store) {
	before := time.Now()
	key := "products/prd_1/main.png"
	put(t, s, key, "png bytes")
	got, info := read(t, s, key)
	if got != "png bytes" {
		t.Errorf("Get = %q, want %q", got, "png bytes")
	}
	checkInfo(t, info, key, 9, before)
	if info.ContentType != "image/png" {
		t.Errorf("ContentType %q, want image/png", info.ContentType)
	}
	// Keys differing only in a segment are distinct blobs.
	put(t, s, "products/prd_10/main.png", "other")
	if got, _ := read(t, s, key); got != "png bytes" {
		t.Errorf("after writing a sibling, Get = %q", got)
	}
}

func testEmpty(t *testing.T, s blob.Store) {
	put(t, s, "empty.txt", "")
	got, info := read(t, s, "empty.txt")
	if got != "" || info.Size != 0 {
		t.Errorf("empty blob: %q, size %d", got, info.Size)
	}
}

func testOverwrite(t *testing.T, s blob.Store) {
	key := "thumbs/t.jpg"
	put(t, s, key, "old version")
	_, oldInfo := read(t, s, key)
	put(t, s, key, "new")
	got, info := read(t, s, key)
	if got != "new" || info.Size != 3 {
		t.Errorf("after overwrite: %q (%d bytes)", got, info.Size)
	}
	if oldInfo.ETag != "" && oldInfo.ETag == info.ETag {
		t.Errorf("ETag %q unchanged by an overwrite", info.ETag)
	}
}

// stream is a reader of n pseudo-random bytes that is neither a
// bytes.Reader nor a Seeker, so a store cannot learn its size in advance.
type stream struct {
	r *rand.ChaCha8
	n int64
}

func (s *stream) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.n {
		p = p[:s.n]
	}
	// Uneven reads, as from a network body.
	if len(p) > 40000 {
		p = p[:40000-int(s.n%1000)]
	}
	n, _ := s.r.Read(p)
	s.n -= int64(n)
	return n, nil
}

func newStream(seed byte, n int64) *stream {
	var k [32]byte
	k[0] = seed
	return &stream{r: rand.NewChaCha8(k), n: n}
}

func testBig(t *testing.T, s blob.Store) {
	want := sha256.New()
	if _, err := io.Copy(want, newStream(7, BigSize)); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := s.Put(ctxT(t), "big.bin", newStream(7, BigSize)); err != nil {
		t.Fatal(err)
	}
	obj, info, err := s.Get(ctxT(t), "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got := sha256.New()
	n, err := io.Copy(got, obj)
	if err != nil {
		t.Fatal(err)
	}
	if n != BigSize || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Errorf("big object: %d bytes back (want %d), equal=%v", n, BigSize, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
	checkInfo(t, info, "big.bin", BigSize, before)
	// A ranged read from the middle, across where a part boundary may be.
	if _, err := obj.Seek(5<<20-10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail := make([]byte, 20)
	if _, err := io.ReadFull(obj, tail); err != nil {
		t.Fatal(err)
	}
	all := make([]byte, 5<<20+10)
	if _, err := io.ReadFull(newStream(7, BigSize), all); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tail, all[5<<20-10:]) {
		t.Errorf("ranged read at 5 MiB - 10 = %x, want %x", tail, all[5<<20-10:])
	}
}

func testStat(t *testing.T, s blob.Store) {
	before := time.Now()
	put(t, s, "a/b/c.json", `{"x":1}`)
	st, err := s.Stat(ctxT(t), "a/b/c.json")
	if err != nil {
		t.Fatal(err)
	}
	checkInfo(t, st, "a/b/c.json", 7, before)
	if st.ContentType != "application/json" {
		t.Errorf("ContentType %q", st.ContentType)
	}
	_, gi := read(t, s, "a/b/c.json")
	if gi.Size != st.Size || !gi.ModTime.Equal(st.ModTime) || gi.ContentType != st.ContentType || gi.ETag != st.ETag {
		t.Errorf("Get's info %+v differs from Stat's %+v", gi, st)
	}
}

func testContentTypes(t *testing.T, s blob.Store) {
	for key, want := range map[string]string{
		"a.jpg":   "image/jpeg",
		"a.png":   "image/png",
		"a.json":  "application/json",
		"a":       "application/octet-stream",
		"a.weird": "application/octet-stream",
	} {
		put(t, s, key, "x")
		st, err := s.Stat(ctxT(t), key)
		if err != nil {
			t.Fatal(err)
		}
		if st.ContentType != want {
			t.Errorf("%s: ContentType %q, want %q", key, st.ContentType, want)
		}
	}
}

func testSeek(t *testing.T, s blob.Store) {
	put(t, s, "s.txt", "0123456789")
	obj, _, err := s.Get(ctxT(t), "s.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if _, err := obj.Seek(4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	if _, err := io.ReadFull(obj, b); err != nil || string(b) != "456" {
		t.Errorf("after Seek(4): %q, %v", b, err)
	}
	if n, err := obj.Seek(-2, io.SeekEnd); err != nil || n != 8 {
		t.Errorf("Seek(-2, End) = %d, %v", n, err)
	}
	rest, err := io.ReadAll(obj)
	if err != nil || string(rest) != "89" {
		t.Errorf("after Seek(-2, End): %q, %v", rest, err)
	}
}

func testDelete(t *testing.T, s blob.Store) {
	ctx := ctxT(t)
	put(t, s, "d/x.txt", "x")
	put(t, s, "d/y.txt", "y")
	if err := s.Delete(ctx, "d/x.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "d/x.txt"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Stat after Delete = %v, want NotFound", err)
	}
	if got, _ := read(t, s, "d/y.txt"); got != "y" {
		t.Errorf("the neighbour of a deleted blob reads %q", got)
	}
	for _, k := range []string{"d/x.txt", "never/was.txt"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Errorf("Delete(%q) of a missing key = %v, want nil", k, err)
		}
	}
}

func testNotFound(t *testing.T, s blob.Store) {
	ctx := ctxT(t)
	obj, _, err := s.Get(ctx, "nope.jpg")
	if obj != nil {
		obj.Close()
		t.Error("Get of a missing key returned an object")
	}
	if !errs.Is(errs.NotFound, err) || errs.Detail(err) != "no such blob" {
		t.Errorf("Get missing = %v (detail %q), want NotFound / no such blob", err, errs.Detail(err))
	}
	if _, err := s.Stat(ctx, "a/b/nope.jpg"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Stat missing = %v, want NotFound", err)
	}
	// A key that is a "directory" of other keys is not a blob.
	put(t, s, "dir/file.txt", "x")
	if _, err := s.Stat(ctx, "dir"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Stat of a key prefix = %v, want NotFound", err)
	}
}

// InvalidKeys are keys every store refuses with errs.BadRequest.
var InvalidKeys = []string{
	"", "/", "/etc/passwd", "../x", "a/../../x", "a/..", "..", ".", "./a", "a/./b",
	"a//b", "a/", `a\b`, `..\x`, `C:\x`, "a/\x00", "x..y", ".hidden", "products/p/.tmp-123",
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	ctx := ctxT(t)
	for _, k := range InvalidKeys {
		if blob.ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
		if err := s.Put(ctx, k, strings.NewReader("pwned")); !errs.Is(errs.BadRequest, err) {
			t.Errorf("Put(%q) = %v, want BadRequest", k, err)
		}
		if _, _, err := s.Get(ctx, k); !errs.Is(errs.BadRequest, err) {
			t.Errorf("Get(%q) = %v, want BadRequest", k, err)
		}
		if _, err := s.Stat(ctx, k); !errs.Is(errs.BadRequest, err) {
			t.Errorf("Stat(%q) = %v, want BadRequest", k, err)
		}
		if err := s.Delete(ctx, k); !errs.Is(errs.BadRequest, err) {
			t.Errorf("Delete(%q) = %v, want BadRequest", k, err)
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func testFailedPut(t *testing.T, s blob.Store) {
	ctx := ctxT(t)
	key := "f/t.jpg"
	put(t, s, key, "old version")
	// A reader that fails, early or after more than a part.
	for _, body := range []io.Reader{
		io.MultiReader(strings.NewReader("partial"), errReader{errors.New("client went away")}),
		io.MultiReader(newStream(1, 11<<20), errReader{errors.New("client went away late")}),
	} {
		if err := s.Put(ctx, key, body); err == nil {
			t.Fatal("Put with a failing reader succeeded")
		}
		if got, _ := read(t, s, key); got != "old version" {
			t.Errorf("after a failed Put: %q", got)
		}
	}
	// A Put whose context is already cancelled writes nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, key, strings.NewReader("cancelled")); err == nil {
		t.Fatal("Put with a cancelled context succeeded")
	}
	if err := s.Put(cctx, "f/new.jpg", strings.NewReader("cancelled")); err == nil {
		t.Fatal("Put with a cancelled context succeeded")
	}
	if got, _ := read(t, s, key); got != "old version" {
		t.Errorf("after a cancelled Put: %q", got)
	}
	if _, err := s.Stat(ctx, "f/new.jpg"); !errs.Is(errs.NotFound, err) {
		t.Errorf("a cancelled Put of a new key left %v", err)
	}
}

// gate is a stream that cancels its context after after bytes and then
// keeps serving bytes, as a client whose request is abandoned mid-upload.
type gate struct {
	r      io.Reader
	after  int64
	cancel context.CancelFunc
	once   sync.Once
}

func (g *gate) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.after -= int64(n)
	if g.after <= 0 {
		g.once.Do(g.cancel)
	}
	return n, err
}

func testCancelDuringPut(t *testing.T, s blob.Store) {
	ctx := ctxT(t)
	for _, tc := range []struct {
		name      string
		size, cut int64
	}{
		{"small", 64 << 10, 32 << 10},
		{"big", BigSize, 7 << 20}, // after the first part of a multipart upload
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "c/" + tc.name + ".bin"
			put(t, s, "c/"+tc.name+"-old.bin", "old")
			for _, k := range []string{key, "c/" + tc.name + "-old.bin"} {
				cctx, cancel := context.WithCancel(ctx)
				g := &gate{r: newStream(3, tc.size), after: tc.cut, cancel: cancel}
				err := s.Put(cctx, k, g)
				cancel()
				if err == nil {
					t.Fatalf("Put(%q) cancelled after %d bytes succeeded", k, tc.cut)
				}
				if !errs.Is(errs.Unavailable, err) {
					t.Errorf("Put cancelled: %v (kind %v), want Unavailable", err, errs.KindOf(err))
				}
			}
			if _, err := s.Stat(ctx, key); !errs.Is(errs.NotFound, err) {
				t.Errorf("a cancelled Put of a new key: Stat = %v, want NotFound", err)
			}
			if got, _ := read(t, s, "c/"+tc.name+"-old.bin"); got != "old" {
				t.Errorf("a cancelled Put over an old blob left %d bytes", len(got))
			}
		})
	}
}

func testConcurrent(t *testing.T, s blob.Store) {
	ctx := ctxT(t)
	const n = 16
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := strings.Repeat(fmt.Sprintf("blob %d;", i), 1000+i)
			if err := s.Put(ctx, fmt.Sprintf("conc/%02d.txt", i), strings.NewReader(body)); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("concurrent Put: %v", err)
	}
	for i := range n {
		got, _ := read(t, s, fmt.Sprintf("conc/%02d.txt", i))
		if want := strings.Repeat(fmt.Sprintf("blob %d;", i), 1000+i); got != want {
			t.Errorf("conc/%02d.txt: %d bytes, want %d", i, len(got), len(want))
		}
	}
}
