package catalogdb

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// SetThumbnailsFailed records that the product's thumbnails cannot be made,
// with the reason, at now (a repeat replaces both); errs.NotFound.
func (s *Store) SetThumbnailsFailed(ctx context.Context, id, reason string, now time.Time) error {
	const op = "catalogdb.SetThumbnailsFailed"
	res, err := s.db.ExecContext(ctx, `UPDATE products SET thumbnails_error = ?, thumbnails_failed_at = ? WHERE id = ?`,
		reason, sqldb.Millis(now), id)
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	if n == 0 {
		return errs.E(op, errs.NotFound, errs.Msg("no such product"))
	}
	return nil
}

// ThumbnailFailure returns the recorded failure, read from the primary (the
// worker's write is seen at once), or a zero one when none was recorded or
// the product has thumbnails (made after the failure); errs.NotFound.
func (s *Store) ThumbnailFailure(ctx context.Context, id string) (catalog.ThumbnailFailure, error) {
	const op = "catalogdb.ThumbnailFailure"
	var (
		f      catalog.ThumbnailFailure
		thumbs string
		at     sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `SELECT thumbnails, thumbnails_error, thumbnails_failed_at FROM products WHERE id = ?`, id).
		Scan(&thumbs, &f.Reason, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return f, errs.E(op, errs.NotFound, errs.Msg("no such product"), err)
	}
	if err != nil {
		return f, errs.E(op, sqldb.NodeError(err))
	}
	if f.Reason == "" || (thumbs != "" && thumbs != "{}") {
		return catalog.ThumbnailFailure{}, nil
	}
	if at.Valid {
		f.At = sqldb.FromMillis(at.Int64)
	}
	return f, nil
}
