package contracts_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/partner/partnerdb"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/worker/webhooks"
)

// The partner integration's consumers and their decoding structs
// (partner.Service.Handle, webhooks.Worker.Handle).
func init() {
	decoders[contracts.SubjectThumbnailsReady] = append(decoders[contracts.SubjectThumbnailsReady],
		decoder{"partner service (partner.Service.Handle)", reflect.TypeFor[partner.ThumbnailsReadyEvent]()})
	decoders[contracts.SubjectOrderPlaced] = append(decoders[contracts.SubjectOrderPlaced],
		decoder{"partner service (partner.Service.Handle)", reflect.TypeFor[partner.OrderPlacedEvent]()})
	decoders[contracts.SubjectWebhookRequested] = append(decoders[contracts.SubjectWebhookRequested],
		decoder{"webhooks worker (webhooks.Worker.Handle)", reflect.TypeFor[partner.WebhookRequested]()})
}

// TestPartnerSubjects checks that this package spells the partner
// integration's subjects as their producers and consumers do, and that
// they subscribe to registered subjects only.
func TestPartnerSubjects(t *testing.T) {
	for _, p := range [][2]string{
		{contracts.SubjectThumbnailsReady, catalog.SubjectThumbnailsReady},
		{contracts.SubjectThumbnailsReady, partner.SubjectThumbnailsReady},
		{contracts.SubjectOrderPlaced, partner.SubjectOrderPlaced},
		{contracts.SubjectWebhookRequested, partner.SubjectWebhookJob},
	} {
		if p[0] != p[1] {
			t.Errorf("contracts spells %q, the producer or consumer %q", p[0], p[1])
		}
	}
	r := registry(t)
	for _, s := range append(append([]string(nil), partner.Subjects...), webhooks.Subjects...) {
		if _, err := r.Schema(s); err != nil {
			t.Errorf("the partner integration subscribes to %s: %v", s, err)
		}
	}
}

// partnerPayloads runs the real producers of the partner integration's
// messages on backend b and adds what they wrote to their outboxes to out:
// the catalog store's ThumbnailsReady (catalogdb.SetThumbnails) and the
// partner service's webhook jobs, from the catalog's and order service's
// events as produced here.
func partnerPayloads(t *testing.T, b testenv.Backend, out map[string][][]byte) {
	t.Helper()
	ctx := context.Background()
	catDB := b.Open(t)
	cat, err := catalogdb.Open(ctx, catDB)
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.EnsureCategories(ctx, []catalog.Category{{ID: "home", Name: "Home"}}); err != nil {
		t.Fatal(err)
	}
	if err := cat.CreateProduct(ctx, catalog.Record{ID: "prd_p1", Name: "Lamp", Category: "home",
		Price: money.USD(1250), Stock: 3, ImageKey: "products/prd_p1/original.png", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := cat.SetThumbnails(ctx, "prd_p1", map[string]string{"small": "products/prd_p1/thumb-small.jpg",
		"large": "products/prd_p1/thumb-large.jpg"}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	var ready [][]byte
	for _, r := range outboxRows(t, catDB) {
		if r.subject == contracts.SubjectThumbnailsReady {
			ready = append(ready, r.payload)
		}
	}
	out[contracts.SubjectThumbnailsReady] = append(out[contracts.SubjectThumbnailsReady], ready...)

	pdb := b.Open(t)
	st, err := partnerdb.Open(ctx, pdb)
	if err != nil {
		t.Fatal(err)
	}
	svc := partner.NewService(st, nil, nil, clock.NewFake(t0))
	c, err := svc.Create(ctx, "Acme", "https://acme.example/hooks")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateProduct(ctx, partner.ProductRecord{PartnerID: c.Partner.ID, Product: partner.Product{
		ID: "pl_1", ProductID: "prd_p1", Status: partner.ProductListed, Name: "Lamp", Category: "home", Price: money.USD(1250), CreatedAt: t0,
	}}); err != nil {
		t.Fatal(err)
	}
	placed := map[string]any{"order": map[string]any{"id": "ord_p1", "updated_at": t0,
		"items": []map[string]any{{"product_id": "prd_p1", "quantity": 2, "line_total": money.USD(2500)}}}}
	sold, _ := json.Marshal(placed)
	for i, p := range ready {
		if err := svc.Handle(ctx, bus.Event{ID: "ready-" + string(rune('a'+i)), Type: contracts.SubjectThumbnailsReady, Data: p}); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Handle(ctx, bus.Event{ID: "ord_p1", Type: contracts.SubjectOrderPlaced, Data: sold}); err != nil {
		t.Fatal(err)
	}
	jobs := 0
	for _, r := range outboxRows(t, pdb) {
		out[r.subject] = append(out[r.subject], r.payload)
		jobs++
	}
	if len(ready) != 1 || jobs != 2 {
		t.Errorf("the partner producers wrote %d ThumbnailsReady and %d webhook jobs, want 1 and 2", len(ready), jobs)
	}
}

// TestPartnerProducersConform validates what the partner integration's
// producers write against the contracts and decodes it with each
// consumer's struct, checking the fields they read arrived (as
// TestProducersConform does for every producer, on its own).
func TestPartnerProducersConform(t *testing.T) {
	r := registry(t)
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			out := map[string][][]byte{}
			partnerPayloads(t, b, out)
			for _, s := range []string{contracts.SubjectThumbnailsReady, contracts.SubjectWebhookRequested} {
				if len(out[s]) == 0 {
					t.Errorf("no %s produced", s)
				}
			}
			for subject, payloads := range out {
				for _, p := range payloads {
					if err := r.Validate(subject, p); err != nil {
						t.Errorf("%v\n%s", err, p)
					}
					var doc any
					if err := json.Unmarshal(p, &doc); err != nil {
						t.Fatal(err)
					}
					for _, dec := range decoders[subject] {
						if err := json.Unmarshal(p, reflect.New(dec.typ).Interface()); err != nil {
							t.Errorf("%s cannot decode %s: %v", dec.consumer, subject, err)
						}
						for _, need := range needsOf(t, subject, dec.consumer) {
							if !present(doc, strings.Split(need, ".")) {
								t.Errorf("%s: %s reads %s, which is missing from %s", subject, dec.consumer, need, p)
							}
						}
					}
				}
			}
		})
	}
}
