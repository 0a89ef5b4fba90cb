package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/worker/thumbnail"
)

// A thumbnail worker process makes an item's thumbnails, has the catalog
// record them, and is killed with SIGKILL before its message is acked
// (--faults after:handle=crash*1). Restarted, it is given the job again and
// does it again; the effect is there once: one thumbnail file per size, the
// thumbnails the catalog records, and one ThumbnailsReady event per item.
// Driven through public behaviour only (list an item, thumbnails appear), so
// it holds whether the worker takes jobs or listing events.
func TestWorkerKilledBeforeAckDoesItsWorkOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	bin := binary(t)
	root := t.TempDir()
	blobs := filepath.Join(root, "blobs")
	natsAddr := testenv.FreeAddr(t)
	env := []string{"GLOBO_SERVICE_TOKEN=" + serviceToken, "GLOBO_LOG_LEVEL=info",
		// The job of a killed worker goes to another after 5 s, not the default 60 s.
		"GLOBO_ACK_WAIT=5s"}
	dbPath := filepath.Join(root, "catalog.db")
	cat := &osProc{name: "catalog", bin: bin, addr: testenv.FreeAddr(t), env: append([]string{"GLOBO_DB_CATALOG=" + dbPath}, env...),
		args: []string{"--data-dir", filepath.Join(root, "catalog"), "--services", "catalog", "--blob-dir", blobs,
			"--nats-listen", natsAddr}}
	cat.start(t)
	cat.waitReady(t)
	ready := subscribeThumbnailsReady(t, "nats://"+natsAddr)

	workerAddr := testenv.FreeAddr(t)
	var w *osProc
	runWorker := func(faults string) {
		t.Helper()
		args := []string{"--data-dir", filepath.Join(root, "worker"), "--services", "thumbnails", "--blob-dir", blobs,
			"--nats-url", "nats://" + natsAddr, "--peer", "catalog=" + cat.url()}
		if faults != "" {
			args = append(args, "--faults", faults)
		}
		w = &osProc{name: "thumbnails", bin: bin, addr: workerAddr, env: env, args: args}
		w.start(t)
		w.waitReady(t)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- worker logs ---\n%s", lastLines(w.logs.String(), 40))
		}
	})
	// The demo catalog's thumbnails are made first, by a worker without
	// faults stopped gracefully once the broker has nothing left for any
	// consumer: the faulty worker's first job is then one of this test's.
	runWorker("")
	db, err := sqldb.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	natsURL := "nats://" + natsAddr
	testenv.CheckFor(t, 60*time.Second, func() error {
		if n := len(column(t, db, `SELECT seq_id FROM outbox`)); n > 0 {
			return fmt.Errorf("%d events of the demo catalog not published yet", n)
		}
		return brokerIdle(natsURL)
	})
	w.stop(t)
	runWorker("after:handle=crash*1")

	var cats struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"categories"`
	}
	getJSON(t, cat.url()+"/svc/catalog/v1/categories", &cats)
	if len(cats.Items) == 0 {
		t.Fatal("the catalog has no category")
	}
	items := listItems(t, cat.url(), cats.Items[0].ID, "ack", 3, false)
	thumbs := func(id string) map[string]string {
		var p struct {
			Thumbnails map[string]string `json:"thumbnails"`
		}
		getJSON(t, cat.url()+"/svc/catalog/v1/products/"+id, &p)
		return p.Thumbnails
	}

	// The worker dies after its first job, work done and not acked.
	testenv.CheckFor(t, 30*time.Second, func() error {
		if w.alive() {
			return fmt.Errorf("the worker is still running")
		}
		return nil
	})
	if !strings.Contains(w.logs.String(), "fault: crashing at after:handle") {
		t.Fatalf("the worker died, but not after a handler:\n%s", lastLines(w.logs.String(), 30))
	}
	var first string
	for _, id := range items {
		if len(thumbs(id)) > 0 {
			if first != "" {
				t.Fatalf("items %s and %s have thumbnails, but the worker died after its first job", first, id)
			}
			first = id
		}
	}
	if first == "" {
		t.Fatal("the worker died after its handler, but no item has thumbnails")
	}
	t.Logf("worker killed before acking the job of %s, whose thumbnails it made", first)

	// Restarted without the fault, it does the other jobs and, once the
	// broker's ack wait for the lost one runs out, that job again.
	runWorker("")
	testenv.CheckFor(t, 120*time.Second, func() error {
		for _, line := range strings.Split(w.logs.String(), "\n") {
			if strings.Contains(line, "thumbnails made") && strings.Contains(line, first) {
				return nil
			}
		}
		return fmt.Errorf("the job of %s not yet done again", first)
	})
	for _, id := range items {
		testenv.CheckFor(t, 30*time.Second, func() error {
			if n := len(thumbs(id)); n != len(thumbnail.Sizes) {
				return fmt.Errorf("item %s has %d thumbnails, want %d", id, n, len(thumbnail.Sizes))
			}
			if n := ready.count(id); n == 0 {
				return fmt.Errorf("no ThumbnailsReady for %s yet", id)
			}
			return nil
		})
	}
	time.Sleep(time.Second) // a second announcement would be delivered by now
	for _, id := range items {
		files, err := filepath.Glob(filepath.Join(blobs, "products", id, "thumb-*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != len(thumbnail.Sizes) {
			t.Errorf("item %s has %d thumbnail files, want %d: %v", id, len(files), len(thumbnail.Sizes), files)
		}
		if n := ready.count(id); n != 1 {
			t.Errorf("item %s announced ready %d times, want once", id, n)
		}
	}
}

// subscribeThumbnailsReady counts the ThumbnailsReady events per product.
func subscribeThumbnailsReady(t *testing.T, natsURL string) *deliveries {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: natsURL, Name: "thumbnails ready probe", Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	d := &deliveries{seen: map[string]int{}}
	var mu sync.Mutex // the handler's decode, apart from the counts
	err = b.Subscribe(ctx, "thumbnails-ready-probe", []string{catalog.SubjectThumbnailsReady}, func(_ context.Context, ev bus.Event) error {
		mu.Lock()
		defer mu.Unlock()
		var r catalog.ThumbnailsReady
		if err := ev.Decode(&r); err != nil {
			return bus.Permanent(err)
		}
		d.mu.Lock()
		d.seen[r.ProductID]++
		d.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// getJSON GETs url with the operator's credential and decodes the answer.
func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", operatorAuth())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, buf.String())
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		t.Fatal(err)
	}
}

// brokerIdle reports an error while some consumer of the broker at natsURL
// has messages pending or delivered and not yet acked.
func brokerIdle(natsURL string) error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		st, err := js.Stream(ctx, si.Config.Name)
		if err != nil {
			return err
		}
		cl := st.ListConsumers(ctx)
		for ci := range cl.Info() {
			if ci.NumPending > 0 || ci.NumAckPending > 0 {
				return fmt.Errorf("consumer %s of %s: %d pending, %d not acked", ci.Name, si.Config.Name, ci.NumPending, ci.NumAckPending)
			}
		}
		if err := cl.Err(); err != nil {
			return err
		}
	}
	return streams.Err()
}
