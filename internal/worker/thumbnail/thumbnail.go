// Package thumbnail is the worker that makes product thumbnails. It takes
// ThumbnailRequested jobs from the work-queue stream (each job goes to one
// worker instance), reads the original image (JPEG, PNG or WebP)
// from the blob store, writes JPEG thumbnails next to it and records their
// keys in the catalog. An original it can never make thumbnails of (not an
// image, too large, missing) is recorded in the catalog as the product's
// failed thumbnails, with the reason, and the job is acknowledged: it is
// never retried and never holds up the queue.
//
// A thumbnail's key carries the hash of its bytes (see Key), so that its URL
// may be cached forever: thumbnails rendered otherwise (other sizes, another
// quality, another resampler) get new keys, and the old ones stay readable.
package thumbnail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	_ "image/png" // registers PNG with image.Decode
	"io"
	"log/slog"
	"slices"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers WebP with image.Decode

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// ConsumerName is the durable bus consumer of the thumbnail jobs, which the
// worker's instances share: the one consumer of the job subject on the
// work-queue stream.
const ConsumerName = "thumbnail-jobs"

// Subjects are the job subjects the worker handles.
var Subjects = []string{catalog.SubjectThumbnailRequested}

// LegacyConsumerName is the durable consumer of ItemListed events on the
// events stream through which versions before the thumbnail jobs made
// thumbnails. A deployment upgraded from one still has it, with the items
// listed before the upgrade that got no thumbnails yet: the worker finishes
// those through it (bus.Retire), then it is deleted. Not to be reused.
const LegacyConsumerName = "thumbnail"

// LegacySubjects are the subjects of LegacyConsumerName.
var LegacySubjects = []string{catalog.SubjectItemListed}

// Size is a thumbnail size: the image is scaled to Max pixels wide, its
// height in proportion, and never enlarged (an original narrower than Max
// keeps its size). Max is the width the storefront announces in srcset.
type Size struct {
	Name string
	Max  int
}

// Sizes are the thumbnails made for every product, smallest first.
var Sizes = []Size{{"small", 160}, {"medium", 480}, {"large", 1024}}

// Quality is the JPEG quality of thumbnails unless WithQuality says otherwise.
const Quality = 85

// Limits on the originals the worker decodes, checked from the image's
// header before any pixel is decoded (a decompression bomb, a small file
// claiming a huge image, is refused without allocating its pixels).
const (
	MaxSourcePixels = 40_000_000 // 40 megapixels
	MaxSourceSide   = 10_000     // pixels, either side
)

// Catalog is what the worker needs of the catalog service.
type Catalog interface {
	SetThumbnails(ctx context.Context, id string, keys map[string]string) error
	SetThumbnailsFailed(ctx context.Context, id, reason string) error
}

// Worker makes thumbnails.
type Worker struct {
	blobs   blob.Store
	cat     Catalog
	log     *slog.Logger
	sizes   []Size
	quality int
}

// Option changes how a Worker renders thumbnails.
type Option func(*Worker)

// WithQuality sets the JPEG quality (1 to 100; out of range values are
// clamped); the default is Quality.
func WithQuality(q int) Option {
	return func(w *Worker) { w.quality = min(max(q, 1), 100) }
}

// WithSizes sets the thumbnails made, smallest first; the default is Sizes.
// An empty list keeps the default.
func WithSizes(sizes []Size) Option {
	return func(w *Worker) {
		if len(sizes) > 0 {
			w.sizes = slices.Clone(sizes)
		}
	}
}

// New returns a worker reading and writing images in blobs and recording
// thumbnails in cat. A nil log is slog.Default().
func New(blobs blob.Store, cat Catalog, log *slog.Logger, opts ...Option) *Worker {
	if log == nil {
		log = slog.Default()
	}
	w := &Worker{blobs: blobs, cat: cat, log: log, sizes: Sizes, quality: Quality}
	for _, o := range opts {
		o(w)
	}
	return w
}

// Key is the blob key of a product's thumbnail of the named size whose
// encoded JPEG is data: "products/<id>/thumb-<size>-<hash>.jpg", hash being
// catalog.ContentTag(data). Equal bytes give the same key, so a redelivered
// job writes the same keys; changed bytes give a new key. Thumbnails made
// before keys were versioned keep their "products/<id>/thumb-<size>.jpg".
func Key(productID, size string, data []byte) string {
	return "products/" + productID + "/thumb-" + size + "-" + catalog.ContentTag(data) + ".jpg"
}

// Handle makes the thumbnails of the product of a ThumbnailRequested job (or,
// from LegacyConsumerName, of an ItemListed event) and records them. It is
// idempotent. An original that can never make
// thumbnails (not an image, too large, missing, a bad key) marks the
// product's thumbnails as failed in the catalog with the reason, and the
// event is acknowledged (nil). An event naming no usable product (bad
// payload, bad id) or a product gone is logged and acknowledged. A failure
// that may pass (blob store or catalog unavailable) is returned, so that the
// event is redelivered.
func (w *Worker) Handle(ctx context.Context, ev bus.Event) error {
	var it catalog.ThumbnailRequested
	var err error
	switch ev.Type {
	case catalog.SubjectItemListed: // the legacy consumer's
		var l catalog.ItemListed
		err = ev.Decode(&l)
		it = catalog.ThumbnailRequested{ProductID: l.ProductID, ImageKey: l.ImageKey}
	default:
		err = ev.Decode(&it)
	}
	if err != nil {
		// It can never succeed: to the dead letters with the reason.
		return bus.Permanent(fmt.Errorf("thumbnail: undecodable %s: %w", ev.Type, err))
	}
	sizes, unknown := w.wanted(it.Sizes)
	log := w.log.With("event", ev.ID, "product", it.ProductID, "image", it.ImageKey)
	if len(unknown) > 0 {
		log.Warn("thumbnail: job asks for sizes the worker does not make; making the others", "unknown", unknown)
	}
	if len(sizes) == 0 {
		return bus.Permanent(fmt.Errorf("thumbnail: job %s asks for no size the worker makes (%v)", ev.ID, it.Sizes))
	}
	if it.ProductID == "" || !blob.ValidKey(Key(it.ProductID, "x", nil)) {
		log.Error("thumbnail: event without a usable product id dropped")
		return nil
	}
	if !blob.ValidKey(it.ImageKey) {
		return w.fail(ctx, log, it.ProductID, "the original image has an invalid key")
	}
	src, err := w.load(ctx, it.ImageKey)
	if err != nil {
		var u *unusableError
		if errors.As(err, &u) {
			return w.fail(ctx, log, it.ProductID, u.reason)
		}
		if errs.Is(errs.NotFound, err) {
			return w.fail(ctx, log, it.ProductID, "the original image is missing")
		}
		return err
	}
	keys := make(map[string]string, len(sizes))
	sb := src.Bounds()
	prev := src
	// Largest first, each smaller one scaled from the one before (much
	// cheaper than from a big original), to the size fitted to the original.
	for i := len(sizes) - 1; i >= 0; i-- {
		sz := sizes[i]
		tw, th := Fit(sb.Dx(), sb.Dy(), sz.Max, sb.Dy())
		thumb := scale(prev, tw, th)
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, thumb, &jpeg.Options{Quality: w.quality}); err != nil {
			return errs.E("thumbnail.Handle", err)
		}
		key := Key(it.ProductID, sz.Name, buf.Bytes())
		if err := w.putOnce(ctx, key, buf.Bytes()); err != nil {
			return errs.E("thumbnail.Handle", err)
		}
		keys[sz.Name] = key
		prev = thumb
	}
	if err := w.cat.SetThumbnails(ctx, it.ProductID, keys); err != nil {
		if errs.Is(errs.NotFound, err) || errs.Is(errs.Invalid, err) {
			log.Error("thumbnail: catalog refused the thumbnails", "err", err)
			return nil
		}
		return err
	}
	log.Info("thumbnails made", "sizes", len(keys))
	return nil
}

// wanted are the worker's sizes (smallest first) that a job's size names
// ask for, all of them when it names none, and the names it does not know.
func (w *Worker) wanted(names []string) (sizes []Size, unknown []string) {
	if len(names) == 0 {
		return w.sizes, nil
	}
	for _, sz := range w.sizes {
		if slices.Contains(names, sz.Name) {
			sizes = append(sizes, sz)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(w.sizes, func(sz Size) bool { return sz.Name == n }) {
			unknown = append(unknown, n)
		}
	}
	return sizes, unknown
}

// fail records in the catalog that the product's thumbnails cannot be made.
// Only a failure to record it that may pass is returned (the event is then
// redelivered, and the next attempt records it).
func (w *Worker) fail(ctx context.Context, log *slog.Logger, productID, reason string) error {
	log.Warn("thumbnail: no thumbnails can be made", "reason", reason)
	if err := w.cat.SetThumbnailsFailed(ctx, productID, reason); err != nil {
		if errs.Is(errs.NotFound, err) || errs.Is(errs.Invalid, err) {
			log.Error("thumbnail: catalog refused the failure", "err", err)
			return nil
		}
		return err
	}
	return nil
}

// putOnce stores data under its content-versioned key unless a blob of that
// size is already there: the key names the bytes, so a redelivered job leaves
// the stored thumbnail (and its Last-Modified and ETag) as it was. The blob
// stores write atomically, so a blob that is there is whole.
func (w *Worker) putOnce(ctx context.Context, key string, data []byte) error {
	if info, err := w.blobs.Stat(ctx, key); err == nil && info.Size == int64(len(data)) {
		return nil
	}
	return w.blobs.Put(ctx, key, bytes.NewReader(data))
}

// unusableError is an original that will never make a thumbnail; reason is
// recorded in the catalog.
type unusableError struct {
	reason string
	err    error // the decoder's error, if any
}

func (e *unusableError) Error() string {
	if e.err != nil {
		return e.reason + ": " + e.err.Error()
	}
	return e.reason
}

func (e *unusableError) Unwrap() error { return e.err }

// Check reads an image's header from r and reports, as an error whose text
// is the reason, why the worker would refuse it: not a JPEG, PNG or WebP
// image, or larger than MaxSourceSide a side or MaxSourcePixels in all. It
// decodes no pixels. It returns the image's format ("jpeg", "png", "webp"),
// or "" when it is not one of them or its header is damaged.
func Check(r io.Reader) (string, error) {
	cfg, format, err := image.DecodeConfig(r)
	if errors.Is(err, image.ErrFormat) {
		return "", &unusableError{reason: "not a JPEG, PNG or WebP image"}
	}
	if err != nil { // a known format's signature, then something wrong
		return "", &unusableError{reason: "the image is damaged", err: err}
	}
	switch {
	case cfg.Width < 1 || cfg.Height < 1:
		return format, &unusableError{reason: fmt.Sprintf("the %s image has no pixels (%dx%d)", format, cfg.Width, cfg.Height)}
	case cfg.Width > MaxSourceSide || cfg.Height > MaxSourceSide:
		return format, &unusableError{reason: fmt.Sprintf("the %s image is %dx%d pixels; at most %d a side are accepted",
			format, cfg.Width, cfg.Height, MaxSourceSide)}
	case int64(cfg.Width)*int64(cfg.Height) > MaxSourcePixels:
		return format, &unusableError{reason: fmt.Sprintf("the %s image is %dx%d pixels (%.1f megapixels); at most %d megapixels are accepted",
			format, cfg.Width, cfg.Height, float64(cfg.Width)*float64(cfg.Height)/1e6, MaxSourcePixels/1_000_000)}
	}
	return format, nil
}

// load reads and decodes an original image, after checking its header (see
// Check). An original that will never decode is an *unusableError.
func (w *Worker) load(ctx context.Context, key string) (image.Image, error) {
	const op = "thumbnail.load"
	obj, _, err := w.blobs.Get(ctx, key)
	if err != nil {
		return nil, errs.E(op, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, catalog.MaxImageBytes+1))
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, err)
	}
	if len(b) > catalog.MaxImageBytes {
		return nil, &unusableError{reason: fmt.Sprintf("the original image is larger than %d MB", catalog.MaxImageBytes>>20)}
	}
	format, err := Check(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, &unusableError{reason: "the " + format + " image is damaged", err: err}
	}
	return img, nil
}

// Fit returns the size of a w x h image scaled to fit a maxW x maxH box with
// its aspect ratio kept. Images already inside the box keep their size
// (thumbnails are never enlarged); no side becomes smaller than 1.
func Fit(w, h, maxW, maxH int) (int, int) {
	if w <= maxW && h <= maxH {
		return w, h
	}
	// compare w/maxW with h/maxH without floating point
	if int64(w)*int64(maxH) >= int64(h)*int64(maxW) {
		return maxW, max(1, int((int64(h)*int64(maxW)+int64(w)/2)/int64(w)))
	}
	return max(1, int((int64(w)*int64(maxH)+int64(h)/2)/int64(h))), maxH
}

// Resize scales src to fit a maxW x maxH box (see Fit) with Catmull-Rom
// resampling, over a white background so that transparent parts of a PNG
// come out white in a JPEG.
func Resize(src image.Image, maxW, maxH int) *image.RGBA {
	sb := src.Bounds()
	w, h := Fit(sb.Dx(), sb.Dy(), maxW, maxH)
	return scale(src, w, h)
}

// scale resamples src to exactly w x h over white.
func scale(src image.Image, w, h int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Over, nil)
	return dst
}
