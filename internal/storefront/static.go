package storefront

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

//go:embed static
var staticFS embed.FS

// staticFiles are the embedded assets, each served under a content-hashed
// name ("style.css" as "/static/style.1a2b3c4d5e6f.css") so that browsers
// and CDNs may keep them forever: a changed file gets a new URL.
type staticFiles struct {
	byName   map[string]*asset // "style.css"
	byHashed map[string]*asset // "style.1a2b3c4d5e6f.css"
}

type asset struct {
	name   string
	hashed string
	etag   string
	ctype  string
	body   []byte
}

// loadStatic reads and hashes the embedded assets at start-up.
func loadStatic() *staticFiles {
	sf := &staticFiles{byName: map[string]*asset{}, byHashed: map[string]*asset{}}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:6])
		name := path.Base(p)
		ext := path.Ext(name)
		ctype := mime.TypeByExtension(ext)
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		a := &asset{
			name:   name,
			hashed: strings.TrimSuffix(name, ext) + "." + hash + ext,
			etag:   `"` + hash + `"`,
			ctype:  ctype,
			body:   body,
		}
		sf.byName[name] = a
		sf.byHashed[a.hashed] = a
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("storefront: reading embedded assets: %v", err)) // the binary is broken
	}
	return sf
}

// url is the content-hashed URL of the asset called name; templates use it
// as {{static "style.css"}}.
func (sf *staticFiles) url(name string) (string, error) {
	a, ok := sf.byName[name]
	if !ok {
		return "", fmt.Errorf("no static asset %q", name)
	}
	return "/static/" + a.hashed, nil
}

// serveStatic serves /static/{name}. The current hashed name is immutable.
// The plain name, or a hash from another build (a rolling deploy may send a
// page from a newer instance to an older one), gets the current content
// with a short cache lifetime, so pages keep their look and no cache is
// poisoned for long.
func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request) {
	if !allowRead(w, r) {
		return
	}
	name := r.PathValue("name")
	a, ok := s.static.byHashed[name]
	cacheControl := "public, max-age=31536000, immutable"
	if !ok {
		a, ok = s.static.byName[unhash(name)]
		cacheControl = "public, max-age=60"
	}
	if !ok {
		errs.WriteProblem(w, r, errs.E(errs.NotFound, errs.Msg("no such file")))
		return
	}
	h := w.Header()
	h.Set("Cache-Control", cacheControl)
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// unhash turns "style.1a2b3c4d5e6f.css" into "style.css".
func unhash(name string) string {
	ext := path.Ext(name)
	base := strings.TrimSuffix(name, ext)
	if i := strings.LastIndexByte(base, '.'); i >= 0 {
		return base[:i] + ext
	}
	return name
}

// Bounds on a media key: real keys are short ("products/<id>/thumb-small.jpg"),
// and a longer one cannot name a file on most file systems anyway.
const (
	maxMediaKey     = 512
	maxMediaSegment = 128
)

// validMediaKey reports whether key can name media: a valid blob key of
// bounded length whose segments are all of bounded length.
func validMediaKey(key string) bool {
	if len(key) > maxMediaKey || !blob.ValidKey(key) {
		return false
	}
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > maxMediaSegment {
			return false
		}
	}
	return true
}

// badMediaName reports whether a blob store's error says the key cannot
// name a file (too long, a path through a file, ...): the client's mistake,
// answered as not found.
func badMediaName(err error) bool {
	for _, e := range []error{syscall.ENAMETOOLONG, syscall.ENOTDIR, syscall.EISDIR, syscall.EINVAL, syscall.ELOOP} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// logSafeError is err as it may be logged: a file system error loses the
// path it names (it holds the blob store's directory), keeping the
// operation and the system's reason.
func logSafeError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

// Cache lifetimes of media. A key whose base name carries a content hash
// ("original-1a2b3c4d5e6f.png", "thumb-small-1a2b3c4d5e6f.jpg") names the same
// bytes forever: changed media gets a new key. Older keys ("thumb-small.jpg")
// may be rewritten in place, so they keep a day's lifetime.
const (
	mediaVersionedCacheControl = "public, max-age=31536000, immutable"
	mediaCacheControl          = "public, max-age=86400"
)

// versionedMediaName matches the base name of a content-versioned media key.
var versionedMediaName = regexp.MustCompile(`-[0-9a-f]{12}\.[a-z0-9]+$`)

// mediaCacheControlFor is the Cache-Control of the media stored under key.
func mediaCacheControlFor(key string) string {
	if versionedMediaName.MatchString(path.Base(key)) {
		return mediaVersionedCacheControl
	}
	return mediaCacheControl
}

// serveMedia serves /media/{key...} from the blob store: product images and
// thumbnails. A content-versioned key is cached for a year as immutable;
// others for a day (see mediaCacheControlFor). The ETag and Last-Modified
// allow cheap revalidation and http.ServeContent answers conditional and
// range requests.
//
// A key that cannot name media (malformed, over-long, a directory, a path
// through a file) is a 404 like a missing one, logged at debug level only:
// clients choose keys, so they must not be able to raise errors. A real
// read failure is logged as an error without the file system path, and the
// client is only told that media is unavailable.
func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	const op = "storefront.media"
	if !allowRead(w, r) {
		return
	}
	key := r.PathValue("key")
	notFound := errs.E(op, errs.NotFound, errs.Msg("no such media"))
	if s.d.Blobs == nil || !validMediaKey(key) {
		errs.WriteProblem(w, r, notFound)
		return
	}
	obj, info, err := s.d.Blobs.Get(r.Context(), key)
	if err != nil {
		if errs.Is(errs.NotFound, err) || errs.Is(errs.BadRequest, err) || badMediaName(err) {
			s.log.Debug("media not found", "key", key, "err", logSafeError(err))
			errs.WriteProblem(w, r, notFound)
			return
		}
		if errors.Is(err, context.Canceled) {
			return // the client left
		}
		s.log.Error("media read failed", "key", key, "err", logSafeError(err))
		errs.WriteProblem(w, r, errs.E(op, errs.Unavailable, errs.Msg("media is unavailable right now")))
		return
	}
	defer obj.Close()
	if st, ok := obj.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := st.Stat(); err == nil && fi.IsDir() {
			errs.WriteProblem(w, r, notFound)
			return
		}
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", key, info.Size, info.ModTime.UnixNano()))
	h := w.Header()
	h.Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	h.Set("Cache-Control", mediaCacheControlFor(key))
	if info.ContentType != "" {
		h.Set("Content-Type", info.ContentType)
	}
	http.ServeContent(w, r, path.Base(key), info.ModTime, obj)
}

// allowRead answers anything but GET and HEAD with a 405 problem.
func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	writeMethodNotAllowed(w, r, []string{http.MethodGet, http.MethodHead})
	return false
}
