package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// dlqRun runs "globomantics dlq ARGS..." with GLOBO_NATS_URL set to url.
func dlqRun(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "GLOBO_NATS_URL" {
			return url
		}
		return ""
	}
	err := app.Run(context.Background(), append([]string{"globomantics", "dlq"}, args...), getenv, &out, &errOut)
	if errOut.Len() > 0 {
		t.Logf("dlq %s: stderr: %s", strings.Join(args, " "), errOut.String())
	}
	return out.String(), err
}

// TestDLQCommand: an operator lists the dead letters of a shop's broker,
// inspects one and replays it to the consumer, now fixed, that gave it up.
func TestDLQCommand(t *testing.T) {
	ctx := context.Background()
	addr := testenv.FreeAddr(t)
	b, err := bus.Open(ctx, bus.Options{StoreDir: t.TempDir(), ListenAddr: addr, Name: "shop", Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url := "nats://" + addr

	var mu sync.Mutex
	fixed := false
	handled := map[string]int{}
	err = b.Subscribe(ctx, "mail", []string{"globo.order.placed"}, func(ctx context.Context, ev bus.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if !fixed && ev.ID == "order-7" {
			return bus.Permanent(errors.New(`schema: "email" is required`))
		}
		handled[ev.ID]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "globo.order.placed", "order-7", map[string]any{"order_id": 7, "total_cents": 1999}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "globo.order.placed", "order-8", map[string]any{"order_id": 8, "total_cents": 500, "email": "a@b.test"}); err != nil {
		t.Fatal(err)
	}

	// list: one line with what an operator needs.
	var list string
	testenv.CheckFor(t, 20*time.Second, func() error {
		out, err := dlqRun(t, url, "list")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "order-7") && !strings.Contains(out, "globo.order.placed") {
			return fmt.Errorf("no dead letter yet:\n%s", out)
		}
		list = out
		return nil
	})
	t.Logf("dlq list:\n%s", list)
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 2 {
		t.Fatalf("list: want a header and one dead letter:\n%s", list)
	}
	m := regexp.MustCompile(`^(\d+)\s+(\S+)\s+mail\s+globo\.order\.placed\s+1 \(permanent\)\s+permanent: schema: "email" is required\s+\{"order_id":7,"total_cents":1999\}$`).FindStringSubmatch(lines[1])
	if m == nil {
		t.Fatalf("list line %q: want ID, time, consumer, subject, deliveries, error, payload", lines[1])
	}
	id := m[1]
	if _, err := time.Parse(time.RFC3339, m[2]); err != nil {
		t.Errorf("list time %q: %v", m[2], err)
	}
	if out, err := dlqRun(t, url, "list", "--consumer", "search-1"); err != nil || !strings.Contains(out, "no dead letters") {
		t.Errorf("list of another consumer: %v\n%s", err, out)
	}

	// show: headers and the message, pretty-printed; flags after the ID.
	out, err := dlqRun(t, "", "show", id, "--nats-url", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dlq show %s:\n%s", id, out)
	for _, want := range []string{
		"ID:          " + id, "Consumer:    mail", "Subject:     globo.order.placed", "Message id:  order-7",
		"Deliveries:  1", "Permanent:   yes", `Error:       permanent: schema: "email" is required`,
		"Globo-Dlq-Failed-At: ", `"id": "order-7"`, `"total_cents": 1999`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show: no %q in\n%s", want, out)
		}
	}

	// replay after the fix: the consumer handles it, the dead letter is gone.
	mu.Lock()
	fixed = true
	mu.Unlock()
	out, err = dlqRun(t, url, "replay", id)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("replayed %s to globo._redeliver.mail.globo.order.placed as order-7/replay-%s", id, id); !strings.Contains(out, want) {
		t.Errorf("replay printed %q, want %q", out, want)
	}
	testenv.CheckFor(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if handled["order-7"] != 1 {
			return errors.New("replayed message not handled yet")
		}
		return nil
	})
	if out, err := dlqRun(t, url, "list"); err != nil || strings.TrimSpace(out) != "no dead letters" {
		t.Errorf("list after replay: %v\n%s", err, out)
	}
	mu.Lock()
	if handled["order-8"] != 1 {
		t.Errorf("order-8 handled %d times, want 1", handled["order-8"])
	}
	mu.Unlock()

	// Errors an operator can act on.
	if _, err := dlqRun(t, url, "show", id); err == nil || !strings.Contains(err.Error(), "no dead letter "+id) {
		t.Errorf("show of a replayed dead letter: %v", err)
	}
	if _, err := dlqRun(t, "", "list"); err == nil || !strings.Contains(err.Error(), "--nats-listen") {
		t.Errorf("list with no broker URL: %v, want a hint about --nats-listen", err)
	}
	if _, err := dlqRun(t, url, "replay"); err == nil {
		t.Error("replay without an ID or --all succeeded")
	}
	if out, err := dlqRun(t, url, "replay", "--all", "--subject", "globo.order.placed"); err != nil || !strings.Contains(out, "replayed 0 of 0") {
		t.Errorf("replay --all with nothing to replay: %v\n%s", err, out)
	}
}
