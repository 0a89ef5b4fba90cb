package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/partner/partnerdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

const partnersUsage = `Usage:
  globomantics partners create --name NAME [--webhook-url URL] [--data-dir D | --dsn DSN]
  globomantics partners list [--data-dir D | --dsn DSN]

Manages the partners of the partner API (Authorization: Bearer <key>).

  create   makes a partner and prints its API key alone on the last line:
           the only time it is shown (the shop keeps only its SHA-256). With
           --webhook-url the partner's webhooks go there, and the secret
           they are signed with is printed (once) on an earlier line; the
           partner may also set its URL (and get a new secret) with PUT
           /api/v1/partner/webhook.
  list     one line per partner: id, name, webhook URL, created

The partner database is the one the shop would use: --dsn (a PostgreSQL URL
or a SQLite file) or --data-dir (the SQLite file <data-dir>/partner.db);
without either, GLOBO_DB_PARTNER or GLOBO_DATA_DIR, as "globomantics serve"
reads them. It is migrated if needed.

Flags:
`

// partnersMain runs "globomantics partners create|list" on the partner
// database the configuration names (the environment, then the flags).
func partnersMain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "create" && args[0] != "list") {
		fmt.Fprint(stderr, partnersUsage)
		if len(args) == 0 {
			return errors.New("partners: missing command (known: create, list)")
		}
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			return nil
		}
		return fmt.Errorf("partners: unknown command %q (known: create, list)", args[0])
	}
	cmd := args[0]
	fs := flag.NewFlagSet("partners "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, partnersUsage); fs.PrintDefaults() }
	dataDir := fs.String("data-dir", "", "`directory` whose partner.db to use (default GLOBO_DATA_DIR, else ./data)")
	dsn := fs.String("dsn", "", "`DSN` of the partner database: postgres://... or a SQLite file (default GLOBO_DB_PARTNER)")
	var name, webhookURL string
	if cmd == "create" {
		fs.StringVar(&name, "name", "", "the partner's `name` (required)")
		fs.StringVar(&webhookURL, "webhook-url", "", "`URL` the partner's webhooks are POSTed to")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("partners %s: unexpected argument %q", cmd, fs.Arg(0))
	}
	if *dataDir != "" && *dsn != "" {
		return errors.New("partners: give at most one of --data-dir and --dsn")
	}
	if cmd == "create" && name == "" {
		fs.Usage()
		return errors.New("partners create: --name is required")
	}
	target := *dsn
	switch {
	case target != "":
	case *dataDir != "":
		target = config.Config{DataDir: *dataDir}.DatabaseFor(config.Partner)
	default:
		cfg, err := config.Load(nil, getenv, io.Discard)
		if err != nil {
			return fmt.Errorf("partners: configuration: %w", err)
		}
		target = cfg.DatabaseFor(config.Partner)
	}
	db, err := sqldb.OpenWith(ctx, target, sqldb.Options{Source: config.Partner})
	if err != nil {
		return fmt.Errorf("partners: partner database %s: %s", redactDSN(target), errMessage(err))
	}
	defer db.Close()
	store, err := partnerdb.Open(ctx, db)
	if err != nil {
		return fmt.Errorf("partners: partner database %s: %s", redactDSN(target), errMessage(err))
	}
	// Creating and listing partners needs neither the catalog nor the
	// broker: the service is used without them.
	svc := partner.NewService(store, nil, nil, clock.Real{})
	switch cmd {
	case "create":
		c, err := svc.Create(ctx, name, webhookURL)
		if err != nil {
			return fmt.Errorf("partners create: %s", errMessage(err))
		}
		fmt.Fprintf(stdout, "partner %s (%s) created\n", c.Partner.ID, c.Partner.Name)
		if c.WebhookSecret != "" {
			fmt.Fprintf(stdout, "webhook URL %s, signing secret (shown only now): %s\n", c.Partner.WebhookURL, c.WebhookSecret)
		}
		fmt.Fprintln(stdout, "its API key, shown only now, is the next line:")
		fmt.Fprintln(stdout, c.Key)
		return nil
	default:
		ps, err := svc.List(ctx)
		if err != nil {
			return fmt.Errorf("partners list: %s", errMessage(err))
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tWEBHOOK URL\tCREATED")
		for _, p := range ps {
			u := p.WebhookURL
			if u == "" {
				u = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, p.Name, u, p.CreatedAt.Format("2006-01-02 15:04:05Z07:00"))
		}
		return tw.Flush()
	}
}
