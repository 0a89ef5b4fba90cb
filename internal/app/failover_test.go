package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"

	"github.com/globomantics/globomantics/pkg/shopclient"
)

// The CAP choices under a lost primary: the shop runs in one process with
// every database on one pg_auto_failover formation (a primary and two
// synchronous replicas). Under a load of registrations (account is
// consistent, CP) and product reads (catalog is available, AP), the
// primary's PostgreSQL and keeper are killed with SIGKILL. Writes must fail
// fast with 503 problem+json and Retry-After while no primary answers, then
// succeed on the promoted replica without a restart of the shop; product
// reads must never fail; every registration acknowledged before, during or
// after the failover must still be there.
func TestFailoverCPWritesAPReads(t *testing.T) {
	if testing.Short() {
		t.Skip("failover test skipped in -short mode")
	}
	f := testenv.NewFormation(t, 3)
	ctx := context.Background()
	// Registrations and checkouts in bulk from one address: the
	// storefront's per-client limits are not what this test is about.
	env := map[string]string{"GLOBO_RATE_LIMITS": "false"}
	for _, s := range []string{"account", "cart", "order", "catalog", "payment", "shipping", "checkout"} {
		name := "shop_" + s
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := f.CreateDatabase(cctx, name); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		env["GLOBO_DB_"+strings.ToUpper(s)] = f.URI(name)
	}
	p := &proc{name: "shop", addr: testenv.FreeAddr(t), args: []string{"--data-dir", t.TempDir()}, env: env}
	p.start(t)
	waitReady(t, p)
	hc := &http.Client{Timeout: 20 * time.Second}
	base := p.url()

	var pg shopclient.ListProduct
	resp, err := hc.Get(base + "/api/v1/products?page_size=5")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&pg)
	resp.Body.Close()
	if len(pg.Items) == 0 {
		t.Fatal("no products")
	}

	type outcome struct {
		email   string
		status  int
		problem bool // answered application/problem+json
		retry   string
		dur     time.Duration
		at      time.Time
	}
	register := func(i int) outcome {
		email := fmt.Sprintf("failover%d@example.com", i)
		b, _ := json.Marshal(map[string]string{"email": email, "password": "correct horse", "name": "F"})
		start := time.Now()
		resp, err := hc.Post(base+"/api/v1/accounts", "application/json", bytes.NewReader(b))
		o := outcome{email: email, dur: time.Since(start), at: time.Now()}
		if err != nil {
			return o
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o.status = resp.StatusCode
		o.problem = strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json")
		o.retry = resp.Header.Get("Retry-After")
		return o
	}

	// Readers: product reads, all through the failover.
	stopReads := make(chan struct{})
	var readMu sync.Mutex
	reads, readFailures := 0, []string{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stopReads:
				return
			default:
			}
			id := pg.Items[i%len(pg.Items)].ID
			resp, err := hc.Get(base + "/api/v1/products/" + id)
			readMu.Lock()
			reads++
			if err != nil {
				readFailures = append(readFailures, err.Error())
			} else {
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					readFailures = append(readFailures, fmt.Sprintf("%d %s", resp.StatusCode, b))
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			readMu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	var all []outcome
	n := 0
	for ; n < 20; n++ { // before the kill
		o := register(n)
		if o.status != 201 {
			t.Fatalf("registration before the kill: %+v", o)
		}
		all = append(all, o)
	}
	primary, err := f.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := f.KillNode(primary); err != nil {
		t.Fatal(err)
	}
	// Writes until one succeeds on the new primary, then a few more;
	// bounded in count and time.
	var firstOK time.Time
	after := 0
	for deadline := killed.Add(90 * time.Second); time.Now().Before(deadline) && after < 10; n++ {
		o := register(n)
		all = append(all, o)
		if o.status == 201 {
			if firstOK.IsZero() {
				firstOK = o.at
			}
			after++
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stopReads)
	wg.Wait()
	if firstOK.IsZero() {
		t.Fatalf("no write succeeded within 90 s of killing the primary")
	}
	t.Logf("first acknowledged write %.1f s after the kill; %d product reads during the test", firstOK.Sub(killed).Seconds(), reads)

	failed := 0
	for _, o := range all {
		switch {
		case o.status == 201:
		case o.status == 503 && o.problem && o.retry != "":
			failed++
			// Fail fast: a write with no primary is refused, not queued
			// until some timeout. (The one in flight at the kill may wait
			// for the probes to notice.)
			if o.dur > 5*time.Second {
				t.Errorf("a refused write took %v", o.dur)
			}
		default:
			t.Errorf("write %s: status %d (problem+json %v, Retry-After %q), want 201 or 503 problem+json with Retry-After", o.email, o.status, o.problem, o.retry)
		}
	}
	t.Logf("%d writes refused with 503 during the failover", failed)
	readMu.Lock()
	if len(readFailures) > 0 {
		t.Errorf("%d of %d product reads failed during the failover (AP reads must go on): %v", len(readFailures), reads, readFailures[:min(5, len(readFailures))])
		var errLines []string
		for _, l := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(l, "level=ERROR") && strings.Contains(l, "products") && len(errLines) < 5 {
				errLines = append(errLines, l)
			}
		}
		t.Logf("errors logged: %s", strings.Join(errLines, "\n"))
	}
	readMu.Unlock()

	// Every acknowledged registration is there: its owner can log in.
	for _, o := range all {
		if o.status != 201 {
			continue
		}
		b, _ := json.Marshal(map[string]string{"email": o.email, "password": "correct horse"})
		var resp *http.Response
		testenv.CheckFor(t, 30*time.Second, func() error {
			var err error
			resp, err = hc.Post(base+"/api/v1/sessions", "application/json", bytes.NewReader(b))
			if err != nil {
				return err
			}
			if resp.StatusCode == 503 {
				resp.Body.Close()
				return fmt.Errorf("login %s: 503", o.email)
			}
			return nil
		})
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("acknowledged account %s cannot log in after the failover: %d", o.email, resp.StatusCode)
		}
	}
}
