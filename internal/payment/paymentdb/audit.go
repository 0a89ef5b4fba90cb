package paymentdb

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// auditPerNode bounds each node's part of an audit.
const auditPerNode = 2 * time.Minute

// Audit checks the ledger of every node, computed by SQL on each node and
// summed (see payment.Audit): totals over the entries in money.Currency,
// and the payments whose ledger breaks a rule. Each node is read in one
// snapshot on PostgreSQL. errs.Unavailable, with no totals, when a node
// does not answer: an audit of part of the shop would look like lost money.
func (s *Store) Audit(ctx context.Context) (payment.Audit, error) {
	return Audit(ctx, s.sh)
}

// Audit is Store.Audit over the nodes of sh without opening a Store: it
// only reads, and applies no migrations, so an operator may run it beside
// the shop. errs.NotFound when a node has no ledger yet (its database was
// never opened by a version of the shop that has one).
func Audit(ctx context.Context, sh *sqldb.Sharded) (payment.Audit, error) {
	const op = "paymentdb.Audit"
	r, m := sqldb.Gather(ctx, sh, auditPerNode, func(ctx context.Context, db *sqldb.DB) ([]payment.Audit, error) {
		a, err := auditNode(ctx, db)
		if err != nil {
			return nil, err
		}
		return []payment.Audit{a}, nil
	})
	if !r.Complete() {
		for _, miss := range r.Missing {
			if strings.Contains(miss.Err, "payment_ledger") && (strings.Contains(miss.Err, "no such table") || strings.Contains(miss.Err, "does not exist")) {
				return payment.Audit{}, errs.E(op, errs.NotFound, errs.Msg("the payment database has no ledger yet: start the shop once to migrate it"),
					fmt.Errorf("%s", miss.Err))
			}
		}
		var ranges []string
		for _, rg := range r.MissingRanges(m) {
			ranges = append(ranges, fmt.Sprintf("%d-%d", rg.Lo, rg.Hi))
		}
		return payment.Audit{}, errs.E(op, errs.Unavailable,
			errs.Msg("audit incomplete: the nodes of shards %s did not answer", strings.Join(ranges, ",")),
			fmt.Errorf("%s", r.Missing[0].Err))
	}
	total := payment.Audit{Currency: money.Currency, Violations: []payment.Violation{}}
	for _, a := range r.Items {
		total.Authorized += a.Authorized
		total.Captured += a.Captured
		total.Voided += a.Voided
		total.Refunded += a.Refunded
		total.Declined += a.Declined
		total.Held += a.Held
		total.Payments += a.Payments
		total.Cancelled += a.Cancelled
		total.Entries += a.Entries
		total.Violations = append(total.Violations, a.Violations...)
	}
	total.NetCaptured = total.Captured - total.Refunded
	sort.Slice(total.Violations, func(i, j int) bool { return total.Violations[i].PaymentID < total.Violations[j].PaymentID })
	return total, nil
}

// auditNode audits one node, in one snapshot on PostgreSQL. SQLite reads
// outside a transaction, whose write lock would stall checkouts.
func auditNode(ctx context.Context, db *sqldb.DB) (payment.Audit, error) {
	if db.Dialect != sqldb.Postgres {
		return auditQueries(ctx, db)
	}
	var a payment.Audit
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`); err != nil {
			return err
		}
		var err error
		a, err = auditQueries(ctx, tx)
		return err
	})
	return a, sqldb.NodeError(err)
}

const (
	totalsQuery = `SELECT
	CAST(COALESCE(SUM(CASE WHEN kind = 'authorization' THEN amount ELSE 0 END), 0) AS BIGINT),
	CAST(COALESCE(SUM(CASE WHEN kind = 'capture' THEN amount ELSE 0 END), 0) AS BIGINT),
	CAST(COALESCE(SUM(CASE WHEN kind = 'void' THEN amount ELSE 0 END), 0) AS BIGINT),
	CAST(COALESCE(SUM(CASE WHEN kind = 'refund' THEN amount ELSE 0 END), 0) AS BIGINT),
	COUNT(CASE WHEN kind = 'decline' THEN 1 END)
FROM payment_ledger WHERE currency = ?`

	heldQuery = `SELECT CAST(COALESCE(SUM(CASE l.kind
		WHEN 'authorization' THEN l.amount
		WHEN 'capture' THEN -l.amount
		WHEN 'void' THEN -l.amount
		ELSE 0 END), 0) AS BIGINT)
FROM payments p JOIN payment_ledger l ON l.payment_id = p.id
WHERE p.status = 'authorized' AND l.currency = ?`

	countsQuery = `SELECT
	(SELECT COUNT(*) FROM payments),
	(SELECT COUNT(*) FROM payments WHERE status = 'voided' AND amount = 0 AND card_last4 = ''),
	(SELECT COUNT(*) FROM payment_ledger)`

	// violationsQuery sums each payment's ledger, derives the status the
	// ledger implies (a payment has at most one entry of a kind) and keeps
	// the payments that break a rule. A payment with no entries is sound
	// only as a cancellation (voided, amount 0, no card).
	violationsQuery = `SELECT id, order_id, status, ledger_status, na, a, c, v, r, amount, foreign_rows FROM (
	SELECT agg.*, CASE
		WHEN na + nc + nv + nr + nd = 0 THEN
			CASE WHEN amount = 0 AND card_last4 = '' THEN 'voided' ELSE 'none' END
		WHEN nd = 1 AND na + nc + nv + nr = 0 THEN 'declined'
		WHEN na = 1 AND nc = 0 AND nv = 0 AND nr = 0 AND nd = 0 THEN 'authorized'
		WHEN na = 1 AND nc = 1 AND nv = 0 AND nr = 0 AND nd = 0 THEN 'captured'
		WHEN na = 1 AND nc = 1 AND nv = 0 AND nr = 1 AND nd = 0 THEN 'refunded'
		WHEN na = 1 AND nc = 0 AND nv = 1 AND nr = 0 AND nd = 0 THEN 'voided'
		ELSE 'inconsistent' END AS ledger_status
	FROM (
		SELECT p.id, p.order_id, p.status, p.amount, p.card_last4,
			COUNT(CASE WHEN l.kind = 'authorization' THEN 1 END) AS na,
			COUNT(CASE WHEN l.kind = 'capture' THEN 1 END) AS nc,
			COUNT(CASE WHEN l.kind = 'void' THEN 1 END) AS nv,
			COUNT(CASE WHEN l.kind = 'refund' THEN 1 END) AS nr,
			COUNT(CASE WHEN l.kind = 'decline' THEN 1 END) AS nd,
			CAST(COALESCE(SUM(CASE WHEN l.kind = 'authorization' THEN l.amount ELSE 0 END), 0) AS BIGINT) AS a,
			CAST(COALESCE(SUM(CASE WHEN l.kind = 'capture' THEN l.amount ELSE 0 END), 0) AS BIGINT) AS c,
			CAST(COALESCE(SUM(CASE WHEN l.kind = 'void' THEN l.amount ELSE 0 END), 0) AS BIGINT) AS v,
			CAST(COALESCE(SUM(CASE WHEN l.kind = 'refund' THEN l.amount ELSE 0 END), 0) AS BIGINT) AS r,
			COUNT(CASE WHEN l.order_id <> p.order_id OR l.currency <> p.currency THEN 1 END) AS foreign_rows
		FROM payments p LEFT JOIN payment_ledger l ON l.payment_id = p.id
		GROUP BY p.id, p.order_id, p.status, p.amount, p.card_last4
	) agg
) x
WHERE ledger_status <> status OR c > a OR c + v > a OR r > c OR (na = 1 AND a <> amount) OR foreign_rows > 0`

	orphansQuery = `SELECT l.payment_id, MIN(l.order_id),
	CAST(COALESCE(SUM(CASE WHEN l.kind = 'authorization' THEN l.amount ELSE 0 END), 0) AS BIGINT),
	CAST(COALESCE(SUM(CASE WHEN l.kind = 'capture' THEN l.amount ELSE 0 END), 0) AS BIGINT),
	CAST(COALESCE(SUM(CASE WHEN l.kind = 'void' THEN l.amount ELSE 0 END), 0) AS BIGINT),
	CAST(COALESCE(SUM(CASE WHEN l.kind = 'refund' THEN l.amount ELSE 0 END), 0) AS BIGINT)
FROM payment_ledger l LEFT JOIN payments p ON p.id = l.payment_id
WHERE p.id IS NULL
GROUP BY l.payment_id`
)

// auditQueries runs the audit's queries on one node.
func auditQueries(ctx context.Context, q sqldb.Querier) (payment.Audit, error) {
	var a payment.Audit
	err := q.QueryRowContext(ctx, totalsQuery, money.Currency).Scan(&a.Authorized, &a.Captured, &a.Voided, &a.Refunded, &a.Declined)
	if err != nil {
		return a, err
	}
	if err := q.QueryRowContext(ctx, heldQuery, money.Currency).Scan(&a.Held); err != nil {
		return a, err
	}
	if err := q.QueryRowContext(ctx, countsQuery).Scan(&a.Payments, &a.Cancelled, &a.Entries); err != nil {
		return a, err
	}

	rows, err := q.QueryContext(ctx, violationsQuery)
	if err != nil {
		return a, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			v                 payment.Violation
			na, amount, alien int64
		)
		if err := rows.Scan(&v.PaymentID, &v.OrderID, &v.Status, &v.LedgerStatus, &na,
			&v.Authorized, &v.Captured, &v.Voided, &v.Refunded, &amount, &alien); err != nil {
			return a, err
		}
		switch {
		case v.LedgerStatus == v.Status:
		case v.LedgerStatus == "none":
			v.Problems = append(v.Problems, fmt.Sprintf("status %s but the ledger has no entries", v.Status))
		case v.LedgerStatus == "inconsistent":
			v.Problems = append(v.Problems, fmt.Sprintf("status %s but the ledger's entries are no valid history", v.Status))
		default:
			v.Problems = append(v.Problems, fmt.Sprintf("status %s but the ledger says %s", v.Status, v.LedgerStatus))
		}
		if v.Captured > v.Authorized {
			v.Problems = append(v.Problems, "captured exceeds authorized")
		}
		if v.Captured+v.Voided > v.Authorized {
			v.Problems = append(v.Problems, "captured plus voided exceeds authorized")
		}
		if v.Refunded > v.Captured {
			v.Problems = append(v.Problems, "refunded exceeds captured")
		}
		if na == 1 && v.Authorized != amount {
			v.Problems = append(v.Problems, fmt.Sprintf("authorized %d but the payment is of %d", v.Authorized, amount))
		}
		if alien > 0 {
			v.Problems = append(v.Problems, "ledger entries of another order or currency")
		}
		a.Violations = append(a.Violations, v)
	}
	if err := rows.Err(); err != nil {
		return a, err
	}
	rows.Close()

	orphans, err := q.QueryContext(ctx, orphansQuery)
	if err != nil {
		return a, err
	}
	defer orphans.Close()
	for orphans.Next() {
		var v payment.Violation
		if err := orphans.Scan(&v.PaymentID, &v.OrderID, &v.Authorized, &v.Captured, &v.Voided, &v.Refunded); err != nil {
			return a, err
		}
		v.Problems = []string{"ledger entries without a payment"}
		a.Violations = append(a.Violations, v)
	}
	return a, orphans.Err()
}
