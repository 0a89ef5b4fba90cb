package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestOutboxSurvivesKills kills a catalog process with SIGKILL at every
// point of the way from a committed listing to its event in the broker,
// with the broker in another process and the consumer in this one:
//
//  1. between commit and publish: the process dies at the relay's first
//     pass (before:outbox_publish), with listings committed and nothing
//     published;
//  2. in the middle of a batch: the relay dies after publishing half of
//     the rows it claimed (mid:outbox_batch);
//  3. after the broker acknowledged a whole batch and before its rows were
//     deleted (after:outbox_publish);
//
// and restarts each time on the same database. At the end every listing
// the database holds was delivered to the consumer exactly once: what the
// dead relays published is published again under the same Nats-Msg-Id, and
// the broker drops the copies.
func TestOutboxSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) { outboxKills(t, backend) })
	}
}

// deliveries records what a consumer of ItemListed was given, by event id.
type deliveries struct {
	mu   sync.Mutex
	seen map[string]int
}

func (d *deliveries) count(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen[id]
}

func (d *deliveries) total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.seen {
		n += c
	}
	return n
}

// subscribeItemListed makes a durable consumer of ItemListed on the broker
// at natsURL, acking each event once recorded, as the shop's consumers do.
func subscribeItemListed(t *testing.T, natsURL string) *deliveries {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: natsURL, Name: "outbox crash probe", Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	d := &deliveries{seen: map[string]int{}}
	err = b.Subscribe(ctx, "outbox-crash-probe", []string{catalog.SubjectItemListed}, func(_ context.Context, ev bus.Event) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.seen[ev.ID]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func outboxKills(t *testing.T, backend string) {
	bin := binary(t)
	root := t.TempDir()
	natsAddr := testenv.FreeAddr(t)
	natsURL := "nats://" + natsAddr
	env := []string{"GLOBO_SERVICE_TOKEN=" + serviceToken, "GLOBO_LOG_LEVEL=info"}
	// The broker lives in a process of its own (a mail worker's embedded
	// broker), which no test step kills.
	broker := &osProc{name: "broker", bin: bin, addr: testenv.FreeAddr(t), env: env,
		args: []string{"--data-dir", filepath.Join(root, "broker"), "--services", "mail",
			"--mail-dir", filepath.Join(root, "mail"), "--nats-listen", natsAddr}}
	broker.start(t)
	broker.waitReady(t)
	got := subscribeItemListed(t, natsURL)

	dsn := filepath.Join(root, "catalog.db")
	if backend == "postgres" {
		dsn = testenv.PostgresDSN(t)
	}
	catAddr := testenv.FreeAddr(t)
	var cat *osProc
	// run starts the catalog with the fault rules and, unless it is to die
	// at once, waits until it is ready.
	run := func(faults string, diesAtStart bool) {
		t.Helper()
		args := []string{"--data-dir", filepath.Join(root, "catalog"), "--services", "catalog",
			"--blob-dir", filepath.Join(root, "blobs"), "--nats-url", natsURL}
		if faults != "" {
			args = append(args, "--faults", faults)
		}
		cat = &osProc{name: "catalog", bin: bin, addr: catAddr, env: append([]string{"GLOBO_DB_CATALOG=" + dsn}, env...), args: args}
		cat.start(t)
		if !diesAtStart {
			cat.waitReady(t)
		}
	}
	t.Cleanup(func() {
		if t.Failed() && cat != nil {
			t.Logf("--- catalog logs ---\n%s", lastLines(cat.logs.String(), 40))
		}
	})
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	listed := func() []string { return column(t, db, `SELECT id FROM products ORDER BY id`) }
	pendingListed := func() []string {
		return column(t, db, `SELECT seq_id FROM outbox WHERE subject = '`+catalog.SubjectItemListed+`' ORDER BY seq_id`)
	}
	diedAt := func(point string) {
		t.Helper()
		testenv.CheckFor(t, 20*time.Second, func() error {
			if cat.alive() {
				return fmt.Errorf("catalog still running, not yet at %s", point)
			}
			return nil
		})
		if !strings.Contains(cat.logs.String(), "fault: crashing at "+point) {
			t.Fatalf("the catalog died, but not at %s:\n%s", point, lastLines(cat.logs.String(), 30))
		}
	}

	// A clean start: the demo catalog is listed and its events published.
	run("", false)
	testenv.CheckFor(t, 30*time.Second, func() error {
		if p := pendingListed(); len(p) > 0 {
			return fmt.Errorf("%d listings of the demo catalog not published yet", len(p))
		}
		return nil
	})
	cat.kill()
	category := column(t, db, `SELECT id FROM categories ORDER BY id LIMIT 1`)
	if len(category) == 0 {
		t.Fatal("the demo catalog has no category")
	}

	// 1. Between commit and publish: listings are made from 8 clients at
	// once; the first of them committed wakes the relay, which dies before
	// publishing. The listings answered (or committed as the process died)
	// are in the database and none is in the broker.
	run(outbox.FaultBeforePublish+"=crash", false)
	listItems(t, cat.url(), category[0], "before", 40, true)
	diedAt(outbox.FaultBeforePublish)
	stranded := pendingListed()
	if len(stranded) == 0 {
		t.Fatal("the catalog died with no listing committed and unpublished")
	}
	for _, id := range stranded {
		if n := got.count(id); n != 0 {
			t.Fatalf("%s delivered %d times before its relay published it", id, n)
		}
	}
	t.Logf("killed between commit and publish: %d listings committed, none published", len(stranded))

	// More listings wait in the outbox (the relay fails every pass, so
	// none is published), then this process is killed from outside, so
	// that the next relay's first batch is a large one.
	run(outbox.FaultBeforePublish+"=fail", false)
	listItems(t, cat.url(), category[0], "waiting", 30, false)
	cat.kill()
	if p := pendingListed(); len(p) < 2 {
		t.Fatalf("%d listings waiting, want a batch of several", len(p))
	}

	// 2. In the middle of a batch: the restarted relay claims every row,
	// publishes half of them and dies (before it is ready: the relay runs
	// from the start). The consumer has the first half, whose rows are
	// still in the outbox.
	run(outbox.FaultMidBatch+"=crash", true)
	diedAt(outbox.FaultMidBatch)
	waiting := pendingListed()
	testenv.CheckFor(t, 10*time.Second, func() error {
		if got.total() == 0 {
			return fmt.Errorf("nothing of the half batch delivered")
		}
		return nil
	})
	published := 0
	for _, id := range waiting {
		if got.count(id) > 0 {
			published++
		}
	}
	if published == 0 || published == len(waiting) {
		t.Fatalf("%d of the %d waiting listings delivered after the mid-batch crash, want some but not all", published, len(waiting))
	}
	t.Logf("killed mid-batch: %d of %d waiting listings published, all still in the outbox", published, len(waiting))

	// 3. After the publish, before the delete: the whole batch again (its
	// first half a second time), then death with every row still there.
	run(outbox.FaultAfterPublish+"=crash", true)
	diedAt(outbox.FaultAfterPublish)
	if p := pendingListed(); len(p) != len(waiting) {
		t.Fatalf("%d listings in the outbox after the crash after publishing, want the %d that were there", len(p), len(waiting))
	}

	// A clean restart publishes every row a third time and deletes them.
	run("", false)
	testenv.CheckFor(t, 30*time.Second, func() error {
		if p := pendingListed(); len(p) > 0 {
			return fmt.Errorf("%d listings not yet published", len(p))
		}
		return nil
	})
	all := listed()
	testenv.CheckFor(t, 10*time.Second, func() error {
		for _, id := range all {
			if got.count(id) == 0 {
				return fmt.Errorf("listing %s never delivered", id)
			}
		}
		return nil
	})
	time.Sleep(time.Second) // a duplicate, were there one, would be delivered by now
	for _, id := range all {
		if n := got.count(id); n != 1 {
			t.Errorf("listing %s delivered %d times, want once", id, n)
		}
	}
	if n := got.total(); n != len(all) {
		t.Errorf("%d deliveries for the %d listings in the database", n, len(all))
	}
	t.Logf("%d listings in the database, each delivered once", len(all))
}

// column reads one text column of a query's rows.
func column(t *testing.T, db *sqldb.DB, q string) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// smallPNG is a valid picture for a listing, different for each i.
func smallPNG(i int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for p := range img.Pix {
		img.Pix[p] = byte(i*7 + p)
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

// listItems lists n items on the catalog at base from 8 clients at once and
// returns the ids answered. When dying is true the process is expected to
// die meanwhile: failed requests stop the client that made them; otherwise
// every listing must succeed.
func listItems(t *testing.T, base, category, prefix string, n int, dying bool) []string {
	t.Helper()
	var (
		mu  sync.Mutex
		out []string
		wg  sync.WaitGroup
	)
	errc := make(chan error, n)
	hc := &http.Client{Timeout: 10 * time.Second}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 8 {
				body, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("%s lamp %d", prefix, i), "description": "A lamp.",
					"category": category, "price": map[string]any{"amount": 1000 + i, "currency": "USD"}, "stock": 5, "image": smallPNG(i)})
				req, _ := http.NewRequest(http.MethodPost, base+"/svc/catalog/v1/products", bytes.NewReader(body))
				req.Header.Set("Authorization", operatorAuth())
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					if !dying {
						errc <- err
					}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					errc <- fmt.Errorf("listing %s %d: %d %s", prefix, i, resp.StatusCode, b)
					return
				}
				var p struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal(b, &p)
				mu.Lock()
				out = append(out, p.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	return out
}
