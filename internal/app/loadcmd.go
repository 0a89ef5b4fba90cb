package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/globomantics/globomantics/internal/loadgen"
)

const loadUsage = `Usage: globomantics load --url URL --rate R --duration D [flags]

Starts R shopper sessions a second for D against the storefront at URL, open loop:
each session starts when due whatever the earlier ones are doing, and latency counts
from that moment. Sessions: browse (home, a category, a product page), search (words
from the catalog), register (a unique address, log in), cart (add 1-3 products, view
the cart), checkout (register, fill the cart, pay with every test card in turn:
4242424242424242 confirmed, 4000000000000002 declined, 4000000000000119 transient).
A progress line goes to stderr each second; the report to stdout at the end (Ctrl-C
ends early and still reports).

The shop rate-limits login, registration and checkout per client address: load from
one machine needs the shop started with --rate-limits=false (the report counts 429s).

Flags:
`

// loadMain is "globomantics load": the load generator (internal/loadgen).
func loadMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), loadUsage)
		fs.PrintDefaults()
	}
	var cfg loadgen.Config
	var mix, htmlFile, jsonFile string
	fs.StringVar(&cfg.URL, "url", "", "the storefront's base URL, e.g. http://127.0.0.1:8080 (required)")
	fs.Float64Var(&cfg.Rate, "rate", 10, fmt.Sprintf("sessions started per second (at most %d)", loadgen.MaxRate))
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, fmt.Sprintf("how long sessions are started for (at most %v)", loadgen.MaxDuration))
	fs.StringVar(&mix, "mix", loadgen.DefaultMix, "weight of each scenario")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", 1000, "most sessions running at once; arrivals beyond are counted as dropped (over capacity)")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "bound of each request")
	fs.DurationVar(&cfg.CheckoutWait, "checkout-wait", 40*time.Second, "how long a session follows a checkout answered 202 before counting it pending (the transient card is retried by the shop for 30 s); 0 does not follow")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the choice of products, words and quantities")
	fs.StringVar(&htmlFile, "html", "", "also write the report as a self-contained HTML page with charts to this file")
	fs.StringVar(&jsonFile, "json", "", "also write the report as JSON to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("load: unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.Mix, err = loadgen.ParseMix(mix); err != nil {
		return err
	}
	cfg.Progress, cfg.Terminal = stderr, loadgen.IsTerminal(stderr)
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonFile, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("load: %w", err)
		}
	}
	if htmlFile != "" {
		f, err := os.Create(htmlFile)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		if err := errors.Join(rep.WriteHTML(f), f.Close()); err != nil {
			return fmt.Errorf("load: writing %s: %w", htmlFile, err)
		}
	}
	return nil
}
