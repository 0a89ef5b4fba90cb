// Package blob stores binary objects (product images, thumbnails) by key. The
// embedded default, FS, keeps them as files under a directory; S3 keeps them
// in a bucket of any S3-compatible object store (MinIO, AWS S3). Open picks
// one from a spec string. Both pass the same conformance suite, blobtest.
package blob

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Object is an open blob; the caller must Close it.
type Object interface {
	io.ReadSeekCloser
}

// Info describes a stored blob.
type Info struct {
	Key         string
	Size        int64
	ModTime     time.Time // in UTC
	ContentType string    // from the key's extension when stored
	// ETag is an opaque validator that changes when the blob is replaced
	// (it is not quoted). Stores that cannot tell leave it empty.
	ETag string
}

// Store is a blob store. Put replaces atomically: readers see the old object
// or the new one, never a partial one. Get of a missing key is errs.NotFound.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) error
	Get(ctx context.Context, key string) (Object, Info, error)
	Stat(ctx context.Context, key string) (Info, error)
	Delete(ctx context.Context, key string) error
}

// Pinger is implemented by stores that can check that their backend is
// reachable, for readiness checks. FS and S3 implement it.
type Pinger interface {
	// Ping returns nil when the store can serve requests, or an
	// errs.Unavailable error saying why not.
	Ping(ctx context.Context) error
}

// FS is a Store on the local file system.
type FS struct {
	root string
}

var (
	_ Store  = (*FS)(nil)
	_ Pinger = (*FS)(nil)
)

// NewFS returns a store rooted at dir, creating it if needed.
func NewFS(dir string) (*FS, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &FS{root: dir}, nil
}

// Ping reports whether the store's root is still a directory it can use.
func (s *FS) Ping(ctx context.Context) error {
	st, err := os.Stat(s.root)
	if err != nil {
		return errs.E("blob.Ping", errs.Unavailable, err)
	}
	if !st.IsDir() {
		return errs.E("blob.Ping", errs.Unavailable, errs.Msg("blob root is not a directory"))
	}
	return nil
}

// ValidKey reports whether key is a clean relative slash-separated path.
func ValidKey(key string) bool {
	if key == "" || key == "." || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00") || strings.Contains(key, "..") {
		return false
	}
	// No segment may start with a dot: Put's temporary files do, and a
	// half-written one must never be served.
	if strings.HasPrefix(key, ".") || strings.Contains(key, "/.") {
		return false
	}
	return path.Clean(key) == key && fs.ValidPath(key)
}

func (s *FS) file(op, key string) (string, error) {
	if !ValidKey(key) {
		return "", errs.E(op, errs.BadRequest, errs.Msg("invalid blob key"))
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put stores r's contents under key, atomically.
func (s *FS) Put(ctx context.Context, key string, r io.Reader) error {
	const op = "blob.Put"
	p, err := s.file(op, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return errs.E(op, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return errs.E(op, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, ctxReader{ctx, r}); err != nil {
		tmp.Close()
		return errs.E(op, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return errs.E(op, err)
	}
	if err := tmp.Close(); err != nil {
		return errs.E(op, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// Get opens the blob at key.
func (s *FS) Get(ctx context.Context, key string) (Object, Info, error) {
	const op = "blob.Get"
	p, err := s.file(op, key)
	if err != nil {
		return nil, Info{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, Info{}, errs.E(op, errs.NotFound, errs.Msg("no such blob"), err)
		}
		return nil, Info{}, errs.E(op, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Info{}, errs.E(op, err)
	}
	if st.IsDir() { // a prefix of other keys, not a blob
		f.Close()
		return nil, Info{}, errs.E(op, errs.NotFound, errs.Msg("no such blob"))
	}
	return f, info(key, st), nil
}

// Stat describes the blob at key.
func (s *FS) Stat(ctx context.Context, key string) (Info, error) {
	const op = "blob.Stat"
	p, err := s.file(op, key)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		if os.IsNotExist(err) {
			return Info{}, errs.E(op, errs.NotFound, errs.Msg("no such blob"), err)
		}
		return Info{}, errs.E(op, err)
	}
	if st.IsDir() { // a prefix of other keys, not a blob
		return Info{}, errs.E(op, errs.NotFound, errs.Msg("no such blob"))
	}
	return info(key, st), nil
}

// Delete removes the blob at key; deleting a missing key is not an error.
func (s *FS) Delete(ctx context.Context, key string) error {
	const op = "blob.Delete"
	p, err := s.file(op, key)
	if err != nil {
		return err
	}
	if st, err := os.Lstat(p); err == nil && st.IsDir() {
		return nil // a prefix of other keys, not a blob: nothing to delete
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return errs.E(op, err)
	}
	return nil
}

func info(key string, st os.FileInfo) Info {
	mt := st.ModTime().UTC()
	return Info{
		Key:         key,
		Size:        st.Size(),
		ModTime:     mt,
		ContentType: contentType(key),
		// As web servers do for files: a replaced file has a new mtime.
		ETag: fmt.Sprintf("%x-%x", mt.UnixNano(), st.Size()),
	}
}

// contentType is the MIME type a blob is served with, from its key's
// extension.
func contentType(key string) string {
	ct := mime.TypeByExtension(path.Ext(key))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return ct
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
