package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

const paymentsUsage = `Usage:
  globomantics payments audit [--data-dir D | --dsn DSN | --shards MAP] [--json]

Audits the payment ledger: prints the totals (authorized, captured, voided,
refunded, held, net captured, declined) and every payment whose ledger breaks
the rules, and exits non-zero when there is one. It only reads: a database not
yet migrated to the ledger is reported, not changed.

The payment database is the one the shop would use: --dsn (a PostgreSQL URL or
a SQLite file), --shards (the payment service's shard map), or --data-dir (the
SQLite file <data-dir>/payment.db); without any of them, GLOBO_SHARDS_PAYMENT,
GLOBO_DB_PAYMENT or GLOBO_DATA_DIR, as "globomantics serve" reads them.

Flags:
`

// errViolations is what paymentsMain returns, after printing them, when the
// audit finds violations: the process exits non-zero.
var errViolations = errors.New("the payment ledger has violations")

// paymentsMain runs "globomantics payments audit": it audits the payment
// ledger of the database the shop's configuration (the environment, then
// the flags) names, prints the totals and violations to stdout as a table
// (or JSON with --json), and returns an error when the audit found
// violations or could not run. It opens the database without migrating it.
func paymentsMain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "audit" {
		fmt.Fprint(stderr, paymentsUsage)
		if len(args) == 0 {
			return errors.New("payments: missing command (known: audit)")
		}
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			return nil
		}
		return fmt.Errorf("payments: unknown command %q (known: audit)", args[0])
	}
	fs := flag.NewFlagSet("payments audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, paymentsUsage); fs.PrintDefaults() }
	dataDir := fs.String("data-dir", "", "`directory` whose payment.db to audit (default GLOBO_DATA_DIR, else ./data)")
	dsn := fs.String("dsn", "", "`DSN` of the payment database: postgres://... or a SQLite file (default GLOBO_DB_PAYMENT)")
	shards := fs.String("shards", "", "shard `map` of the payment service, \"0-511=<dsn>;512-1023=<dsn>\" (default GLOBO_SHARDS_PAYMENT)")
	asJSON := fs.Bool("json", false, "print the audit as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("payments audit: unexpected argument %q", fs.Arg(0))
	}
	set := 0
	for _, v := range []string{*dataDir, *dsn, *shards} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return errors.New("payments audit: give at most one of --data-dir, --dsn and --shards")
	}

	// The environment's configuration, as serve reads it, unless a flag
	// names the database.
	var spec, target string
	switch {
	case *shards != "":
		spec, target = *shards, "the payment shard nodes"
	case *dsn != "":
		target = *dsn
	case *dataDir != "":
		target = config.Config{DataDir: *dataDir}.DatabaseFor(config.Payment)
	default:
		cfg, err := config.Load(nil, getenv, io.Discard)
		if err != nil {
			return fmt.Errorf("payments audit: configuration: %w", err)
		}
		if s := cfg.Shards[config.Payment]; s != "" {
			spec, target = s, "the payment shard nodes (GLOBO_SHARDS_PAYMENT)"
		} else {
			target = cfg.DatabaseFor(config.Payment)
		}
	}

	sh, closeDB, err := openPaymentDB(ctx, spec, target)
	if err != nil {
		return fmt.Errorf("payments audit: %w", err)
	}
	defer closeDB()
	a, err := paymentdb.Audit(ctx, sh)
	if err != nil {
		return fmt.Errorf("payments audit of %s: %s", redactDSN(target), errMessage(err))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(a); err != nil {
			return err
		}
	} else {
		printAudit(stdout, redactDSN(target), a)
	}
	if !a.OK() {
		return fmt.Errorf("%w: %d", errViolations, len(a.Violations))
	}
	return nil
}

// openPaymentDB opens the payment database read as the shop would: the
// nodes of shard map spec (following the map stored in them), or the one
// database dsn, which, when a SQLite file, must exist. It returns the
// database and how to close it.
func openPaymentDB(ctx context.Context, spec, dsn string) (*sqldb.Sharded, func() error, error) {
	if spec != "" {
		sh, err := sqldb.OpenSharded(ctx, spec, sqldb.Options{Source: config.Payment})
		if err != nil {
			return nil, nil, errors.New(errMessage(err))
		}
		// Shards may have moved since the map was configured.
		if _, err := sh.Refresh(ctx); err != nil {
			sh.Close()
			return nil, nil, fmt.Errorf("reading the stored shard map: %s", errMessage(err))
		}
		return sh, sh.Close, nil
	}
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		path := strings.TrimPrefix(dsn, "sqlite:")
		if _, err := os.Stat(path); err != nil {
			return nil, nil, fmt.Errorf("no payment database at %s", path)
		}
	}
	db, err := sqldb.OpenWith(ctx, dsn, sqldb.Options{Source: config.Payment})
	if err != nil {
		return nil, nil, fmt.Errorf("payment database %s: %s", redactDSN(dsn), errMessage(err))
	}
	return sqldb.Single(db), db.Close, nil
}

// errMessage is err's message for an operator: its detail when it has one.
func errMessage(err error) string {
	if d := errs.Detail(err); d != "" {
		return d
	}
	return err.Error()
}

// printAudit writes a as a table for people.
func printAudit(w io.Writer, target string, a payment.Audit) {
	usd := func(cents int64) string { return money.Money{Amount: cents, Currency: a.Currency}.String() }
	fmt.Fprintf(w, "Payment ledger audit of %s (amounts in %s)\n\n", target, a.Currency)
	rows := [][2]string{
		{"payments", fmt.Sprint(a.Payments)},
		{"of which cancelled", fmt.Sprint(a.Cancelled)},
		{"ledger entries", fmt.Sprint(a.Entries)},
		{"authorized", usd(a.Authorized)},
		{"captured", usd(a.Captured)},
		{"voided", usd(a.Voided)},
		{"refunded", usd(a.Refunded)},
		{"net captured", usd(a.NetCaptured)},
		{"held", usd(a.Held)},
		{"declined", fmt.Sprint(a.Declined)},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-20s %16s\n", r[0], r[1])
	}
	fmt.Fprintln(w)
	if a.OK() {
		fmt.Fprintln(w, "Violations: none")
		return
	}
	fmt.Fprintf(w, "Violations: %d\n", len(a.Violations))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PAYMENT\tORDER\tSTATUS\tLEDGER\tAUTHORIZED\tCAPTURED\tVOIDED\tREFUNDED\tPROBLEMS")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, v := range a.Violations {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.PaymentID, v.OrderID, dash(v.Status), dash(v.LedgerStatus),
			usd(v.Authorized), usd(v.Captured), usd(v.Voided), usd(v.Refunded), strings.Join(v.Problems, "; "))
	}
	tw.Flush()
}
