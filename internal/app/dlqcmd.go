package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
)

const dlqUsage = `Usage:
  globomantics dlq list [--consumer C] [--subject S] [--limit N]
  globomantics dlq show ID
  globomantics dlq replay ID [--original]
  globomantics dlq replay --all [--consumer C] [--subject S] [--original]

Dead letters are the messages a consumer gave up on: its handler failed on
every allowed delivery (30 by default, with back-off), or failed with an
error that no retry can fix (a message that fails validation). They are kept
30 days in the broker's GLOBO_DLQ stream.

  list     one line per dead letter, oldest first: its ID, when it failed, the
           consumer, the original subject, the deliveries, the last error and
           the start of the payload
  show     the dead letter's headers and its message, JSON pretty-printed
  replay   publish the message again, with a new message id (the original's
           plus /replay-ID), to the one consumer that gave it up (the other
           consumers of the subject do not get it twice), then delete the
           dead letter. --original publishes to the original subject
           instead, so every consumer of it gets the message again (they are
           idempotent): needed when the consumer no longer exists.
           --all replays every dead letter --consumer and --subject select.

Every command connects to the shop's broker at --nats-url (default
GLOBO_NATS_URL). A one-process shop embeds its broker, which accepts other
processes only when the shop was started with --nats-listen HOST:PORT
(GLOBO_NATS_LISTEN); then use --nats-url nats://HOST:PORT.

Flags:
`

// dlqMain runs "globomantics dlq list|show|replay" against the broker at
// --nats-url (getenv("GLOBO_NATS_URL") by default), writing its results to
// stdout and its usage and the broker client's errors to stderr.
func dlqMain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains([]string{"list", "show", "replay"}, args[0]) {
		fmt.Fprint(stderr, dlqUsage)
		if len(args) == 0 {
			return errors.New("dlq: missing command (known: list, show, replay)")
		}
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			return nil
		}
		return fmt.Errorf("dlq: unknown command %q (known: list, show, replay)", args[0])
	}
	cmd := args[0]
	fs := flag.NewFlagSet("dlq "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dlqUsage); fs.PrintDefaults() }
	url := fs.String("nats-url", getenv("GLOBO_NATS_URL"), "`URL` of the shop's NATS broker (GLOBO_NATS_URL)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to keep trying to reach the broker")
	var f bus.DeadLetterFilter
	var all, original bool
	if cmd != "show" {
		fs.StringVar(&f.Consumer, "consumer", "", "only the dead letters of this durable `consumer`")
		fs.StringVar(&f.Subject, "subject", "", "only the dead letters of this original `subject` (wildcards * and > allowed)")
	}
	if cmd == "list" {
		fs.IntVar(&f.Limit, "limit", 0, "at most `N` dead letters (0: all)")
	}
	if cmd == "replay" {
		fs.BoolVar(&all, "all", false, "replay every dead letter --consumer and --subject select")
		fs.BoolVar(&original, "original", false, "publish to the original subject, for every consumer of it")
	}
	pos, err := parseInterleaved(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var id uint64
	switch {
	case cmd == "list" || (cmd == "replay" && all):
		if len(pos) > 0 {
			return fmt.Errorf("dlq %s: unexpected argument %q", cmd, pos[0])
		}
	case len(pos) != 1:
		fs.Usage()
		return fmt.Errorf("dlq %s: want one dead letter ID", cmd)
	default:
		if id, err = strconv.ParseUint(pos[0], 10, 64); err != nil || id == 0 {
			return fmt.Errorf("dlq %s: bad ID %q: IDs are the numbers dlq list prints", cmd, pos[0])
		}
	}
	if *url == "" {
		return errors.New("dlq: no broker to ask: give --nats-url or GLOBO_NATS_URL (a one-process shop's embedded broker is reachable only when it was started with --nats-listen HOST:PORT)")
	}
	b, err := bus.Open(ctx, bus.Options{
		URL:            *url,
		Name:           "globomantics-dlq",
		Log:            slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		ConnectTimeout: *timeout,
	})
	if err != nil {
		return fmt.Errorf("dlq: %w", err)
	}
	defer b.Close()

	switch {
	case cmd == "list":
		dls, err := b.DeadLetters(ctx, f)
		if err != nil {
			return err
		}
		return printDeadLetters(stdout, dls)
	case cmd == "show":
		d, err := b.GetDeadLetter(ctx, id)
		if err != nil {
			return err
		}
		printDeadLetter(stdout, d)
		return nil
	case all:
		dls, err := b.DeadLetters(ctx, f)
		if err != nil {
			return err
		}
		var failed []error
		for _, d := range dls {
			if err := replayOne(ctx, b, stdout, d.ID, original); err != nil {
				failed = append(failed, fmt.Errorf("dead letter %d: %w", d.ID, err))
			}
		}
		fmt.Fprintf(stdout, "replayed %d of %d dead letters\n", len(dls)-len(failed), len(dls))
		return errors.Join(failed...)
	default:
		return replayOne(ctx, b, stdout, id, original)
	}
}

func replayOne(ctx context.Context, b *bus.Bus, w io.Writer, id uint64, original bool) error {
	r, err := b.Replay(ctx, id, bus.ReplayOptions{ToOriginal: original})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "replayed %d to %s as %s\n", r.ID, r.Subject, r.MsgID)
	return nil
}

// parseInterleaved parses flags given before and after the positional
// arguments ("show 7 --nats-url U" as well as "show --nats-url U 7").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func printDeadLetters(w io.Writer, dls []bus.DeadLetter) error {
	if len(dls) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFAILED AT\tCONSUMER\tSUBJECT\tDELIVERIES\tERROR\tPAYLOAD")
	for _, d := range dls {
		deliveries := strconv.Itoa(d.Deliveries)
		if d.Permanent {
			deliveries += " (permanent)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.FailedAt.UTC().Format(time.RFC3339), d.Consumer, d.Subject,
			deliveries, shorten(d.Error, 60), shorten(payloadOf(d.Data), 60))
	}
	return tw.Flush()
}

// payloadOf is the event's data, compact, or the raw message when it is not
// an event.
func payloadOf(raw []byte) string {
	var ev bus.Event
	if json.Unmarshal(raw, &ev) == nil && len(ev.Data) > 0 {
		raw = ev.Data
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return strconv.Quote(string(raw))
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func printDeadLetter(w io.Writer, d bus.DeadLetter) {
	permanent := "no (retried until its deliveries ran out)"
	if d.Permanent {
		permanent = "yes (not retried)"
	}
	fmt.Fprintf(w, "ID:          %d\n", d.ID)
	fmt.Fprintf(w, "Consumer:    %s\n", d.Consumer)
	fmt.Fprintf(w, "Subject:     %s\n", d.Subject)
	fmt.Fprintf(w, "Message id:  %s\n", d.MsgID)
	stream := d.Stream
	if stream == "" { // a dead letter without its original subject
		stream = bus.StreamName
	}
	fmt.Fprintf(w, "Stream seq:  %d (in %s)\n", d.StreamSeq, stream)
	fmt.Fprintf(w, "Deliveries:  %d\n", d.Deliveries)
	fmt.Fprintf(w, "Permanent:   %s\n", permanent)
	fmt.Fprintf(w, "Failed at:   %s\n", d.FailedAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "Error:       %s\n", d.Error)
	fmt.Fprintln(w, "Headers:")
	keys := make([]string, 0, len(d.Header))
	for k := range d.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(d.Header[k], ", "))
	}
	fmt.Fprintln(w, "Message:")
	var buf bytes.Buffer
	if json.Indent(&buf, d.Data, "", "  ") == nil {
		fmt.Fprintln(w, buf.String())
		return
	}
	fmt.Fprintf(w, "(not JSON, %d bytes) %q\n", len(d.Data), d.Data)
}
