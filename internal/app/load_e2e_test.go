package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/loadgen"
)

// TestLoadAgainstOneProcessShop runs "globomantics load" with the full
// shopper mix against a one-process shop started without rate limits:
// every answer is the one its step expects, orders are confirmed, declined
// cards are reported as declined, and the report is written as text, JSON
// and HTML.
func TestLoadAgainstOneProcessShop(t *testing.T) {
	tp := allInOne(t)
	tp.procs[0].args = append(tp.procs[0].args, "--rate-limits=false")
	tp.start(t)
	dir := t.TempDir()
	jsonFile, htmlFile := filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")
	var stdout, stderr bytes.Buffer
	args := []string{"globomantics", "load", "--url", tp.storefronts[0].url(), "--rate", "20", "--duration", "3s",
		"--mix", loadgen.DefaultMix, "--checkout-wait", "5s", "--json", jsonFile, "--html", htmlFile}
	if err := app.Run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("load: %v\n%s", err, stderr.String())
	}
	t.Logf("globomantics load report:\n%s", stdout.String())
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadgen.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Arrivals < 59 || rep.Arrivals > 61 || rep.Dropped != 0 {
		t.Errorf("%d arrivals, %d dropped; want 60, none dropped", rep.Arrivals, rep.Dropped)
	}
	if rep.Errors != 0 || rep.Status429 != 0 {
		t.Errorf("%d unexpected answers (%d were 429): %+v", rep.Errors, rep.Status429, rep.ErrorKinds)
	}
	if rep.Orders.Confirmed == 0 || rep.Orders.Declined == 0 {
		t.Errorf("orders %+v: want some confirmed and some declined", rep.Orders)
	}
	steps := map[string]loadgen.StepStats{}
	for _, s := range rep.Steps {
		steps[s.Name] = s
	}
	for _, name := range []string{"home", "category", "product", "search", "register", "login", "add_to_cart", "view_cart", "checkout_ok", "checkout_declined"} {
		if s := steps[name]; s.OK == 0 || s.P50 <= 0 {
			t.Errorf("step %s: %+v, want answered requests with a latency", name, s)
		}
	}
	if d := steps["checkout_declined"]; d.OK != rep.Orders.Declined {
		t.Errorf("checkout_declined answered ok %d times, declined orders %d", d.OK, rep.Orders.Declined)
	}
	out := stdout.String()
	for _, want := range []string{"achieved of 20.0/s target", "checkout_ok", "Errors: none"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q", want)
		}
	}
	if page, err := os.ReadFile(htmlFile); err != nil || strings.Count(string(page), "<svg") != 3 {
		t.Errorf("HTML report: %v, %d charts", err, strings.Count(string(page), "<svg"))
	}
}
