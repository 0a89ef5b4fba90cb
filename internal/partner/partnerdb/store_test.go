package partnerdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/partner/partnerdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/inbox"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2031, 5, 17, 10, 30, 0, 0, time.UTC)

// TestMigrationCopies keeps the store's copies of the outbox and inbox
// migrations equal to the platform's.
func TestMigrationCopies(t *testing.T) {
	for file, want := range map[string]string{
		"00002_outbox.sql":    outbox.Migration,
		"00003_outbox_v2.sql": outbox.MigrationV2,
		"00004_inbox.sql":     inbox.Migration,
	} {
		b, err := fs.ReadFile(partnerdb.Migrations(), file)
		if err != nil || string(b) != want {
			t.Errorf("migrations/%s differs from the platform's migration (%v)", file, err)
		}
	}
}

// TestStore is the conformance suite of partnerdb.Store, run against
// SQLite and PostgreSQL.
func TestStore(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			open := func(t *testing.T) (*partnerdb.Store, *sqldb.DB) {
				t.Helper()
				db := b.Open(t)
				st, err := partnerdb.Open(context.Background(), db)
				if err != nil {
					t.Fatal(err)
				}
				return st, db
			}
			t.Run("partners", func(t *testing.T) { st, _ := open(t); testPartners(t, st) })
			t.Run("products", func(t *testing.T) { st, _ := open(t); testProducts(t, st) })
			t.Run("apply is idempotent and enqueues jobs", func(t *testing.T) { st, db := open(t); testApply(t, st, db) })
			t.Run("concurrent applies of one message", func(t *testing.T) { st, db := open(t); testConcurrentApply(t, st, db) })
			t.Run("deliveries", func(t *testing.T) { st, _ := open(t); testDeliveries(t, st) })
			t.Run("migrations are idempotent", func(t *testing.T) {
				db := b.Open(t)
				for i := 0; i < 2; i++ {
					if _, err := partnerdb.Open(context.Background(), db); err != nil {
						t.Fatalf("Open #%d: %v", i+1, err)
					}
				}
			})
		})
	}
}

func mkPartner(t *testing.T, st *partnerdb.Store, id, url string) partner.PartnerRecord {
	t.Helper()
	p := partner.PartnerRecord{Partner: partner.Partner{ID: id, Name: "Partner " + id, WebhookURL: url, CreatedAt: t0},
		KeyHash: partner.HashKey("key-" + id), WebhookSecret: "secret-" + id}
	if err := st.CreatePartner(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkProduct(t *testing.T, st *partnerdb.Store, partnerID, id, productID string, at time.Time) {
	t.Helper()
	status := partner.ProductAwaitingImage
	if productID != "" {
		status = partner.ProductListed
	}
	err := st.CreateProduct(context.Background(), partner.ProductRecord{PartnerID: partnerID, Product: partner.Product{
		ID: id, ProductID: productID, Status: status, Name: "Lamp " + id, Category: "home", Price: money.USD(1250), Stock: 3, CreatedAt: at,
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func testPartners(t *testing.T, st *partnerdb.Store) {
	ctx := context.Background()
	a := mkPartner(t, st, "ptn_a", "https://a.example/hook")
	mkPartner(t, st, "ptn_b", "")
	dup := a
	dup.ID = "ptn_c" // same key hash
	if err := st.CreatePartner(ctx, dup); !errs.Is(errs.Conflict, err) {
		t.Fatalf("CreatePartner with a taken key hash = %v, want Conflict", err)
	}
	got, err := st.PartnerByKeyHash(ctx, partner.HashKey("key-ptn_a"))
	if err != nil || got.ID != "ptn_a" || got.WebhookURL != "https://a.example/hook" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("PartnerByKeyHash = %+v, %v", got, err)
	}
	if _, err := st.PartnerByKeyHash(ctx, partner.HashKey("nope")); !errs.Is(errs.NotFound, err) {
		t.Fatalf("PartnerByKeyHash(unknown) = %v, want NotFound", err)
	}
	list, err := st.Partners(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "ptn_a" || list[1].ID != "ptn_b" {
		t.Fatalf("Partners = %+v, %v", list, err)
	}
	if err := st.SetWebhook(ctx, "ptn_b", "https://b.example/", "s2"); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Partner(ctx, "ptn_b")
	if err != nil || rec.WebhookURL != "https://b.example/" || rec.WebhookSecret != "s2" {
		t.Fatalf("Partner after SetWebhook = %+v, %v", rec, err)
	}
	if err := st.SetWebhook(ctx, "ptn_nope", "", ""); !errs.Is(errs.NotFound, err) {
		t.Fatalf("SetWebhook(unknown) = %v, want NotFound", err)
	}
}

func testProducts(t *testing.T, st *partnerdb.Store) {
	ctx := context.Background()
	mkPartner(t, st, "ptn_a", "")
	mkPartner(t, st, "ptn_b", "")
	mkProduct(t, st, "ptn_a", "pl_1", "", t0)
	mkProduct(t, st, "ptn_a", "pl_2", "prd_2", t0.Add(time.Minute))
	mkProduct(t, st, "ptn_b", "pl_3", "prd_3", t0)
	if _, err := st.Product(ctx, "ptn_b", "pl_1"); !errs.Is(errs.NotFound, err) {
		t.Fatalf("another partner's product = %v, want NotFound", err)
	}
	list, err := st.Products(ctx, "ptn_a", 10)
	if err != nil || len(list) != 2 || list[0].ID != "pl_2" || list[1].ID != "pl_1" || list[0].ProductID != "prd_2" || list[1].ProductID != "" {
		t.Fatalf("Products = %+v, %v", list, err)
	}
	got, err := st.UpdateProduct(ctx, "ptn_a", "pl_1", func(p *partner.ProductRecord) error {
		p.Status, p.ListingSince = partner.ProductListing, t0
		return nil
	})
	if err != nil || got.Status != partner.ProductListing {
		t.Fatalf("UpdateProduct = %+v, %v", got, err)
	}
	// A catalog product has one owner.
	if _, err := st.UpdateProduct(ctx, "ptn_a", "pl_1", func(p *partner.ProductRecord) error {
		p.ProductID = "prd_3"
		return nil
	}); !errs.Is(errs.Conflict, err) {
		t.Fatalf("UpdateProduct to a taken catalog id = %v, want Conflict", err)
	}
	refused := fmt.Errorf("no")
	if _, err := st.UpdateProduct(ctx, "ptn_a", "pl_1", func(*partner.ProductRecord) error { return refused }); err == nil {
		t.Fatal("UpdateProduct whose fn fails succeeded")
	}
	if _, err := st.UpdateProduct(ctx, "ptn_b", "pl_1", func(*partner.ProductRecord) error { return nil }); !errs.Is(errs.NotFound, err) {
		t.Fatalf("UpdateProduct of another partner's = %v, want NotFound", err)
	}
	p, err := st.Product(ctx, "ptn_a", "pl_1")
	if err != nil || p.Status != partner.ProductListing || !p.ListingSince.Equal(t0) || p.ProductID != "" {
		t.Fatalf("Product = %+v, %v", p, err)
	}
}

func outboxJobs(t *testing.T, db *sqldb.DB) map[string]partner.WebhookRequested {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT seq_id, subject, payload FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]partner.WebhookRequested{}
	for rows.Next() {
		var id, subject, payload string
		if err := rows.Scan(&id, &subject, &payload); err != nil {
			t.Fatal(err)
		}
		if subject != partner.SubjectWebhookJob {
			t.Errorf("outbox row %s on subject %s", id, subject)
		}
		var j partner.WebhookRequested
		if err := json.Unmarshal([]byte(payload), &j); err != nil {
			t.Fatal(err)
		}
		out[id] = j
	}
	return out
}

// sell applies an order of the given catalog products (qty 2 each) as
// message msgID, recording a sale and a delivery per owned line.
func sell(st *partnerdb.Store, msgID, orderID string, productIDs ...string) (bool, error) {
	return st.Apply(context.Background(), msgID, t0, func(tx partner.Tx) error {
		ctx := context.Background()
		recs, err := tx.ProductsByCatalogID(ctx, productIDs)
		if err != nil {
			return err
		}
		for i, r := range recs {
			if err := tx.AddSale(ctx, partner.SaleRecord{PartnerID: r.PartnerID, Sale: partner.Sale{
				OrderID: orderID, ProductID: r.ProductID, ListingID: r.ID, Quantity: 2, Amount: money.USD(2500), SoldAt: t0.Add(time.Duration(i) * time.Second),
			}}); err != nil {
				return err
			}
			next := t0
			d := partner.Delivery{ID: "whd_" + orderID + "_" + r.ID, PartnerID: r.PartnerID, EventType: partner.EventItemSold,
				Payload: json.RawMessage(`{"order":"` + orderID + `"}`), Status: partner.StatusPending, NextAttemptAt: &next, CreatedAt: t0, UpdatedAt: t0}
			if err := tx.AddDelivery(ctx, d, &partner.WebhookRequested{DeliveryID: d.ID, PartnerID: r.PartnerID, EventType: d.EventType, RequestedAt: t0}); err != nil {
				return err
			}
		}
		return nil
	})
}

func testApply(t *testing.T, st *partnerdb.Store, db *sqldb.DB) {
	ctx := context.Background()
	mkPartner(t, st, "ptn_a", "https://a.example/")
	mkProduct(t, st, "ptn_a", "pl_1", "prd_1", t0)
	mkProduct(t, st, "ptn_a", "pl_2", "prd_2", t0)
	for i, want := range []bool{true, false} { // the second is a redelivery
		fresh, err := sell(st, "msg-1", "ord_1", "prd_1", "prd_2", "prd_other")
		if err != nil || fresh != want {
			t.Fatalf("Apply #%d = %v, %v; want fresh %v", i+1, fresh, err, want)
		}
	}
	sales, units, revenue, err := st.Sales(ctx, "ptn_a", 10)
	if err != nil || len(sales) != 2 || units != 4 || revenue != 5000 || sales[0].ProductID != "prd_2" {
		t.Fatalf("Sales = %+v, %d, %d, %v", sales, units, revenue, err)
	}
	if sales, _, _, _ := st.Sales(ctx, "ptn_a", 1); len(sales) != 1 {
		t.Fatalf("Sales limited to 1 = %d", len(sales))
	}
	jobs := outboxJobs(t, db)
	if len(jobs) != 2 || jobs["whd_ord_1_pl_1"].DeliveryID != "whd_ord_1_pl_1" || jobs["whd_ord_1_pl_2"].EventType != partner.EventItemSold {
		t.Fatalf("outbox jobs = %+v", jobs)
	}
	// A failing effect leaves nothing, not even the inbox record.
	boom := fmt.Errorf("boom")
	if _, err := st.Apply(ctx, "msg-2", t0, func(partner.Tx) error { return boom }); err == nil {
		t.Fatal("Apply whose effect fails succeeded")
	}
	if fresh, err := st.Apply(ctx, "msg-2", t0, func(partner.Tx) error { return nil }); err != nil || !fresh {
		t.Fatalf("Apply after a failed one = %v, %v; want fresh", fresh, err)
	}
	// Listing in flight, and thumbnails.
	_, err = st.Apply(ctx, "msg-3", t0, func(tx partner.Tx) error {
		busy, err := tx.ListingInFlight(ctx, t0.Add(-time.Minute))
		if err != nil || busy {
			return fmt.Errorf("ListingInFlight with none = %v, %v", busy, err)
		}
		return tx.SetThumbnails(ctx, "pl_1", map[string]string{"small": "products/prd_1/small.jpg"})
	})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := st.Product(ctx, "ptn_a", "pl_1")
	if p.Status != partner.ProductReady || p.ThumbnailKeys["small"] != "products/prd_1/small.jpg" {
		t.Fatalf("product after SetThumbnails = %+v", p)
	}
	if _, err := st.UpdateProduct(ctx, "ptn_a", "pl_2", func(p *partner.ProductRecord) error {
		p.Status, p.ListingSince = partner.ProductListing, t0
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, err = st.Apply(ctx, "msg-4", t0, func(tx partner.Tx) error {
		if busy, err := tx.ListingInFlight(ctx, t0.Add(-time.Minute)); err != nil || !busy {
			return fmt.Errorf("ListingInFlight with one = %v, %v", busy, err)
		}
		if busy, err := tx.ListingInFlight(ctx, t0); err != nil || busy {
			return fmt.Errorf("ListingInFlight since its start = %v, %v", busy, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Forget(ctx, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if fresh, err := st.Apply(ctx, "msg-1", t0, func(partner.Tx) error { return nil }); err != nil || !fresh {
		t.Fatalf("Apply of a forgotten id = %v, %v; want fresh", fresh, err)
	}
}

func testConcurrentApply(t *testing.T, st *partnerdb.Store, _ *sqldb.DB) {
	mkPartner(t, st, "ptn_a", "https://a.example/")
	mkProduct(t, st, "ptn_a", "pl_1", "prd_1", t0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := sell(st, "msg-c", "ord_c", "prd_1")
			if err != nil {
				t.Error(err)
			}
			if f {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	_, units, _, err := st.Sales(context.Background(), "ptn_a", 10)
	if fresh != 1 || units != 2 || err != nil {
		t.Fatalf("fresh applies %d, units %d (%v); want 1 and 2", fresh, units, err)
	}
}

func testDeliveries(t *testing.T, st *partnerdb.Store) {
	ctx := context.Background()
	mkPartner(t, st, "ptn_a", "https://a.example/")
	mkProduct(t, st, "ptn_a", "pl_1", "prd_1", t0)
	if _, err := sell(st, "m1", "ord_1", "prd_1"); err != nil {
		t.Fatal(err)
	}
	if _, err := sell(st, "m2", "ord_2", "prd_1"); err != nil {
		t.Fatal(err)
	}
	ds, err := st.Deliveries(ctx, "ptn_a", 10)
	if err != nil || len(ds) != 2 || ds[0].ID != "whd_ord_2_pl_1" || ds[0].Status != partner.StatusPending ||
		ds[0].NextAttemptAt == nil || string(ds[0].Payload) != `{"order":"ord_2"}` {
		t.Fatalf("Deliveries = %+v, %v", ds, err)
	}
	got, err := st.UpdateDelivery(ctx, "whd_ord_1_pl_1", func(d *partner.Delivery) error {
		d.Attempts, d.Status, d.LastStatusCode, d.LastDurationMS, d.NextAttemptAt, d.UpdatedAt = 1, partner.StatusDelivered, 204, 12, nil, t0.Add(time.Second)
		return nil
	})
	if err != nil || got.Status != partner.StatusDelivered {
		t.Fatalf("UpdateDelivery = %+v, %v", got, err)
	}
	d, err := st.Delivery(ctx, "whd_ord_1_pl_1")
	if err != nil || d.Status != partner.StatusDelivered || d.Attempts != 1 || d.LastStatusCode != 204 || d.LastDurationMS != 12 ||
		d.NextAttemptAt != nil || !d.UpdatedAt.Equal(t0.Add(time.Second)) || !d.CreatedAt.Equal(t0) {
		t.Fatalf("Delivery = %+v, %v", d, err)
	}
	if _, err := st.Delivery(ctx, "whd_nope"); !errs.Is(errs.NotFound, err) {
		t.Fatalf("Delivery(unknown) = %v, want NotFound", err)
	}
	if _, err := st.UpdateDelivery(ctx, "whd_nope", func(*partner.Delivery) error { return nil }); !errs.Is(errs.NotFound, err) {
		t.Fatalf("UpdateDelivery(unknown) = %v, want NotFound", err)
	}
	if ds, _ := st.Deliveries(ctx, "ptn_other", 10); len(ds) != 0 {
		t.Fatalf("another partner's log = %+v", ds)
	}
}

// TestSharesADatabaseWithAnotherOutbox: the partner store opens on a
// database where another store's outbox migrations ran (or run after it),
// in either order, and again at a restart.
func TestSharesADatabaseWithAnotherOutbox(t *testing.T) {
	other := fstest.MapFS{
		"00001_outbox.sql":    {Data: []byte(outbox.Migration)},
		"00002_outbox_v2.sql": {Data: []byte(outbox.MigrationV2)},
	}
	migrateOther := func(t *testing.T, db *sqldb.DB) {
		t.Helper()
		fsys, err := outbox.SharedMigrations(context.Background(), db, other, "00002_outbox_v2.sql")
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(context.Background(), "other", fsys); err != nil {
			t.Fatalf("the other store's migrations: %v", err)
		}
	}
	for _, b := range testenv.Backends() {
		for _, otherFirst := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/other_first=%v", b.Name, otherFirst), func(t *testing.T) {
				ctx := context.Background()
				db := b.Open(t)
				if otherFirst {
					migrateOther(t, db)
				}
				if _, err := partnerdb.Open(ctx, db); err != nil {
					t.Fatalf("Open on a shared database: %v", err)
				}
				if !otherFirst {
					migrateOther(t, db)
				}
				if _, err := partnerdb.Open(ctx, db); err != nil {
					t.Fatalf("reopened: %v", err)
				}
			})
		}
	}
}
