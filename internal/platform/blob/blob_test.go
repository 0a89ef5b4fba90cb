package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/blob/blobtest"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

func newFS(t *testing.T) (*blob.FS, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs") // NewFS creates it
	s, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func read(t *testing.T, s blob.Store, key string) (string, blob.Info) {
	t.Helper()
	obj, info, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), info
}

func TestPutGetStatDelete(t *testing.T) {
	s, _ := newFS(t)
	ctx := context.Background()
	key := "products/prd_1/main.png"
	if err := s.Put(ctx, key, strings.NewReader("png bytes")); err != nil {
		t.Fatal(err)
	}
	got, info := read(t, s, key)
	if got != "png bytes" {
		t.Errorf("Get = %q", got)
	}
	if info.Key != key || info.Size != 9 || info.ContentType != "image/png" || info.ModTime.IsZero() || info.ModTime.Location().String() != "UTC" {
		t.Errorf("Get info = %+v", info)
	}
	st, err := s.Stat(ctx, key)
	if err != nil || st != info {
		t.Errorf("Stat = %+v, %v; want %+v", st, err, info)
	}

	// The object seeks, for ranged reads.
	obj, _, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.Seek(4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(obj)
	obj.Close()
	if string(rest) != "bytes" {
		t.Errorf("after Seek(4): %q", rest)
	}

	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, key); !errs.Is(errs.NotFound, err) {
		t.Errorf("Get after Delete = %v, want NotFound", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Errorf("Delete of a missing key = %v, want nil", err)
	}
}

func TestNotFound(t *testing.T) {
	s, dir := newFS(t)
	ctx := context.Background()
	_, _, err := s.Get(ctx, "nope.jpg")
	if !errs.Is(errs.NotFound, err) || errs.Detail(err) != "no such blob" {
		t.Errorf("Get missing = %v / %q", err, errs.Detail(err))
	}
	if strings.Contains(errs.ProblemFor(err).Detail, dir) {
		t.Error("the problem leaks the storage path")
	}
	if _, err := s.Stat(ctx, "a/b/nope.jpg"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Stat missing = %v", err)
	}
}

func TestContentTypes(t *testing.T) {
	s, _ := newFS(t)
	ctx := context.Background()
	for key, want := range map[string]string{
		"a.jpg":   "image/jpeg",
		"a.json":  "application/json",
		"a":       "application/octet-stream",
		"a.weird": "application/octet-stream",
	} {
		if err := s.Put(ctx, key, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		st, err := s.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if st.ContentType != want {
			t.Errorf("%s: ContentType %q, want %q", key, st.ContentType, want)
		}
	}
}

func TestPutReplacesAtomically(t *testing.T) {
	s, dir := newFS(t)
	ctx := context.Background()
	key := "thumbs/t.jpg"
	if err := s.Put(ctx, key, strings.NewReader("old version")); err != nil {
		t.Fatal(err)
	}
	// A reader that opened the old object keeps reading it whole.
	old, _, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := s.Put(ctx, key, strings.NewReader("new")); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(old)
	if string(b) != "old version" {
		t.Errorf("an open reader saw %q", b)
	}
	if got, info := read(t, s, key); got != "new" || info.Size != 3 {
		t.Errorf("after replace: %q (%d bytes)", got, info.Size)
	}

	// A Put that fails half-way leaves the old object and no debris.
	failing := io.MultiReader(strings.NewReader("partial"), errReader{errors.New("client went away")})
	if err := s.Put(ctx, key, failing); err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	if got, _ := read(t, s, key); got != "new" {
		t.Errorf("after a failed Put: %q", got)
	}
	// So does a Put whose context is cancelled.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, key, strings.NewReader("cancelled")); err == nil {
		t.Fatal("Put with a cancelled context succeeded")
	}
	if got, _ := read(t, s, key); got != "new" {
		t.Errorf("after a cancelled Put: %q", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "thumbs"))
	if len(entries) != 1 || entries[0].Name() != "t.jpg" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only t.jpg", names)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestLargeObject(t *testing.T) {
	s, _ := newFS(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if err := s.Put(context.Background(), "big.bin", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, info := read(t, s, "big.bin")
	if info.Size != int64(len(data)) || got != string(data) {
		t.Errorf("big object: %d bytes back, want %d", len(got), len(data))
	}
}

func TestValidKey(t *testing.T) {
	valid := []string{"a", "a.png", "products/prd_1/main.png", "a-b_c.d/e", "x"}
	invalid := []string{
		"", "/", "/etc/passwd", "../x", "a/../../x", "a/..", "..", ".", "./a", "a/./b",
		"a//b", "a/", `a\b`, `..\x`, `C:\x`, "a/\x00", "x..y", ".hidden", "products/p/.tmp-123",
	}
	for _, k := range valid {
		if !blob.ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
	for _, k := range invalid {
		if blob.ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}

	// Every operation refuses invalid keys, and nothing outside the root is touched.
	parent := t.TempDir()
	s, err := blob.NewFS(filepath.Join(parent, "root"))
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(parent, "victim.txt")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{"../victim.txt", "a/../../victim.txt", victim, "", ".", "a\x00"} {
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
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("file outside the root changed: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(parent, "root")); err != nil {
		t.Errorf("the store's root is gone: %v", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 2 {
		t.Errorf("files appeared beside the root: %d entries in its parent", len(entries))
	}
}

func TestFSConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, _ := newFS(t)
		return s
	})
}

func TestFSPing(t *testing.T) {
	s, dir := newFS(t)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); !errs.Is(errs.Unavailable, err) {
		t.Errorf("Ping with the root gone = %v, want Unavailable", err)
	}
	if err := os.WriteFile(dir, []byte("not a dir"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); !errs.Is(errs.Unavailable, err) {
		t.Errorf("Ping with the root a file = %v, want Unavailable", err)
	}
}
