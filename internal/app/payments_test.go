package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	platmoney "github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestPaymentsAudit runs "globomantics payments audit" on a SQLite data
// directory: a sound ledger prints its totals and succeeds; a ledger
// broken by hand prints the violation and fails.
func TestPaymentsAudit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqldb.OpenSQLite(ctx, filepath.Join(dir, "payment.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := paymentdb.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	svc := payment.NewService(st, clock.NewFake(time.Date(2030, 3, 15, 9, 0, 0, 0, time.UTC)))
	card := payment.Card{Number: payment.TestCardOK, ExpMonth: 12, ExpYear: 2031, CVC: "123"}
	authorize := func(order string, cents int64) payment.Payment {
		t.Helper()
		p, err := svc.Authorize(ctx, payment.AuthorizeRequest{OrderID: order, Amount: platmoney.USD(cents), Card: card})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	captured := authorize("ord_1", 1250)
	if _, err := svc.Capture(ctx, captured.ID); err != nil {
		t.Fatal(err)
	}
	authorize("ord_2", 4000)
	if _, err := svc.VoidForOrder(ctx, "ord_3"); err != nil {
		t.Fatal(err)
	}

	run := func(getenv func(string) string, args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := app.Run(ctx, append([]string{"globomantics", "payments"}, args...), getenv, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	noenv := func(string) string { return "" }

	out, err := run(noenv, "audit", "--data-dir", dir)
	if err != nil {
		t.Fatalf("audit of a sound ledger: %v\n%s", err, out)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"payments 3 of which cancelled 1 ledger entries 3",
		"authorized $52.50 captured $12.50 voided $0.00 refunded $0.00 net captured $12.50 held $40.00 declined 0",
		"Violations: none",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("output has no %q:\n%s", want, out)
		}
	}

	// The environment's data directory, as serve reads it.
	env := func(k string) string {
		if k == "GLOBO_DATA_DIR" {
			return dir
		}
		return ""
	}
	if out, err := run(env, "audit", "--json"); err != nil {
		t.Errorf("audit --json with GLOBO_DATA_DIR: %v\n%s", err, out)
	} else {
		var a payment.Audit
		if err := json.Unmarshal([]byte(out), &a); err != nil || a.Authorized != 5250 || a.Held != 4000 || !a.OK() {
			t.Errorf("audit --json = %+v, %v\n%s", a, err, out)
		}
	}

	// A capture row lost by hand.
	if _, err := db.ExecContext(ctx, `DELETE FROM payment_ledger WHERE payment_id = ? AND kind = 'capture'`, captured.ID); err != nil {
		t.Fatal(err)
	}
	out, err = run(noenv, "audit", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "violations") {
		t.Errorf("audit of a broken ledger: err = %v, want violations", err)
	}
	t.Logf("audit of a broken ledger:\n%s", out)
	for _, want := range []string{"Violations: 1", captured.ID, "ord_1", "status captured but the ledger says authorized"} {
		if !strings.Contains(out, want) {
			t.Errorf("output has no %q:\n%s", want, out)
		}
	}

	// Mistakes are reported, and no database is made.
	empty := t.TempDir()
	if _, err := run(noenv, "audit", "--data-dir", empty); err == nil || !strings.Contains(err.Error(), "no payment database") {
		t.Errorf("audit of an empty data dir: err = %v", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(empty, "*")); len(matches) != 0 {
		t.Errorf("audit created %v", matches)
	}
	if _, err := run(noenv, "audit", "--data-dir", dir, "--dsn", "x.db"); err == nil {
		t.Error("audit with --data-dir and --dsn: no error")
	}
	if _, err := run(noenv, "frobnicate"); err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("payments frobnicate: err = %v", err)
	}
}

// TestPaymentsAuditShards audits a payment database split over two SQLite
// shard nodes, named by --shards: the totals are summed over both.
func TestPaymentsAuditShards(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	spec := "0-511=" + filepath.Join(dir, "a.db") + ";512-1023=" + filepath.Join(dir, "b.db")
	sh, err := sqldb.OpenSharded(ctx, spec, sqldb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	st, err := paymentdb.OpenSharded(ctx, sh)
	if err != nil {
		t.Fatal(err)
	}
	svc := payment.NewService(st, clock.NewFake(time.Date(2030, 3, 15, 9, 0, 0, 0, time.UTC)))
	card := payment.Card{Number: payment.TestCardOK, ExpMonth: 12, ExpYear: 2031, CVC: "123"}
	nodes := map[string]bool{}
	var total int64
	for i := int64(1); len(nodes) < 2; i++ {
		order := fmt.Sprintf("ord_%d", i)
		if _, err := svc.Authorize(ctx, payment.AuthorizeRequest{OrderID: order, Amount: platmoney.USD(i * 100), Card: card}); err != nil {
			t.Fatal(err)
		}
		nodes[sh.Map().NodeFor(shard.OfIDOrKey(order))] = true
		total += i * 100
	}

	var out, errOut bytes.Buffer
	if err := app.Run(ctx, []string{"globomantics", "payments", "audit", "--shards", spec, "--json"}, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("audit --shards: %v\n%s%s", err, out.String(), errOut.String())
	}
	var a payment.Audit
	if err := json.Unmarshal(out.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	if a.Authorized != total || a.Held != total || !a.OK() {
		t.Errorf("audit over two nodes = %+v, want %d authorized and held", a, total)
	}
}

// TestPaymentsAuditPostgres audits a PostgreSQL payment database named by
// --dsn, and reports one that was never migrated to the ledger.
func TestPaymentsAuditPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgresDSN(t)
	noenv := func(string) string { return "" }
	var out, errOut bytes.Buffer
	err := app.Run(ctx, []string{"globomantics", "payments", "audit", "--dsn", dsn}, noenv, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no ledger yet") {
		t.Errorf("audit of an empty database: err = %v", err)
	}

	db, err := sqldb.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := paymentdb.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	svc := payment.NewService(st, clock.NewFake(time.Date(2030, 3, 15, 9, 0, 0, 0, time.UTC)))
	card := payment.Card{Number: payment.TestCardOK, ExpMonth: 12, ExpYear: 2031, CVC: "123"}
	p, err := svc.Authorize(ctx, payment.AuthorizeRequest{OrderID: "ord_1", Amount: platmoney.USD(999), Card: card})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Capture(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := app.Run(ctx, []string{"globomantics", "payments", "audit", "--dsn", dsn}, noenv, &out, &errOut); err != nil {
		t.Fatalf("audit: %v\n%s", err, out.String())
	}
	flat := strings.Join(strings.Fields(out.String()), " ")
	if !strings.Contains(flat, "authorized $9.99 captured $9.99") || !strings.Contains(flat, "Violations: none") {
		t.Errorf("output:\n%s", out.String())
	}
}
