package storefront

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
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
	h.Set("X-Content-Type-Options", "nosniff")
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

// serveMedia serves /media/{key...} from the blob store: product images and
// thumbnails. Blob keys never change content, but a day's lifetime leaves
// room for a re-upload; the ETag and Last-Modified allow cheap revalidation
// and http.ServeContent answers conditional and range requests.
func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	if !allowRead(w, r) {
		return
	}
	key := r.PathValue("key")
	notFound := errs.E("storefront.media", errs.NotFound, errs.Msg("no such media"))
	if s.d.Blobs == nil || !blob.ValidKey(key) {
		errs.WriteProblem(w, r, notFound)
		return
	}
	obj, info, err := s.d.Blobs.Get(r.Context(), key)
	if err != nil {
		if errs.Is(errs.NotFound, err) || errs.Is(errs.BadRequest, err) {
			errs.WriteProblem(w, r, notFound)
			return
		}
		s.log.Error("media read failed", "key", key, "err", err)
		errs.WriteProblem(w, r, errs.E("storefront.media", errs.Unavailable, errs.Msg("media is unavailable right now"), err))
		return
	}
	defer obj.Close()
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", key, info.Size, info.ModTime.UnixNano()))
	h := w.Header()
	h.Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	h.Set("Cache-Control", "public, max-age=86400")
	h.Set("X-Content-Type-Options", "nosniff")
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
