package reshard

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Main runs "globomantics shards move": args are the words after the
// program's name ("shards move --service order --shards 0-99 --to DSN
// [--from DSN] [--map SPEC] [--tables a,b]"), with or without the leading
// "shards" and "move". It prints the report to stdout and one log line per
// step to stderr; it never prints a DSN. The current map is --map, or the
// one stored in the nodes (the higher version wins); without --from the
// source is the node holding the first shard of the range. The
// destination must hold the service's schema: start the service once on a
// map naming it, or run its migrations there.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return MainWith(ctx, args, stdout, stderr, nil)
}

// Schema creates or upgrades a sharded service's tables on one node (its
// store's migrations).
type Schema func(ctx context.Context, db *sqldb.DB) error

// MainWith is Main that first brings the destination's schema up to date
// with schemas[service], when given: a new node needs no preparation.
func MainWith(ctx context.Context, args []string, stdout, stderr io.Writer, schemas map[string]Schema) error {
	const op = "reshard.Main"
	if len(args) > 0 && args[0] == "shards" {
		args = args[1:]
	}
	if len(args) == 0 || args[0] != "move" {
		fmt.Fprintln(stderr, "usage: globomantics shards move --service NAME --shards LO-HI --to DSN [--from DSN] [--map SPEC] [--tables T1,T2]")
		return errs.E(op, errs.BadRequest, errs.Msg("unknown or missing shards command; want move"))
	}
	fs := flag.NewFlagSet("shards move", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o       Options
		shards  string
		tables  string
		catchUp time.Duration
	)
	fs.StringVar(&o.Service, "service", "", "the sharded service (order, payment, checkout, cart, account)")
	fs.StringVar(&shards, "shards", "", "the logical shards to move, lo-hi or n")
	fs.StringVar(&o.To, "to", "", "the destination node's DSN, as the new map will name it")
	fs.StringVar(&o.From, "from", "", "the source node's DSN (default: the node of the first shard)")
	fs.StringVar(&o.Map, "map", "", "the current shard map (default: the one stored in the nodes)")
	fs.StringVar(&tables, "tables", "", "comma-separated sharded tables (default: every table with a shard column)")
	fs.DurationVar(&catchUp, "catchup-timeout", 30*time.Second, "how long the fenced catch-up may take before the move is abandoned")
	if err := fs.Parse(args[1:]); err != nil {
		return errs.E(op, errs.BadRequest, err)
	}
	lo, hi, err := parseShards(shards)
	if err != nil {
		return errs.E(op, err)
	}
	o.Lo, o.Hi, o.CatchUpTimeout = lo, hi, catchUp
	if tables != "" {
		for _, t := range strings.Split(tables, ",") {
			if t = strings.TrimSpace(t); t != "" {
				o.Tables = append(o.Tables, t)
			}
		}
	}
	if o.Service == "" || o.To == "" {
		return errs.E(op, errs.BadRequest, errs.Msg("--service and --to are required"))
	}
	if m := schemas[o.Service]; m != nil {
		o.Migrate = m
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, nil))
	rep, err := Move(ctx, o)
	if err != nil {
		if !rep.SwitchedAt.IsZero() {
			rep.Print(stdout)
		}
		return err
	}
	rep.Print(stdout)
	return nil
}

// parseShards reads "lo-hi" or "n".
func parseShards(s string) (lo, hi shard.ID, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if !isRange {
		b = a
	}
	l, errA := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	h, errB := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if errA != nil || errB != nil || l > h || h >= shard.Count {
		return 0, 0, errs.E(errs.BadRequest, errs.Msg("--shards %q: want lo-hi with 0 <= lo <= hi < %d", s, shard.Count))
	}
	return shard.ID(l), shard.ID(h), nil
}
