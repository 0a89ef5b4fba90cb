package orderdb

import (
	"context"
	"slices"
	"time"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// RangeNodeTimeout is how long ListRange waits for each node.
const RangeNodeTimeout = 2 * time.Second

// nodeRange is one node's answer to ListRange.
type nodeRange struct {
	orders []order.Order
	counts map[string]int
}

// ListRange asks every node at once, each within RangeNodeTimeout, for its
// first q.Limit orders of q's range after q.After and its count of the
// range's orders by status, then merges the answers: the q.Limit newest of
// all the nodes' orders, and the sum of their counts. The shards of the
// nodes that failed or did not answer in time are named in MissingShards;
// only when no node answered does it fail, with errs.Unavailable.
func (s *Store) ListRange(ctx context.Context, q order.RangeQuery) (order.RangeResult, error) {
	const op = "orderdb.ListRange"
	if q.Limit <= 0 {
		q.Limit = 1
	}
	r, m := sqldb.Gather(ctx, s.sh, RangeNodeTimeout, func(ctx context.Context, db *sqldb.DB) ([]nodeRange, error) {
		nr, err := listRangeOn(ctx, db, q)
		if err != nil {
			return nil, sqldb.NodeError(err)
		}
		return []nodeRange{nr}, nil
	})
	if len(r.Items) == 0 && !r.Complete() {
		return order.RangeResult{}, errs.E(op, errs.Unavailable, errs.Msg("no shard answered"))
	}
	out := order.RangeResult{Orders: []order.Order{}, CountByStatus: map[string]int{}}
	for _, nr := range r.Items {
		out.Orders = append(out.Orders, nr.orders...)
		for st, n := range nr.counts {
			out.CountByStatus[st] += n
		}
	}
	slices.SortFunc(out.Orders, func(a, b order.Order) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		switch {
		case a.ID > b.ID:
			return -1
		case a.ID < b.ID:
			return 1
		}
		return 0
	})
	if len(out.Orders) > q.Limit {
		out.Orders = out.Orders[:q.Limit]
	}
	errOf := map[string]string{}
	for _, miss := range r.Missing {
		errOf[miss.Node] = miss.Err
	}
	for _, rg := range r.MissingRanges(m) {
		out.MissingShards = append(out.MissingShards, order.MissingShards{Lo: int(rg.Lo), Hi: int(rg.Hi), Error: errOf[rg.Node]})
	}
	return out, nil
}

// listRangeOn is one node's part of ListRange.
func listRangeOn(ctx context.Context, db *sqldb.DB, q order.RangeQuery) (nodeRange, error) {
	from, to := sqldb.Millis(q.From), sqldb.Millis(q.To)
	nr := nodeRange{counts: map[string]int{}}
	rows, err := db.QueryContext(ctx, `SELECT status, COUNT(*) FROM orders
		WHERE created_at >= ? AND created_at < ? AND status <> '`+statusTombstone+`' GROUP BY status`, from, to)
	if err != nil {
		return nr, err
	}
	for rows.Next() {
		var (
			st string
			n  int
		)
		if err := rows.Scan(&st, &n); err != nil {
			rows.Close()
			return nr, err
		}
		nr.counts[st] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nr, err
	}
	query, args := `SELECT `+orderColumns+` FROM orders WHERE created_at >= ? AND created_at < ? AND status <> '`+statusTombstone+`'`, []any{from, to}
	if q.After != nil {
		query += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, q.After.CreatedAtMillis, q.After.CreatedAtMillis, q.After.ID)
	}
	rows, err = db.QueryContext(ctx, query+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nr, err
	}
	var ids []string
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			rows.Close()
			return nr, err
		}
		nr.orders = append(nr.orders, o)
		ids = append(ids, o.ID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nr, err
	}
	if err := fillItems(ctx, db, nr.orders, ids); err != nil {
		return nr, err
	}
	return nr, nil
}
