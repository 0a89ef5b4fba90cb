package contracts_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

const (
	goodItem = `{"product_id":"%s","name":"Lamp","description":"","category":"home","price":{"amount":1250,"currency":"USD"},"image_key":"products/%[1]s/original.png"}`
	badItem  = `{"product_id":"%s","name":"Lamp","description":"","category":"home","price":{"amount":1250,"currency":"USD"}}`
)

func openBus(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Options{StoreDir: t.TempDir(), Name: "contracts-test", Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// recorder is a consumer's handler that records the event ids it saw.
type recorder struct {
	mu  sync.Mutex
	ids []string
}

func (r *recorder) handle(_ context.Context, ev bus.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, ev.ID)
	return nil
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// TestValidationOnTheBus wires the contracts into a real embedded broker
// the way the shop is to: the relay of a real outbox publishes through
// Registry.Publisher, and the consumer's handler is wrapped by
// Registry.Handler. A row that breaks its contract is parked by the relay
// with the reason, the good rows behind it are delivered; a bad message
// that reaches the stream some other way (an old producer) becomes a dead
// letter at once with the reason, and the handler never sees it.
func TestValidationOnTheBus(t *testing.T) {
	ctx := context.Background()
	reg := registry(t)
	b := openBus(t)
	const consumer = "contracts-test-indexer"
	rec := &recorder{}
	if err := b.Subscribe(ctx, consumer, []string{contracts.SubjectItemListed}, reg.Handler(rec.handle)); err != nil {
		t.Fatal(err)
	}

	// Publish side, through a real outbox and relay.
	db := testenv.SQLite(t)
	if _, err := catalogdb.Open(ctx, db); err != nil { // creates the outbox tables
		t.Fatal(err)
	}
	rows := []struct{ id, payload string }{
		{"prd_good1", fmt.Sprintf(goodItem, "prd_good1")},
		{"prd_bad", fmt.Sprintf(badItem, "prd_bad")},
		{"prd_good2", fmt.Sprintf(goodItem, "prd_good2")},
	}
	if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		for _, r := range rows {
			if err := outbox.Add(ctx, tx, contracts.SubjectItemListed, r.id, rawJSON(r.payload), t0); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	relay := outbox.NewRelay(db, reg.Publisher(b), testenv.Logger(t))
	n, err := relay.Flush(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Flush = %d, %v; want the 2 good rows published", n, err)
	}
	parked, err := outbox.Parked(ctx, db, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].ID != "prd_bad" || !strings.Contains(parked[0].LastError, "image_key") {
		t.Fatalf("parked = %+v; want prd_bad, with a reason naming image_key", parked)
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		if got := rec.seen(); len(got) != 2 || got[0] != "prd_good1" || got[1] != "prd_good2" {
			return fmt.Errorf("handler saw %v, want the 2 good events", got)
		}
		return nil
	})

	// Consume side: a bad message published around the validation.
	errList := b.PublishBatch(ctx, []bus.Message{{Subject: contracts.SubjectItemListed, ID: "prd_sneaky", Data: []byte(fmt.Sprintf(badItem, "prd_sneaky"))}})
	if errList[0] != nil {
		t.Fatal(errList[0])
	}
	var dead []bus.DeadLetter
	testenv.CheckFor(t, 10*time.Second, func() error {
		var err error
		dead, err = b.DeadLetters(ctx, bus.DeadLetterFilter{Consumer: consumer})
		if err != nil {
			return err
		}
		if len(dead) != 1 {
			return fmt.Errorf("%d dead letters, want 1", len(dead))
		}
		return nil
	})
	d := dead[0]
	if d.MsgID != "prd_sneaky" || d.Deliveries != 1 || !d.Permanent || !strings.Contains(d.Error, "image_key") {
		t.Errorf("dead letter = %+v; want prd_sneaky after 1 delivery, permanent, naming image_key", d)
	}
	// A good message after it is still handled: the consumer goes on.
	if errList := reg.Publisher(b).PublishBatch(ctx, []bus.Message{{Subject: contracts.SubjectItemListed, ID: "prd_good3", Data: []byte(fmt.Sprintf(goodItem, "prd_good3"))}}); errList[0] != nil {
		t.Fatal(errList[0])
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		if got := rec.seen(); len(got) != 3 || got[2] != "prd_good3" {
			return fmt.Errorf("handler saw %v, want prd_good3 last and never prd_sneaky", got)
		}
		return nil
	})
}

// TestPublisherRefusesUnknownSubjects checks that a message on a subject
// without a contract is refused as errs.Invalid while the others of the
// batch are published.
func TestPublisherRefusesUnknownSubjects(t *testing.T) {
	ctx := context.Background()
	reg := registry(t)
	b := openBus(t)
	res := reg.Publisher(b).PublishBatch(ctx, []bus.Message{
		{Subject: "globo.nobody.nothing", ID: "x1", Data: []byte(`{}`)},
		{Subject: contracts.SubjectItemListed, ID: "prd_1", Data: []byte(fmt.Sprintf(goodItem, "prd_1"))},
		{Subject: contracts.SubjectOrderPlaced, ID: "ord_1", Data: []byte(`{"order":{}}`)},
	})
	if len(res) != 3 || !errs.Is(errs.Invalid, res[0]) || res[1] != nil || !errs.Is(errs.Invalid, res[2]) {
		t.Fatalf("PublishBatch = %v; want invalid, published, invalid", res)
	}
	if !strings.Contains(res[2].Error(), "/order") {
		t.Errorf("reason %q does not locate the problem", res[2])
	}
}

// rawJSON is a payload already in JSON, which outbox.Add stores as is.
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }
