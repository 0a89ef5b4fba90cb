// Package thumbnail is the worker that makes product thumbnails. It consumes
// catalog ItemListed events, reads the original image from the blob store,
// writes JPEG thumbnails next to it and records their keys in the catalog.
//
// A thumbnail's key carries the hash of its bytes (see Key), so that its URL
// may be cached forever: thumbnails rendered otherwise (other sizes, another
// quality, another resampler) get new keys, and the old ones stay readable.
package thumbnail

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	_ "image/png" // registers PNG with image.Decode
	"io"
	"log/slog"
	"slices"

	"golang.org/x/image/draw"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// ConsumerName is the durable bus consumer the worker's instances share.
const ConsumerName = "thumbnail"

// Subjects are the event subjects the worker handles.
var Subjects = []string{catalog.SubjectItemListed}

// Size is a thumbnail size: the image is fitted into a Max x Max box.
type Size struct {
	Name string
	Max  int
}

// Sizes are the thumbnails made for every product, smallest first.
var Sizes = []Size{{"small", 160}, {"medium", 480}}

// Quality is the JPEG quality of thumbnails unless WithQuality says otherwise.
const Quality = 85

// MaxSourcePixels bounds the originals the worker decodes (the catalog
// accepts at most 4000x4000); anything larger is rejected without decoding.
const MaxSourcePixels = 4000 * 4000

// Catalog is what the worker needs of the catalog service.
type Catalog interface {
	SetThumbnails(ctx context.Context, id string, keys map[string]string) error
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

// Handle makes the thumbnails of the product in a catalog ItemListed event
// and records them. It is idempotent. An event it can never handle (bad
// payload, missing original, undecodable image, product gone) is logged and
// acknowledged (nil); a failure that may pass (blob store or catalog
// unavailable) is returned, so that the event is redelivered.
func (w *Worker) Handle(ctx context.Context, ev bus.Event) error {
	var it catalog.ItemListed
	if err := ev.Decode(&it); err != nil {
		w.log.Error("thumbnail: undecodable event dropped", "event", ev.ID, "err", err)
		return nil
	}
	log := w.log.With("event", ev.ID, "product", it.ProductID, "image", it.ImageKey)
	if it.ProductID == "" || !blob.ValidKey(it.ImageKey) || !blob.ValidKey(Key(it.ProductID, "x", nil)) {
		log.Error("thumbnail: event without a usable product id or image key dropped")
		return nil
	}
	src, err := w.load(ctx, it.ImageKey)
	if err != nil {
		if permanent(err) {
			log.Error("thumbnail: original image unusable, no thumbnails made", "err", err)
			return nil
		}
		return err
	}
	keys := make(map[string]string, len(w.sizes))
	sb := src.Bounds()
	prev := src
	// Largest first, each smaller one scaled from the one before (much
	// cheaper than from a big original), to the size fitted to the original.
	for i := len(w.sizes) - 1; i >= 0; i-- {
		sz := w.sizes[i]
		tw, th := Fit(sb.Dx(), sb.Dy(), sz.Max, sz.Max)
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

// errUnusable marks an original that will never make a thumbnail.
var errUnusable = errors.New("unusable image")

func permanent(err error) bool {
	return errors.Is(err, errUnusable) || errs.Is(errs.NotFound, err) || errs.Is(errs.BadRequest, err)
}

// load reads and decodes an original image.
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
		return nil, errs.E(op, errUnusable)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, errs.E(op, errors.Join(errUnusable, err))
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width*cfg.Height > MaxSourcePixels {
		return nil, errs.E(op, errUnusable)
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, errs.E(op, errors.Join(errUnusable, err))
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
