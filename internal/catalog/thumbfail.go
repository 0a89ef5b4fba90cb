package catalog

import (
	"context"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// ThumbnailFailure says why a product's thumbnails can never be made (its
// original is not an image, or is too large to decode), as the thumbnail
// worker recorded it. A zero ThumbnailFailure (Reason "") means none.
type ThumbnailFailure struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at,omitzero"`
}

// MaxThumbnailFailureReason bounds the recorded reason, in bytes; a longer
// one is cut.
const MaxThumbnailFailureReason = 500

// SetThumbnailsFailed records that the product's thumbnails cannot be made,
// with the reason, at the service clock's now; a repeat replaces the reason.
// The reason is trimmed, stripped of control characters and cut to
// MaxThumbnailFailureReason bytes. errs.Invalid for an empty reason;
// errs.NotFound for an unknown product.
func (s *Service) SetThumbnailsFailed(ctx context.Context, id, reason string) error {
	const op = "catalog.SetThumbnailsFailed"
	if strings.TrimSpace(id) == "" {
		return errs.E(op, errs.NotFound, errs.Msg("no such product"))
	}
	reason = cleanReason(reason)
	if reason == "" {
		return errs.E(op, errs.Invalid, errs.Msg("a reason is required"))
	}
	if err := s.store.SetThumbnailsFailed(ctx, id, reason, s.clk.Now()); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// ThumbnailFailure returns the failure SetThumbnailsFailed recorded for the
// product, or a zero one when there is none or the product has thumbnails.
// errs.NotFound for an unknown product.
func (s *Service) ThumbnailFailure(ctx context.Context, id string) (ThumbnailFailure, error) {
	const op = "catalog.ThumbnailFailure"
	if strings.TrimSpace(id) == "" {
		return ThumbnailFailure{}, errs.E(op, errs.NotFound, errs.Msg("no such product"))
	}
	f, err := s.store.ThumbnailFailure(ctx, id)
	if err != nil {
		return ThumbnailFailure{}, errs.E(op, err)
	}
	return f, nil
}

// cleanReason trims reason, replaces invalid UTF-8 and control characters
// with spaces and cuts it to MaxThumbnailFailureReason bytes on a rune
// boundary.
func cleanReason(reason string) string {
	reason = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(reason, " "))
	reason = strings.TrimSpace(reason)
	if len(reason) > MaxThumbnailFailureReason {
		cut := MaxThumbnailFailureReason
		for cut > 0 && !utf8RuneStart(reason[cut]) {
			cut--
		}
		reason = strings.TrimSpace(reason[:cut])
	}
	return reason
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

func (h *handler) setThumbnailsFailed(w http.ResponseWriter, r *http.Request) error {
	var body ThumbnailFailure
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	if err := h.api.SetThumbnailsFailed(r.Context(), r.PathValue("id"), body.Reason); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) thumbnailFailure(w http.ResponseWriter, r *http.Request) error {
	f, err := h.api.ThumbnailFailure(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, f)
	return nil
}

// SetThumbnailsFailed marks the product's thumbnails as failed with the
// reason, by an idempotent PUT.
func (c *Client) SetThumbnailsFailed(ctx context.Context, id, reason string) error {
	return c.c.Call(ctx, http.MethodPut, httpx.Path(productsPath, seg(id), "thumbnails", "failure"), ThumbnailFailure{Reason: reason}, nil)
}

// ThumbnailFailure returns the product's recorded thumbnail failure, zero
// when there is none.
func (c *Client) ThumbnailFailure(ctx context.Context, id string) (ThumbnailFailure, error) {
	var out ThumbnailFailure
	err := c.c.Call(ctx, http.MethodGet, httpx.Path(productsPath, seg(id), "thumbnails", "failure"), nil, &out)
	return out, err
}
